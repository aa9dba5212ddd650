// The peer endpoint sends the UDP packets of one tick in batches (sendMany): real sockets on 127.0.0.1.
import { randomBytes as cryptoRandomBytes } from "node:crypto";
import { afterEach, describe, expect, it, vi, type MockInstance } from "vitest";
import { generateIdentity } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { Connector, Envelope, PeerEndpoint, type Link } from "../../src/transport/index.ts";
import { endpointText } from "../../src/transport/endpoint.ts";
import { LAN_KCP_MTU_BYTES } from "../../src/transport/lan-packets.ts";
import { GSO_MAX_SEGMENT_BYTES, type GsoSend } from "../../src/transport/udp-gso.ts";
import { loadKoffi } from "../../src/sdwan/index.ts";
import { prng, randomBytes } from "../helpers/prng.ts";
import { waitFor } from "../helpers/processes.ts";

const SEED = 14;
/** More than one sendMany batch (256) in a single tick. */
const PACKETS_IN_ONE_TICK = 600;
const PACKET_BYTES = 1200;
const ARRIVAL_TIMEOUT_MS = 10_000;
const MSG_DONTWAIT = 0x40;

const open: { endpoints: PeerEndpoint[]; links: Link[] } = { endpoints: [], links: [] };
afterEach(() => {
  open.links.splice(0).forEach((link) => link.close("test over"));
  open.endpoints.splice(0).forEach((endpoint) => endpoint.close());
});

async function endpoints(): Promise<[PeerEndpoint, PeerEndpoint]> {
  const pair: [PeerEndpoint, PeerEndpoint] = [new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" }), new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" })];
  open.endpoints.push(...pair);
  await Promise.all(pair.map((endpoint) => endpoint.start()));
  return pair;
}

/** Packets numbered in their first 4 bytes, the rest seeded random bytes. */
function numberedPackets(count: number): Buffer[] {
  const random = prng(SEED);
  return Array.from({ length: count }, (_, i) => {
    const packet = randomBytes(random, PACKET_BYTES);
    packet.writeUInt32BE(i, 0);
    return packet;
  });
}

describe("UDP send batching", () => {
  it("a packet sent after a quiet spell leaves at once; those right after it leave at the tick's end, all in order", async () => {
    const [a] = await endpoints();
    const received: Buffer[] = [];
    const receiver = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, binaryType: "buffer", socket: { data: (_socket, packet) => void received.push(packet) } });
    let clock: MockInstance | undefined;
    try {
      // Read the receiver's socket directly, without its event loop: on loopback a datagram is in the
      // receiving socket's queue as soon as the send's system call returns.
      const recv = loadKoffi().load("libc.so.6").func("long recv(int fd, _Out_ uint8_t *buf, unsigned long len, int flags)");
      const fd = (receiver as unknown as { fd: number }).fd;
      const queued = () => {
        const buffer = Buffer.alloc(PACKET_BYTES * 2);
        const bytes = recv(fd, buffer, buffer.length, MSG_DONTWAIT) as number;
        return bytes < 0 ? undefined : buffer.subarray(0, bytes);
      };
      const [first, second, third] = numberedPackets(3);
      const to = endpointText("127.0.0.1", receiver.port);
      expect(queued(), "nothing queued before the first send").toBeUndefined();
      // The endpoint's clock stands still from here: on a loaded box a millisecond (LONE_SEND_IDLE_MS)
      // could pass between two statements, and the second send would leave at once too.
      const nowMs = performance.now();
      clock = vi.spyOn(performance, "now").mockImplementation(() => nowMs);
      a.sendUdp(first!, to);
      expect(queued()?.readUInt32BE(0)).toBe(0);
      a.sendUdp(second!, to);
      a.sendUdp(third!, to);
      expect(queued()).toBeUndefined();
      clock.mockRestore();
      await waitFor("the other two at the receiver", () => received.length >= 2 || undefined, ARRIVAL_TIMEOUT_MS);
      expect(received.map((packet) => packet.readUInt32BE(0))).toEqual([1, 2]);
      expect(received[1]!.equals(third!)).toBe(true);
    } finally {
      clock?.mockRestore();
      receiver.close();
    }
  });

  it("a packet received after a quiet spell is routed in the socket's callback; a burst right after it waits for the queue's turn", async () => {
    const [a, b] = await endpoints();
    const routed: { index: number; queued: boolean }[] = [];
    const internals = b as unknown as { draining: boolean };
    b.routeAddress(endpointText("127.0.0.1", a.udpPort), (packet) => (routed.push({ index: packet.readUInt32BE(0), queued: internals.draining }), true));
    const to = endpointText("127.0.0.1", b.udpPort);
    const packets = numberedPackets(21);
    a.sendUdp(packets[0]!, to);
    await waitFor("the lone packet at b", () => routed.length >= 1 || undefined, ARRIVAL_TIMEOUT_MS);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // The endpoints' clock stands still from here, 20 ms after the lone packet: on a loaded box a
    // millisecond could pass between two packets of the burst, which would then count as lone too.
    const nowMs = performance.now();
    const clock = vi.spyOn(performance, "now").mockImplementation(() => nowMs);
    try {
      // The burst's first packet leaves at once (a lone send), the other 19 together in one sendMany.
      for (const packet of packets.slice(1)) a.sendUdp(packet, to);
      await waitFor("the burst at b", () => routed.length >= 21 || undefined, ARRIVAL_TIMEOUT_MS);
    } finally {
      clock.mockRestore();
    }
    expect(routed[0], "the lone packet, routed at once").toEqual({ index: 0, queued: false });
    expect(routed.slice(2, 21).every((r) => r.queued), "the burst but its first, routed from the queue").toBe(true);
    expect(routed.map((r) => r.index)).toEqual(packets.map((_, i) => i));
  });

  it("packets sent in one tick all arrive intact and in order", async () => {
    const [a, b] = await endpoints();
    const received: Buffer[] = [];
    b.routeAddress(endpointText("127.0.0.1", a.udpPort), (packet) => (received.push(packet), true));
    const packets = numberedPackets(PACKETS_IN_ONE_TICK);
    for (const packet of packets) a.sendUdp(packet, endpointText("127.0.0.1", b.udpPort));
    await waitFor("every packet at b", () => received.length >= packets.length || undefined, ARRIVAL_TIMEOUT_MS);
    expect(received.length).toBe(packets.length);
    expect(received.map((packet) => packet.readUInt32BE(0))).toEqual(packets.map((_, i) => i));
    expect(received.every((packet, i) => packet.equals(packets[i]!))).toBe(true);
  });

  it("packets written into the endpoint's send memory arrive intact: more than one slab in a tick, and the slab reused in the next", async () => {
    const [a, b] = await endpoints();
    const received: Buffer[] = [];
    b.routeAddress(endpointText("127.0.0.1", a.udpPort), (packet) => (received.push(packet), true));
    const to = endpointText("127.0.0.1", b.udpPort);
    const sent: Buffer[] = [];
    const random = prng(SEED + 2);
    for (let tick = 0; tick < 3; tick++) {
      // 600 packets of 1200 bytes: 720 kB, more than a slab, in one tick.
      for (const packet of numberedPackets(PACKETS_IN_ONE_TICK)) {
        packet.writeUInt32BE(sent.length, 0);
        packet[4] = Math.floor(random() * 256);
        const memory = a.sendBuffer(packet.length);
        packet.copy(memory);
        a.sendUdp(memory, to);
        sent.push(packet);
      }
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    await waitFor("every packet at b", () => received.length >= sent.length || undefined, ARRIVAL_TIMEOUT_MS);
    expect(received.map((packet) => packet.readUInt32BE(0))).toEqual(sent.map((_, i) => i));
    expect(received.every((packet, i) => packet.equals(sent[i]!))).toBe(true);
  });

  it("runs of one size to one address (sent with UDP segmentation offload) mixed with other sizes and addresses: each arrives intact, in order", async () => {
    const [a, b] = await endpoints();
    const [c] = await endpoints();
    const atB: Buffer[] = [];
    const atC: Buffer[] = [];
    b.routeAddress(endpointText("127.0.0.1", a.udpPort), (packet) => (atB.push(packet), true));
    c.routeAddress(endpointText("127.0.0.1", a.udpPort), (packet) => (atC.push(packet), true));
    const random = prng(SEED + 1);
    // Runs of 1-120 packets, each run one size (its last packet sometimes shorter), to b or to c.
    const sent: { packet: Buffer; to: "b" | "c" }[] = [];
    for (let n = 0; sent.length < 800; n++) {
      const size = 40 + Math.floor(random() * 1400);
      const count = 1 + Math.floor(random() * 120);
      const to = random() < 0.7 ? "b" : "c";
      for (let i = 0; i < count; i++) {
        const packet = randomBytes(random, i === count - 1 && random() < 0.5 ? Math.max(8, size - 20) : size);
        packet.writeUInt32BE(sent.length, 0);
        sent.push({ packet, to });
      }
    }
    for (const { packet, to } of sent) a.sendUdp(packet, endpointText("127.0.0.1", (to === "b" ? b : c).udpPort));
    const toB = sent.filter((s) => s.to === "b").map((s) => s.packet);
    const toC = sent.filter((s) => s.to === "c").map((s) => s.packet);
    await waitFor("every packet at b and c", () => (atB.length >= toB.length && atC.length >= toC.length) || undefined, ARRIVAL_TIMEOUT_MS);
    expect(atB.map((p) => p.readUInt32BE(0))).toEqual(toB.map((p) => p.readUInt32BE(0)));
    expect(atC.map((p) => p.readUInt32BE(0))).toEqual(toC.map((p) => p.readUInt32BE(0)));
    expect(atB.every((p, i) => p.equals(toB[i]!)) && atC.every((p, i) => p.equals(toC[i]!))).toBe(true);
  });

  it("datagrams too large for one segment on a 1500-byte MTU (KCP's on a lan path) leave without GSO, which such a device refuses; runs of smaller ones still use it", async () => {
    const [a, b] = await endpoints();
    const internals = a as unknown as { gsoSend?: GsoSend };
    const realGsoSend = internals.gsoSend;
    expect(realGsoSend, "UDP segmentation offload is available here").toBeDefined();
    const gsoSegmentBytes: number[] = [];
    internals.gsoSend = (datagrams, segmentBytes, host, port) => (gsoSegmentBytes.push(segmentBytes), realGsoSend!(datagrams, segmentBytes, host, port));
    const atB: Buffer[] = [];
    b.routeAddress(endpointText("127.0.0.1", a.udpPort), (packet) => (atB.push(packet), true));
    const random = prng(SEED + 2);
    const sent = [...Array.from({ length: 8 }, () => randomBytes(random, LAN_KCP_MTU_BYTES.whole)), ...Array.from({ length: 8 }, () => randomBytes(random, GSO_MAX_SEGMENT_BYTES))];
    for (const packet of sent) packet[0] = Envelope.sealed; // as a link's: a first byte of 0xc1 would route it as a handshake
    for (const packet of sent) a.sendUdp(packet, endpointText("127.0.0.1", b.udpPort));
    await waitFor("every packet at b", () => atB.length >= sent.length || undefined, ARRIVAL_TIMEOUT_MS);
    expect(atB.every((p, i) => p.equals(sent[i]!))).toBe(true);
    expect(gsoSegmentBytes).toEqual([GSO_MAX_SEGMENT_BYTES]);
  });

  it("a bad destination in a batch drops only its own packet, throws nowhere, and sends after close are dropped", async () => {
    const [a, b] = await endpoints();
    const received: number[] = [];
    b.routeAddress(endpointText("127.0.0.1", a.udpPort), (packet) => (received.push(packet.readUInt32BE(0)), true));
    const packets = numberedPackets(4);
    const toB = endpointText("127.0.0.1", b.udpPort);
    a.sendUdp(packets[0]!, toB);
    a.sendUdp(packets[1]!, "not-an-ip:4000");
    a.sendUdp(packets[2]!, "127.0.0.1:0");
    a.sendUdp(packets[3]!, toB);
    await waitFor("the good packets at b", () => received.length >= 2 || undefined, ARRIVAL_TIMEOUT_MS);
    expect(received).toEqual([0, 3]);
    a.close();
    expect(() => a.sendUdp(packets[0]!, toB)).not.toThrow();
  });

  it("datagrams sealed in one tick over a UDP link arrive intact and in order", async () => {
    const [ea, eb] = await endpoints();
    const [ia, ib] = [generateIdentity(), generateIdentity()];
    const connector = (endpoint: PeerEndpoint, identity: typeof ia) => new Connector({ endpoint, identity, logger: silentLogger, localTimeOf: (t) => t });
    const sessionId = cryptoRandomBytes(16).toString("base64url");
    const startAt = Date.now() + 20;
    const [a, b] = await Promise.all([
      connector(ea, ia).run({ sessionId, startAt, role: "initiator", peer: { name: "b", publicKey: ib.publicKey, nat: null, candidates: eb.candidates() } }),
      connector(eb, ib).run({ sessionId, startAt, role: "responder", peer: { name: "a", publicKey: ia.publicKey, nat: null, candidates: ea.candidates() } }),
    ]);
    open.links.push(a, b);
    expect(a.kind).toBe("lan");
    const received: Buffer[] = [];
    b.onDatagram([0], (data) => received.push(data)); // numbered from 0: the first byte is 0
    const datagrams = numberedPackets(PACKETS_IN_ONE_TICK);
    for (const datagram of datagrams) a.sendDatagram(datagram);
    await waitFor("every datagram at b", () => received.length >= datagrams.length || undefined, ARRIVAL_TIMEOUT_MS);
    expect(received.map((data) => data.readUInt32BE(0))).toEqual(datagrams.map((_, i) => i));
    expect(received.every((data, i) => data.equals(datagrams[i]!))).toBe(true);
  });
});
