// `inp2pc speedtest`: both sides of a throughput test over a peer link (wire format in
// src/protocol/speedtest.ts). The serving node bounds what a peer can make it do: one test per peer
// at a time, SPEEDTEST_MAX_AT_ONCE in all, each direction at most SPEEDTEST_MAX_DIRECTION_MS and
// SPEEDTEST_MAX_BYTES.

import type { Duplex } from "node:stream";
import type { Logger } from "../log/index.ts";
import {
  decodeSpeedtestAnswer,
  decodeSpeedtestResult,
  encodeSpeedtestAnswer,
  encodeSpeedtestRequest,
  encodeSpeedtestResult,
  SPEEDTEST_GRACE_MS,
  SPEEDTEST_MAX_BYTES,
  SPEEDTEST_MAX_DIRECTION_MS,
  type SpeedtestAnswer,
  type SpeedtestDirection,
  type SpeedtestRequest,
} from "../protocol/index.ts";
import type { Link } from "../transport/index.ts";
import { readFramed } from "./framed-read.ts";

/** Speedtests a node serves at once, from all peers together. */
export const SPEEDTEST_MAX_AT_ONCE = 4;
/** Bytes of each write of a speedtest's sender. */
const SPEEDTEST_CHUNK_BYTES = 64 * 1024;
/** How long a requester waits for the serving node's answer (and, after an upload, its count). */
const SPEEDTEST_ANSWER_TIMEOUT_MS = 5_000;
/** How often a running speedtest tells its progress. */
export const SPEEDTEST_PROGRESS_MS = 250;
/** A stream the serving node refused or finished is reset after this, if the requester keeps it open. */
const SPEEDTEST_LINGER_MS = 2_000;

export class SpeedtestError extends Error {
  override readonly name = "SpeedtestError";
}

/** One direction of a finished test: bytes moved in `ms`, as the receiving side counted them. */
export interface SpeedtestLeg {
  bytes: number;
  ms: number;
  mbps: number;
}

export interface SpeedtestProgress {
  direction: SpeedtestDirection;
  bytes: number;
  ms: number;
  /** The direction's planned time. */
  totalMs: number;
}

const mbps = (bytes: number, ms: number) => (ms > 0 ? Math.round(((bytes * 8) / (ms * 1000)) * 100) / 100 : 0);
const CHUNK = Buffer.alloc(SPEEDTEST_CHUNK_BYTES);

/** The serving side: answers the speedtest streams peers open, within its bounds. */
export class SpeedtestService {
  private readonly running = new Set<string>();

  constructor(private readonly init: { logger: Logger; node: string }) {}

  serve(peer: string, stream: Duplex, request: SpeedtestRequest, rest: Buffer): void {
    const refusal = this.refusal(peer, request);
    if (refusal) {
      this.init.logger.info("refused a speedtest", { peer, direction: request.direction, ms: request.ms, reason: refusal.error });
      stream.end(encodeSpeedtestAnswer(refusal));
      stream.resume();
      const linger = setTimeout(() => stream.destroy(), SPEEDTEST_LINGER_MS);
      stream.once("close", () => clearTimeout(linger));
      return;
    }
    this.running.add(peer);
    this.init.logger.info("serving a speedtest", { peer, direction: request.direction, ms: request.ms });
    let released = false;
    const release = (bytes: number, ms: number) => {
      if (released) return;
      released = true;
      this.running.delete(peer);
      this.init.logger.info("speedtest served", { peer, direction: request.direction, bytes, ms: Math.round(ms) });
    };
    stream.on("error", () => stream.destroy());
    stream.write(encodeSpeedtestAnswer({ ok: true }));
    if (request.direction === "upload") this.sink(stream, request.ms, rest, release);
    else this.source(stream, request.ms, release);
  }

  private refusal(peer: string, request: SpeedtestRequest): (SpeedtestAnswer & { ok: false }) | undefined {
    if (request.ms > SPEEDTEST_MAX_DIRECTION_MS)
      return { ok: false, code: "TOO_LONG", error: `${this.init.node} serves a speedtest direction for at most ${SPEEDTEST_MAX_DIRECTION_MS} ms, not ${request.ms} ms` };
    if (this.running.has(peer)) return { ok: false, code: "BUSY", error: `${this.init.node} is running a speedtest for ${peer} already: one at a time per peer` };
    if (this.running.size >= SPEEDTEST_MAX_AT_ONCE)
      return { ok: false, code: "BUSY", error: `${this.init.node} is running ${this.running.size} speedtests already, the most it serves at once` };
    return undefined;
  }

  /** Counts what the requester sends until it ends (or time or bytes run out), then tells it the count. */
  private sink(stream: Duplex, ms: number, rest: Buffer, release: (bytes: number, ms: number) => void): void {
    let bytes = rest.length;
    let first = rest.length > 0 ? performance.now() : undefined;
    let last = first ?? 0;
    const finish = () => {
      clearTimeout(deadline);
      stream.off("data", count);
      stream.off("end", finish);
      stream.off("close", finish);
      const tookMs = first === undefined ? 0 : last - first;
      release(bytes, tookMs);
      if (stream.destroyed) return;
      stream.end(encodeSpeedtestResult({ bytes, ms: Math.round(tookMs * 1000) / 1000 }));
      stream.resume(); // what still comes is dropped
      const linger = setTimeout(() => stream.destroy(), SPEEDTEST_LINGER_MS);
      stream.once("close", () => clearTimeout(linger));
    };
    const count = (chunk: Buffer) => {
      last = performance.now();
      first ??= last;
      bytes += chunk.length;
      if (bytes >= SPEEDTEST_MAX_BYTES) finish();
    };
    const deadline = setTimeout(finish, ms + SPEEDTEST_GRACE_MS);
    stream.on("data", count);
    stream.once("end", finish);
    stream.once("close", finish); // reset by the requester: what came so far is the count
    stream.resume(); // paused by the header's reader
  }

  /** Sends for `ms` (at most SPEEDTEST_MAX_BYTES), then ends. */
  private source(stream: Duplex, ms: number, release: (bytes: number, ms: number) => void): void {
    const started = performance.now();
    let bytes = 0;
    const finish = () => {
      clearTimeout(deadline);
      stream.off("drain", pump);
      stream.off("close", finish);
      release(bytes, performance.now() - started);
      if (!stream.destroyed) stream.end();
    };
    const pump = () => {
      while (!stream.destroyed) {
        if (performance.now() - started >= ms || bytes >= SPEEDTEST_MAX_BYTES) return finish();
        bytes += CHUNK.length;
        if (!stream.write(CHUNK)) return void stream.once("drain", pump);
      }
    };
    // Stops a sender that waits for a drain past its time (a requester that stopped reading).
    const deadline = setTimeout(finish, ms);
    stream.once("close", finish); // reset by the requester
    stream.resume(); // the requester sends nothing more; an end from it must still be seen
    pump();
  }
}

/**
 * The requesting side: an upload, then a download, each for `directionMs`, over `link`. Progress goes
 * to `onProgress` every SPEEDTEST_PROGRESS_MS; `signal` aborts the test (its streams are reset).
 */
export async function runSpeedtest(
  link: Link,
  directionMs: number,
  onProgress: (progress: SpeedtestProgress) => void,
  signal?: AbortSignal,
): Promise<{ upload: SpeedtestLeg; download: SpeedtestLeg }> {
  const upload = await runLeg(link, "upload", directionMs, onProgress, signal);
  const download = await runLeg(link, "download", directionMs, onProgress, signal);
  return { upload, download };
}

async function runLeg(link: Link, direction: SpeedtestDirection, ms: number, onProgress: (progress: SpeedtestProgress) => void, signal?: AbortSignal): Promise<SpeedtestLeg> {
  const peer = link.init.peer;
  const stream = link.mux.openStream();
  const abort = () => stream.destroy();
  signal?.addEventListener("abort", abort);
  // Whatever happens, the stream ends within its time, the grace and the waits for answers.
  const bound = setTimeout(abort, ms + SPEEDTEST_GRACE_MS + 2 * SPEEDTEST_ANSWER_TIMEOUT_MS);
  let bytes = 0;
  let started = performance.now();
  const progress = setInterval(() => onProgress({ direction, bytes, ms: performance.now() - started, totalMs: ms }), SPEEDTEST_PROGRESS_MS);
  try {
    stream.on("error", () => {}); // a reset ends the reads below, which say what went wrong
    stream.write(encodeSpeedtestRequest({ direction, ms }));
    const answerTimer = setTimeout(abort, SPEEDTEST_ANSWER_TIMEOUT_MS);
    const answered = await readFramed(stream, decodeSpeedtestAnswer).finally(() => clearTimeout(answerTimer));
    if (signal?.aborted) throw new SpeedtestError("speedtest stopped");
    if (!answered) throw new SpeedtestError(`${peer} did not answer the speedtest within ${SPEEDTEST_ANSWER_TIMEOUT_MS} ms (is it running an inp2pc without speedtest?)`);
    if (!answered.answer.ok) throw new SpeedtestError(`${peer} refused the speedtest (${answered.answer.code}): ${answered.answer.error}`);
    started = performance.now();
    if (direction === "upload") {
      await sendFor(stream, ms, (n) => (bytes += n));
      if (stream.destroyed) throw new SpeedtestError(signal?.aborted ? "speedtest stopped" : `the stream to ${peer} was reset during the upload`);
      stream.end();
      const result = await readFramed(stream, decodeSpeedtestResult);
      if (!result) throw new SpeedtestError(signal?.aborted ? "speedtest stopped" : `${peer} did not tell how much of the upload it received`);
      return { bytes: result.bytes, ms: result.ms, mbps: mbps(result.bytes, result.ms) };
    }
    bytes = answered.rest.length;
    const ended = await new Promise<boolean>((resolve) => {
      stream.on("data", (chunk: Buffer) => (bytes += chunk.length));
      stream.once("end", () => resolve(true));
      stream.once("close", () => resolve(false));
      stream.resume();
    });
    if (!ended) throw new SpeedtestError(signal?.aborted ? "speedtest stopped" : `the stream from ${peer} was reset during the download`);
    const tookMs = performance.now() - started;
    return { bytes, ms: Math.round(tookMs * 1000) / 1000, mbps: mbps(bytes, tookMs) };
  } finally {
    clearTimeout(bound);
    clearInterval(progress);
    signal?.removeEventListener("abort", abort);
    stream.destroy();
  }
}

/** Writes to `stream` for `ms`, with its backpressure; `sent` counts each write. */
function sendFor(stream: Duplex, ms: number, sent: (bytes: number) => void): Promise<void> {
  const until = performance.now() + ms;
  return new Promise((resolve) => {
    const stop = () => {
      clearTimeout(timer);
      stream.off("drain", pump);
      stream.off("close", stop);
      resolve();
    };
    const pump = () => {
      while (!stream.destroyed && performance.now() < until) {
        sent(CHUNK.length);
        if (!stream.write(CHUNK)) return void stream.once("drain", pump);
      }
      stop();
    };
    const timer = setTimeout(stop, ms);
    stream.once("close", stop);
    pump();
  });
}
