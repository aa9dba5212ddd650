// Wire formats of port-forwarding apps, inside an encrypted peer link.
//
// App stream header: the first bytes of the mux stream a TCP app opens for each connection (a
// speedtest stream starts with {"speedtest":...} instead: src/protocol/speedtest.ts).
//   u16 BE  length of the JSON that follows, at most MAX_STREAM_HEADER_BYTES
//   JSON    {"target":"host:port"}
//   ...     the connection's bytes
// The requester sends its header and the connection's first bytes at once (no added round trip).
//
// App stream answer: the serving node's first bytes on that stream, before any of the target's:
//   u16 BE  length of the JSON that follows, at most MAX_STREAM_HEADER_BYTES
//   JSON    {"ok":true}, or {"ok":false,"code":"NOT_EXPOSED"|"UNREACHABLE","error":"..."} and the stream ends
//   ...     the target's bytes (after ok)
//
// Link datagrams start with a type byte (DatagramType); UDP apps use three of the types:
//   udpApp      u8 1 | u32 BE flow id | u8 target length | target "host:port" | payload
//   udpReply    u8 2 | u32 BE flow id | payload
//   udpRefused  u8 4 | u32 BE flow id | u8 reason (RefusalCode: 1 NOT_EXPOSED, 2 UNREACHABLE)
// A refusal is smaller than the request it answers and the serving node rate-limits them, so a
// requester cannot use it to amplify.
// A flow id is unique among the sending node's flows, so a reply reaches only the flow it answers;
// the serving node keys a flow by peer, flow id and target. SDWAN's ipPacket (3) is the type
// byte followed by one IP packet (src/sdwan/overlay.ts); ipPacketPartialChecksum (5) the same, its
// TCP or UDP checksum field holding only the pseudo-header sum (src/sdwan/offload.ts). ipSuperPacket:
//   u8 6 | u16 BE segment size (the kernel's gso_size) | one TCP/IPv4 super-packet, checksum partial
// of up to 64 KB and 2 to 64 segments, which the receiver writes to its TUN device as it is. It goes
// only on a lan link carrying pieces, to a peer whose pings said it takes one (protocol/pieces.ts).

import { AppProtocolError, decodeFramedJson, encodeFramedJson } from "./framed-json.ts";
import { parseSpeedtestRequest, type SpeedtestRequest } from "./speedtest.ts";

export { AppProtocolError, MAX_STREAM_HEADER_BYTES } from "./framed-json.ts";

/** First byte of a link datagram: who it is for. */
export const DatagramType = { udpApp: 1, udpReply: 2, ipPacket: 3, udpRefused: 4, ipPacketPartialChecksum: 5, ipSuperPacket: 6 } as const;
/** The types the UDP apps take, and the SDWAN's. */
export const UDP_APP_DATAGRAM_TYPES = [DatagramType.udpApp, DatagramType.udpReply, DatagramType.udpRefused] as const;
export const IP_DATAGRAM_TYPES = [DatagramType.ipPacket, DatagramType.ipPacketPartialChecksum, DatagramType.ipSuperPacket] as const;

/** An ipSuperPacket datagram's type byte and segment size. */
export const SUPER_PACKET_HEADER_BYTES = 3;
/** A super-packet holds at least 2 segments and at most this many, as many as Linux's GRO joins. */
export const SUPER_PACKET_MAX_SEGMENTS = 64;

/** Why a serving node refused a stream or a UDP flow, with its byte in a udpRefused datagram. */
export const RefusalCode = { NOT_EXPOSED: 1, UNREACHABLE: 2 } as const;
export type RefusalCode = keyof typeof RefusalCode;
const REFUSAL_CODES = Object.keys(RefusalCode) as RefusalCode[];

/** A UDP app target travels with a one-byte length. */
export const MAX_UDP_TARGET_BYTES = 255;

const FLOW_ID_OFFSET = 1;
const UDP_APP_TARGET_LENGTH_OFFSET = 5;
const UDP_APP_TARGET_OFFSET = 6;
const UDP_REPLY_PAYLOAD_OFFSET = 5;
const UDP_REFUSED_CODE_OFFSET = 5;
const UDP_REFUSED_BYTES = 6;
const TARGET_PATTERN = /^.+:\d{1,5}$/;

export interface StreamHeader {
  /** "host:port", as seen from the serving node. */
  target: string;
}

/** What the first bytes of a stream a peer opened ask for: an app's target, or a speedtest (src/protocol/speedtest.ts). */
export type StreamOpening = { kind: "app"; header: StreamHeader } | { kind: "speedtest"; request: SpeedtestRequest };

/** The serving node's answer at the start of an app stream. */
export type StreamAnswer = { ok: true } | { ok: false; code: RefusalCode; error: string };

export type UdpAppDatagram =
  | { type: "request"; flowId: number; target: string; payload: Buffer }
  | { type: "reply"; flowId: number; payload: Buffer }
  | { type: "refused"; flowId: number; code: RefusalCode };

export function encodeStreamHeader(header: StreamHeader): Buffer {
  return encodeFramedJson({ target: header.target }, "stream header");
}

const NO_TARGET = 'stream header has no "target" of the form host:port';

/**
 * Reads a stream header from the start of `buffer`: undefined while more bytes are needed, else the
 * header and the bytes after it. Throws AppProtocolError for an oversized or malformed header.
 */
export function decodeStreamHeader(buffer: Buffer): { header: StreamHeader; rest: Buffer } | undefined {
  const decoded = decodeStreamOpening(buffer);
  if (!decoded) return undefined;
  if (decoded.opening.kind !== "app") throw new AppProtocolError(NO_TARGET);
  return { header: decoded.opening.header, rest: decoded.rest };
}

/**
 * Reads what a stream a peer opened asks for (an app's target, or a speedtest): undefined while more
 * bytes are needed. Throws AppProtocolError for an oversized or malformed header.
 */
export function decodeStreamOpening(buffer: Buffer): { opening: StreamOpening; rest: Buffer } | undefined {
  const decoded = decodeFramedJson(buffer, "stream header");
  if (!decoded) return undefined;
  const parsed = decoded.parsed as { target?: unknown; speedtest?: unknown } | null;
  if (parsed !== null && typeof parsed === "object" && "speedtest" in parsed) return { opening: { kind: "speedtest", request: parseSpeedtestRequest(parsed) }, rest: decoded.rest };
  const target = parsed?.target;
  if (typeof target !== "string" || !TARGET_PATTERN.test(target)) throw new AppProtocolError(NO_TARGET);
  return { opening: { kind: "app", header: { target } }, rest: decoded.rest };
}

export function encodeStreamAnswer(answer: StreamAnswer): Buffer {
  return encodeFramedJson(answer.ok ? { ok: true } : { ok: false, code: answer.code, error: answer.error }, "stream answer");
}

/**
 * Reads the serving node's answer from the start of `buffer`: undefined while more bytes are needed,
 * else the answer and the target's bytes after it. Throws AppProtocolError for a malformed answer.
 */
export function decodeStreamAnswer(buffer: Buffer): { answer: StreamAnswer; rest: Buffer } | undefined {
  const decoded = decodeFramedJson(buffer, "stream answer");
  if (!decoded) return undefined;
  const { ok, code, error } = (decoded.parsed ?? {}) as { ok?: unknown; code?: unknown; error?: unknown };
  if (ok === true) return { answer: { ok: true }, rest: decoded.rest };
  if (ok !== false || !REFUSAL_CODES.includes(code as RefusalCode) || typeof error !== "string")
    throw new AppProtocolError('stream answer is neither {"ok":true} nor {"ok":false} with a known "code" and an "error"');
  return { answer: { ok: false, code: code as RefusalCode, error }, rest: decoded.rest };
}

export function encodeUdpAppDatagram(flowId: number, target: string, payload: Uint8Array): Buffer {
  const targetBytes = Buffer.from(target);
  if (targetBytes.length > MAX_UDP_TARGET_BYTES) throw new AppProtocolError(`UDP app target of ${targetBytes.length} bytes is over the ${MAX_UDP_TARGET_BYTES}-byte limit`);
  const out = Buffer.allocUnsafe(UDP_APP_TARGET_OFFSET + targetBytes.length + payload.length);
  out[0] = DatagramType.udpApp;
  out.writeUInt32BE(flowId >>> 0, FLOW_ID_OFFSET);
  out[UDP_APP_TARGET_LENGTH_OFFSET] = targetBytes.length;
  targetBytes.copy(out, UDP_APP_TARGET_OFFSET);
  out.set(payload, UDP_APP_TARGET_OFFSET + targetBytes.length);
  return out;
}

export function encodeUdpReplyDatagram(flowId: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(UDP_REPLY_PAYLOAD_OFFSET + payload.length);
  out[0] = DatagramType.udpReply;
  out.writeUInt32BE(flowId >>> 0, FLOW_ID_OFFSET);
  out.set(payload, UDP_REPLY_PAYLOAD_OFFSET);
  return out;
}

export function encodeUdpRefusedDatagram(flowId: number, code: RefusalCode): Buffer {
  const out = Buffer.allocUnsafe(UDP_REFUSED_BYTES);
  out[0] = DatagramType.udpRefused;
  out.writeUInt32BE(flowId >>> 0, FLOW_ID_OFFSET);
  out[UDP_REFUSED_CODE_OFFSET] = RefusalCode[code];
  return out;
}

/**
 * A UDP app datagram (payloads are views into `datagram`); undefined for other datagram types.
 * Throws AppProtocolError for a truncated one, a target that is not host:port or an unknown refusal reason.
 */
export function decodeUdpAppDatagram(datagram: Buffer): UdpAppDatagram | undefined {
  const type = datagram[0];
  if (type === DatagramType.udpReply) {
    if (datagram.length < UDP_REPLY_PAYLOAD_OFFSET) throw new AppProtocolError(`UDP reply datagram of ${datagram.length} bytes is truncated`);
    return { type: "reply", flowId: datagram.readUInt32BE(FLOW_ID_OFFSET), payload: datagram.subarray(UDP_REPLY_PAYLOAD_OFFSET) };
  }
  if (type === DatagramType.udpRefused) {
    if (datagram.length !== UDP_REFUSED_BYTES) throw new AppProtocolError(`UDP refusal datagram of ${datagram.length} bytes is not ${UDP_REFUSED_BYTES} bytes long`);
    const code = REFUSAL_CODES.find((name) => RefusalCode[name] === datagram[UDP_REFUSED_CODE_OFFSET]);
    if (!code) throw new AppProtocolError(`UDP refusal datagram has an unknown reason ${datagram[UDP_REFUSED_CODE_OFFSET]}`);
    return { type: "refused", flowId: datagram.readUInt32BE(FLOW_ID_OFFSET), code };
  }
  if (type !== DatagramType.udpApp) return undefined;
  if (datagram.length < UDP_APP_TARGET_OFFSET) throw new AppProtocolError(`UDP app datagram of ${datagram.length} bytes is truncated`);
  const targetEnd = UDP_APP_TARGET_OFFSET + datagram[UDP_APP_TARGET_LENGTH_OFFSET]!;
  if (datagram.length < targetEnd) throw new AppProtocolError(`UDP app datagram of ${datagram.length} bytes is shorter than its target`);
  const target = datagram.subarray(UDP_APP_TARGET_OFFSET, targetEnd).toString();
  if (!TARGET_PATTERN.test(target)) throw new AppProtocolError("UDP app datagram's target is not host:port");
  return { type: "request", flowId: datagram.readUInt32BE(FLOW_ID_OFFSET), target, payload: datagram.subarray(targetEnd) };
}
