import { MuxError } from "./errors.ts";
import { decodeFrame, decodeU32, encodeFrame, encodeU32, Flag, MAX_FRAME_PAYLOAD_BYTES, SESSION_STREAM_ID } from "./frame.ts";
import { MuxStream, type StreamHost } from "./stream.ts";

export const DEFAULT_STREAM_WINDOW_BYTES = 256 * 1024;
/** A stream's receive window auto-tunes up to this (bandwidth x RTT: 8 MiB is 1.3 Gbit/s at 50 ms). */
export const DEFAULT_MAX_STREAM_WINDOW_BYTES = 8 * 1024 * 1024;
/**
 * Streams grow their windows only while the sum of all windows on the mux stays within this, so what
 * one link can make its receiver buffer stays max(this, streams x the initial window).
 */
export const DEFAULT_LINK_WINDOW_BYTES = 16 * 1024 * 1024;
/** The RTT that window auto-tuning uses is measured again (one PING) when older than this. */
export const RTT_REFRESH_MS = 5_000;
export const DEFAULT_MAX_STREAMS = 1024;
export const DEFAULT_MAX_FRAME_PAYLOAD_BYTES = 16 * 1024;
/** The mux stops feeding DATA while the channel holds more than this; it resumes on onDrain. */
export const CHANNEL_HIGH_WATER_BYTES = 1024 * 1024;
export const PING_TIMEOUT_MS = 10_000;
const MIN_STREAM_WINDOW_BYTES = 1024;
const MAX_STREAM_WINDOW_BYTES = 0x7fffffff;
const MAX_STREAM_ID = 0xffffffff;

/**
 * A reliable, ordered message channel (KCP over UDP, or a framed TCP session).
 * The mux keeps views of delivered messages: the channel must not reuse their memory.
 */
export interface MuxChannel {
  send(message: Uint8Array): void;
  /** Bytes handed to send() and not yet gone out/acked. */
  bufferedBytes(): number;
  onMessage(cb: (message: Uint8Array) => void): void;
  /** bufferedBytes fell to the channel's low-water mark, which must lie below the mux's high-water mark. */
  onDrain(cb: () => void): void;
  onClose(cb: (reason: string) => void): void;
  close(reason: string): void;
}

export interface MuxInit {
  side: "initiator" | "responder";
  streamWindowBytes?: number; // default 256 KiB: each stream's initial receive window
  maxStreamWindowBytes?: number; // default DEFAULT_MAX_STREAM_WINDOW_BYTES: how far auto-tuning grows one
  linkWindowBytes?: number; // default DEFAULT_LINK_WINDOW_BYTES: growth stops when all windows sum to this
  /** The path's RTT measured below the mux (a link's own pings, not queued behind its streams); default: the mux's PINGs. */
  pathRttMs?: () => number | null;
  maxStreams?: number; // default 1024; a SYN beyond it gets RST
  maxFramePayloadBytes?: number; // default 16 KiB, at most 65535
  channelHighWaterBytes?: number; // default CHANNEL_HIGH_WATER_BYTES
}

export interface MuxStats {
  streamsOpen: number;
  streamsRefused: number; // SYNs answered with RST: over maxStreams, no onStream handler, bad id
  framesIn: number;
  framesOut: number;
  bytesIn: number; // DATA payload
  bytesOut: number;
  resetsIn: number;
  resetsOut: number;
  protocolErrors: number;
}

interface PendingPing {
  startedMs: number;
  resolve: (rttMs: number) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Streams over one message channel. Outgoing DATA goes round-robin, one frame per turn, across
 * streams that have both data and credit, and only while the channel is below its high-water mark;
 * control frames (SYN, FIN, RST, WINDOW, PING, PONG) are sent at once.
 */
export class Mux {
  readonly stats: MuxStats = {
    streamsOpen: 0,
    streamsRefused: 0,
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    resetsIn: 0,
    resetsOut: 0,
    protocolErrors: 0,
  };
  readonly #channel: MuxChannel;
  readonly #side: MuxInit["side"];
  readonly #windowBytes: number;
  readonly #maxStreamWindowBytes: number;
  readonly #linkWindowBytes: number;
  #windowTotalBytes = 0; // the sum of the open streams' receive windows
  /** The smallest PING round trip seen: the path's own, without the queues a transfer builds up. */
  #minRttMs: number | null = null;
  readonly #pathRttMs: (() => number | null) | undefined;
  #rttMeasuredMs = -Infinity;
  #rttPingInFlight = false;
  readonly #maxStreams: number;
  #maxFramePayloadBytes: number;
  readonly #channelHighWaterBytes: number;
  readonly #streams = new Map<number, MuxStream>();
  readonly #ready = new Set<MuxStream>(); // streams with data and credit; insertion order is the round-robin order
  readonly #pings = new Map<number, PendingPing>();
  readonly #closeHandlers: Array<(reason: string) => void> = [];
  #acceptor: ((stream: MuxStream) => void) | null = null;
  #nextStreamId: number;
  #lastPeerStreamId = 0;
  #nextPingId = 1;
  #pumping = false;
  #closeReason: string | null = null;

  constructor(channel: MuxChannel, init: MuxInit) {
    this.#channel = channel;
    this.#side = init.side;
    this.#windowBytes = checkedInteger("streamWindowBytes", init.streamWindowBytes ?? DEFAULT_STREAM_WINDOW_BYTES, MIN_STREAM_WINDOW_BYTES, MAX_STREAM_WINDOW_BYTES);
    this.#maxStreamWindowBytes = checkedInteger("maxStreamWindowBytes", init.maxStreamWindowBytes ?? Math.max(this.#windowBytes, DEFAULT_MAX_STREAM_WINDOW_BYTES), this.#windowBytes, MAX_STREAM_WINDOW_BYTES);
    this.#linkWindowBytes = checkedInteger("linkWindowBytes", init.linkWindowBytes ?? DEFAULT_LINK_WINDOW_BYTES, 0, Number.MAX_SAFE_INTEGER);
    this.#pathRttMs = init.pathRttMs;
    this.#maxStreams = checkedInteger("maxStreams", init.maxStreams ?? DEFAULT_MAX_STREAMS, 1, 2 ** 31);
    this.#maxFramePayloadBytes = checkedInteger("maxFramePayloadBytes", init.maxFramePayloadBytes ?? DEFAULT_MAX_FRAME_PAYLOAD_BYTES, 1, MAX_FRAME_PAYLOAD_BYTES);
    this.#channelHighWaterBytes = checkedInteger("channelHighWaterBytes", init.channelHighWaterBytes ?? CHANNEL_HIGH_WATER_BYTES, 1, Number.MAX_SAFE_INTEGER);
    if (init.side !== "initiator" && init.side !== "responder") throw new MuxError("MUX_BAD_INIT", `side must be "initiator" or "responder", not ${JSON.stringify(init.side)}`);
    this.#nextStreamId = init.side === "initiator" ? 1 : 2;
    channel.onMessage((message) => this.#onMessage(message));
    channel.onDrain(() => this.#pump());
    channel.onClose((reason) => this.#shutdown(`channel closed: ${reason}`, false));
  }

  /** Frames sent from now on carry at most `bytes` of payload (a path whose packets changed size). */
  setMaxFramePayloadBytes(bytes: number): void {
    this.#maxFramePayloadBytes = checkedInteger("maxFramePayloadBytes", bytes, 1, MAX_FRAME_PAYLOAD_BYTES);
  }

  get closed(): boolean {
    return this.#closeReason !== null;
  }

  openStream(): MuxStream {
    if (this.#closeReason !== null) throw new MuxError("MUX_CLOSED", `mux closed: ${this.#closeReason}`);
    if (this.#streams.size >= this.#maxStreams) throw new MuxError("MUX_TOO_MANY_STREAMS", `already ${this.#streams.size} streams open, the limit`);
    if (this.#nextStreamId > MAX_STREAM_ID) throw new MuxError("MUX_TOO_MANY_STREAMS", "stream ids exhausted on this mux");
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    const stream = this.#addStream(id);
    this.#send(id, Flag.SYN);
    return stream;
  }

  /** Streams the peer opens. Without a handler they are refused with RST. */
  onStream(cb: (stream: MuxStream) => void): void {
    this.#acceptor = cb;
  }

  onClose(cb: (reason: string) => void): void {
    this.#closeHandlers.push(cb);
  }

  /** Round-trip time in ms, measured with PING/PONG on stream 0. */
  ping(timeoutMs = PING_TIMEOUT_MS): Promise<number> {
    if (this.#closeReason !== null) return Promise.reject(new MuxError("MUX_CLOSED", `mux closed: ${this.#closeReason}`));
    const id = this.#nextPingId;
    this.#nextPingId = (this.#nextPingId + 1) >>> 0;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pings.delete(id);
        reject(new MuxError("MUX_PING_TIMEOUT", `no PONG within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pings.set(id, { startedMs: performance.now(), resolve, reject, timer });
      this.#send(SESSION_STREAM_ID, Flag.PING, encodeU32(id));
    });
  }

  /** Resets every stream, then closes the channel. */
  close(reason: string): void {
    if (this.#closeReason !== null) return;
    for (const id of this.#streams.keys()) this.#sendReset(id);
    this.#shutdown(reason, true);
  }

  // ---------- stream host ----------

  readonly #host: StreamHost = {
    rttMs: () => {
      const pathRttMs = this.#pathRttMs?.() ?? null;
      if (pathRttMs !== null) return pathRttMs;
      if (performance.now() - this.#rttMeasuredMs > RTT_REFRESH_MS) this.#measureRtt();
      return this.#minRttMs;
    },
    growWindow: (stream, wantedBytes) => {
      const current = stream.receiveWindowBytes;
      const grownBytes = Math.min(wantedBytes, this.#maxStreamWindowBytes) - current;
      const allowedBytes = Math.min(grownBytes, this.#linkWindowBytes - this.#windowTotalBytes);
      if (allowedBytes <= 0) return current;
      this.#windowTotalBytes += allowedBytes;
      return current + allowedBytes;
    },
    dataQueued: (stream) => {
      if (stream.hasSendable()) this.#ready.add(stream);
      this.#pump();
    },
    sendFin: (stream) => this.#send(stream.id, Flag.FIN),
    sendWindow: (stream, incrementBytes) => this.#send(stream.id, Flag.WINDOW, encodeU32(incrementBytes)),
    finished: (stream) => this.#removeStream(stream),
    destroyed: (stream, sendReset) => {
      const known = this.#streams.get(stream.id) === stream;
      this.#removeStream(stream);
      if (sendReset && known) this.#sendReset(stream.id);
    },
  };

  #addStream(id: number): MuxStream {
    const stream = new MuxStream(id, this.#host, this.#windowBytes);
    this.#streams.set(id, stream);
    this.#windowTotalBytes += this.#windowBytes;
    this.stats.streamsOpen = this.#streams.size;
    return stream;
  }

  #removeStream(stream: MuxStream): void {
    if (this.#streams.get(stream.id) !== stream) return;
    this.#streams.delete(stream.id);
    this.#windowTotalBytes -= stream.receiveWindowBytes;
    this.#ready.delete(stream);
    this.stats.streamsOpen = this.#streams.size;
  }

  // ---------- sending ----------

  #send(streamId: number, flags: number, payload?: Uint8Array): void {
    if (this.#closeReason !== null) return;
    const message = encodeFrame({ streamId, flags, payload: payload ?? EMPTY });
    this.stats.framesOut++;
    try {
      this.#channel.send(message);
    } catch (err) {
      this.#shutdown(`channel send failed: ${(err as Error).message}`, true);
    }
  }

  #sendReset(streamId: number): void {
    this.stats.resetsOut++;
    this.#send(streamId, Flag.RST);
  }

  /** Sends DATA, one frame per stream per turn, while the channel has room. */
  #pump(): void {
    if (this.#pumping) return; // a write callback fired from inside the loop queues more; the loop picks it up
    this.#pumping = true;
    try {
      while (this.#ready.size > 0 && this.#closeReason === null && this.#channel.bufferedBytes() <= this.#channelHighWaterBytes) {
        const stream: MuxStream = this.#ready.values().next().value!;
        this.#ready.delete(stream);
        const { payload, onSent } = stream.takeFrame(this.#maxFramePayloadBytes);
        this.#send(stream.id, Flag.DATA, payload);
        this.stats.bytesOut += payload.length;
        if (stream.hasSendable()) this.#ready.add(stream);
        onSent?.();
      }
    } finally {
      this.#pumping = false;
    }
  }

  // ---------- receiving ----------

  #onMessage(message: Uint8Array): void {
    try {
      this.#handleMessage(message);
    } catch (err) {
      // Only a bug (ours or an application's synchronous stream handler) gets here; never throw into the channel.
      this.#shutdown(`internal error while handling a frame: ${(err as Error)?.message ?? err}`, true);
    }
  }

  #handleMessage(message: Uint8Array): void {
    if (this.#closeReason !== null) return;
    this.stats.framesIn++;
    let frame;
    try {
      frame = decodeFrame(message);
    } catch (err) {
      if (!(err instanceof MuxError)) throw err;
      this.stats.protocolErrors++;
      if (err.code === "MUX_FRAME_SHORT") return this.close(`protocol error: ${err.message}`);
      if (err.streamId) this.#resetStream(err.streamId, err.message);
      return;
    }
    const { streamId, flags, payload } = frame;
    if (streamId === SESSION_STREAM_ID) return this.#onSessionFrame(flags, payload);
    if (flags === Flag.SYN) return this.#onSyn(streamId);

    const stream = this.#streams.get(streamId);
    if (!stream) {
      // Late WINDOW updates and RSTs for streams we already forgot are normal; answering RST with RST would loop.
      if (flags !== Flag.RST && flags !== Flag.WINDOW) this.#sendReset(streamId);
      return;
    }
    switch (flags) {
      case Flag.DATA: {
        const problem = stream.receiveData(payload);
        if (problem) return this.#protocolError(stream, problem);
        this.stats.bytesIn += payload.length;
        return;
      }
      case Flag.WINDOW: {
        const problem = stream.addCredit(decodeU32(payload));
        if (problem) return this.#protocolError(stream, problem);
        if (stream.hasSendable()) this.#ready.add(stream);
        return this.#pump();
      }
      case Flag.FIN: {
        const problem = stream.receiveFin();
        if (problem) this.#protocolError(stream, problem);
        return;
      }
      case Flag.RST:
        this.stats.resetsIn++;
        this.#removeStream(stream);
        return stream.receiveReset();
    }
  }

  #onSessionFrame(flags: number, payload: Uint8Array): void {
    if (flags === Flag.PING) return this.#send(SESSION_STREAM_ID, Flag.PONG, payload);
    const id = decodeU32(payload);
    const ping = this.#pings.get(id);
    if (!ping) return; // answered after its timeout
    this.#pings.delete(id);
    clearTimeout(ping.timer);
    const rttMs = performance.now() - ping.startedMs;
    this.#minRttMs = Math.min(this.#minRttMs ?? rttMs, rttMs);
    this.#rttMeasuredMs = performance.now();
    ping.resolve(rttMs);
  }

  /** One PING at a time, for window auto-tuning; its answer lands in #minRttMs. */
  #measureRtt(): void {
    if (this.#rttPingInFlight || this.#closeReason !== null) return;
    this.#rttPingInFlight = true;
    const done = () => {
      this.#rttPingInFlight = false;
    };
    this.ping().then(done, done);
  }

  #onSyn(id: number): void {
    const existing = this.#streams.get(id);
    if (existing) return this.#protocolError(existing, "SYN for a stream that is already open");
    const peerParity = this.#side === "initiator" ? 0 : 1;
    if (id % 2 !== peerParity || id <= this.#lastPeerStreamId) {
      this.stats.protocolErrors++;
      this.stats.streamsRefused++;
      return this.#sendReset(id);
    }
    this.#lastPeerStreamId = id;
    if (this.#streams.size >= this.#maxStreams || !this.#acceptor) {
      this.stats.streamsRefused++;
      return this.#sendReset(id);
    }
    const stream = this.#addStream(id);
    try {
      this.#acceptor(stream);
    } catch (err) {
      stream.destroy(err as Error);
    }
  }

  #protocolError(stream: MuxStream, problem: string): void {
    this.stats.protocolErrors++;
    stream.destroy(new MuxError("MUX_PROTOCOL", `stream ${stream.id}: ${problem}`, stream.id)); // sends RST
  }

  /** After a malformed frame: reset the stream it named, known or not. */
  #resetStream(streamId: number, problem: string): void {
    const stream = this.#streams.get(streamId);
    if (stream) stream.destroy(new MuxError("MUX_PROTOCOL", problem, streamId));
    else this.#sendReset(streamId);
  }

  #shutdown(reason: string, closeChannel: boolean): void {
    if (this.#closeReason !== null) return;
    this.#closeReason = reason;
    const error = new MuxError("MUX_CLOSED", `mux closed: ${reason}`);
    for (const stream of [...this.#streams.values()]) stream.abort(error);
    this.#streams.clear();
    this.#windowTotalBytes = 0;
    this.#ready.clear();
    this.stats.streamsOpen = 0;
    for (const ping of this.#pings.values()) {
      clearTimeout(ping.timer);
      ping.reject(error);
    }
    this.#pings.clear();
    if (closeChannel) this.#channel.close(reason);
    for (const handler of this.#closeHandlers) handler(reason);
  }
}

const EMPTY = new Uint8Array(0);

function checkedInteger(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new MuxError("MUX_BAD_INIT", `${name} must be an integer in ${min}..${max}, not ${value}`);
  return value;
}
