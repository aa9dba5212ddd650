// Wire formats of port-forwarding apps, inside an encrypted peer link.
//
// App stream header: the first bytes of the mux stream a TCP app opens for each connection.
//   u16 BE  length of the JSON that follows, at most MAX_STREAM_HEADER_BYTES
//   JSON    {"target":"host:port"}
//   ...     the connection's bytes
//
// Link datagrams start with a type byte (DatagramType); UDP apps use two of the types:
//   udpApp    u8 1 | u32 BE flow id | u8 target length | target "host:port" | payload
//   udpReply  u8 2 | u32 BE flow id | payload
// A flow id is unique among the sending node's flows, so a reply reaches only the flow it answers;
// the serving node keys a flow by peer, flow id and target. SDWAN's ipPacket (3) is the type
// byte followed by one IP packet (src/sdwan/overlay.ts).

/** First byte of a link datagram: who it is for. */
export const DatagramType = { udpApp: 1, udpReply: 2, ipPacket: 3 } as const;

/** Longest stream header accepted from a peer. */
export const MAX_STREAM_HEADER_BYTES = 1024;
/** A UDP app target travels with a one-byte length. */
export const MAX_UDP_TARGET_BYTES = 255;

const STREAM_HEADER_LENGTH_BYTES = 2;
const FLOW_ID_OFFSET = 1;
const UDP_APP_TARGET_LENGTH_OFFSET = 5;
const UDP_APP_TARGET_OFFSET = 6;
const UDP_REPLY_PAYLOAD_OFFSET = 5;
const TARGET_PATTERN = /^.+:\d{1,5}$/;

export class AppProtocolError extends Error {
  override readonly name = "AppProtocolError";
}

export interface StreamHeader {
  /** "host:port", as seen from the serving node. */
  target: string;
}

export type UdpAppDatagram =
  | { type: "request"; flowId: number; target: string; payload: Buffer }
  | { type: "reply"; flowId: number; payload: Buffer };

export function encodeStreamHeader(header: StreamHeader): Buffer {
  const json = Buffer.from(JSON.stringify({ target: header.target }));
  if (json.length > MAX_STREAM_HEADER_BYTES) throw new AppProtocolError(`stream header of ${json.length} bytes is over the ${MAX_STREAM_HEADER_BYTES}-byte limit`);
  const out = Buffer.allocUnsafe(STREAM_HEADER_LENGTH_BYTES + json.length);
  out.writeUInt16BE(json.length);
  json.copy(out, STREAM_HEADER_LENGTH_BYTES);
  return out;
}

/**
 * Reads a stream header from the start of `buffer`: undefined while more bytes are needed, else the
 * header and the bytes after it. Throws AppProtocolError for an oversized or malformed header.
 */
export function decodeStreamHeader(buffer: Buffer): { header: StreamHeader; rest: Buffer } | undefined {
  if (buffer.length < STREAM_HEADER_LENGTH_BYTES) return undefined;
  const length = buffer.readUInt16BE(0);
  if (length > MAX_STREAM_HEADER_BYTES) throw new AppProtocolError(`stream header of ${length} bytes is over the ${MAX_STREAM_HEADER_BYTES}-byte limit`);
  const end = STREAM_HEADER_LENGTH_BYTES + length;
  if (buffer.length < end) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(buffer.subarray(STREAM_HEADER_LENGTH_BYTES, end).toString());
  } catch {
    throw new AppProtocolError("stream header is not JSON");
  }
  const target = (parsed as { target?: unknown } | null)?.target;
  if (typeof target !== "string" || !TARGET_PATTERN.test(target)) throw new AppProtocolError('stream header has no "target" of the form host:port');
  return { header: { target }, rest: buffer.subarray(end) };
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

/**
 * A UDP app datagram (payloads are views into `datagram`); undefined for other datagram types.
 * Throws AppProtocolError for a truncated one or a target that is not host:port.
 */
export function decodeUdpAppDatagram(datagram: Buffer): UdpAppDatagram | undefined {
  const type = datagram[0];
  if (type === DatagramType.udpReply) {
    if (datagram.length < UDP_REPLY_PAYLOAD_OFFSET) throw new AppProtocolError(`UDP reply datagram of ${datagram.length} bytes is truncated`);
    return { type: "reply", flowId: datagram.readUInt32BE(FLOW_ID_OFFSET), payload: datagram.subarray(UDP_REPLY_PAYLOAD_OFFSET) };
  }
  if (type !== DatagramType.udpApp) return undefined;
  if (datagram.length < UDP_APP_TARGET_OFFSET) throw new AppProtocolError(`UDP app datagram of ${datagram.length} bytes is truncated`);
  const targetEnd = UDP_APP_TARGET_OFFSET + datagram[UDP_APP_TARGET_LENGTH_OFFSET]!;
  if (datagram.length < targetEnd) throw new AppProtocolError(`UDP app datagram of ${datagram.length} bytes is shorter than its target`);
  const target = datagram.subarray(UDP_APP_TARGET_OFFSET, targetEnd).toString();
  if (!TARGET_PATTERN.test(target)) throw new AppProtocolError("UDP app datagram's target is not host:port");
  return { type: "request", flowId: datagram.readUInt32BE(FLOW_ID_OFFSET), target, payload: datagram.subarray(targetEnd) };
}
