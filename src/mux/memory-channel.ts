import type { MuxChannel } from "./mux.ts";

export interface MemoryChannelOptions {
  /** Throughput of each direction; default unlimited. */
  bytesPerSecond?: number;
  /** One-way delay; default 0. */
  latencyMs?: number;
  /** onDrain fires when the backlog falls to this; default 64 KiB. */
  lowWaterBytes?: number;
  /** How messages are handed over: "immediate" (setImmediate, default) or "microtask". */
  delivery?: "immediate" | "microtask";
}

const DEFAULT_LOW_WATER_BYTES = 64 * 1024;
/** A throughput-limited channel may deliver this much of its rate at once, so timer jitter does not lower it. */
const BURST_MS = 5;
const MIN_BURST_BYTES = 64 * 1024;
const TIMER_TICK_MS = 1;

interface Queued {
  message: Uint8Array;
  dueMs: number;
}

/** One end of an in-memory MuxChannel pair, for tests and benchmarks. */
export class MemoryChannel implements MuxChannel {
  peer!: MemoryChannel;
  messagesSent = 0;
  bytesSent = 0;
  readonly #options: Required<MemoryChannelOptions>;
  readonly #queue: Queued[] = []; // outgoing, not yet delivered to the peer
  #queueHead = 0;
  #queuedBytes = 0;
  readonly #burstBytes: number;
  #tokens: number;
  #lastRefillMs = performance.now();
  #scheduled = false;
  #needDrain = false;
  #closed = false;
  #closeReason = "";
  #messageHandlers: Array<(message: Uint8Array) => void> = [];
  #drainHandlers: Array<() => void> = [];
  #closeHandlers: Array<(reason: string) => void> = [];

  constructor(options: MemoryChannelOptions) {
    this.#options = {
      bytesPerSecond: options.bytesPerSecond ?? Infinity,
      latencyMs: options.latencyMs ?? 0,
      lowWaterBytes: options.lowWaterBytes ?? DEFAULT_LOW_WATER_BYTES,
      delivery: options.delivery ?? "immediate",
    };
    this.#burstBytes = Math.max(MIN_BURST_BYTES, (this.#options.bytesPerSecond * BURST_MS) / 1000);
    this.#tokens = this.#burstBytes;
  }

  send(message: Uint8Array): void {
    if (this.#closed) return;
    this.messagesSent++;
    this.bytesSent += message.length;
    this.#queue.push({ message, dueMs: performance.now() + this.#options.latencyMs });
    this.#queuedBytes += message.length;
    if (this.#queuedBytes > this.#options.lowWaterBytes) this.#needDrain = true;
    this.#schedule(0);
  }

  bufferedBytes(): number {
    return this.#queuedBytes;
  }

  onMessage(cb: (message: Uint8Array) => void): void {
    this.#messageHandlers.push(cb);
  }
  onDrain(cb: () => void): void {
    this.#drainHandlers.push(cb);
  }
  onClose(cb: (reason: string) => void): void {
    this.#closeHandlers.push(cb);
  }

  /** Like a TCP close: what was already sent is still delivered, then the peer hears of the close. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    setImmediate(() => this.#notifyClose(reason));
    this.#schedule(0);
  }

  #notifyClose(reason: string): void {
    for (const handler of this.#closeHandlers) handler(reason);
  }

  #schedule(delayMs: number): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    const run = () => {
      this.#scheduled = false;
      this.#deliver();
    };
    if (delayMs > 0) setTimeout(run, delayMs);
    else if (this.#options.delivery === "microtask") queueMicrotask(run);
    else setImmediate(run);
  }

  #deliver(): void {
    const { bytesPerSecond } = this.#options;
    const now = performance.now();
    if (bytesPerSecond !== Infinity) {
      this.#tokens = Math.min(this.#burstBytes, this.#tokens + ((now - this.#lastRefillMs) * bytesPerSecond) / 1000);
      this.#lastRefillMs = now;
    }
    while (this.#queueHead < this.#queue.length) {
      const next = this.#queue[this.#queueHead]!;
      if (next.dueMs > now || this.#tokens <= 0) break;
      this.#queueHead++;
      this.#queuedBytes -= next.message.length;
      if (bytesPerSecond !== Infinity) this.#tokens -= next.message.length;
      this.peer.#receive(next.message);
    }
    if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#queueHead);
      this.#queueHead = 0;
    }
    if (this.#needDrain && this.#queuedBytes <= this.#options.lowWaterBytes) {
      this.#needDrain = false;
      if (!this.#closed) for (const handler of this.#drainHandlers) handler();
    }
    if (this.#queueHead < this.#queue.length) {
      const waiting = this.#tokens <= 0 || this.#queue[this.#queueHead]!.dueMs > now;
      this.#schedule(waiting ? TIMER_TICK_MS : 0);
    } else if (this.#closed && !this.peer.#closed) {
      const peer = this.peer;
      peer.#closed = true;
      setImmediate(() => peer.#notifyClose(`closed by the peer: ${this.#closeReason}`));
    }
  }

  #receive(message: Uint8Array): void {
    if (this.#closed) return;
    for (const handler of this.#messageHandlers) handler(message);
  }
}

export function createMemoryChannelPair(options: MemoryChannelOptions = {}): [MemoryChannel, MemoryChannel] {
  const a = new MemoryChannel(options);
  const b = new MemoryChannel(options);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
