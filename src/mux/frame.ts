import { MuxError } from "./errors.ts";

// StreamID u32 | Flags u8 | Length u16 | payload, big-endian.
export const FRAME_HEADER_BYTES = 7;
export const MAX_FRAME_PAYLOAD_BYTES = 0xffff;
export const SESSION_STREAM_ID = 0;
const MAX_STREAM_ID = 0xffffffff;

export const Flag = {
  SYN: 0x01,
  FIN: 0x02,
  DATA: 0x04,
  PING: 0x08,
  PONG: 0x10,
  RST: 0x20,
  WINDOW: 0x40, // payload: u32 credit increment in bytes
} as const;

export interface MuxFrame {
  streamId: number;
  flags: number;
  payload: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const FLAG_NAMES = new Map<number, string>(Object.entries(Flag).map(([name, bit]) => [bit, name]));

/** Payload size each flag must carry; DATA is the only variable one. */
function payloadRule(flags: number): { min: number; max: number } {
  switch (flags) {
    case Flag.DATA:
      return { min: 1, max: MAX_FRAME_PAYLOAD_BYTES };
    case Flag.WINDOW:
    case Flag.PING:
    case Flag.PONG:
      return { min: 4, max: 4 };
    default:
      return { min: 0, max: 0 };
  }
}

/** Why a frame is not acceptable, or null. One flag per frame; PING/PONG only on stream 0, the rest never on it. */
function frameProblem(streamId: number, flags: number, payloadBytes: number): string | null {
  const name = FLAG_NAMES.get(flags);
  if (name === undefined) return `flags 0x${flags.toString(16).padStart(2, "0")} are not exactly one known flag`;
  const session = flags === Flag.PING || flags === Flag.PONG;
  if (session && streamId !== SESSION_STREAM_ID) return `${name} on stream ${streamId}, only allowed on stream 0`;
  if (!session && streamId === SESSION_STREAM_ID) return `${name} on stream 0, which carries only PING and PONG`;
  const { min, max } = payloadRule(flags);
  if (payloadBytes < min || payloadBytes > max) {
    const expected = min === max ? `${min}` : `${min}..${max}`;
    return `${name} with a ${payloadBytes}-byte payload, expected ${expected}`;
  }
  return null;
}

export function encodeFrame(frame: MuxFrame): Uint8Array {
  const { streamId, flags } = frame;
  const payload = frame.payload ?? EMPTY;
  if (!Number.isInteger(streamId) || streamId < 0 || streamId > MAX_STREAM_ID) {
    throw new MuxError("MUX_FRAME_INVALID", `stream id ${streamId} is not a u32`);
  }
  const problem = frameProblem(streamId, flags, payload.length);
  if (problem) throw new MuxError("MUX_FRAME_INVALID", problem, streamId);
  // Not zero-filled: every byte is written below (a data frame is up to 64 KiB, one per KCP packet).
  const memory = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  const message = new Uint8Array(memory.buffer, memory.byteOffset, memory.length);
  memory.writeUInt32BE(streamId, 0);
  memory[4] = flags;
  memory.writeUInt16BE(payload.length, 5);
  message.set(payload, FRAME_HEADER_BYTES);
  return message;
}

/** Parses one frame; the payload is a view into `message`, not a copy. */
export function decodeFrame(message: Uint8Array): MuxFrame {
  if (message.length < FRAME_HEADER_BYTES) {
    throw new MuxError("MUX_FRAME_SHORT", `a ${message.length}-byte message, shorter than the ${FRAME_HEADER_BYTES}-byte frame header`);
  }
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const streamId = view.getUint32(0);
  const flags = view.getUint8(4);
  const length = view.getUint16(5);
  const follows = message.length - FRAME_HEADER_BYTES;
  if (length !== follows) {
    const what = length > follows ? "beyond" : "short of";
    throw new MuxError("MUX_FRAME_MALFORMED", `stream ${streamId}: length field ${length} ${what} the ${follows} bytes that follow the header`, streamId);
  }
  const problem = frameProblem(streamId, flags, length);
  if (problem) throw new MuxError("MUX_FRAME_MALFORMED", `stream ${streamId}: ${problem}`, streamId);
  return { streamId, flags, payload: message.subarray(FRAME_HEADER_BYTES) };
}

export function encodeU32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value);
  return bytes;
}

export function decodeU32(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
}
