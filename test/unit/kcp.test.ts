// KCP: the ikcp wire layout byte by byte, and two instances over a simulated lossy link on a simulated clock.
import { describe, expect, it } from "vitest";
import { prng, randomBytes } from "../helpers/prng.ts";
import {
  Kcp,
  KCP_CMD_ACK,
  KCP_CMD_PUSH,
  KCP_CMD_WASK,
  KCP_CMD_WINS,
  KCP_FAST,
  KCP_MAX_FRAGMENTS,
  KCP_OVERHEAD_BYTES,
  kcpConv,
  KcpError,
} from "../../src/transport/kcp.ts";

const CONV = 0x11223344;

const hex = (text: string) => new Uint8Array(Buffer.from(text.replace(/\s+/g, ""), "hex"));

interface Header {
  conv: number;
  cmd: number;
  frg: number;
  wnd: number;
  ts: number;
  sn: number;
  una: number;
  len: number;
  data: Uint8Array;
}

/** Splits a packet into segments, reading each field at its ikcp.h offset. */
function segments(packet: Uint8Array): Header[] {
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const out: Header[] = [];
  for (let at = 0; at < packet.length; ) {
    const len = view.getUint32(at + 20, true);
    out.push({
      conv: view.getUint32(at, true),
      cmd: view.getUint8(at + 4),
      frg: view.getUint8(at + 5),
      wnd: view.getUint16(at + 6, true),
      ts: view.getUint32(at + 8, true),
      sn: view.getUint32(at + 12, true),
      una: view.getUint32(at + 16, true),
      len,
      data: packet.subarray(at + KCP_OVERHEAD_BYTES, at + KCP_OVERHEAD_BYTES + len),
    });
    at += KCP_OVERHEAD_BYTES + len;
  }
  return out;
}

function applyPreset(kcp: Kcp, preset: "fast" | "default"): void {
  if (preset === "default") return;
  kcp.setNoDelay(KCP_FAST.nodelay, KCP_FAST.intervalMs, KCP_FAST.fastResend, KCP_FAST.noCongestionControl);
  kcp.setWindowSize(KCP_FAST.sendWindow, KCP_FAST.receiveWindow);
  kcp.setMtu(KCP_FAST.mtu);
}

interface LinkOptions {
  lossRate?: number;
  duplicateRate?: number;
  latencyMs?: number;
  /** Extra random delay per packet; more than the gap between packets reorders them. */
  jitterMs?: number;
  seed?: number;
  clockStartMs?: number;
  /**
   * Drive each side as the peer link does: update() only when msUntilUpdate() says it is due, and a
   * flush right after every delivery. Without it both sides update at every event.
   */
  likeTheLink?: boolean;
  /** A bottleneck in each direction: packets leave it at this rate, queueing behind each other (a receiver busy with a burst). */
  packetsPerMs?: number;
}

interface InFlight {
  at: number;
  order: number;
  to: Kcp;
  packet: Uint8Array;
}

/** Two Kcp endpoints joined by an in-memory datagram link, driven by a simulated clock via check(). */
class SimulatedLink {
  now = 0;
  down = false;
  readonly a: Kcp;
  readonly b: Kcp;
  /** Every packet offered to the link, with its sender, for wire inspection. */
  readonly tap: { from: "a" | "b"; at: number; packet: Uint8Array }[] = [];
  tapping = false;
  private readonly random: () => number;
  private readonly inFlight: InFlight[] = [];
  private order = 0;
  /** Per direction: when the bottleneck lets the next packet through. */
  private readonly bottleneckFreeAt = new Map<Kcp, number>();

  constructor(
    private readonly options: LinkOptions,
    configure: (kcp: Kcp) => void,
  ) {
    this.now = options.clockStartMs ?? 0;
    this.random = prng(options.seed ?? 1);
    this.a = new Kcp(CONV, (packet) => this.transmit("a", this.b, packet));
    this.b = new Kcp(CONV, (packet) => this.transmit("b", this.a, packet));
    configure(this.a);
    configure(this.b);
  }

  private transmit(from: "a" | "b", to: Kcp, sent: Uint8Array): void {
    const packet = sent.slice(); // output's buffer is KCP's own, valid during the call only: the wire copies
    if (this.tapping) this.tap.push({ from, at: this.now, packet });
    if (this.down || this.random() < (this.options.lossRate ?? 0)) return;
    const copies = this.random() < (this.options.duplicateRate ?? 0) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = (this.options.latencyMs ?? 20) + Math.floor(this.random() * ((this.options.jitterMs ?? 0) + 1));
      let at = this.now + delay;
      if (this.options.packetsPerMs) {
        at = Math.max(at, this.bottleneckFreeAt.get(to) ?? 0);
        this.bottleneckFreeAt.set(to, at + 1 / this.options.packetsPerMs);
      }
      this.inFlight.push({ at, order: this.order++, to, packet });
    }
  }

  /**
   * Advances to the next event (a delivery or an update either side asked for) and handles it. Without
   * likeTheLink both sides update at every event; with it, as the peer link drives KCP.
   */
  step(): void {
    const likeTheLink = this.options.likeTheLink === true;
    // check() answers in u32 milliseconds; compare as wrapped differences so a clock past 2^32 works.
    const untilUpdate = (kcp: Kcp) => (likeTheLink ? kcp.msUntilUpdate(this.now) : (kcp.check(this.now) - this.now) | 0);
    let next = this.now + Math.min(untilUpdate(this.a), untilUpdate(this.b));
    for (const item of this.inFlight) next = Math.min(next, item.at);
    if (next === Infinity) throw new Error("both sides idle with nothing in flight: stranded");
    this.now = Math.max(next, this.now + 1);
    const due = this.inFlight.filter((item) => item.at <= this.now).sort((x, y) => x.at - y.at || x.order - y.order);
    if (due.length > 0) {
      const remaining = this.inFlight.filter((item) => item.at > this.now);
      this.inFlight.length = 0;
      this.inFlight.push(...remaining);
    }
    for (const item of due) {
      if (likeTheLink) item.to.setClock(this.now);
      item.to.input(item.packet);
      if (likeTheLink) item.to.flush();
    }
    for (const kcp of [this.a, this.b]) if (!likeTheLink || kcp.msUntilUpdate(this.now) === 0) kcp.update(this.now);
  }

  /** Sends `data` from a as the link does: queued, then flushed at once. */
  sendNow(data: Uint8Array): void {
    this.a.send(data);
    if (this.options.likeTheLink) {
      this.a.setClock(this.now);
      this.a.flush();
    }
  }

  /** Steps until done() or the simulated time limit; returns whether done() became true. */
  runUntil(done: () => boolean, limitMs: number): boolean {
    const end = this.now + limitMs;
    while (!done()) {
      if (this.now >= end) return false;
      this.step();
    }
    return true;
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

interface TransferOptions extends LinkOptions {
  bytes?: number;
  preset?: "fast" | "default";
  streamMode?: boolean;
  /** Called before every step, e.g. to inject garbage. */
  beforeStep?: (link: SimulatedLink) => void;
}

/** Moves random data a -> b in messages of random size and returns what b received. */
function transfer(options: TransferOptions) {
  const total = options.bytes ?? 1024 * 1024;
  const random = prng((options.seed ?? 1) * 7919);
  const data = randomBytes(random, total);
  const link = new SimulatedLink(options, (kcp) => {
    applyPreset(kcp, options.preset ?? "fast");
    kcp.streamMode = options.streamMode ?? false;
  });
  const received: Uint8Array[] = [];
  const boundaries: number[] = [];
  let receivedBytes = 0;
  let sent = 0;
  const done = link.runUntil(() => {
    while (sent < total && link.a.waitSnd() < 2 * KCP_FAST.sendWindow) {
      const size = Math.min(total - sent, 1 + Math.floor(random() * 8 * link.a.mss));
      link.sendNow(data.subarray(sent, sent + size));
      boundaries.push(size);
      sent += size;
    }
    for (let message = link.b.recv(); message !== undefined; message = link.b.recv()) {
      received.push(message);
      receivedBytes += message.length;
    }
    options.beforeStep?.(link);
    return receivedBytes >= total;
  }, 600_000);
  return { done, data, received: concat(received), messages: received, boundaries, link };
}

const sameBytes = (x: Uint8Array, y: Uint8Array) => Buffer.from(x).equals(Buffer.from(y));

describe("KCP wire layout (ikcp.h)", () => {
  it("a PUSH from send()+flush() has each header field at its offset, little-endian", () => {
    const packets: Uint8Array[] = [];
    const kcp = new Kcp(CONV, (p) => packets.push(p.slice()));
    kcp.setNoDelay(false, 100, 0, true);
    kcp.send(new TextEncoder().encode("hello"));
    kcp.update(1000);

    expect(packets).toHaveLength(1);
    const p = packets[0]!;
    expect(p.length).toBe(KCP_OVERHEAD_BYTES + 5);
    expect([...p.subarray(0, 4)]).toEqual([0x44, 0x33, 0x22, 0x11]); // conv
    expect(p[4]).toBe(KCP_CMD_PUSH);
    expect(p[5]).toBe(0); // frg: last (only) fragment
    expect(p[6]! | (p[7]! << 8)).toBe(256); // wnd: the whole receive window is free
    expect([...p.subarray(8, 12)]).toEqual([0xe8, 0x03, 0, 0]); // ts = 1000
    expect([...p.subarray(12, 16)]).toEqual([0, 0, 0, 0]); // sn = 0
    expect([...p.subarray(16, 20)]).toEqual([0, 0, 0, 0]); // una: nothing received yet
    expect([...p.subarray(20, 24)]).toEqual([5, 0, 0, 0]); // len
    expect(new TextDecoder().decode(p.subarray(24))).toBe("hello");
    expect(kcpConv(p)).toBe(CONV);
  });

  it("fragments count down in frg, several segments share one packet up to the mtu, sn increases", () => {
    const packets: Uint8Array[] = [];
    const kcp = new Kcp(CONV, (p) => packets.push(p.slice()));
    kcp.setNoDelay(false, 100, 0, true);
    kcp.setMtu(200);
    kcp.send(new Uint8Array(kcp.mss * 2 + 10).fill(7)); // 3 fragments
    kcp.send(new Uint8Array(3).fill(9)); // fits after the last fragment in the same packet
    kcp.update(5);

    const segs = packets.flatMap(segments);
    expect(segs.map((s) => [s.cmd, s.frg, s.sn, s.len])).toEqual([
      [KCP_CMD_PUSH, 2, 0, kcp.mss],
      [KCP_CMD_PUSH, 1, 1, kcp.mss],
      [KCP_CMD_PUSH, 0, 2, 10],
      [KCP_CMD_PUSH, 0, 3, 3],
    ]);
    expect(packets.map((p) => p.length)).toEqual([200, 200, 24 + 10 + 24 + 3]);
    for (const p of packets) expect(p.length).toBeLessThanOrEqual(200);
  });

  it("an ACK echoes sn and ts, carries una = next expected sn and the unused window, len 0", () => {
    const fromA: Uint8Array[] = [];
    const fromB: Uint8Array[] = [];
    const a = new Kcp(CONV, (p) => fromA.push(p.slice()));
    const b = new Kcp(CONV, (p) => fromB.push(p.slice()));
    a.setNoDelay(false, 100, 0, true);
    a.send(new Uint8Array([1, 2, 3]));
    a.update(1000);
    b.update(1003);
    expect(b.input(fromA[0]!)).toBe(true);
    b.flush();

    expect(fromB).toHaveLength(1);
    expect(fromB[0]!.length).toBe(KCP_OVERHEAD_BYTES);
    const [ack] = segments(fromB[0]!);
    expect(ack).toMatchObject({ conv: CONV, cmd: KCP_CMD_ACK, frg: 0, wnd: 255, ts: 1000, sn: 0, una: 1, len: 0 });

    // The ACK frees the sender's buffer and yields an RTT sample (1040 - 1000).
    a.update(1040);
    expect(a.waitSnd()).toBe(1);
    expect(a.input(fromB[0]!)).toBe(true);
    expect(a.waitSnd()).toBe(0);
    expect(a.srttMs).toBe(40);
  });

  it("accepts hand-built segments laid out per ikcp.h", () => {
    const kcp = new Kcp(0x01020304, () => {});
    // conv        cmd frg wnd   ts          sn          una         len         data
    const push = hex(`
      04 03 02 01  51  00  80 00 e8 03 00 00 00 00 00 00 00 00 00 00 05 00 00 00 68 65 6c 6c 6f`);
    expect(kcpConv(push)).toBe(0x01020304);
    expect(kcp.input(push)).toBe(true);
    expect(kcp.peekSize()).toBe(5);
    expect(new TextDecoder().decode(kcp.recv())).toBe("hello");

    // One packet, two fragments of one message (frg 1 then 0), sn 1 and 2, plus a WINS.
    const twoFragments = hex(`
      04 03 02 01  51  01  80 00 e9 03 00 00 01 00 00 00 00 00 00 00 03 00 00 00 61 62 63
      04 03 02 01  51  00  80 00 e9 03 00 00 02 00 00 00 00 00 00 00 02 00 00 00 64 65
      04 03 02 01  54  00  80 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`);
    expect(kcp.input(twoFragments)).toBe(true);
    expect(new TextDecoder().decode(kcp.recv())).toBe("abcde");
    expect(kcp.recv()).toBeUndefined();
    expect(kcp.stats.malformedPackets).toBe(0);
  });

  // Captured from xtaci/kcp-go 5.6.1 (a Go port of ikcp; Debian golang-github-xtaci-kcp-dev): conv 0x11223344,
  // mtu 50, windows 32/256, nocwnd; A sends a 30-byte message at ts 1234 (two fragments, one per packet),
  // B receives both and flushes its ACK (kcp-go sends only the highest ACK; una covers the rest).
  const KCP_GO_PUSH_PACKETS = [
    hex(`44332211 51 01 0001 d2040000 00000000 00000000 1a000000
         303132333435363738396162636465666768696a6b6c6d6e6f70`),
    hex(`44332211 51 00 0001 d2040000 01000000 00000000 04000000 71727374`),
  ];
  const KCP_GO_ACK_PACKET = hex(`44332211 52 00 fe00 d2040000 01000000 02000000 00000000`);
  const KCP_GO_MESSAGE = "0123456789abcdefghijklmnopqrst";

  it("produces the same bytes as kcp-go for the same message, clock and settings", () => {
    const packets: Uint8Array[] = [];
    const kcp = new Kcp(CONV, (p) => packets.push(p.slice()));
    kcp.setMtu(50);
    kcp.setWindowSize(32, 256);
    kcp.setNoDelay(false, 100, 0, true);
    kcp.send(new TextEncoder().encode(KCP_GO_MESSAGE));
    kcp.update(1234);
    expect(packets.map((p) => Buffer.from(p).toString("hex"))).toEqual(
      KCP_GO_PUSH_PACKETS.map((p) => Buffer.from(p).toString("hex")),
    );

    // kcp-go's ACK (sn 1, una 2) releases both fragments and gives an RTT sample.
    kcp.update(1254);
    expect(kcp.input(KCP_GO_ACK_PACKET)).toBe(true);
    expect(kcp.waitSnd()).toBe(0);
    expect(kcp.srttMs).toBe(20);
  });

  it("reassembles kcp-go's fragments and acknowledges them as kcp-go's receiver does", () => {
    const packets: Uint8Array[] = [];
    const kcp = new Kcp(CONV, (p) => packets.push(p.slice()));
    kcp.update(1250);
    for (const p of KCP_GO_PUSH_PACKETS) expect(kcp.input(p)).toBe(true);
    kcp.flush();
    // We ACK each segment (as ikcp does); the last ACK is byte for byte kcp-go's.
    const acks = packets.flatMap(segments);
    expect(acks.map((s) => [s.cmd, s.sn, s.ts, s.una, s.wnd])).toEqual([
      [KCP_CMD_ACK, 0, 1234, 2, 254],
      [KCP_CMD_ACK, 1, 1234, 2, 254],
    ]);
    expect(Buffer.from(packets[0]!.subarray(KCP_OVERHEAD_BYTES)).equals(Buffer.from(KCP_GO_ACK_PACKET))).toBe(true);
    expect(new TextDecoder().decode(kcp.recv())).toBe(KCP_GO_MESSAGE);
  });

  it("survives fragments whose frg does not count down (found by the fuzzer)", () => {
    // Fuzzer counterexample (test/fuzz, kcp-input): sn 0 and sn 1 both say "1 more fragment follows",
    // and nothing ends the message. recv() read past the receive queue and threw a TypeError.
    const kcp = new Kcp(0x12345678, () => {});
    const noEnd = hex(`
      78 56 34 12  51  01  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
      78 56 34 12  51  01  00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00`);
    expect(kcp.input(noEnd)).toBe(true);
    const delivered: string[] = [];
    const drain = () => {
      for (let m = kcp.recv(); m !== undefined; m = kcp.recv()) delivered.push(new TextDecoder().decode(m));
    };
    expect(drain).not.toThrow();
    // The link goes on: a well-formed message after them still arrives.
    const next = hex(`78 56 34 12  51  00  00 01 00 00 00 00 02 00 00 00 00 00 00 00 02 00 00 00 6f 6b`);
    expect(kcp.input(next)).toBe(true);
    expect(drain).not.toThrow();
    expect(delivered.join("")).toBe("ok");
  });

  it("answers a window probe (WASK) with WINS", () => {
    const out: Uint8Array[] = [];
    const kcp = new Kcp(0x01020304, (p) => out.push(p.slice()));
    kcp.update(0);
    expect(kcp.input(hex(`04 03 02 01 53 00 80 00 00000000 00000000 00000000 00000000`))).toBe(true);
    kcp.flush();
    expect(segments(out[0]!).map((s) => [s.cmd, s.wnd, s.una])).toEqual([[KCP_CMD_WINS, 256, 0]]);
  });
});

describe("KCP over a simulated link", () => {
  it.each([
    { name: "0% loss", lossRate: 0 },
    { name: "5% loss", lossRate: 0.05 },
    { name: "20% loss", lossRate: 0.2 },
    { name: "10% loss, reordering and duplication", lossRate: 0.1, jitterMs: 30, duplicateRate: 0.1 },
  ])("1 MiB arrives intact and in order at $name", ({ lossRate, jitterMs, duplicateRate }) => {
    const result = transfer({ lossRate, jitterMs, duplicateRate, seed: 42 });
    expect(result.done).toBe(true);
    expect(sameBytes(result.received, result.data)).toBe(true);
    expect(result.messages.map((m) => m.length)).toEqual(result.boundaries);
    if (lossRate > 0) expect(result.link.a.stats.retransmits + result.link.a.stats.fastRetransmits).toBeGreaterThan(0);
    expect(result.link.a.state).toBe("ok");
  });

  it.each([
    { name: "0% loss", lossRate: 0 },
    { name: "10% loss, reordering and duplication", lossRate: 0.1, jitterMs: 30, duplicateRate: 0.1 },
  ])("1 MiB arrives at $name with each side updated only when msUntilUpdate() says, as the link does", ({ lossRate, jitterMs, duplicateRate }) => {
    const result = transfer({ lossRate, jitterMs, duplicateRate, seed: 7, likeTheLink: true, clockStartMs: 400 * 2 ** 32 - 50 });
    expect(result.done).toBe(true);
    expect(sameBytes(result.received, result.data)).toBe(true);
  });

  it("an idle KCP asks for no update; with data in flight it asks within its interval; acknowledged, it is idle again", () => {
    const link = new SimulatedLink({ latencyMs: 20, likeTheLink: true, clockStartMs: 400 * 2 ** 32 }, (kcp) => applyPreset(kcp, "fast"));
    link.a.update(link.now);
    link.b.update(link.now);
    expect([link.a.msUntilUpdate(link.now), link.b.msUntilUpdate(link.now)]).toEqual([Infinity, Infinity]);
    link.sendNow(new Uint8Array(3000));
    const untilResend = link.a.msUntilUpdate(link.now);
    expect(untilResend).toBeGreaterThan(0);
    expect(untilResend).toBeLessThanOrEqual(KCP_FAST.intervalMs);
    let received = 0;
    expect(link.runUntil(() => (received += link.b.recv()?.length ?? 0) === 3000 && link.a.waitSnd() === 0, 10_000)).toBe(true);
    expect([link.a.msUntilUpdate(link.now), link.b.msUntilUpdate(link.now)]).toEqual([Infinity, Infinity]);
    expect(link.a.stats.retransmits).toBe(0);
  });

  it("does not resend a window that waits in a queue longer than the RTO while it is acknowledged bit by bit", () => {
    // 5 ms each way and a bottleneck of 10 packets a millisecond: a window of 1 MiB sent in one flush
    // drains over ~80 ms, far past the 30 ms RTO, with ACKs coming all the while.
    const link = new SimulatedLink({ latencyMs: 5, packetsPerMs: 10, likeTheLink: true, clockStartMs: 400 * 2 ** 32 - 50 }, (kcp) => applyPreset(kcp, "fast"));
    link.a.update(link.now);
    link.b.update(link.now);
    let received = 0;
    const receive = () => {
      for (let message = link.b.recv(); message; message = link.b.recv()) received += message.length;
    };
    link.sendNow(new Uint8Array(1000)); // a first exchange measures the round trip
    expect(link.runUntil(() => (receive(), received === 1000 && link.a.waitSnd() === 0), 1000)).toBe(true);
    expect(link.a.rtoMs).toBeLessThan(40);
    const messageBytes = 256 * 1024;
    for (let i = 0; i < 4; i++) link.sendNow(new Uint8Array(messageBytes).fill(i));
    expect(link.runUntil(() => (receive(), received === 1000 + 4 * messageBytes && link.a.waitSnd() === 0), 5000)).toBe(true);
    expect(link.a.stats.retransmits + link.a.stats.fastRetransmits).toBe(0);
  });

  it("still resends a lost segment by its RTO when the peer acknowledges nothing after it", () => {
    const link = new SimulatedLink({ latencyMs: 5, likeTheLink: true }, (kcp) => applyPreset(kcp, "fast"));
    link.a.update(link.now);
    link.b.update(link.now);
    let received = 0;
    const receive = () => {
      for (let message = link.b.recv(); message; message = link.b.recv()) received += message.length;
    };
    link.sendNow(new Uint8Array(1000));
    expect(link.runUntil(() => (receive(), received === 1000 && link.a.waitSnd() === 0), 1000)).toBe(true);
    link.down = true;
    link.sendNow(new Uint8Array(1000)); // the last segment for a while: lost, and nothing later to acknowledge
    link.down = false;
    const sentAt = link.now;
    expect(link.runUntil(() => (receive(), received === 2000), 1000)).toBe(true);
    expect(link.a.stats.retransmits).toBe(1);
    expect(link.now - sentAt).toBeLessThanOrEqual(2 * link.a.rtoMs + 10);
  });

  it("survives the u32 millisecond clock wrapping mid-transfer (Date.now() is past 2^32)", () => {
    const wrappingStart = 400 * 2 ** 32 - 50; // about Date.now() today; its low 32 bits wrap 50 ms in
    const result = transfer({ lossRate: 0.1, jitterMs: 20, seed: 21, bytes: 256 * 1024, clockStartMs: wrappingStart });
    expect(result.done).toBe(true);
    expect(sameBytes(result.received, result.data)).toBe(true);
    expect(result.link.now).toBeGreaterThan(wrappingStart + 100);
    expect(result.link.a.srttMs).toBeLessThan(200);
  });

  it("stream mode delivers the byte stream at 5% loss with reordering", () => {
    const result = transfer({ lossRate: 0.05, jitterMs: 30, seed: 7, streamMode: true, bytes: 256 * 1024 });
    expect(result.done).toBe(true);
    expect(sameBytes(result.received, result.data)).toBe(true);
    // Small writes coalesce: chunks are full segments except possibly the last.
    expect(result.messages.length).toBeGreaterThan(100);
    expect(result.messages.slice(0, -1).filter((m) => m.length !== result.link.a.mss)).toEqual([]);
  });

  it("ikcp default settings (congestion control on) also complete at 5% loss", () => {
    const result = transfer({ lossRate: 0.05, seed: 3, preset: "default", bytes: 128 * 1024 });
    expect(result.done).toBe(true);
    expect(sameBytes(result.received, result.data)).toBe(true);
  });

  it("message mode keeps boundaries, up to mss * 255 bytes in 255 fragments", () => {
    const link = new SimulatedLink({ lossRate: 0.05, jitterMs: 20, seed: 9 }, (kcp) => applyPreset(kcp, "fast"));
    const mss = link.a.mss;
    const sizes = [0, 1, mss - 1, mss, mss + 1, 3 * mss, 100 * mss + 17, mss * 255 - 1, mss * 255, 5];
    const random = prng(99);
    const messages = sizes.map((size) => randomBytes(random, size));
    for (const m of messages) link.a.send(m);
    const received: Uint8Array[] = [];
    const done = link.runUntil(() => {
      for (let m = link.b.recv(); m !== undefined; m = link.b.recv()) received.push(m);
      return received.length === messages.length;
    }, 120_000);
    expect(done).toBe(true);
    expect(received.map((m) => m.length)).toEqual(sizes);
    received.forEach((m, i) => expect(sameBytes(m, messages[i]!)).toBe(true));
  });

  it("a 255-fragment message completes with the default receive window", () => {
    const link = new SimulatedLink({ seed: 5 }, () => {});
    const message = randomBytes(prng(5), link.a.mss * KCP_MAX_FRAGMENTS);
    link.a.send(message);
    let received: Uint8Array | undefined;
    expect(link.runUntil(() => (received ??= link.b.recv()) !== undefined, 120_000)).toBe(true);
    expect(sameBytes(received!, message)).toBe(true);
  });

  it("refuses a message of more than 255 fragments with KCP_TOO_LARGE, but not in stream mode", () => {
    const kcp = new Kcp(CONV, () => {});
    const tooLarge = new Uint8Array(kcp.mss * KCP_MAX_FRAGMENTS + 1);
    expect(() => kcp.send(tooLarge)).toThrow(KcpError);
    try {
      kcp.send(tooLarge);
    } catch (error) {
      expect((error as KcpError).code).toBe("KCP_TOO_LARGE");
    }
    expect(kcp.waitSnd()).toBe(0);
    kcp.streamMode = true;
    kcp.send(tooLarge);
    expect(kcp.waitSnd()).toBe(KCP_MAX_FRAGMENTS + 1);
  });

  it("counts and ignores garbage without disturbing an ongoing transfer", () => {
    const random = prng(1234);
    let injected = 0;
    let sample: Uint8Array | undefined;
    const garbage = (): Uint8Array => {
      const kind = injected % 5;
      if (kind === 0 || sample === undefined) return randomBytes(random, Math.floor(random() * 200));
      const copy = sample.slice();
      const view = new DataView(copy.buffer);
      if (kind === 1) view.setUint32(0, CONV ^ 1, true); // wrong conv
      if (kind === 2) return copy.subarray(0, Math.floor(random() * KCP_OVERHEAD_BYTES)); // truncated header
      if (kind === 3) view.setUint32(20, view.getUint32(20, true) + 1, true); // len one past the end
      if (kind === 4) return concat([copy, copy.subarray(0, 10)]); // a valid segment, then a partial header
      return copy;
    };
    const result = transfer({
      lossRate: 0.05,
      jitterMs: 10,
      seed: 77,
      bytes: 512 * 1024,
      beforeStep: (link) => {
        if (!link.tapping) link.tapping = true;
        sample ??= link.tap.find((t) => {
          const segs = t.from === "a" ? segments(t.packet) : [];
          return segs.length === 1 && segs[0]!.cmd === KCP_CMD_PUSH;
        })?.packet;
        for (let i = 0; i < 10; i++) {
          for (const target of [link.a, link.b]) {
            expect(target.input(garbage())).toBe(false);
            injected++;
          }
        }
      },
    });
    expect(result.done).toBe(true);
    expect(sameBytes(result.received, result.data)).toBe(true);
    expect(result.link.a.stats.malformedPackets + result.link.b.stats.malformedPackets).toBe(injected);
    expect(injected).toBeGreaterThan(1000);
  });

  it("a receiver that does not read stops the sender at its window; it resumes when the receiver reads", () => {
    const receiveWindow = 256;
    const link = new SimulatedLink({ seed: 11 }, (kcp) => {
      applyPreset(kcp, "fast");
      kcp.setWindowSize(KCP_FAST.sendWindow, receiveWindow);
    });
    link.tapping = true;
    const total = 2000;
    for (let i = 0; i < total; i++) link.a.send(new Uint8Array(new Uint32Array([i]).buffer));

    link.runUntil(() => false, 5_000);
    const waiting = link.a.waitSnd();
    // At most the receive queue plus the out-of-order buffer (each one window) was accepted.
    expect(waiting).toBeGreaterThanOrEqual(total - 2 * receiveWindow);
    expect(link.b.peekSize()).toBe(4);

    const stallStart = link.tap.length;
    link.runUntil(() => false, 30_000);
    expect(link.a.waitSnd()).toBe(waiting);
    const stalled = link.tap.slice(stallStart).flatMap((t) => segments(t.packet).map((s) => ({ from: t.from, ...s })));
    expect(stalled.filter((s) => s.cmd === KCP_CMD_PUSH)).toHaveLength(0);
    expect(stalled.filter((s) => s.from === "a" && s.cmd === KCP_CMD_WASK).length).toBeGreaterThanOrEqual(2);
    // b answers each window probe, and every answer still says its window is shut.
    const fromB = stalled.filter((s) => s.from === "b" && s.cmd !== KCP_CMD_ACK);
    expect(fromB.length).toBeGreaterThanOrEqual(2);
    expect(fromB.map((s) => s.wnd)).toEqual(fromB.map(() => 0));

    const received: number[] = [];
    const done = link.runUntil(() => {
      for (let m = link.b.recv(); m !== undefined; m = link.b.recv()) {
        received.push(new DataView(m.buffer, m.byteOffset).getUint32(0, true));
      }
      return received.length === total;
    }, 30_000);
    expect(done).toBe(true);
    expect(received).toEqual([...Array(total).keys()]);
    expect(link.runUntil(() => link.a.waitSnd() === 0, 1_000)).toBe(true);
  });

  it("marks the link dead when the peer disappears", () => {
    const link = new SimulatedLink({ seed: 13 }, (kcp) => applyPreset(kcp, "fast"));
    link.a.send(new Uint8Array(100));
    expect(link.runUntil(() => link.b.recv() !== undefined, 10_000)).toBe(true);
    link.down = true;
    link.a.send(new Uint8Array(100));
    // ikcp's back-off (x1.5 per try in nodelay mode) makes 20 tries take minutes.
    expect(link.runUntil(() => link.a.state === "dead", 1_000_000)).toBe(true);
    expect(link.now).toBeGreaterThan(60_000);
    expect(link.a.stats.retransmits).toBe(link.a.deadLink - 1);
    expect(link.b.state).toBe("ok");
  });
});
