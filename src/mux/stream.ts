import { Duplex } from "node:stream";
import { MuxError } from "./errors.ts";

/** Bytes a stream's Writable side buffers before write() returns false. */
export const STREAM_WRITE_HIGH_WATER_BYTES = 64 * 1024;
/** Upper bound on the readable high-water mark; the mark is also at most a quarter of the window (see _read). */
const STREAM_READ_HIGH_WATER_MAX_BYTES = 64 * 1024;
/** Credit is a u32 on the wire; more than that outstanding is a broken peer. */
const MAX_SEND_CREDIT_BYTES = 0xffffffff;

/** What a stream needs from its mux; kept off the public Mux API. */
export interface StreamHost {
  /**
   * The link's round-trip time, or null before its first sample (asking starts a measurement). The
   * smallest sample: a smoothed one would include the queue a transfer builds (on loopback, or a box
   * short of CPU, milliseconds of it), grow windows where bandwidth x RTT is small, and so feed the queue.
   */
  rttMs(): number | null;
  /** Asks to grow the stream's receive window to `wantedBytes`; returns the window it may have. */
  growWindow(stream: MuxStream, wantedBytes: number): number;
  dataQueued(stream: MuxStream): void;
  sendFin(stream: MuxStream): void;
  sendWindow(stream: MuxStream, incrementBytes: number): void;
  /** Both FINs seen: the mux forgets the stream (its readable may still hold data for the app). */
  finished(stream: MuxStream): void;
  destroyed(stream: MuxStream, sendReset: boolean): void;
}

export interface OutgoingFrame {
  payload: Uint8Array;
  /** Completes the application's write once the last piece of its chunk is handed to the channel. */
  onSent: (() => void) | null;
}

interface PendingWrite {
  chunk: Buffer;
  offsetBytes: number;
  callback: (error?: Error | null) => void;
}

/**
 * One multiplexed stream, a node:stream Duplex.
 * Flow control: the peer may send at most `windowBytes` beyond what our application has read. Our
 * `_write` callback is held while we have no credit, so write()/pipe() backpressure reaches the app.
 * The receive window auto-tunes as QUIC's (quic-go) does: when the application read what it read
 * since the last update faster than the window allows at the link's (minimum) RTT (half a window or
 * more in under 4 x fraction x RTT), the window doubles, up to the mux's per-stream and per-link bounds. A
 * slow reader never triggers it, so its stream stays at one initial window. WINDOW frames carry
 * increments, so a larger window is only a larger increment: the wire format does not change.
 */
export class MuxStream extends Duplex {
  readonly id: number;
  readonly #host: StreamHost;
  #windowBytes: number;
  #sendCreditBytes: number;
  #pending: PendingWrite | null = null;
  #grantedBytes: number; // credit granted to the peer so far, the initial window included
  #receivedBytes = 0;
  #sentBytes = 0;
  #finSent = false;
  #finReceived = false;
  #silentDestroy = false; // the peer already knows (it reset us) or the mux is gone: no RST
  #grantCheckQueued = false;
  #epochStartMs = performance.now();
  #epochStartConsumedBytes = 0;

  /** @internal Streams come from Mux.openStream() and Mux.onStream(). */
  constructor(id: number, host: StreamHost, windowBytes: number) {
    super({
      allowHalfOpen: true,
      decodeStrings: true,
      readableHighWaterMark: Math.min(STREAM_READ_HIGH_WATER_MAX_BYTES, Math.max(1, Math.floor(windowBytes / 4))),
      writableHighWaterMark: STREAM_WRITE_HIGH_WATER_BYTES,
    });
    this.id = id;
    this.#host = host;
    this.#windowBytes = windowBytes;
    this.#sendCreditBytes = windowBytes;
    this.#grantedBytes = windowBytes;
  }

  /** Bytes we may still send before the peer grants more. */
  get sendCreditBytes(): number {
    return this.#sendCreditBytes;
  }
  /** Bytes the peer may still send us: what we buffer never exceeds this plus readableLength. */
  get peerCreditBytes(): number {
    return this.#grantedBytes - this.#receivedBytes;
  }
  /** Bytes the peer may send beyond what the application has read; grows with bandwidth x RTT. */
  get receiveWindowBytes(): number {
    return this.#windowBytes;
  }
  get bytesIn(): number {
    return this.#receivedBytes;
  }
  get bytesOut(): number {
    return this.#sentBytes;
  }

  // ---------- called by the mux ----------

  /** @internal */
  hasSendable(): boolean {
    return this.#pending !== null && this.#sendCreditBytes > 0;
  }

  /** @internal Cuts the next DATA payload off the pending write; call only when hasSendable(). */
  takeFrame(maxPayloadBytes: number): OutgoingFrame {
    const pending = this.#pending!;
    const size = Math.min(maxPayloadBytes, this.#sendCreditBytes, pending.chunk.length - pending.offsetBytes);
    const payload = pending.chunk.subarray(pending.offsetBytes, pending.offsetBytes + size);
    pending.offsetBytes += size;
    this.#sendCreditBytes -= size;
    this.#sentBytes += size;
    if (pending.offsetBytes < pending.chunk.length) return { payload, onSent: null };
    this.#pending = null;
    return { payload, onSent: () => this.destroyed || pending.callback() };
  }

  /** @internal Returns a problem description, or null. */
  addCredit(incrementBytes: number): string | null {
    if (this.#sendCreditBytes + incrementBytes > MAX_SEND_CREDIT_BYTES) {
      return `WINDOW of ${incrementBytes} bytes takes the credit past ${MAX_SEND_CREDIT_BYTES} bytes`;
    }
    this.#sendCreditBytes += incrementBytes;
    return null;
  }

  /** @internal The payload must stay untouched afterwards: the readable buffer keeps a view of it. */
  receiveData(payload: Uint8Array): string | null {
    if (this.#finReceived) return `${payload.length} bytes of DATA after FIN`;
    const creditBytes = this.peerCreditBytes;
    if (payload.length > creditBytes) return `DATA of ${payload.length} bytes beyond the ${creditBytes} bytes of credit granted`;
    this.#receivedBytes += payload.length;
    this.push(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength));
    return null;
  }

  /** @internal */
  receiveFin(): string | null {
    if (this.#finReceived) return "a second FIN";
    this.#finReceived = true;
    this.push(null);
    if (this.#finSent) this.#host.finished(this);
    return null;
  }

  /** @internal */
  receiveReset(): void {
    this.abort(new MuxError("MUX_STREAM_RESET", `stream ${this.id} reset by the peer`, this.id));
  }

  /** @internal Destroys the stream without sending RST. */
  abort(error: Error): void {
    this.#silentDestroy = true;
    this.destroy(error);
  }

  // ---------- Duplex implementation ----------

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (chunk.length === 0) return callback();
    this.#pending = { chunk, offsetBytes: 0, callback };
    this.#host.dataQueued(this);
  }

  override _final(callback: (error?: Error | null) => void): void {
    // Every earlier write has completed, so all our DATA is already in the channel ahead of this FIN.
    this.#finSent = true;
    this.#host.sendFin(this);
    if (this.#finReceived) this.#host.finished(this);
    callback();
  }

  override _read(): void {
    // _read runs before read() takes its bytes out of the buffer; look once it has. The readable
    // high-water mark is at most a quarter window, so when _read runs at most a quarter window is
    // buffered and a stalled sender always gets its update here.
    if (this.#grantCheckQueued) return;
    this.#grantCheckQueued = true;
    queueMicrotask(() => {
      this.#grantCheckQueued = false;
      this.#grantConsumed();
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#pending = null;
    const closedCleanly = this.#finSent && this.#finReceived;
    this.#host.destroyed(this, !this.#silentDestroy && !closedCleanly);
    callback(error);
  }

  /** Grants the peer what the application has read, once that is at least half a window (as yamux does). */
  #grantConsumed(): void {
    if (this.#finReceived || this.destroyed) return;
    const consumedBytes = this.#receivedBytes - this.readableLength;
    if (consumedBytes + this.#windowBytes - this.#grantedBytes < this.#windowBytes / 2) return;
    this.#autoTune(consumedBytes);
    const incrementBytes = consumedBytes + this.#windowBytes - this.#grantedBytes;
    this.#grantedBytes += incrementBytes;
    this.#host.sendWindow(this, incrementBytes);
  }

  /** At each update: double the window if this epoch's reads came faster than the window allows. */
  #autoTune(consumedBytes: number): void {
    const nowMs = performance.now();
    const fraction = (consumedBytes - this.#epochStartConsumedBytes) / this.#windowBytes;
    const rttMs = this.#host.rttMs();
    if (rttMs !== null && nowMs - this.#epochStartMs < 4 * fraction * rttMs) {
      this.#windowBytes = this.#host.growWindow(this, 2 * this.#windowBytes);
    }
    this.#epochStartMs = nowMs;
    this.#epochStartConsumedBytes = consumedBytes;
  }
}
