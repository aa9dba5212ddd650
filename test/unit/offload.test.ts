import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Coalescer, isSuperPacket, OffloadError, splitRead, VNET_HEADER_BYTES } from "../../src/sdwan/offload.ts";
import { internetChecksum } from "../helpers/checksum.ts";
import { prng, randomBytes } from "../helpers/prng.ts";

const MSS = 1348;
const SCRATCH = Buffer.alloc(70_000);
const TCP_OPTIONS = Buffer.from([1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78]); // NOP NOP timestamps

/** The checksum a receiver checks, computed the plain way (RFC 1071 over pseudo-header and segment). */
function referenceChecksum(packet: Buffer): number {
  const ihl = (packet[0]! & 15) * 4;
  const transport = Buffer.from(packet.subarray(ihl));
  transport.writeUInt16BE(0, 16);
  const pseudo = Buffer.alloc(12);
  packet.copy(pseudo, 0, 12, 20);
  pseudo[9] = packet[9]!;
  pseudo.writeUInt16BE(transport.length, 10);
  return internetChecksum(Buffer.concat([pseudo, transport]));
}

/** What the kernel does to a partial checksum: sums from the transport header on, the field's seed included. */
function completePartial(packet: Buffer, start = (packet[0]! & 15) * 4, checksumOffset = 16): Buffer {
  const out = Buffer.from(packet);
  let sum = 0;
  for (let i = start; i < out.length; i += 2) sum += (out[i]! << 8) | (out[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  out.writeUInt16BE(~sum & 0xffff, start + checksumOffset);
  return out;
}

function ipHeaderValid(packet: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += packet.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum === 0xffff;
}

interface TcpSpec {
  payload: Buffer;
  seq?: number;
  flags?: number;
  ack?: number;
  sourcePort?: number;
  id?: number;
}

/** An IPv4/TCP packet 10.9.0.1 -> 10.9.0.2 with timestamps, its checksum field holding the pseudo-header sum. */
function tcpPacket({ payload, seq = 1000, flags = 0x10, ack = 77, sourcePort = 40000, id = 9 }: TcpSpec): Buffer {
  const tcpBytes = 20 + TCP_OPTIONS.length;
  const packet = Buffer.alloc(20 + tcpBytes + payload.length);
  packet[0] = 0x45;
  packet.writeUInt16BE(packet.length, 2);
  packet.writeUInt16BE(id, 4);
  packet.writeUInt16BE(0x4000, 6);
  packet[8] = 64;
  packet[9] = 6;
  Buffer.from([10, 9, 0, 1, 10, 9, 0, 2]).copy(packet, 12);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += packet.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  packet.writeUInt16BE(~sum & 0xffff, 10);
  packet.writeUInt16BE(sourcePort, 20);
  packet.writeUInt16BE(5201, 22);
  packet.writeUInt32BE(seq >>> 0, 24);
  packet.writeUInt32BE(ack, 28);
  packet[32] = (tcpBytes / 4) << 4;
  packet[33] = flags;
  packet.writeUInt16BE(502, 34);
  TCP_OPTIONS.copy(packet, 40);
  payload.copy(packet, 20 + tcpBytes);
  // The seed: the complement of the full checksum over a zero payload and zero field is not it; compute it directly.
  let seed = 6 + (tcpBytes + payload.length);
  for (let i = 12; i < 20; i += 2) seed += packet.readUInt16BE(i);
  while (seed > 0xffff) seed = (seed & 0xffff) + (seed >>> 16);
  packet.writeUInt16BE(seed, 36);
  return packet;
}

function vnet(fields: { flags?: number; gsoType?: number; headerBytes?: number; gsoSize?: number; csumStart?: number; csumOffset?: number }): Buffer {
  const header = Buffer.alloc(VNET_HEADER_BYTES);
  header[0] = fields.flags ?? 0;
  header[1] = fields.gsoType ?? 0;
  header.writeUInt16LE(fields.headerBytes ?? 0, 2);
  header.writeUInt16LE(fields.gsoSize ?? 0, 4);
  header.writeUInt16LE(fields.csumStart ?? 0, 6);
  header.writeUInt16LE(fields.csumOffset ?? 0, 8);
  return header;
}

function split(frame: Buffer): { packet: Buffer; partial: boolean }[] {
  const out: { packet: Buffer; partial: boolean }[] = [];
  // Each packet comes behind a byte of headroom that is the handler's: overwriting it leaves the packet whole.
  splitRead(frame, SCRATCH, (withHeadroom, partial) => {
    withHeadroom[0] = 0xee;
    out.push({ packet: Buffer.from(withHeadroom.subarray(1)), partial });
  });
  return out;
}

function coalesce(packets: { packet: Buffer; partial: boolean }[]): Buffer[][] {
  const frames: Buffer[][] = [];
  const coalescer = new Coalescer((parts) => frames.push(parts.map((part) => Buffer.from(part))));
  for (const { packet, partial } of packets) coalescer.add(packet, partial);
  coalescer.flush();
  return frames;
}

const payloadOf = (bytes: number, seed: number) => randomBytes(prng(seed), bytes);

describe("TUN offloads: userspace segmentation", () => {
  const payload = payloadOf(10 * MSS + 123, 1);
  const superPacket = tcpPacket({ payload, flags: 0x18 | 0x01 | 0x80, seq: 0xffff_f000 }); // ACK PSH FIN CWR, seq about to wrap
  const frame = Buffer.concat([vnet({ flags: 1, gsoType: 1, headerBytes: 52, gsoSize: MSS, csumStart: 20, csumOffset: 16 }), superPacket]);

  it("cuts a TCP super-packet into MSS-sized segments a receiver accepts: lengths, IDs, sequence numbers, flags, checksums", () => {
    const segments = split(frame);
    expect(segments).toHaveLength(11);
    let seq = 0xffff_f000;
    segments.forEach(({ packet, partial }, index) => {
      const last = index === segments.length - 1;
      expect(partial).toBe(true);
      expect(packet.readUInt16BE(2)).toBe(packet.length);
      expect(packet.length).toBe(52 + (last ? 123 : MSS));
      expect(packet.readUInt16BE(4)).toBe(9 + index);
      expect(ipHeaderValid(packet)).toBe(true);
      expect(packet.readUInt32BE(24)).toBe(seq);
      seq = (seq + packet.length - 52) >>> 0;
      expect(packet[33]).toBe(last ? 0x18 | 0x01 : index === 0 ? 0x10 | 0x80 : 0x10);
      expect(packet.subarray(52)).toEqual(payload.subarray(index * MSS, index * MSS + packet.length - 52));
      const completed = completePartial(packet);
      expect(completed.readUInt16BE(36)).toBe(referenceChecksum(packet));
    });
  });

  it("passes a packet through as it came, saying whether its checksum is partial; completes one left open at an unusual place", () => {
    const packet = tcpPacket({ payload: payloadOf(300, 2) });
    expect(split(Buffer.concat([vnet({}), packet]))).toEqual([{ packet, partial: false }]);
    expect(split(Buffer.concat([vnet({ flags: 1, csumStart: 20, csumOffset: 16 }), packet]))).toEqual([{ packet, partial: true }]);
    const [odd] = split(Buffer.concat([vnet({ flags: 1, csumStart: 24, csumOffset: 2 }), Buffer.from(packet)]));
    expect(odd!.partial).toBe(false);
    expect(odd!.packet.readUInt16BE(26)).toBe(completePartial(packet, 24, 2).readUInt16BE(26));
  });

  it("refuses what it did not ask for, naming it, and never anything but an OffloadError on garbage", () => {
    expect(() => split(Buffer.alloc(4))).toThrow(/shorter than the virtio_net_hdr/);
    expect(() => split(Buffer.concat([vnet({ gsoType: 3, gsoSize: 1000 }), tcpPacket({ payload: Buffer.alloc(3000) })]))).toThrow(/GSO type 3/);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.constantFrom(0, 1, 3, 0x81), fc.nat(2000), (bytes, gsoType, gsoSize) => {
        const header = vnet({ flags: 1, gsoType, gsoSize, csumStart: 20, csumOffset: 16 });
        try {
          split(Buffer.concat([header, Buffer.from(bytes)]));
        } catch (err) {
          expect(err).toBeInstanceOf(OffloadError);
        }
      }),
      { seed: 14, numRuns: 500 },
    );
  });
});

describe("TUN offloads: super-packets taken whole", () => {
  const frameOf = (packet: Buffer) => Buffer.concat([vnet({ flags: 1, gsoType: 1, gsoSize: MSS, csumStart: 20, csumOffset: 16 }), packet]);

  it("a read's super-packet goes whole to a handler that takes it, and is cut into segments when it declines", () => {
    const original = tcpPacket({ payload: payloadOf(5 * MSS + 7, 11) });
    const taken: { packet: Buffer; gsoSize: number }[] = [];
    const segments: Buffer[] = [];
    splitRead(frameOf(original), SCRATCH, (withHeadroom) => segments.push(Buffer.from(withHeadroom.subarray(1))), (packet, gsoSize) => (taken.push({ packet: Buffer.from(packet), gsoSize }), true));
    expect(segments).toHaveLength(0);
    expect(taken).toEqual([{ packet: original, gsoSize: MSS }]);
    splitRead(frameOf(original), SCRATCH, (withHeadroom) => segments.push(Buffer.from(withHeadroom.subarray(1))), () => false);
    expect(segments.map((segment) => segment.length - 52)).toEqual([MSS, MSS, MSS, MSS, MSS, 7]);
  });

  it("writes a peer's super-packet as it is, with its segment size, in order with the rest; refuses what the kernel could not cut", () => {
    const frames: Buffer[][] = [];
    const coalescer = new Coalescer((parts) => frames.push(parts.map((part) => Buffer.from(part))));
    const small = tcpPacket({ payload: payloadOf(100, 12), sourcePort: 40001 });
    const superPacket = tcpPacket({ payload: payloadOf(4 * MSS, 13) });
    coalescer.add(small, true);
    expect(coalescer.addSuperPacket(superPacket, MSS)).toBe(true);
    coalescer.flush();
    expect(frames.map((parts) => Buffer.concat(parts.slice(1)))).toEqual([small, superPacket]);
    expect([...frames[1]![0]!]).toEqual([...vnet({ flags: 1, gsoType: 1, headerBytes: 52, gsoSize: MSS, csumStart: 20, csumOffset: 16 })]);
    expect(coalescer.addSuperPacket(superPacket, 0), "no segment size").toBe(false);
    expect(coalescer.addSuperPacket(superPacket, 4 * MSS), "one segment").toBe(false);
    expect(coalescer.addSuperPacket(superPacket, 84), "65 segments").toBe(false);
    expect(isSuperPacket(superPacket, 85), "64 segments").toBe(true);
    expect(isSuperPacket(superPacket, 84)).toBe(false);
    expect(coalescer.addSuperPacket(superPacket.subarray(0, 1000), MSS), "shorter than its IP length").toBe(false);
    const udp = Buffer.from(superPacket);
    udp[9] = 17;
    expect(coalescer.addSuperPacket(udp, MSS), "not TCP").toBe(false);
    coalescer.flush();
    expect(frames).toHaveLength(2);
  });
});

describe("TUN offloads: coalescing written segments", () => {
  it("joins the segments of a super-packet back into one write the kernel segments the same way", () => {
    const payload = payloadOf(10 * MSS + 123, 3);
    const original = tcpPacket({ payload, flags: 0x18, seq: 0xffff_f000 });
    const frames = coalesce(split(Buffer.concat([vnet({ flags: 1, gsoType: 1, gsoSize: MSS, csumStart: 20, csumOffset: 16 }), original])));
    expect(frames).toHaveLength(1);
    const [header, ...rest] = frames[0]!;
    expect([...header!]).toEqual([...vnet({ flags: 1, gsoType: 1, headerBytes: 52, gsoSize: MSS, csumStart: 20, csumOffset: 16 })]);
    const written = Buffer.concat(rest);
    expect(written.subarray(52)).toEqual(payload);
    expect(written.readUInt16BE(2)).toBe(original.length);
    expect(ipHeaderValid(written)).toBe(true);
    expect(written[33]).toBe(0x18);
    expect(completePartial(written).readUInt16BE(36)).toBe(referenceChecksum(written));
  });

  it("keeps the order of everything written, and joins only what continues a run exactly", () => {
    const a = (seq: number, bytes: number, extra: TcpSpec = { payload: Buffer.alloc(0) }) => ({ packet: tcpPacket({ ...extra, payload: payloadOf(bytes, seq), seq }), partial: true });
    const other = { packet: tcpPacket({ payload: payloadOf(100, 9), sourcePort: 40001 }), partial: true };
    const full = { packet: tcpPacket({ payload: payloadOf(100, 10) }), partial: false };
    const frames = coalesce([
      a(1000, 500),
      a(1500, 500),
      other, // another flow between them joins nothing and waits its turn
      a(2000, 400), // shorter: ends the run
      a(2400, 400), // after a short one: a new run
      a(5000, 400), // a gap
      a(5400, 400, { payload: Buffer.alloc(0), ack: 78 }), // another ACK number
      a(5800, 400, { payload: Buffer.alloc(0), flags: 0x11 }), // FIN
      full, // a complete checksum: written as it is
      a(6200, 400, { payload: Buffer.alloc(0), flags: 0x18 }), // PSH may not start a run
    ]);
    const summary = frames.map(([header, ...rest]) => {
      const packet = Buffer.concat(rest);
      return { gso: header![1], bytes: packet.length - 52, seq: packet.readUInt32BE(24), port: packet.readUInt16BE(20), partial: header![0] };
    });
    expect(summary).toEqual([
      { gso: 1, bytes: 1400, seq: 1000, port: 40000, partial: 1 },
      { gso: 0, bytes: 100, seq: 1000, port: 40001, partial: 1 },
      { gso: 0, bytes: 400, seq: 2400, port: 40000, partial: 1 },
      { gso: 0, bytes: 400, seq: 5000, port: 40000, partial: 1 },
      { gso: 0, bytes: 400, seq: 5400, port: 40000, partial: 1 },
      { gso: 0, bytes: 400, seq: 5800, port: 40000, partial: 1 },
      { gso: 0, bytes: 100, seq: 1000, port: 40000, partial: 0 },
      { gso: 0, bytes: 400, seq: 6200, port: 40000, partial: 1 },
    ]);
    expect(frames[0]![0]!.readUInt16LE(4)).toBe(500);
  });
});
