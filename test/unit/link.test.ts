import { randomBytes } from "node:crypto";
import { describe, expect, it, vi } from "vitest";
import { RECORD_OVERHEAD_BYTES, SecureSession } from "../../src/crypto/index.ts";
import { createLogger } from "../../src/log/index.ts";
import { CHANNEL_HIGH_WATER_BYTES, DEFAULT_STREAM_WINDOW_BYTES, type MuxStream } from "../../src/mux/index.ts";
import { Link, type Path } from "../../src/transport/index.ts";
import { LAN_KCP_MTU_BYTES } from "../../src/transport/lan-packets.ts";
import { Kcp, KCP_FAST } from "../../src/transport/kcp.ts";
import { linkPair, type MemoryPathOptions } from "../helpers/memory-links.ts";
import { prng } from "../helpers/prng.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** A TCP-like path that goes nowhere: enough to build a Link and close it. */
function quietPath(): Path {
  return {
    kind: "tcp-direct",
    remote: "127.0.0.1:1",
    reliable: true,
    send: () => {},
    bufferedBytes: () => 0,
    onPacket: () => {},
    onDrain: () => {},
    onClose: () => {},
    close: () => {},
  };
}

describe("an idle link on a UDP path", () => {
  it("does not wake for KCP while it has nothing to send or acknowledge", async () => {
    const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
    const updates = vi.spyOn(Kcp.prototype, "update");
    const link = new Link({
      peer: "far",
      path: { ...quietPath(), kind: "udp-direct", reliable: false },
      session: new SecureSession({ role: "initiator", secrets }),
      role: "initiator",
      sessionId: randomBytes(16),
      logger: createLogger({ level: "error", write: () => {} }),
    });
    const idleMs = 300;
    try {
      await new Promise((r) => setTimeout(r, idleMs));
      // The first update() starts KCP's clock; an idle KCP then waits for input() or send().
      expect(updates.mock.calls.length).toBe(1);
    } finally {
      link.close("test over");
      updates.mockRestore();
    }
  });
});

describe("Link.close", () => {
  it("runs every close handler once, logs one that throws, and throws nothing itself", () => {
    const lines: string[] = [];
    const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
    const link = new Link({
      peer: "far",
      path: quietPath(),
      session: new SecureSession({ role: "initiator", secrets }),
      role: "initiator",
      sessionId: randomBytes(16),
      logger: createLogger({ level: "debug", write: (line) => lines.push(line) }),
    });
    const ran: string[] = [];
    link.onClose(() => ran.push("first"));
    link.onClose(() => {
      throw new Error("Not running");
    });
    link.onClose((reason) => ran.push(`third: ${reason}`));
    expect(() => link.close("test over")).not.toThrow();
    link.close("again");
    expect(ran).toEqual(["first", "third: test over"]);
    expect(lines.filter((line) => /\sERROR\s/.test(line))).toEqual([expect.stringMatching(/a handler of a closing peer link failed peer=far error="Not running"/)]);
  });
});

describe("Link datagrams", () => {
  it("go to the one handler of their type (their first byte); others are dropped, and a type takes one handler", async () => {
    const { near, far } = linkPair(createLogger({ level: "error" }));
    const got: string[] = [];
    far.onDatagram([1, 2], (datagram) => got.push(`apps ${datagram[0]}`));
    far.onDatagram([3], (datagram) => got.push(`sdwan ${datagram[0]}`));
    expect(() => far.onDatagram([2, 4], () => {})).toThrow(/datagram type 2 already has a handler/);
    expect(() => far.onDatagram([256], () => {})).toThrow(RangeError);
    for (const type of [3, 1, 9, 2]) near.sendDatagram(Buffer.from([type, 0xaa]));
    near.sendDatagram(Buffer.alloc(0));
    await vi.waitFor(() => expect(got).toHaveLength(3), { timeout: 2_000 });
    await new Promise((resolve) => setTimeout(resolve, 50)); // nothing more comes
    expect(got).toEqual(["sdwan 3", "apps 1", "apps 2"]);
    near.close("test over");
    far.close("test over");
  });
});

describe("Link.measureRtt", () => {
  const silent = createLogger({ level: "error", write: () => {} });

  it("times each ping by its own pong, in fractions of a millisecond, and keeps the last as rttMs", async () => {
    const { near, far } = linkPair(silent);
    try {
      const [first, second] = await Promise.all([near.measureRtt(5_000), near.measureRtt(5_000)]);
      for (const rtt of [first, second]) {
        expect(rtt).not.toBeNull();
        expect(rtt!).toBeGreaterThan(0);
        expect(rtt!).toBeLessThan(5_000);
      }
      expect(Number.isInteger(first! * 1000) && Number.isInteger(second! * 1000)).toBe(false); // not whole milliseconds, like Date.now would give
      expect(near.rttMs).not.toBeNull();
    } finally {
      near.close("test over");
      far.close("test over");
    }
  });

  it("gives null when no pong comes in time, and at once on a closed link", async () => {
    const link = new Link({
      peer: "far",
      path: quietPath(),
      session: new SecureSession({ role: "initiator", secrets: { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) } }),
      role: "initiator",
      sessionId: randomBytes(16),
      logger: silent,
    });
    expect(await link.measureRtt(50)).toBeNull();
    const waiting = link.measureRtt(60_000);
    link.close("test over");
    expect(await waiting).toBeNull(); // at the close, not after the minute
    expect(await link.measureRtt(60_000)).toBeNull();
  });
});

/** Streams `bytes` of random data near -> far over a link pair on `path`; whether it arrived intact, and the receiver's largest window. */
async function streamOver(path: MemoryPathOptions, bytes: number, logger = createLogger({ level: "error", write: () => {} })): Promise<{ intact: boolean; peakWindowBytes: number }> {
  const { near, far } = linkPair(logger, path);
  const accepted = new Promise<MuxStream>((resolve) => far.mux.onStream(resolve));
  const stream = near.mux.openStream();
  stream.on("error", () => {}); // the close at the end aborts it, half-closed
  const data = randomBytes(bytes);
  let peakWindowBytes = 0;
  try {
    const written = (async () => {
      for (let offset = 0; offset < data.length; offset += 256 * KiB) {
        if (!stream.write(data.subarray(offset, offset + 256 * KiB))) await new Promise((resolve) => stream.once("drain", resolve));
      }
      stream.end();
    })();
    const receiver = await accepted;
    const chunks: Buffer[] = [];
    const received = new Promise<Buffer>((resolve, reject) => {
      receiver.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        peakWindowBytes = Math.max(peakWindowBytes, receiver.receiveWindowBytes);
      });
      receiver.on("end", () => resolve(Buffer.concat(chunks)));
      receiver.on("error", reject);
    });
    await written;
    return { intact: (await received).equals(data), peakWindowBytes };
  } finally {
    near.close("test over");
    far.close("test over");
  }
}

describe("a stream over KCP", () => {
  it("grows its window past the initial 256 KiB up to the mux's high-water mark for KCP (1 MiB), never beyond", async () => {
    // 25 ms each way: one initial window per 50 ms round trip is 5 MB/s, far below what memory carries,
    // and KCP's 1024 segments in flight (1.3 MiB) would let an unbounded window grow past 1 MiB.
    const { intact, peakWindowBytes } = await streamOver({ kind: "udp", latencyMs: 25 }, 12 * MiB);
    expect(intact).toBe(true);
    expect(peakWindowBytes).toBeGreaterThan(DEFAULT_STREAM_WINDOW_BYTES);
    expect(peakWindowBytes).toBeLessThanOrEqual(CHANNEL_HIGH_WATER_BYTES);
  }, 30_000);

  it.each([
    { kind: "udp" as const, largestBytes: KCP_FAST.mtu },
    { kind: "lan" as const, largestBytes: LAN_KCP_MTU_BYTES.whole },
  ])("on a $kind path, sends KCP packets of up to $largestBytes bytes (and their record's overhead), no larger", async ({ kind, largestBytes }) => {
    let largestPacketBytes = 0;
    const { intact } = await streamOver({ kind, onSend: (packet) => (largestPacketBytes = Math.max(largestPacketBytes, packet.length)) }, 4 * MiB);
    expect(intact).toBe(true);
    expect(largestPacketBytes).toBe(1 + RECORD_OVERHEAD_BYTES + largestBytes);
  }, 30_000);

  it("on a lan path that loses every large packet (a LAN that drops IP fragments), sends no data in large packets, and the data arrives", async () => {
    const sizes: number[] = [];
    const startedAt = performance.now();
    const { intact } = await streamOver({ kind: "lan", onSend: (packet) => sizes.push(packet.length), drop: (packet) => packet.length > 2000 }, 2 * MiB);
    expect(intact).toBe(true);
    // Only each side's probe, a ping of the large size: data in packets the path cannot carry would
    // stall the link (KCP resends a segment as it was cut) until KCP gave it up.
    expect(sizes.filter((bytes) => bytes > 2000).length, "large packets sent").toBeLessThanOrEqual(2);
    expect(performance.now() - startedAt).toBeLessThan(5_000);
  }, 30_000);

  it("on a lan path that loses large packets (IP fragments dropped on the way), goes back to small ones, and the data still arrives", async () => {
    const random = prng(31);
    const lines: string[] = [];
    const sizes: number[] = [];
    const { intact } = await streamOver(
      {
        kind: "lan",
        onSend: (packet) => sizes.push(packet.length),
        drop: (packet) => packet.length > 2000 && random() < 0.1,
      },
      8 * MiB,
      createLogger({ level: "info", write: (line) => lines.push(line) }),
    );
    expect(intact).toBe(true);
    expect(lines.some((line) => line.includes("lan link loses large packets: back to small ones"))).toBe(true);
    expect(Math.max(...sizes.slice(-100)), "the last packets sent").toBeLessThanOrEqual(1 + RECORD_OVERHEAD_BYTES + KCP_FAST.mtu);
  }, 30_000);
});
