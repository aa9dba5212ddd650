// Wire format of `inp2pc speedtest`, on a mux stream of an encrypted peer link.
//
// Request: the first bytes of the stream the requester opens (framed like an app stream header):
//   u16 BE  length of the JSON that follows, at most MAX_STREAM_HEADER_BYTES
//   JSON    {"speedtest":"upload"|"download","ms":N}   N: 1..SPEEDTEST_MAX_DIRECTION_MS
// Answer: the serving node's first bytes on the stream, framed the same way:
//   JSON    {"ok":true}, or {"ok":false,"code":"BUSY"|"TOO_LONG","error":"..."} and the stream ends
// upload:   the requester sends any bytes for N ms and ends its side; the serving node counts them
//           (stopping at N ms + SPEEDTEST_GRACE_MS or SPEEDTEST_MAX_BYTES), then sends the result
//           {"bytes":B,"ms":M} (framed; M: its first byte to its end, as the serving node saw them) and ends.
// download: the serving node sends bytes for N ms (at most SPEEDTEST_MAX_BYTES) and ends; the
//           requester counts them.

import { AppProtocolError, decodeFramedJson, encodeFramedJson } from "./framed-json.ts";

/** The longest one direction of a speedtest may run; a serving node refuses a longer one. */
export const SPEEDTEST_MAX_DIRECTION_MS = 15_000;
/** A serving node stops an upload this long after its time is up, however much still comes. */
export const SPEEDTEST_GRACE_MS = 2_000;
/** The most bytes one direction of a speedtest moves (about 8.6 Gbit/s for 15 s). */
export const SPEEDTEST_MAX_BYTES = 16 * 1024 ** 3;

export type SpeedtestDirection = "upload" | "download";
export interface SpeedtestRequest {
  /** As the requester sees it: upload, the requester sends; download, the serving node sends. */
  direction: SpeedtestDirection;
  ms: number;
}
export type SpeedtestRefusal = "BUSY" | "TOO_LONG";
export type SpeedtestAnswer = { ok: true } | { ok: false; code: SpeedtestRefusal; error: string };
export interface SpeedtestResult {
  bytes: number;
  ms: number;
}

const DIRECTIONS: readonly SpeedtestDirection[] = ["upload", "download"];
const REFUSALS: readonly SpeedtestRefusal[] = ["BUSY", "TOO_LONG"];

export function encodeSpeedtestRequest(request: SpeedtestRequest): Buffer {
  return encodeFramedJson({ speedtest: request.direction, ms: request.ms }, "speedtest request");
}

/** The request inside a decoded stream header that has a "speedtest" field; throws AppProtocolError naming what is wrong. */
export function parseSpeedtestRequest(parsed: { speedtest?: unknown; ms?: unknown }): SpeedtestRequest {
  const { speedtest, ms } = parsed;
  if (!DIRECTIONS.includes(speedtest as SpeedtestDirection)) throw new AppProtocolError('speedtest request\'s "speedtest" is neither "upload" nor "download"');
  if (!Number.isSafeInteger(ms) || (ms as number) < 1) throw new AppProtocolError('speedtest request\'s "ms" is not a positive whole number');
  return { direction: speedtest as SpeedtestDirection, ms: ms as number };
}

export function encodeSpeedtestAnswer(answer: SpeedtestAnswer): Buffer {
  return encodeFramedJson(answer.ok ? { ok: true } : { ok: false, code: answer.code, error: answer.error }, "speedtest answer");
}

/** The serving node's answer: undefined while more bytes are needed. Throws AppProtocolError for a malformed one. */
export function decodeSpeedtestAnswer(buffer: Buffer): { answer: SpeedtestAnswer; rest: Buffer } | undefined {
  const decoded = decodeFramedJson(buffer, "speedtest answer");
  if (!decoded) return undefined;
  const { ok, code, error } = (decoded.parsed ?? {}) as { ok?: unknown; code?: unknown; error?: unknown };
  if (ok === true) return { answer: { ok: true }, rest: decoded.rest };
  if (ok !== false || !REFUSALS.includes(code as SpeedtestRefusal) || typeof error !== "string")
    throw new AppProtocolError('speedtest answer is neither {"ok":true} nor {"ok":false} with a known "code" and an "error"');
  return { answer: { ok: false, code: code as SpeedtestRefusal, error }, rest: decoded.rest };
}

export function encodeSpeedtestResult(result: SpeedtestResult): Buffer {
  return encodeFramedJson({ bytes: result.bytes, ms: result.ms }, "speedtest result");
}

/** The serving node's count of an upload: undefined while more bytes are needed. Throws AppProtocolError for a malformed one. */
export function decodeSpeedtestResult(buffer: Buffer): SpeedtestResult | undefined {
  const decoded = decodeFramedJson(buffer, "speedtest result");
  if (!decoded) return undefined;
  const { bytes, ms } = (decoded.parsed ?? {}) as { bytes?: unknown; ms?: unknown };
  if (!Number.isSafeInteger(bytes) || (bytes as number) < 0 || typeof ms !== "number" || !(ms >= 0))
    throw new AppProtocolError('speedtest result has no whole "bytes" and "ms" of at least 0');
  return { bytes: bytes as number, ms };
}
