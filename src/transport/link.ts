import { RECORD_OVERHEAD_BYTES, type SecureSession } from "../crypto/index.ts";
import type { Logger } from "../log/index.ts";
import { decodePingBody, encodePingBody, PIECE_MAX_BYTES, PIECES_PACKET_MAX_BYTES } from "../protocol/pieces.ts";
import { CHANNEL_HIGH_WATER_BYTES, DEFAULT_MAX_FRAME_PAYLOAD_BYTES, FRAME_HEADER_BYTES, Mux, type MuxChannel } from "../mux/index.ts";
import { DEAD_AFTER_MS, Envelope, KEEPALIVE_MAX_MS, KEEPALIVE_MIN_MS, PROBE_INTERVAL_MS, RecordKind } from "./constants.ts";
import { Kcp, KCP_FAST, KCP_OVERHEAD_BYTES } from "./kcp.ts";
import { LAN_KCP_MTU_BYTES, LanPacketSizes, type LanPacketSize } from "./lan-packets.ts";
import type { Path, PathKind } from "./path.ts";

/**
 * Mux frames on a lan link sending large packets fill one KCP packet (the default 16 KiB would take two
 * frames a packet, and KCP's queue, counted at a whole packet a segment, would look twice as full as it is).
 */
const lanFramePayloadBytes = (size: LanPacketSize) =>
  size === "small" ? DEFAULT_MAX_FRAME_PAYLOAD_BYTES : LAN_KCP_MTU_BYTES[size] - KCP_OVERHEAD_BYTES - FRAME_HEADER_BYTES;
const KCP_LOW_WATER_SEGMENTS = KCP_FAST.sendWindow / 2;
/**
 * Over KCP a stream's window grows up to what the mux lets KCP hold (its high-water mark), no further:
 * beyond it the window only fills the mux's own queue. KCP_FAST has no congestion control, so more in
 * flight only builds a queue at the receiver, and KCP then resends segments whose ACKs are merely late.
 */
const KCP_MAX_STREAM_WINDOW_BYTES = CHANNEL_HIGH_WATER_BYTES;
/** The largest datagram that goes as pieces: what they carry, less the envelope byte and the record's overhead. */
export const SUPER_DATAGRAM_MAX_BYTES = PIECES_PACKET_MAX_BYTES - 1 - RECORD_OVERHEAD_BYTES;
/** Pings remembered while waiting for their pongs (keepalives, probes and measured pings together). */
const MAX_PINGS_OUT = 64;
/** A datagram's type is its first byte. */
const DATAGRAM_TYPES = 256;
/** rttMs keeps this many steps per millisecond (0.01 ms). */
const RTT_PRECISION = 100;

export interface LinkInit {
  peer: string;
  path: Path;
  session: SecureSession;
  role: "initiator" | "responder";
  sessionId: Buffer;
  logger: Logger;
  /** On a reliable path, the counter of the first record this link will see (an earlier one may have chosen the path). */
  firstCounter?: number;
  /** The server's start time in the plan that made this link: the same number on both sides (a relayed link has none). */
  plannedAt?: number;
}

export interface LinkStats {
  kind: PathKind;
  remote: string;
  /** The relay's name, on a relayed path. */
  via: string | null;
  since: number;
  bytesIn: number;
  bytesOut: number;
  rttMs: number | null;
  /** Packets that failed authentication (forged or corrupted), replays, and malformed ones. */
  rejectedAuth: number;
  rejectedReplay: number;
  rejectedMalformed: number;
  rekeys: number;
}

/**
 * An authenticated, encrypted link to one peer over one path: a stream multiplexer (over KCP on UDP
 * paths, directly on TCP paths), datagrams beside it, keepalives, and dead-path detection.
 */
export class Link {
  readonly mux: Mux;
  readonly since = Date.now();
  rttMs: number | null = null;
  bytesIn = 0;
  bytesOut = 0;
  closed = false;
  private lastSentAt = Date.now();
  /** When the oldest send still without any answer went out; undefined when everything was answered. */
  private awaitingSince: number | undefined;
  private keepaliveAfterMs = jitteredKeepalive();
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly kcp?: Kcp;
  private kcpTimer?: ReturnType<typeof setTimeout>;
  private kcpFlushQueued = false;
  /** The peer's pings said it takes SDWAN super-packets (see takesSuperPackets). */
  private peerTakesSuperPackets = false;
  /** On a lan link: how large its KCP packets are, and whether they go as pieces. */
  private readonly lan?: LanPacketSizes;
  /**
   * Whether records larger than a datagram go as pieces (lan.size "pieces"), as a plain boolean: every
   * record sent reads it, and the start-up warm-up's links are not lan links (see tun.ts's tapOpen).
   */
  private piecesOut = false;
  private deliverToMux: (message: Uint8Array) => void = () => {};
  private drainMux: () => void = () => {};
  private closeMux: (reason: string) => void = () => {};
  /**
   * Who takes each datagram type (a datagram's first byte): one handler a type, so that a datagram costs
   * one call, to its own handler. (All handlers in turn, as before, called the UDP apps' on every SDWAN
   * packet, and the start-up warm-up, which has no apps, left that call to deoptimise each idle packet.)
   */
  private readonly datagramHandlers = new Array<((data: Buffer) => void) | undefined>(DATAGRAM_TYPES).fill(undefined);
  private closeHandlers: ((reason: string) => void)[] = [];
  /** Pings without a pong yet: when each went out (performance.now), and who waits for its pong. */
  private readonly pingsOut = new Map<number, { sentAt: number; answered?: (rttMs: number | null) => void; padded?: boolean }>();
  private expected: { phase: number; counter: number };
  /** The newest record received so far; only a newer one may move a UDP path (a delayed one must not). */
  private readonly newest = { phase: 0, counter: -1 };
  private receivedCount = 0;
  private nextPing = 1;

  /**
   * The path and session, as fields of the link's own: every record sent or received reads them, and a
   * LinkInit's shape depends on where it was made (the warm-up's have fewer fields than a planned link's),
   * so reading them through `init` met, on a node's real links, shapes the warm-up's optimised code never saw.
   */
  private readonly path: Path;
  private readonly session: SecureSession;

  constructor(readonly init: LinkInit) {
    const { path } = init;
    this.path = path;
    this.session = init.session;
    this.expected = { phase: 0, counter: init.firstCounter ?? 0 };
    path.onPacket((packet, from) => this.receive(packet, from));
    path.onClose((reason) => this.close(`path closed: ${reason}`));
    let channel: MuxChannel;
    if (path.reliable) {
      path.onDrain(() => this.drainMux());
      channel = this.channel((message) => this.sendRecord(RecordKind.mux, message), () => path.bufferedBytes());
    } else {
      const kcp = new Kcp(init.sessionId.readUInt32BE(0), (segments) => this.sendRecord(RecordKind.kcp, segments));
      kcp.setNoDelay(KCP_FAST.nodelay, KCP_FAST.intervalMs, KCP_FAST.fastResend, KCP_FAST.noCongestionControl);
      kcp.setWindowSize(KCP_FAST.sendWindow, KCP_FAST.receiveWindow);
      kcp.setMtu(KCP_FAST.mtu);
      if (path.kind === "lan") this.lan = new LanPacketSizes(() => ({ sent: kcp.stats.segmentsSent, resent: kcp.stats.retransmits + kcp.stats.fastRetransmits }));
      this.kcp = kcp;
      channel = this.channel(
        (message) => {
          kcp.send(message);
          this.flushKcpSoon();
        },
        // KCP's send queue counts as the channel's buffered bytes at a whole packet a segment.
        () => kcp.waitSnd() * kcp.mtu,
      );
      this.scheduleKcp(0);
    }
    const overKcp = path.reliable ? {} : { maxStreamWindowBytes: KCP_MAX_STREAM_WINDOW_BYTES };
    this.mux = new Mux(channel, { side: init.role, pathRttMs: () => this.rttMs, ...overKcp });
    this.timer = setInterval(() => this.tick(), PROBE_INTERVAL_MS);
  }

  get kind(): PathKind {
    return this.path.kind;
  }

  /**
   * Whether an SDWAN TCP super-packet may go in one datagram (of up to SUPER_DATAGRAM_MAX_BYTES): on a
   * lan link whose pieces got through, to a peer that said it takes them.
   */
  get takesSuperPackets(): boolean {
    return this.peerTakesSuperPackets && this.piecesOut;
  }

  /** The relay's name, on a relayed path. */
  get via(): string | null {
    return this.path.via ?? null;
  }

  get plannedAt(): number | undefined {
    return this.init.plannedAt;
  }

  get sessionKey(): string {
    return this.init.sessionId.toString("base64url");
  }

  stats(): LinkStats {
    const { rejectedAuth, rejectedReplay, rejectedMalformed, rekeys } = this.session.stats;
    return {
      kind: this.kind,
      remote: this.path.remote,
      via: this.via,
      since: this.since,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      rttMs: this.rttMs,
      rejectedAuth,
      rejectedReplay,
      rejectedMalformed,
      rekeys,
    };
  }

  sendDatagram(data: Uint8Array): void {
    this.sendRecord(RecordKind.datagram, data);
  }

  /** `handler` takes the datagrams whose first byte is one of `types`; a type has one handler at most. */
  onDatagram(types: readonly number[], handler: (data: Buffer) => void): void {
    for (const type of types) {
      if (!Number.isInteger(type) || type < 0 || type >= DATAGRAM_TYPES) throw new RangeError(`datagram type ${type} is not a byte`);
      if (this.datagramHandlers[type]) throw new Error(`datagram type ${type} already has a handler on this link`);
      this.datagramHandlers[type] = handler;
    }
  }

  onClose(handler: (reason: string) => void): void {
    if (this.closed) handler("already closed");
    else this.closeHandlers.push(handler);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.kcpTimer);
    for (const ping of this.pingsOut.values()) ping.answered?.(null);
    this.pingsOut.clear();
    this.closeMux(reason);
    this.mux.close(reason);
    this.path.close(reason);
    this.init.logger.info("peer link closed", { peer: this.init.peer, path: this.kind, reason });
    // One failing handler must neither skip the others nor throw out of the timer or event that closed us.
    for (const handler of this.closeHandlers) {
      try {
        handler(reason);
      } catch (err) {
        this.init.logger.error("a handler of a closing peer link failed", { peer: this.init.peer, error: (err as Error).message });
      }
    }
  }

  private channel(send: (message: Uint8Array) => void, buffered: () => number): MuxChannel {
    return {
      send,
      bufferedBytes: buffered,
      onMessage: (handler) => (this.deliverToMux = handler),
      onDrain: (handler) => (this.drainMux = handler),
      onClose: (handler) => (this.closeMux = handler),
      close: (reason) => this.close(reason),
    };
  }

  /** `asPieces`: sent as pieces to the peer's pieces port when larger than one datagram. */
  private sendRecord(kind: number, plaintext: Uint8Array, asPieces = this.piecesOut): void {
    if (this.closed) return;
    const { path, session } = this;
    // One byte of headroom for the envelope; sealed into the path's send memory where it has some.
    const packet = session.seal(plaintext, kind, 1, path.sendBuffer?.(1 + RECORD_OVERHEAD_BYTES + plaintext.length));
    packet[0] = Envelope.sealed;
    // The size first: a record that fits a datagram (every one the warm-up sends) takes the same branch on any link.
    if (!(packet.length > PIECE_MAX_BYTES && asPieces && path.sendPieces!(packet, this.lan!.piecesPort!))) path.send(packet);
    this.bytesOut += plaintext.length;
    this.lastSentAt = Date.now();
    this.awaitingSince ??= this.lastSentAt;
  }

  /** The pieces port to offer the peer: on a lan link, when this node has one. */
  private get piecesOffer(): number | undefined {
    return this.lan ? this.path.piecesPort : undefined;
  }

  private peerOffersPieces(port: number | undefined, takesSuperPackets: boolean): void {
    if (port === undefined || !this.lan || !this.path.sendPieces) return;
    if (takesSuperPackets) this.peerTakesSuperPackets = true;
    this.useLanPackets(this.lan.offered(port));
    this.probeLan();
  }

  /** Pings of the larger packet sizes not yet shown to work (see LanPacketSizes). */
  private probeLan(): void {
    this.lan?.probe(performance.now(), (size) => this.ping(undefined, size));
  }

  private useLanPackets(size: LanPacketSize): void {
    const lan = this.lan!;
    if (size === lan.size) return;
    lan.size = size;
    this.piecesOut = size === "pieces";
    // ACKs go in small packets: a lan link that loses large ones must still hear its peer.
    this.kcp!.setMtu(LAN_KCP_MTU_BYTES[size], KCP_FAST.mtu);
    this.mux.setMaxFramePayloadBytes(lanFramePayloadBytes(size));
    this.init.logger.debug("lan link packets", { peer: this.init.peer, size, bytes: LAN_KCP_MTU_BYTES[size] });
  }

  /** Whether `packet` was a fresh authentic record; `from`: it came from another address (a roaming trial). */
  private receive(packet: Buffer, from?: string): boolean {
    if (this.closed || packet[0] !== Envelope.sealed) return false; // late handshake copies and the like
    const opened = this.session.open(packet, from !== undefined, 1);
    if (this.path.reliable) {
      // TCP never loses or reorders: a refused record or a gap means someone tampered with the
      // stream, and the data it carried would otherwise go missing without a trace.
      const inTurn =
        opened &&
        ((opened.phase === this.expected.phase && opened.counter === this.expected.counter) ||
          (opened.phase === this.expected.phase + 1 && opened.counter === 0));
      if (!inTurn) {
        this.close(opened ? "a record is missing from the TCP path" : "a record on the TCP path failed authentication");
        return false;
      }
      this.expected = { phase: opened.phase, counter: opened.counter + 1 };
    }
    if (!opened) return false; // forged, corrupted or replayed on a datagram path: counted by the session, resent by KCP
    const newest = opened.phase > this.newest.phase || (opened.phase === this.newest.phase && opened.counter > this.newest.counter);
    if (newest) {
      this.newest.phase = opened.phase;
      this.newest.counter = opened.counter;
    }
    // Authentic, fresh and the newest yet, from a new port of the peer's IP: its NAT rebound. Follow
    // it before answering, so the answer goes there too.
    if (from !== undefined && newest) this.moveTo(from);
    this.awaitingSince = undefined;
    // The peer hears us (the first record of an initiator's link may have gone to the responder's connector).
    if (++this.receivedCount === 1) this.probeLan();
    this.bytesIn += opened.plaintext.length;
    const data = opened.plaintext;
    switch (opened.kind) {
      case RecordKind.kcp:
        this.receiveKcp(data);
        break;
      case RecordKind.mux:
        this.deliverToMux(data);
        break;
      case RecordKind.datagram:
        if (data.length > 0) this.datagramHandlers[data[0]!]?.(data);
        break;
      case RecordKind.ping: {
        const { id, piecesPort, takesSuperPackets } = decodePingBody(data, "ping");
        this.peerOffersPieces(piecesPort, takesSuperPackets);
        this.sendRecord(RecordKind.pong, id === undefined ? data : encodePingBody(id, "pong", this.piecesOffer));
        break;
      }
      case RecordKind.pong: {
        const { id, piecesPort, takesSuperPackets } = decodePingBody(data, "pong");
        this.peerOffersPieces(piecesPort, takesSuperPackets);
        if (this.lan && id !== undefined) this.useLanPackets(this.lan.answered(id));
        const ping = id === undefined ? undefined : this.pingsOut.get(id);
        if (ping) {
          const rttMs = performance.now() - ping.sentAt;
          // A probe's size adds its own time: it is no measure of the link's RTT.
          if (!ping.padded) this.rttMs = Math.round(rttMs * RTT_PRECISION) / RTT_PRECISION;
          this.pingsOut.delete(id!);
          ping.answered?.(rttMs);
        }
        break;
      }
    }
    return true;
  }

  private moveTo(remote: string): void {
    const { path } = this;
    const was = path.remote;
    if (!path.moveTo || remote === was) return;
    path.moveTo(remote);
    this.init.logger.info("peer link moved", { peer: this.init.peer, path: this.kind, remote, was });
  }

  private receiveKcp(segments: Buffer): void {
    const kcp = this.kcp;
    if (!kcp) return;
    kcp.setClock(Date.now());
    kcp.input(segments);
    for (let message = kcp.recv(); message; message = kcp.recv()) this.deliverToMux(message);
    if (kcp.waitSnd() < KCP_LOW_WATER_SEGMENTS) this.drainMux();
    this.flushKcpSoon();
  }

  /**
   * ikcp's update() flushes once per interval, so new data and ACKs would wait up to 10 ms each way,
   * and the round trip would cap a stream at one window per ~40 ms. Flush once per tick instead.
   */
  private flushKcpSoon(): void {
    if (this.kcpFlushQueued) return;
    this.kcpFlushQueued = true;
    queueMicrotask(() => {
      this.kcpFlushQueued = false;
      if (this.closed || !this.kcp) return;
      this.kcp.setClock(Date.now());
      this.kcp.flush();
      if (this.lan) this.judgeLanPackets();
      this.scheduleKcp(this.kcp.msUntilUpdate(Date.now()));
    });
  }

  private judgeLanPackets(): void {
    const lan = this.lan!;
    const was = lan.size;
    const { size, resentPercent } = lan.judge();
    if (size === was) return;
    this.useLanPackets(size);
    const what = was === "pieces" ? "pieces" : "large packets";
    const now = size === "small" ? "back to small ones" : "large packets go whole";
    this.init.logger.info(`lan link loses ${what}: ${now}`, { peer: this.init.peer, resentPercent, packetBytes: LAN_KCP_MTU_BYTES[size] });
  }

  /** Runs KCP's update() in `delayMs`; an idle KCP (Infinity) sleeps until it gets something to do. */
  private scheduleKcp(delayMs: number): void {
    if (this.closed || !this.kcp) return;
    clearTimeout(this.kcpTimer);
    if (delayMs === Infinity) return;
    this.kcpTimer = setTimeout(() => {
      const kcp = this.kcp!;
      const now = Date.now();
      kcp.update(now);
      if (kcp.state === "dead") return this.close("KCP gave up retransmitting");
      if (this.lan) this.judgeLanPackets();
      if (kcp.waitSnd() < KCP_LOW_WATER_SEGMENTS) this.drainMux();
      this.scheduleKcp(kcp.msUntilUpdate(Date.now()));
    }, delayMs);
  }

  /** Sends a ping now (its pong measures the RTT). */
  probe(): void {
    this.ping();
  }

  /** Whether the peer answers anything within `timeoutMs` of a ping; closes the link if not. */
  async check(timeoutMs: number): Promise<boolean> {
    const before = this.receivedCount;
    this.ping();
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && this.receivedCount === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (this.receivedCount !== before) return true;
    this.close(`no answer to a check within ${timeoutMs} ms`);
    return false;
  }

  /**
   * The round-trip time of one ping over this link, in milliseconds (fractional), matched to its own
   * pong; null when no pong came within `timeoutMs` or the link closed.
   */
  measureRtt(timeoutMs: number): Promise<number | null> {
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const id = this.ping((rttMs) => {
        clearTimeout(timer);
        resolve(rttMs);
      });
      const timer = setTimeout(() => {
        this.pingsOut.delete(id);
        resolve(null);
      }, timeoutMs);
    });
  }

  /** `lanSize`: a probe of that packet size on a lan link, padded to it (and sent as pieces for "pieces"). */
  private ping(answered?: (rttMs: number | null) => void, lanSize?: LanPacketSize): number {
    const id = this.nextPing++ >>> 0;
    // A pong that never came is forgotten once newer pings crowd it out.
    if (this.pingsOut.size >= MAX_PINGS_OUT) this.pingsOut.delete(this.pingsOut.keys().next().value!);
    this.pingsOut.set(id, { sentAt: performance.now(), answered, padded: lanSize !== undefined });
    const body = encodePingBody(id, "ping", this.piecesOffer);
    if (!lanSize) this.sendRecord(RecordKind.ping, body);
    else {
      const padded = Buffer.alloc(LAN_KCP_MTU_BYTES[lanSize]);
      body.copy(padded);
      this.sendRecord(RecordKind.ping, padded, lanSize === "pieces");
    }
    return id;
  }

  private tick(): void {
    const now = Date.now();
    this.probeLan();
    if (this.awaitingSince !== undefined && now - this.awaitingSince >= DEAD_AFTER_MS) {
      this.close(`no answer from the peer for ${Math.round((now - this.awaitingSince) / 1000)} s`);
      return;
    }
    // Something went unanswered for a while: probe, so an idle link is tested as well as a busy one.
    if (this.awaitingSince !== undefined && now - this.awaitingSince >= PROBE_INTERVAL_MS) this.ping();
    else if (now - this.lastSentAt >= this.keepaliveAfterMs) {
      this.keepaliveAfterMs = jitteredKeepalive();
      this.ping();
    }
  }
}

function jitteredKeepalive(): number {
  return KEEPALIVE_MIN_MS + Math.random() * (KEEPALIVE_MAX_MS - KEEPALIVE_MIN_MS);
}
