// KCP: an ARQ protocol over datagrams, wire-compatible with ikcp (skywind3000/kcp).
// The algorithm follows ikcp closely (queues, una/ack, fast resend, RTO, nodelay, window probing,
// congestion window, dead link), so its documentation applies; names are ikcp's in camelCase.
// Differences that do not change the wire: input() validates a whole packet before applying any of it,
// messages may have up to 255 fragments (ikcp: 127; kcp-go: 255), stream mode takes writes of any size,
// a segment's retransmission back-off is capped at KCP_RTO_MAX_MS.

import {
  KCP_CLOCK_JUMP_LIMIT_MS,
  KCP_CMD_ACK,
  KCP_CMD_PUSH,
  KCP_CMD_WASK,
  KCP_CMD_WINS,
  KCP_DEAD_LINK_TRANSMISSIONS,
  KCP_DEFAULT_INTERVAL_MS,
  KCP_DEFAULT_MTU_BYTES,
  KCP_DEFAULT_RECEIVE_WINDOW_SEGMENTS,
  KCP_DEFAULT_SEND_WINDOW_SEGMENTS,
  KCP_FAST_RESEND_MAX_TRANSMISSIONS,
  KCP_MAX_ADVERTISED_WINDOW_SEGMENTS,
  KCP_MAX_FRAGMENTS,
  KCP_MAX_INTERVAL_MS,
  KCP_MIN_INTERVAL_MS,
  KCP_MIN_MTU_BYTES,
  KCP_MIN_RECEIVE_WINDOW_SEGMENTS,
  KCP_OVERHEAD_BYTES,
  KCP_PROBE_INITIAL_WAIT_MS,
  KCP_PROBE_MAX_WAIT_MS,
  KCP_RTO_DEFAULT_MS,
  KCP_RTO_MAX_MS,
  KCP_RTO_MIN_MS,
  KCP_RTO_NODELAY_MIN_MS,
  KCP_SSTHRESH_INIT_SEGMENTS,
  KCP_SSTHRESH_MIN_SEGMENTS,
} from "./kcp-constants.ts";

export * from "./kcp-constants.ts";

export type KcpErrorCode = "KCP_TOO_LARGE" | "KCP_BAD_MTU";

export class KcpError extends Error {
  readonly code: KcpErrorCode;

  constructor(code: KcpErrorCode, message: string) {
    super(message);
    this.name = "KcpError";
    this.code = code;
  }
}

export interface KcpStats {
  /** Data segments sent for the first time. */
  segmentsSent: number;
  /** Data segments sent again because their RTO expired. */
  retransmits: number;
  /** Data segments sent again because later segments were acknowledged (fast resend). */
  fastRetransmits: number;
  packetsSent: number;
  packetsReceived: number;
  /** Packets ignored whole: wrong conv, unknown cmd, truncated, len past the end, una beyond what we sent. */
  malformedPackets: number;
}

/** ikcp_getconv: the conversation id of a packet, or undefined when it is too short to hold a header. */
export function kcpConv(packet: Uint8Array): number | undefined {
  if (packet.length < KCP_OVERHEAD_BYTES) return undefined;
  return new DataView(packet.buffer, packet.byteOffset, 4).getUint32(0, true);
}

/** ikcp's _itimediff: later - earlier in 32-bit wrapping arithmetic, as a signed number. */
function diff32(later: number, earlier: number): number {
  return (later - earlier) | 0;
}

const ASK_SEND = 1; // we must send WASK
const ASK_TELL = 2; // we must send WINS

class SendSegment {
  sn = 0;
  ts = 0;
  resendTs = 0;
  rto = 0;
  fastAck = 0;
  xmit = 0;
  constructor(
    public data: Uint8Array,
    readonly frg: number,
  ) {}
}

interface ReceiveSegment {
  sn: number;
  frg: number;
  data: Uint8Array;
}

/** FIFO with O(1) shift (Array.prototype.shift copies). */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  at(index: number): T {
    return this.items[this.head + index] as T;
  }
  last(): T | undefined {
    return this.length > 0 ? (this.items[this.items.length - 1] as T) : undefined;
  }
  replaceLast(item: T): void {
    this.items[this.items.length - 1] = item;
  }
  shift(): T | undefined {
    if (this.length === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

export class Kcp {
  readonly conv: number;
  /** Stream mode: no message boundaries; small writes coalesce into full segments. Set before the first send(). */
  streamMode = false;
  /** A segment transmitted this many times sets state to "dead" (ikcp's dead_link). */
  deadLink = KCP_DEAD_LINK_TRANSMISSIONS;

  private readonly output: (segmentBatch: Uint8Array) => void;
  private mtuBytes = KCP_DEFAULT_MTU_BYTES;
  private controlMtuBytes = KCP_DEFAULT_MTU_BYTES;
  private mssBytes = KCP_DEFAULT_MTU_BYTES - KCP_OVERHEAD_BYTES;
  private buffer = new Uint8Array(KCP_DEFAULT_MTU_BYTES);
  private view = new DataView(this.buffer.buffer);

  private sndUna = 0;
  private sndNxt = 0;
  private rcvNxt = 0;
  private ssthresh = KCP_SSTHRESH_INIT_SEGMENTS;
  private rxRttVal = 0;
  private rxSrtt = 0;
  private rxRto = KCP_RTO_DEFAULT_MS;
  private rxMinRto = KCP_RTO_MIN_MS;
  private sndWnd = KCP_DEFAULT_SEND_WINDOW_SEGMENTS;
  private rcvWnd = KCP_DEFAULT_RECEIVE_WINDOW_SEGMENTS;
  private rmtWnd = KCP_DEFAULT_RECEIVE_WINDOW_SEGMENTS;
  private cwnd = 0;
  private incr = 0;
  private probe = 0;
  private current = 0;
  private intervalMs = KCP_DEFAULT_INTERVAL_MS;
  private tsFlush = KCP_DEFAULT_INTERVAL_MS;
  private nodelay = false;
  private updated = false;
  private tsProbe = 0;
  private probeWait = 0;
  private fastResend = 0;
  private noCwnd = false;
  private dead = false;
  /**
   * When the peer last acknowledged new data, or data went out with nothing outstanding (KCP's clock).
   * The RTO of a segment past everything acknowledged does not expire within rxRto of it, as TCP
   * restarts its timer on each ACK of new data (RFC 6298 5.3): a window sent in one flush waits in the
   * receiver's queue, acknowledged bit by bit, without being resent. A hole (a later segment was
   * acknowledged) keeps its own RTO: it is likely lost.
   */
  private progressTs = 0;
  /** One past the highest sn acknowledged, by ACK or una: segments from here on are past everything acknowledged. */
  private ackFront = 0;

  private readonly sndQueue = new Fifo<SendSegment>();
  private readonly rcvQueue = new Fifo<ReceiveSegment>();
  /** Unacknowledged segments by sn; Map keeps insertion order, which is sn order here. */
  private readonly sndBuf = new Map<number, SendSegment>();
  /** Out-of-order segments by sn, waiting for the gap before them to fill. */
  private readonly rcvBuf = new Map<number, ReceiveSegment>();
  /** Pending ACKs as flat (sn, ts) pairs. */
  private ackList: number[] = [];

  private readonly counters: KcpStats = {
    segmentsSent: 0,
    retransmits: 0,
    fastRetransmits: 0,
    packetsSent: 0,
    packetsReceived: 0,
    malformedPackets: 0,
  };

  /**
   * output receives a packet of one or more segments, at most mtu bytes, in KCP's own buffer: valid
   * during the call only (copy it to keep it). The link seals it at once, so no packet costs a copy.
   */
  constructor(conv: number, output: (segmentBatch: Uint8Array) => void) {
    this.conv = conv >>> 0;
    this.output = output;
  }

  get state(): "ok" | "dead" {
    return this.dead ? "dead" : "ok";
  }

  get stats(): Readonly<KcpStats> {
    return this.counters;
  }

  get mtu(): number {
    return this.mtuBytes;
  }

  /** Largest payload of one segment. */
  get mss(): number {
    return this.mssBytes;
  }

  /** Current retransmission timeout estimate. */
  get rtoMs(): number {
    return this.rxRto;
  }

  /** Smoothed RTT, 0 before the first measurement. */
  get srttMs(): number {
    return this.rxSrtt;
  }

  setNoDelay(nodelay: boolean, intervalMs: number, fastResend: number, noCongestionControl: boolean): void {
    this.nodelay = nodelay;
    this.rxMinRto = nodelay ? KCP_RTO_NODELAY_MIN_MS : KCP_RTO_MIN_MS;
    this.intervalMs = Math.min(Math.max(Math.trunc(intervalMs), KCP_MIN_INTERVAL_MS), KCP_MAX_INTERVAL_MS);
    this.fastResend = Math.max(0, Math.trunc(fastResend));
    this.noCwnd = noCongestionControl;
  }

  setWindowSize(sendSegments: number, receiveSegments: number): void {
    if (sendSegments > 0) this.sndWnd = Math.trunc(sendSegments);
    if (receiveSegments > 0) this.rcvWnd = Math.max(Math.trunc(receiveSegments), KCP_MIN_RECEIVE_WINDOW_SEGMENTS);
  }

  /**
   * Packets of at most `bytes`. Packets of ACKs and probes alone are cut at `controlBytes` (not past
   * `bytes`): a peer that only receives then sends small packets even when its data ones are large.
   */
  setMtu(bytes: number, controlBytes = bytes): void {
    if (!Number.isInteger(bytes) || bytes < KCP_MIN_MTU_BYTES) {
      throw new KcpError("KCP_BAD_MTU", `KCP mtu must be an integer >= ${KCP_MIN_MTU_BYTES}, got ${bytes}`);
    }
    if (!Number.isInteger(controlBytes) || controlBytes < KCP_MIN_MTU_BYTES) {
      throw new KcpError("KCP_BAD_MTU", `KCP control packet size must be an integer >= ${KCP_MIN_MTU_BYTES}, got ${controlBytes}`);
    }
    this.mtuBytes = bytes;
    this.controlMtuBytes = Math.min(controlBytes, bytes);
    this.mssBytes = bytes - KCP_OVERHEAD_BYTES;
    this.buffer = new Uint8Array(bytes);
    this.view = new DataView(this.buffer.buffer);
  }

  /** Segments queued or in flight and not yet acknowledged: use it for backpressure. */
  waitSnd(): number {
    return this.sndBuf.size + this.sndQueue.length;
  }

  /**
   * Queues data. Message mode keeps it one message (up to mss * 255 bytes); stream mode may merge and
   * split it. Its segments are views into `data` until acknowledged: `data` must not change afterwards
   * (the link hands over each mux frame, encoded anew, so nothing is copied).
   */
  send(data: Uint8Array): void {
    let offset = 0;
    if (this.streamMode) {
      const last = this.sndQueue.last();
      if (last !== undefined && last.data.length < this.mssBytes) {
        const extend = Math.min(this.mssBytes - last.data.length, data.length);
        const merged = new Uint8Array(last.data.length + extend);
        merged.set(last.data);
        merged.set(data.subarray(0, extend), last.data.length);
        last.data = merged;
        offset = extend;
      }
      if (offset >= data.length) return; // ikcp sends nothing for an empty write in stream mode
    }

    const remaining = data.length - offset;
    const count = remaining <= this.mssBytes ? 1 : Math.ceil(remaining / this.mssBytes);
    if (!this.streamMode && count > KCP_MAX_FRAGMENTS) {
      throw new KcpError(
        "KCP_TOO_LARGE",
        `KCP message of ${data.length} bytes needs ${count} fragments of ${this.mssBytes} bytes, ` +
          `more than ${KCP_MAX_FRAGMENTS}`,
      );
    }
    const rest = data.subarray(offset);
    for (let i = 0; i < count; i++) {
      const start = i * this.mssBytes;
      const chunk = rest.subarray(start, Math.min(start + this.mssBytes, rest.length));
      this.sndQueue.push(new SendSegment(chunk, this.streamMode ? 0 : count - i - 1));
    }
  }

  /** Size of the next whole message, or -1 when none is complete yet (as ikcp_peeksize). */
  peekSize(): number {
    const count = this.nextMessageSegments();
    if (count === 0) return -1;
    let size = 0;
    for (let i = 0; i < count; i++) size += this.rcvQueue.at(i).data.length;
    return size;
  }

  /** The next whole message (stream mode: the next segment's bytes), or undefined. */
  recv(): Uint8Array | undefined {
    const count = this.nextMessageSegments();
    if (count === 0) return undefined;
    const size = this.peekSize();
    const wasFull = this.rcvQueue.length >= this.rcvWnd;

    let message: Uint8Array;
    if (count === 1) {
      message = this.rcvQueue.shift()!.data;
    } else {
      message = new Uint8Array(size);
      for (let i = 0, offset = 0; i < count; i++) {
        const seg = this.rcvQueue.shift()!;
        message.set(seg.data, offset);
        offset += seg.data.length;
      }
    }

    this.moveReceivedToQueue();
    // The sender may be stalled on our zero window: tell it at once instead of waiting for its probe.
    if (wasFull && this.rcvQueue.length < this.rcvWnd) this.probe |= ASK_TELL;
    return message;
  }

  /**
   * Feeds one received packet. Returns false and counts it in stats.malformedPackets when it is not a
   * well-formed packet of this conversation; nothing of such a packet is applied. The data of its
   * segments stays a view into `packet` until it is received: `packet` must not change afterwards.
   */
  input(packet: Uint8Array): boolean {
    if (!this.isWellFormed(packet)) {
      this.counters.malformedPackets++;
      return false;
    }
    this.counters.packetsReceived++;
    const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
    const prevUna = this.sndUna;
    const unackedBefore = this.sndBuf.size;
    let sawAck = false;
    let maxAck = 0;
    let latestTs = 0;

    for (let offset = 0; offset < packet.length; ) {
      const cmd = view.getUint8(offset + 4);
      const frg = view.getUint8(offset + 5);
      const wnd = view.getUint16(offset + 6, true);
      const ts = view.getUint32(offset + 8, true);
      const sn = view.getUint32(offset + 12, true);
      const una = view.getUint32(offset + 16, true);
      const len = view.getUint32(offset + 20, true);
      const dataStart = offset + KCP_OVERHEAD_BYTES;
      offset = dataStart + len;

      this.rmtWnd = wnd;
      this.parseUna(una);
      if (diff32(una, this.ackFront) > 0) this.ackFront = una;
      this.shrinkBuf();

      if (cmd === KCP_CMD_ACK) {
        const rtt = diff32(this.current, ts);
        if (rtt >= 0) this.updateAck(rtt);
        this.parseAck(sn);
        this.shrinkBuf();
        if (diff32(sn, this.sndNxt) < 0 && diff32(sn, this.ackFront) >= 0) this.ackFront = (sn + 1) >>> 0;
        if (!sawAck) {
          sawAck = true;
          maxAck = sn;
          latestTs = ts;
        } else if (diff32(sn, maxAck) > 0 && diff32(ts, latestTs) > 0) {
          // ikcp's IKCP_FASTACK_CONSERVE: only an ACK for a later send counts towards fast resend.
          maxAck = sn;
          latestTs = ts;
        }
      } else if (cmd === KCP_CMD_PUSH) {
        if (diff32(sn, (this.rcvNxt + this.rcvWnd) >>> 0) < 0) {
          this.ackList.push(sn, ts);
          if (diff32(sn, this.rcvNxt) >= 0) {
            this.parseData({ sn, frg, data: packet.subarray(dataStart, dataStart + len) });
          }
        }
      } else if (cmd === KCP_CMD_WASK) {
        this.probe |= ASK_TELL;
      }
      // KCP_CMD_WINS carries nothing beyond wnd, already taken.
    }

    if (sawAck) this.parseFastAck(maxAck, latestTs);
    if (this.sndBuf.size < unackedBefore) this.progressTs = this.current;

    if (diff32(this.sndUna, prevUna) > 0 && this.cwnd < this.rmtWnd) {
      const mss = this.mssBytes;
      if (this.cwnd < this.ssthresh) {
        this.cwnd++;
        this.incr += mss;
      } else {
        if (this.incr < mss) this.incr = mss;
        this.incr += Math.floor((mss * mss) / this.incr) + Math.floor(mss / 16);
        if ((this.cwnd + 1) * mss <= this.incr) this.cwnd = Math.floor((this.incr + mss - 1) / mss);
      }
      if (this.cwnd > this.rmtWnd) {
        this.cwnd = this.rmtWnd;
        this.incr = this.rmtWnd * mss;
      }
    }
    return true;
  }

  /** Advances the clock and flushes when the interval is due. Call it at the time check() returns. */
  update(nowMs: number): void {
    this.current = nowMs >>> 0;
    if (!this.updated) {
      this.updated = true;
      this.tsFlush = this.current;
    }
    let slap = diff32(this.current, this.tsFlush);
    if (slap >= KCP_CLOCK_JUMP_LIMIT_MS || slap < -KCP_CLOCK_JUMP_LIMIT_MS) {
      this.tsFlush = this.current;
      slap = 0;
    }
    if (slap >= 0) {
      this.tsFlush = (this.tsFlush + this.intervalMs) >>> 0;
      if (diff32(this.current, this.tsFlush) >= 0) this.tsFlush = (this.current + this.intervalMs) >>> 0;
      this.flush();
    }
  }

  /** When update() is next needed (ms, same clock as update), assuming no input() or send() before then. */
  check(nowMs: number): number {
    const current = nowMs >>> 0;
    if (!this.updated) return current;
    let tsFlush = this.tsFlush;
    const sinceFlush = diff32(current, tsFlush);
    if (sinceFlush >= KCP_CLOCK_JUMP_LIMIT_MS || sinceFlush < -KCP_CLOCK_JUMP_LIMIT_MS) tsFlush = current;
    if (diff32(current, tsFlush) >= 0) return current;

    const untilFlush = diff32(tsFlush, current);
    const rtoHeldFor = diff32((this.progressTs + this.rxRto) >>> 0, current);
    let untilPacket = 0x7fffffff;
    for (const seg of this.sndBuf.values()) {
      const untilResend = diff32(seg.sn, this.ackFront) >= 0 ? Math.max(diff32(seg.resendTs, current), rtoHeldFor) : diff32(seg.resendTs, current);
      if (untilResend <= 0) return current;
      if (untilResend < untilPacket) untilPacket = untilResend;
    }
    const wait = Math.min(untilPacket, untilFlush, this.intervalMs);
    return (current + wait) >>> 0;
  }

  /**
   * Milliseconds until update() is next needed, assuming no input() or send() before then; Infinity
   * when idle (nothing to send, resend, acknowledge or probe): then only input() or send() brings work.
   * check() answers on KCP's u32 clock, which Date.now() left behind long ago: compared on that clock.
   */
  msUntilUpdate(nowMs: number): number {
    if (this.idle()) return Infinity;
    return Math.max(0, diff32(this.check(nowMs), nowMs >>> 0));
  }

  /**
   * Sets KCP's clock, by which input() measures round trips and flush() stamps segments and their
   * resend times: call it before either when update() may not have run for a while.
   */
  setClock(nowMs: number): void {
    this.current = nowMs >>> 0;
  }

  private idle(): boolean {
    return this.updated && this.sndQueue.length === 0 && this.sndBuf.size === 0 && this.ackList.length === 0 && this.probe === 0 && this.rmtWnd !== 0;
  }

  /** Sends pending ACKs, probes and data now. Does nothing before the first update(). */
  flush(): void {
    if (!this.updated) return;
    const current = this.current;
    const wnd = this.unusedWindow();
    let size = 0;

    for (let i = 0; i < this.ackList.length; i += 2) {
      size = this.makeRoom(size, KCP_OVERHEAD_BYTES, this.controlMtuBytes);
      this.writeHeader(size, KCP_CMD_ACK, 0, wnd, this.ackList[i + 1]!, this.ackList[i]!, 0);
      size += KCP_OVERHEAD_BYTES;
    }
    this.ackList.length = 0;

    if (this.rmtWnd === 0) {
      if (this.probeWait === 0) {
        this.probeWait = KCP_PROBE_INITIAL_WAIT_MS;
        this.tsProbe = (current + this.probeWait) >>> 0;
      } else if (diff32(current, this.tsProbe) >= 0) {
        if (this.probeWait < KCP_PROBE_INITIAL_WAIT_MS) this.probeWait = KCP_PROBE_INITIAL_WAIT_MS;
        this.probeWait = Math.min(this.probeWait + Math.floor(this.probeWait / 2), KCP_PROBE_MAX_WAIT_MS);
        this.tsProbe = (current + this.probeWait) >>> 0;
        this.probe |= ASK_SEND;
      }
    } else {
      this.tsProbe = 0;
      this.probeWait = 0;
    }
    if (this.probe & ASK_SEND) {
      size = this.makeRoom(size, KCP_OVERHEAD_BYTES, this.controlMtuBytes);
      this.writeHeader(size, KCP_CMD_WASK, 0, wnd, 0, 0, 0);
      size += KCP_OVERHEAD_BYTES;
    }
    if (this.probe & ASK_TELL) {
      size = this.makeRoom(size, KCP_OVERHEAD_BYTES, this.controlMtuBytes);
      this.writeHeader(size, KCP_CMD_WINS, 0, wnd, 0, 0, 0);
      size += KCP_OVERHEAD_BYTES;
    }
    this.probe = 0;

    let window = Math.min(this.sndWnd, this.rmtWnd);
    if (!this.noCwnd) window = Math.min(this.cwnd, window);

    while (diff32(this.sndNxt, (this.sndUna + window) >>> 0) < 0) {
      const seg = this.sndQueue.shift();
      if (seg === undefined) break;
      if (this.sndBuf.size === 0) this.progressTs = current;
      seg.sn = this.sndNxt;
      this.sndNxt = (this.sndNxt + 1) >>> 0;
      seg.ts = current;
      seg.resendTs = current;
      seg.rto = this.rxRto;
      this.sndBuf.set(seg.sn, seg);
    }

    const resent = this.fastResend > 0 ? this.fastResend : Infinity;
    const rtoMin = this.nodelay ? 0 : this.rxRto >> 3;
    const rtoHeld = diff32(current, (this.progressTs + this.rxRto) >>> 0) < 0;
    let fastResent = false;
    let lost = false;

    for (const seg of this.sndBuf.values()) {
      let needSend = false;
      if (seg.xmit === 0) {
        needSend = true;
        seg.xmit = 1;
        seg.rto = this.rxRto;
        seg.resendTs = (current + seg.rto + rtoMin) >>> 0;
        this.counters.segmentsSent++;
      } else if (diff32(current, seg.resendTs) >= 0 && !(rtoHeld && diff32(seg.sn, this.ackFront) >= 0)) {
        needSend = true;
        seg.xmit++;
        this.counters.retransmits++;
        seg.rto += this.nodelay ? Math.floor(seg.rto / 2) : Math.max(seg.rto, this.rxRto);
        // ikcp lets this back-off grow without bound (hours after 20 tries); the cap changes nothing on the wire.
        seg.rto = Math.min(seg.rto, KCP_RTO_MAX_MS);
        seg.resendTs = (current + seg.rto) >>> 0;
        lost = true;
      } else if (seg.fastAck >= resent && seg.xmit <= KCP_FAST_RESEND_MAX_TRANSMISSIONS) {
        needSend = true;
        seg.xmit++;
        seg.fastAck = 0;
        seg.resendTs = (current + seg.rto) >>> 0;
        this.counters.fastRetransmits++;
        fastResent = true;
      }

      if (needSend) {
        seg.ts = current;
        const need = KCP_OVERHEAD_BYTES + seg.data.length;
        size = this.makeRoom(size, need);
        this.writeHeader(size, KCP_CMD_PUSH, seg.frg, wnd, current, seg.sn, seg.data.length);
        this.buffer.set(seg.data, size + KCP_OVERHEAD_BYTES);
        size += need;
        if (seg.xmit >= this.deadLink) this.dead = true;
      }
    }
    if (size > 0) this.emit(size);

    if (fastResent) {
      const inflight = (this.sndNxt - this.sndUna) >>> 0;
      this.ssthresh = Math.max(Math.floor(inflight / 2), KCP_SSTHRESH_MIN_SEGMENTS);
      this.cwnd = this.ssthresh + (resent as number);
      this.incr = this.cwnd * this.mssBytes;
    }
    if (lost) {
      this.ssthresh = Math.max(Math.floor(window / 2), KCP_SSTHRESH_MIN_SEGMENTS);
      this.cwnd = 1;
      this.incr = this.mssBytes;
    }
    if (this.cwnd < 1) {
      this.cwnd = 1;
      this.incr = this.mssBytes;
    }
  }

  // ---------- internals ----------

  /**
   * Segments of the next whole message at the head of the receive queue, or 0 while it is incomplete.
   * A message ends at frg 0; a peer whose frg values do not count down gets at most first.frg + 1
   * segments per message (ikcp walks to the end of its list; we must not read past the queue).
   */
  private nextMessageSegments(): number {
    if (this.rcvQueue.length === 0) return 0;
    const first = this.rcvQueue.at(0);
    if (this.rcvQueue.length < first.frg + 1) return 0;
    for (let i = 0; i < first.frg; i++) if (this.rcvQueue.at(i).frg === 0) return i + 1;
    return first.frg + 1;
  }

  private isWellFormed(packet: Uint8Array): boolean {
    if (packet.length < KCP_OVERHEAD_BYTES) return false;
    const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
    let offset = 0;
    while (offset < packet.length) {
      if (packet.length - offset < KCP_OVERHEAD_BYTES) return false;
      if (view.getUint32(offset, true) !== this.conv) return false;
      const cmd = view.getUint8(offset + 4);
      if (cmd < KCP_CMD_PUSH || cmd > KCP_CMD_WINS) return false;
      // The peer cannot have received what we never sent; a una past sndNxt would drop our whole send buffer.
      if (diff32(view.getUint32(offset + 16, true), this.sndNxt) > 0) return false;
      const len = view.getUint32(offset + 20, true);
      if (len > packet.length - offset - KCP_OVERHEAD_BYTES) return false;
      offset += KCP_OVERHEAD_BYTES + len;
    }
    return true;
  }

  private unusedWindow(): number {
    const unused = this.rcvQueue.length < this.rcvWnd ? this.rcvWnd - this.rcvQueue.length : 0;
    return Math.min(unused, KCP_MAX_ADVERTISED_WINDOW_SEGMENTS);
  }

  /** Emits the packet being built when `need` more bytes would not fit in `limit`; returns the new fill. */
  private makeRoom(size: number, need: number, limit = this.mtuBytes): number {
    if (size + need > limit) {
      if (size > 0) this.emit(size);
      // Only a segment queued under a larger mtu can exceed the buffer on its own.
      if (need > this.buffer.length) {
        this.buffer = new Uint8Array(need);
        this.view = new DataView(this.buffer.buffer);
      }
      return 0;
    }
    return size;
  }

  private emit(size: number): void {
    this.counters.packetsSent++;
    this.output(this.buffer.subarray(0, size));
    if (this.buffer.length > this.mtuBytes) {
      this.buffer = new Uint8Array(this.mtuBytes);
      this.view = new DataView(this.buffer.buffer);
    }
  }

  private writeHeader(at: number, cmd: number, frg: number, wnd: number, ts: number, sn: number, len: number): void {
    const v = this.view;
    v.setUint32(at, this.conv, true);
    v.setUint8(at + 4, cmd);
    v.setUint8(at + 5, frg);
    v.setUint16(at + 6, wnd, true);
    v.setUint32(at + 8, ts, true);
    v.setUint32(at + 12, sn, true);
    v.setUint32(at + 16, this.rcvNxt, true);
    v.setUint32(at + 20, len, true);
  }

  /** RFC 6298 smoothing as ikcp does it, in integer milliseconds. */
  private updateAck(rtt: number): void {
    if (this.rxSrtt === 0) {
      this.rxSrtt = rtt;
      this.rxRttVal = Math.floor(rtt / 2);
    } else {
      const delta = Math.abs(rtt - this.rxSrtt);
      this.rxRttVal = Math.floor((3 * this.rxRttVal + delta) / 4);
      this.rxSrtt = Math.max(1, Math.floor((7 * this.rxSrtt + rtt) / 8));
    }
    const rto = this.rxSrtt + Math.max(this.intervalMs, 4 * this.rxRttVal);
    this.rxRto = Math.min(Math.max(this.rxMinRto, rto), KCP_RTO_MAX_MS);
  }

  private shrinkBuf(): void {
    const first = this.sndBuf.keys().next();
    this.sndUna = first.done ? this.sndNxt : first.value;
  }

  private parseAck(sn: number): void {
    if (diff32(sn, this.sndUna) < 0 || diff32(sn, this.sndNxt) >= 0) return;
    this.sndBuf.delete(sn);
  }

  private parseUna(una: number): void {
    for (const sn of this.sndBuf.keys()) {
      if (diff32(una, sn) <= 0) break;
      this.sndBuf.delete(sn);
    }
  }

  private parseFastAck(sn: number, ts: number): void {
    if (diff32(sn, this.sndUna) < 0 || diff32(sn, this.sndNxt) >= 0) return;
    for (const seg of this.sndBuf.values()) {
      if (diff32(sn, seg.sn) <= 0) break;
      if (diff32(ts, seg.ts) >= 0) seg.fastAck++;
    }
  }

  private parseData(seg: ReceiveSegment): void {
    if (diff32(seg.sn, (this.rcvNxt + this.rcvWnd) >>> 0) >= 0 || diff32(seg.sn, this.rcvNxt) < 0) return;
    if (!this.rcvBuf.has(seg.sn)) this.rcvBuf.set(seg.sn, seg);
    this.moveReceivedToQueue();
  }

  private moveReceivedToQueue(): void {
    while (this.rcvQueue.length < this.rcvWnd) {
      const seg = this.rcvBuf.get(this.rcvNxt);
      if (seg === undefined) break;
      this.rcvBuf.delete(this.rcvNxt);
      this.rcvQueue.push(seg);
      this.rcvNxt = (this.rcvNxt + 1) >>> 0;
    }
  }
}
