// The framing shared by the JSON messages at the start of a mux stream (app stream headers and
// answers, speedtest requests, answers and results):
//   u16 BE  length of the JSON that follows, at most MAX_STREAM_HEADER_BYTES
//   JSON

/** Longest framed JSON accepted from a peer. */
export const MAX_STREAM_HEADER_BYTES = 1024;
const STREAM_HEADER_LENGTH_BYTES = 2;

export class AppProtocolError extends Error {
  override readonly name = "AppProtocolError";
}

export function encodeFramedJson(value: unknown, what: string): Buffer {
  const json = Buffer.from(JSON.stringify(value));
  if (json.length > MAX_STREAM_HEADER_BYTES) throw new AppProtocolError(`${what} of ${json.length} bytes is over the ${MAX_STREAM_HEADER_BYTES}-byte limit`);
  const out = Buffer.allocUnsafe(STREAM_HEADER_LENGTH_BYTES + json.length);
  out.writeUInt16BE(json.length);
  json.copy(out, STREAM_HEADER_LENGTH_BYTES);
  return out;
}

/** u16 length | JSON from the start of `buffer`: undefined while more bytes are needed. */
export function decodeFramedJson(buffer: Buffer, what: string): { parsed: unknown; rest: Buffer } | undefined {
  if (buffer.length < STREAM_HEADER_LENGTH_BYTES) return undefined;
  const length = buffer.readUInt16BE(0);
  if (length > MAX_STREAM_HEADER_BYTES) throw new AppProtocolError(`${what} of ${length} bytes is over the ${MAX_STREAM_HEADER_BYTES}-byte limit`);
  const end = STREAM_HEADER_LENGTH_BYTES + length;
  if (buffer.length < end) return undefined;
  try {
    return { parsed: JSON.parse(buffer.subarray(STREAM_HEADER_LENGTH_BYTES, end).toString()), rest: buffer.subarray(end) };
  } catch {
    throw new AppProtocolError(`${what} is not JSON`);
  }
}
