#!/usr/bin/env bun
// In-process KCP throughput: two Kcp instances over an in-memory link, the simulated clock jumping straight to
// the next event (check() or a delivery), so wall time is CPU time spent in KCP (both ends, one core).
//
//   node_modules/.bin/bun scripts/bench/kcp.ts [--mib 16] [--rtt-ms 40] [--seed 1]
//
// Per row: KCP_FAST or ikcp's defaults (ours differ only in the receive window: 256 instead of 128), at 0% and 5%
// random loss each way. Columns: CPU MB/s (payload moved per wall second), link MB/s (payload per simulated second on
// a link with that RTT and no bandwidth limit: what the windows and loss recovery allow), retransmitted segments
// per segment sent (RTO and fast resends), and simulated seconds. CPU MB/s is the best of three runs.

import { prng } from "../../test/helpers/prng.ts";
import { Kcp, KCP_FAST } from "../../src/transport/kcp.ts";

interface Options {
  mib: number;
  rttMs: number;
  seed: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { mib: 16, rttMs: 40, seed: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const value = Number(argv[i + 1]);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`bad value for ${argv[i]}: ${argv[i + 1]}`);
    if (argv[i] === "--mib") options.mib = value;
    else if (argv[i] === "--rtt-ms") options.rttMs = value;
    else if (argv[i] === "--seed") options.seed = value;
    else throw new Error(`unknown option ${argv[i]}`);
  }
  return options;
}


/** One direction of the link: fixed latency, so deliveries leave in the order they entered. */
class Pipe {
  private readonly times: number[] = [];
  private readonly packets: Uint8Array[] = [];
  private head = 0;

  push(at: number, packet: Uint8Array): void {
    this.times.push(at);
    this.packets.push(packet);
  }
  nextAt(): number {
    return this.head < this.times.length ? this.times[this.head]! : Infinity;
  }
  deliverDue(now: number, to: Kcp): void {
    while (this.head < this.times.length && this.times[this.head]! <= now) {
      to.input(this.packets[this.head]!);
      this.head++;
    }
    if (this.head > 4096 && this.head * 2 > this.times.length) {
      this.times.splice(0, this.head);
      this.packets.splice(0, this.head);
      this.head = 0;
    }
  }
}

interface Row {
  preset: string;
  lossPercent: number;
  cpuMBps: number;
  linkMBps: number;
  retransmitRatio: number;
  simulatedS: number;
}

function run(preset: "KCP_FAST" | "ikcp default", lossRate: number, options: Options): Row {
  const total = options.mib * 1024 * 1024;
  const random = prng(options.seed);
  const oneWayMs = options.rttMs / 2;
  const toB = new Pipe();
  const toA = new Pipe();
  let now = 0;
  // output lends KCP's own buffer for the call: the pipe copies, as a wire (or the link's seal) does.
  const a = new Kcp(1, (p) => {
    if (random() >= lossRate) toB.push(now + oneWayMs, p.slice());
  });
  const b = new Kcp(1, (p) => {
    if (random() >= lossRate) toA.push(now + oneWayMs, p.slice());
  });
  for (const kcp of [a, b]) {
    if (preset === "KCP_FAST") {
      kcp.setNoDelay(KCP_FAST.nodelay, KCP_FAST.intervalMs, KCP_FAST.fastResend, KCP_FAST.noCongestionControl);
      kcp.setWindowSize(KCP_FAST.sendWindow, KCP_FAST.receiveWindow);
      kcp.setMtu(KCP_FAST.mtu);
    }
  }

  const chunk = new Uint8Array(16 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (random() * 256) | 0;
  const sendWindow = preset === "KCP_FAST" ? KCP_FAST.sendWindow : 32;
  let sent = 0;
  let received = 0;

  const started = performance.now();
  while (received < total) {
    while (sent < total && a.waitSnd() < 2 * sendWindow) {
      const size = Math.min(chunk.length, total - sent);
      a.send(chunk.subarray(0, size));
      sent += size;
    }
    if (a.state === "dead") throw new Error(`${preset} at ${lossRate * 100}% loss: link marked dead`);

    const next = Math.min(a.check(now), b.check(now), toA.nextAt(), toB.nextAt());
    now = Math.max(next, now + 1);
    toB.deliverDue(now, b);
    toA.deliverDue(now, a);
    // The application reads as soon as data arrives, so the window b advertises is not shrunk by unread data.
    for (let m = b.recv(); m !== undefined; m = b.recv()) received += m.length;
    a.update(now);
    b.update(now);
  }
  const wallS = (performance.now() - started) / 1000;
  const resent = a.stats.retransmits + a.stats.fastRetransmits;
  return {
    preset,
    lossPercent: lossRate * 100,
    cpuMBps: total / 1e6 / wallS,
    linkMBps: total / 1e6 / (now / 1000),
    retransmitRatio: resent / a.stats.segmentsSent,
    simulatedS: now / 1000,
  };
}

const options = parseArgs(process.argv.slice(2));
console.log(`KCP in-process, ${options.mib} MiB per row, simulated RTT ${options.rttMs} ms, Bun ${Bun.version}`);
// A short unmeasured pass first, so the JIT has compiled the hot paths before any row is timed.
for (const preset of ["KCP_FAST", "ikcp default"] as const) run(preset, 0.05, { ...options, mib: 2 });
const rows: Row[] = [];
for (const preset of ["KCP_FAST", "ikcp default"] as const) {
  for (const loss of [0, 0.05]) {
    // Best of three: the simulated part is deterministic, the wall clock is not (other load, GC).
    const tries = [0, 1, 2].map(() => run(preset, loss, options));
    rows.push(tries.reduce((best, r) => (r.cpuMBps > best.cpuMBps ? r : best)));
  }
}
console.table(
  rows.map((r) => ({
    settings: r.preset,
    "loss %": r.lossPercent,
    "CPU MB/s": Number(r.cpuMBps.toFixed(1)),
    "link MB/s": Number(r.linkMBps.toFixed(2)),
    "resent/sent": Number(r.retransmitRatio.toFixed(3)),
    "simulated s": Number(r.simulatedS.toFixed(1)),
  })),
);
