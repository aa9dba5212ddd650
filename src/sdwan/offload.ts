import { SUPER_PACKET_MAX_SEGMENTS } from "../protocol/index.ts";
import { PROTOCOL_TCP, PROTOCOL_UDP } from "./packet.ts";

// TUN offloads (IFF_VNET_HDR with TUN_F_CSUM | TUN_F_TSO4), the way the fastest userspace VPNs use them:
// the kernel hands over a TCP flow as super-packets of up to 64 KB with the checksums left to do
// ("partial"), so one read carries what took ~45; and a receiver that hands back consecutive segments of
// a flow as one super-packet writes once for them. Every read and write starts with a virtio_net_hdr.
//
// Segments travel between peers with their checksum still partial (the pseudo-header sum in the field):
// the record's AEAD tag already proves them intact, and the receiving kernel takes a partial checksum as
// verified for local delivery, or completes it when it forwards the packet on.

/** struct virtio_net_hdr: flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16 (host order: LE). */
export const VNET_HEADER_BYTES = 10;
const VNET_F_NEEDS_CSUM = 1;
const GSO_NONE = 0;
const GSO_TCPV4 = 1;
const GSO_ECN_BIT = 0x80;

const IPV4_VERSION = 4;
const TCP_CHECKSUM_OFFSET = 16;
const UDP_CHECKSUM_OFFSET = 6;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
const TCP_CWR = 0x80;
const IPV4_MAX_TOTAL_BYTES = 65_535;
/** A super-packet written to the TUN device holds at most this many segments (Linux's GRO takes 64). */
const MAX_COALESCED_SEGMENTS = 64;

/**
 * Takes an IP packet behind one byte of headroom (`withHeadroom[0]` is the handler's to overwrite, the
 * packet is `withHeadroom.subarray(1)`), so that a header byte can go in front of it with no copy.
 */
export type SegmentHandler = (withHeadroom: Buffer, checksumPartial: boolean) => void;
/** Takes a TCP super-packet whole (checksum partial, segments of `gsoSize`), or declines it (false): it is then cut into segments. */
export type SuperPacketHandler = (packet: Buffer, gsoSize: number) => boolean;

export class OffloadError extends Error {}

/** The one's-complement sum of big-endian 16-bit words in buf[start, end), unfolded. */
function sumWords(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

function setIpv4HeaderChecksum(packet: Buffer, headerBytes: number): void {
  packet.writeUInt16BE(0, 10);
  packet.writeUInt16BE(~fold(sumWords(packet, 0, headerBytes)) & 0xffff, 10);
}

/** The pseudo-header sum (not complemented) a partial TCP/UDP checksum field holds. */
function pseudoHeaderSum(packet: Buffer, protocol: number, transportBytes: number): number {
  return fold(sumWords(packet, 12, 20, protocol + transportBytes));
}

/** Which transport checksum, if any, a partial-checksum IPv4 packet leaves open; undefined: not one we carry partial. */
function partialChecksumOffset(packet: Buffer): number | undefined {
  if (packet.length < 20 || packet[0]! >> 4 !== IPV4_VERSION) return undefined;
  const protocol = packet[9];
  if (protocol === PROTOCOL_TCP) return TCP_CHECKSUM_OFFSET;
  if (protocol === PROTOCOL_UDP) return UDP_CHECKSUM_OFFSET;
  return undefined;
}

/** Completes the checksum the kernel left open at csumStart + csumOffset. */
function completeChecksum(packet: Buffer, csumStart: number, csumOffset: number): void {
  const at = csumStart + csumOffset;
  if (at + 2 > packet.length) throw new OffloadError(`checksum offset ${at} is past the packet's ${packet.length} bytes`);
  packet.writeUInt16BE(~fold(sumWords(packet, csumStart, packet.length)) & 0xffff, at);
}

/**
 * Takes one TUN read (virtio_net_hdr + packet) apart into IP packets of at most the interface MTU,
 * each given to `emit` with whether its transport checksum is still partial; a TCP super-packet goes
 * whole to `emitSuperPacket` instead, when that takes it. `scratch` receives the
 * segments of a super-packet in turn (emit must copy what it keeps). Each packet is emitted behind one
 * byte of headroom (the header's last byte, or scratch's first), a subarray of the read: the caller need
 * not make that view itself with a Buffer.from over memory before its packet's start.
 */
export function splitRead(frame: Buffer, scratch: Buffer, emit: SegmentHandler, emitSuperPacket?: SuperPacketHandler): void {
  if (frame.length < VNET_HEADER_BYTES) throw new OffloadError(`a read of ${frame.length} bytes is shorter than the virtio_net_hdr`);
  const flags = frame[0]!;
  const gsoType = frame[1]! & ~GSO_ECN_BIT;
  const gsoSize = frame.readUInt16LE(4);
  const csumStart = frame.readUInt16LE(6);
  const csumOffset = frame.readUInt16LE(8);
  const withHeadroom = frame.subarray(VNET_HEADER_BYTES - 1);
  const partial = (flags & VNET_F_NEEDS_CSUM) !== 0;
  if (gsoType === GSO_NONE && !partial) return emit(withHeadroom, false);
  const packet = withHeadroom.subarray(1);
  if (gsoType === GSO_NONE) {
    const ipHeaderBytes = (packet[0]! & 0x0f) * 4;
    if (csumStart === ipHeaderBytes && partialChecksumOffset(packet) === csumOffset) return emit(withHeadroom, true);
    completeChecksum(packet, csumStart, csumOffset);
    return emit(withHeadroom, false);
  }
  if (gsoType !== GSO_TCPV4) throw new OffloadError(`GSO type ${frame[1]} was not asked for`);
  if (emitSuperPacket && gsoSize > 0 && emitSuperPacket(packet, gsoSize)) return;
  segmentTcp(packet, gsoSize, scratch, emit);
}

/** TCP segmentation in userspace, as a NIC does it: headers copied, lengths, IDs, sequence numbers and flags per segment. */
function segmentTcp(packet: Buffer, mss: number, scratch: Buffer, emit: SegmentHandler): void {
  const ipHeaderBytes = (packet[0]! & 0x0f) * 4;
  if (packet.length < ipHeaderBytes + 20 || packet[9] !== PROTOCOL_TCP || mss === 0) throw new OffloadError("a TCP super-packet without a TCP header or a segment size");
  const tcpHeaderBytes = (packet[ipHeaderBytes + 12]! >> 4) * 4;
  const headerBytes = ipHeaderBytes + tcpHeaderBytes;
  if (packet.length < headerBytes) throw new OffloadError("a TCP super-packet shorter than its headers");
  const firstId = packet.readUInt16BE(4);
  const firstSeq = packet.readUInt32BE(ipHeaderBytes + 4);
  const flags = packet[ipHeaderBytes + 13]!;
  const payloadBytes = packet.length - headerBytes;
  for (let offset = 0, index = 0; offset < payloadBytes; offset += mss, index++) {
    const length = Math.min(mss, payloadBytes - offset);
    const last = offset + length >= payloadBytes;
    const withHeadroom = scratch.subarray(0, 1 + headerBytes + length);
    const segment = withHeadroom.subarray(1);
    packet.copy(segment, 0, 0, headerBytes);
    packet.copy(segment, headerBytes, headerBytes + offset, headerBytes + offset + length);
    segment.writeUInt16BE(segment.length, 2);
    segment.writeUInt16BE((firstId + index) & 0xffff, 4);
    setIpv4HeaderChecksum(segment, ipHeaderBytes);
    segment.writeUInt32BE((firstSeq + offset) >>> 0, ipHeaderBytes + 4);
    let segmentFlags = flags;
    if (!last) segmentFlags &= ~(TCP_FIN | TCP_PSH);
    if (index > 0) segmentFlags &= ~TCP_CWR;
    segment[ipHeaderBytes + 13] = segmentFlags;
    segment.writeUInt16BE(pseudoHeaderSum(segment, PROTOCOL_TCP, tcpHeaderBytes + length), ipHeaderBytes + TCP_CHECKSUM_OFFSET);
    emit(withHeadroom, true);
  }
}

interface Pending {
  /** The first packet; for a run of segments, its headers are rewritten when written. */
  first: Buffer;
  checksumPartial: boolean;
  /** Payloads of the segments after the first, when this is a run of one TCP flow. */
  more: Buffer[];
  /** The TCP flow: addresses and ports (0 when the packet is not one to join). */
  source: number;
  destination: number;
  ports: number;
  headerBytes: number;
  segmentBytes: number;
  nextSeq: number;
  totalBytes: number;
  /** Nothing may join: a short or pushed segment ended the run, or the packet cannot be coalesced. */
  sealed: boolean;
  /** The last segment joined had PSH set: the super-packet carries it. */
  pushed: boolean;
  /** A super-packet as a peer sent it (segmentBytes: its segment size), written as it is. */
  superPacket?: boolean;
}

/**
 * Collects the packets written in one turn and hands them to the device in order, consecutive
 * segments of one TCP flow (partial checksum, only ACK or a final PSH set, the same headers but for the
 * sequence number, every segment but the last the same size) as one super-packet, like the kernel's GRO.
 */
/** A segment looks this far back among the packets collected for the run of its flow (interleaved flows). */
const RUN_LOOKBACK = 8;

export class Coalescer {
  private pending: Pending[] = [];

  constructor(private readonly writeFrame: (parts: Buffer[]) => void) {}

  add(packet: Buffer, checksumPartial: boolean): void {
    const flow = checksumPartial ? tcpFlowOf(packet) : undefined;
    if (flow) {
      const run = this.runOf(flow);
      if (run && canJoin(run, packet, flow)) {
        run.more.push(packet.subarray(flow.headerBytes));
        run.nextSeq = (run.nextSeq + flow.payloadBytes) >>> 0;
        run.totalBytes += flow.payloadBytes;
        run.pushed = (flow.flags & TCP_PSH) !== 0;
        if (flow.payloadBytes < run.segmentBytes || run.pushed || run.more.length + 1 >= MAX_COALESCED_SEGMENTS) run.sealed = true;
        return;
      }
    }
    const entry: Pending = {
      first: packet,
      checksumPartial,
      more: [],
      source: flow?.source ?? 0,
      destination: flow?.destination ?? 0,
      ports: flow?.ports ?? 0,
      headerBytes: flow?.headerBytes ?? 0,
      segmentBytes: flow?.payloadBytes ?? 0,
      nextSeq: flow ? (flow.seq + flow.payloadBytes) >>> 0 : 0,
      totalBytes: packet.length,
      sealed: !flow || flow.payloadBytes === 0 || (flow.flags & ~TCP_ACK) !== 0,
      pushed: false,
    };
    this.pending.push(entry);
  }

  /**
   * Collects a TCP super-packet (checksum partial), to be written as it is, with `gsoSize` for the
   * kernel to cut it by; false when it is not one that may be (see isSuperPacket).
   */
  addSuperPacket(packet: Buffer, gsoSize: number): boolean {
    const flow = tcpFlowOf(packet);
    if (!flow || !segmentCountAllowed(flow.payloadBytes, gsoSize)) return false;
    this.pending.push({ first: packet, checksumPartial: true, more: [], source: 0, destination: 0, ports: 0, headerBytes: flow.headerBytes, segmentBytes: gsoSize, nextSeq: 0, totalBytes: packet.length, sealed: true, pushed: false, superPacket: true });
    return true;
  }

  /** The latest packet collected of this TCP flow, if it is among the last few. */
  private runOf(flow: TcpFlow): Pending | undefined {
    for (let i = this.pending.length - 1; i >= 0 && i >= this.pending.length - RUN_LOOKBACK; i--) {
      const entry = this.pending[i]!;
      if (entry.ports === flow.ports && entry.source === flow.source && entry.destination === flow.destination && entry.headerBytes > 0) return entry;
    }
    return undefined;
  }

  /** Writes everything collected, in the order it came. */
  flush(): void {
    const pending = this.pending;
    this.pending = [];
    for (const entry of pending) this.writeFrame(framesOf(entry));
  }
}

const segmentCountAllowed = (payloadBytes: number, gsoSize: number) =>
  gsoSize >= 1 && payloadBytes > gsoSize && Math.ceil(payloadBytes / gsoSize) <= SUPER_PACKET_MAX_SEGMENTS;

/**
 * Whether a peer may be sent `packet` whole as a super-packet (protocol/apps.ts), and would write it:
 * TCP over IPv4 with consistent lengths, cut by `gsoSize` into 2 to SUPER_PACKET_MAX_SEGMENTS segments.
 */
export function isSuperPacket(packet: Buffer, gsoSize: number): boolean {
  const flow = tcpFlowOf(packet);
  return flow !== undefined && segmentCountAllowed(flow.payloadBytes, gsoSize);
}

interface TcpFlow {
  source: number;
  destination: number;
  ports: number;
  seq: number;
  flags: number;
  headerBytes: number;
  payloadBytes: number;
}

function tcpFlowOf(packet: Buffer): TcpFlow | undefined {
  if (packet.length < 40 || packet[0]! >> 4 !== IPV4_VERSION || packet[9] !== PROTOCOL_TCP) return undefined;
  const ipHeaderBytes = (packet[0]! & 0x0f) * 4;
  if ((packet.readUInt16BE(6) & 0x3fff) !== 0) return undefined; // a fragment
  const tcpHeaderBytes = (packet[ipHeaderBytes + 12]! >> 4) * 4;
  const headerBytes = ipHeaderBytes + tcpHeaderBytes;
  if (tcpHeaderBytes < 20 || packet.length < headerBytes || packet.readUInt16BE(2) !== packet.length) return undefined;
  return {
    source: packet.readUInt32BE(12),
    destination: packet.readUInt32BE(16),
    ports: packet.readUInt32BE(ipHeaderBytes),
    seq: packet.readUInt32BE(ipHeaderBytes + 4),
    flags: packet[ipHeaderBytes + 13]!,
    headerBytes,
    payloadBytes: packet.length - headerBytes,
  };
}

/** Whether `packet` continues `run`: next in sequence, headers equal but for length, ID, checksums and sequence. */
function canJoin(run: Pending, packet: Buffer, flow: TcpFlow): boolean {
  if (run.sealed || flow.headerBytes !== run.headerBytes || flow.seq !== run.nextSeq) return false;
  if (flow.payloadBytes === 0 || flow.payloadBytes > run.segmentBytes || (flow.flags & ~(TCP_ACK | TCP_PSH)) !== 0) return false;
  if (run.totalBytes + flow.payloadBytes > IPV4_MAX_TOTAL_BYTES) return false;
  const first = run.first;
  const ipHeaderBytes = (first[0]! & 0x0f) * 4;
  // IP: version/IHL and TOS, flags/fragment, TTL/protocol, addresses and options.
  if (first.readUInt16BE(0) !== packet.readUInt16BE(0) || first.readUInt16BE(6) !== packet.readUInt16BE(6) || first.readUInt16BE(8) !== packet.readUInt16BE(8)) return false;
  if (first.compare(packet, 12, ipHeaderBytes, 12, ipHeaderBytes) !== 0) return false;
  // TCP: ports, ACK number, data offset, window and options; the flags may differ only in PSH.
  const tcp = ipHeaderBytes;
  if (first.compare(packet, tcp, tcp + 4, tcp, tcp + 4) !== 0 || first.compare(packet, tcp + 8, tcp + 13, tcp + 8, tcp + 13) !== 0) return false;
  if (first.compare(packet, tcp + 14, tcp + 16, tcp + 14, tcp + 16) !== 0) return false;
  return first.compare(packet, tcp + 18, run.headerBytes, tcp + 18, run.headerBytes) === 0;
}

function vnetHeader(entry: Pending, gso: boolean): Buffer {
  const header = Buffer.alloc(VNET_HEADER_BYTES);
  if (!entry.checksumPartial) return header;
  const packet = entry.first;
  const ipHeaderBytes = (packet[0]! & 0x0f) * 4;
  header[0] = VNET_F_NEEDS_CSUM;
  if (gso) {
    header[1] = GSO_TCPV4;
    header.writeUInt16LE(entry.headerBytes, 2);
    header.writeUInt16LE(entry.segmentBytes, 4);
  }
  header.writeUInt16LE(ipHeaderBytes, 6);
  header.writeUInt16LE(partialChecksumOffset(packet) ?? 0, 8);
  return header;
}

function framesOf(entry: Pending): Buffer[] {
  if (entry.superPacket) return [vnetHeader(entry, true), entry.first];
  if (entry.more.length === 0) return [vnetHeader(entry, false), entry.first];
  const headers = Buffer.from(entry.first.subarray(0, entry.headerBytes));
  const ipHeaderBytes = (headers[0]! & 0x0f) * 4;
  headers.writeUInt16BE(entry.totalBytes, 2);
  setIpv4HeaderChecksum(headers, ipHeaderBytes);
  if (entry.pushed) headers[ipHeaderBytes + 13] = headers[ipHeaderBytes + 13]! | TCP_PSH;
  headers.writeUInt16BE(pseudoHeaderSum(headers, PROTOCOL_TCP, entry.totalBytes - ipHeaderBytes), ipHeaderBytes + TCP_CHECKSUM_OFFSET);
  return [vnetHeader(entry, true), headers, entry.first.subarray(entry.headerBytes), ...entry.more];
}
