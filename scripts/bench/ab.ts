#!/usr/bin/env bun
// One lever against its baseline in the same run: the data plane of this tree against another
// checkout's, in interleaved rounds on one NAT lab. Needs root, iproute2, nftables, iperf3 and ping.
//
//   git archive <base-commit> | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/node_modules
//   node_modules/.bin/bun scripts/bench/ab.ts --baseline /tmp/base [--seconds 5] [--rounds 3] [--pings 20] [--ping-only]
//
// Two public sites ("a", "b") and inp2ps (from this tree). Each round starts inp2pc on both sites from
// one tree, then from the other (the order swaps every round: A B, B A, …), each pair with
// [client.sdwan] and a TCP app on a forwarding to b's iperf3 (over KCP: the link is udp-direct).
// Per pair it measures, from a to b: ping over the overlay (--pings, 0.2 s apart: the median and 90th
// percentile RTT), iperf3 TCP over the overlay and through the app (--seconds each; not with
// --ping-only), and the CPU seconds both inp2pc spent per GB received (utime + stime from
// /proc/PID/stat). Each round also pings over the raw path. It prints every run, then medians per
// tree, their ratio, and in how many rounds this tree's figure was lower than the baseline's, with a
// sign test's p-value (a round's two pairs are the pair compared; noise alone splits them evenly).
// The lab, its processes and temp dirs are removed at the end, on error and on Ctrl-C.

import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { cleanupStaleLabs, labUp, type Lab } from "../natlab/lab.ts";
import { BUN, Proc, REPO_ROOT } from "../../test/helpers/processes.ts";
import { listening, spawnIn, startLabServer, writeClientConfig } from "../../test/e2e/helpers.ts";
import { cleanUpOnExit, cpuSeconds, median, pingRtts, sdwanAddressAnswering, signTestP } from "./lab-measure.ts";

const { values } = parseArgs({
  options: { baseline: { type: "string" }, seconds: { type: "string", default: "5" }, rounds: { type: "string", default: "3" }, pings: { type: "string", default: "20" }, "ping-only": { type: "boolean", default: false } },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const PINGS = Number(values.pings);
const PING_ONLY = values["ping-only"];
const STATUS_PORT = 27191;
const IPERF_PORT = 5201;
const APP_PORT = 5202;
const WARM_UP_PINGS = 5;
if (!values.baseline || !existsSync(join(values.baseline, "src/cli/inp2pc.ts")) || !existsSync(join(values.baseline, "node_modules"))) {
  console.error("--baseline must name a checkout with src/cli/inp2pc.ts and a node_modules (see the header of this file)");
  process.exit(2);
}
if (!(SECONDS >= 1 && Number.isInteger(ROUNDS) && ROUNDS >= 1 && Number.isInteger(PINGS) && PINGS >= 1)) {
  console.error("--seconds must be at least 1, --rounds and --pings positive integers");
  process.exit(2);
}
const TREES = { base: resolve(values.baseline), this: REPO_ROOT } as const;
type Tree = keyof typeof TREES;

/** The 90th percentile of `values` (nearest rank). */
const percentile90 = (values: readonly number[]) => [...values].sort((x, y) => x - y)[Math.min(values.length - 1, Math.ceil(values.length * 0.9) - 1)]!;

let lab: Lab | undefined;
let workDir = "";
const procs: Proc[] = [];
const cleanUp = cleanUpOnExit("A/B bench", () => ({ procs, lab, workDir }));

async function iperf(ns: string, host: string, port: number, seconds: number): Promise<{ mbps: number; bytes: number; retransmits: number }> {
  const result = await lab!.exec(ns, ["iperf3", "-c", host, "-p", String(port), "-t", String(seconds), "-J"], { timeoutMs: (seconds + 20) * 1000 });
  const report = JSON.parse(result.stdout);
  if (report.error) throw new Error(`iperf3 to ${host}:${port}: ${report.error}`);
  return { mbps: report.end.sum_received.bits_per_second / 1e6, bytes: report.end.sum_received.bytes, retransmits: report.end.sum_sent.retransmits ?? 0 };
}

interface Run {
  tree: Tree;
  pingMs: number;
  pingP90Ms: number;
  sdwanMbps: number;
  sdwanCpuSPerGb: number;
  sdwanRetransmits: number;
  appMbps: number;
  appCpuSPerGb: number;
}

async function measurePair(tree: Tree, emptyDir: string): Promise<Run> {
  const a = lab!.sites.a!;
  const clients: Proc[] = [];
  try {
    for (const site of ["b", "a"]) {
      const config = join(workDir, site, "inp2pc.toml");
      const proc = spawnIn(lab!, lab!.sites[site]!.hostNs, emptyDir, [BUN, join(TREES[tree], "src/cli/inp2pc.ts"), "--config", config]);
      clients.push(proc);
      procs.push(proc);
      await proc.waitForOutput(/logged in/, 20_000);
    }
    const pids = clients.map((proc) => proc.child.pid!);
    const overlayIp = await sdwanAddressAnswering(lab!, "b", "a", emptyDir, STATUS_PORT);
    if (PING_ONLY) await pingRtts(lab!, a.hostNs, overlayIp, WARM_UP_PINGS);
    else {
      await listening(lab!, a.hostNs, "-t", `127.0.0.1:${APP_PORT}`, 20_000);
      await iperf(a.hostNs, overlayIp, IPERF_PORT, 1); // warm-up: the JIT has seen both paths
      await iperf(a.hostNs, "127.0.0.1", APP_PORT, 1);
    }

    const rtts = await pingRtts(lab!, a.hostNs, overlayIp, PINGS);
    const ping = { pingMs: median(rtts), pingP90Ms: percentile90(rtts) };
    if (PING_ONLY) return { tree, ...ping, sdwanMbps: NaN, sdwanCpuSPerGb: NaN, sdwanRetransmits: NaN, appMbps: NaN, appCpuSPerGb: NaN };
    const measured = async (host: string, port: number) => {
      const before = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
      const result = await iperf(a.hostNs, host, port, SECONDS);
      const cpu = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - before;
      return { ...result, cpuSPerGb: cpu / (result.bytes / 1e9) };
    };
    const sdwan = await measured(overlayIp, IPERF_PORT);
    const app = await measured("127.0.0.1", APP_PORT);
    return { tree, ...ping, sdwanMbps: sdwan.mbps, sdwanCpuSPerGb: sdwan.cpuSPerGb, sdwanRetransmits: sdwan.retransmits, appMbps: app.mbps, appCpuSPerGb: app.cpuSPerGb };
  } finally {
    for (const proc of clients) await proc.stop();
  }
}


async function main(): Promise<void> {
  console.log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(" ")}; base = ${TREES.base}, this = ${TREES.this}`);
  await cleanupStaleLabs();
  workDir = mkdtempSync(join(tmpdir(), "inp2p-bench-ab-"));
  const emptyDir = join(workDir, "cwd");
  mkdirSync(emptyDir);
  lab = await labUp({ sites: [{ name: "a", nat: "none" }, { name: "b", nat: "none" }] });
  procs.push(await startLabServer(lab, join(workDir, "server"), ["[server.sdwan]", 'subnet = "10.10.0.0/24"']));
  const app = { name: "iperf", protocol: "tcp" as const, listen: `127.0.0.1:${APP_PORT}`, peer: "b", target: `127.0.0.1:${IPERF_PORT}` };
  writeClientConfig(lab, join(workDir, "a"), { node: "a", statusPort: STATUS_PORT, apps: [app], extra: ["[client.sdwan]", "enabled = true"] });
  writeClientConfig(lab, join(workDir, "b"), { node: "b", statusPort: STATUS_PORT, expose: [`127.0.0.1:${IPERF_PORT}`], extra: ["[client.sdwan]", "enabled = true"] });
  procs.push(new Proc(lab.spawn(lab.sites.b!.hostNs, ["iperf3", "-s"])));

  const runs: Run[] = [];
  const rawPings: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const raw = await pingRtts(lab, lab.sites.a!.hostNs, lab.sites.b!.publicIp, PINGS);
    rawPings.push(...raw);
    console.log(`round ${round + 1} raw : ping ${median(raw).toFixed(3)} ms (p90 ${percentile90(raw).toFixed(3)}); load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
    for (const tree of (round % 2 === 0 ? ["base", "this"] : ["this", "base"]) as Tree[]) {
      const run = await measurePair(tree, emptyDir);
      runs.push(run);
      console.log(
        `round ${round + 1} ${tree.padEnd(4)}: ping ${run.pingMs.toFixed(3)} ms (p90 ${run.pingP90Ms.toFixed(3)})` +
          (PING_ONLY ? "" : `, SDWAN ${run.sdwanMbps.toFixed(0)} Mbit/s ${run.sdwanCpuSPerGb.toFixed(1)} CPU s/GB (${run.sdwanRetransmits} retransmits), KCP app ${run.appMbps.toFixed(0)} Mbit/s ${run.appCpuSPerGb.toFixed(1)} CPU s/GB`),
      );
    }
  }
  const columns: [string, keyof Run][] = [
    ["ping ms", "pingMs"],
    ["ping p90 ms", "pingP90Ms"],
    ...(PING_ONLY
      ? []
      : ([
          ["SDWAN Mbit/s", "sdwanMbps"],
          ["SDWAN CPU s/GB", "sdwanCpuSPerGb"],
          ["KCP app Mbit/s", "appMbps"],
          ["KCP app CPU s/GB", "appCpuSPerGb"],
        ] as [string, keyof Run][])),
  ];
  const valuesOf = (tree: Tree, key: keyof Run) => runs.filter((run) => run.tree === tree).map((run) => run[key] as number);
  console.log(`\nmedians of ${ROUNDS} rounds, ${PINGS} pings${PING_ONLY ? "" : `, iperf3 TCP ${SECONDS} s`}, a -> b (udp-direct); raw path ping ${median(rawPings).toFixed(3)} ms; load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  console.log("".padEnd(18) + "base".padStart(10) + "this".padStart(10) + "this/base".padStart(11) + "  this lower (rounds, sign test)");
  for (const [label, key] of columns) {
    const [base, mine] = [valuesOf("base", key), valuesOf("this", key)];
    const lower = mine.filter((value, round) => value < base[round]!).length;
    const [baseMedian, thisMedian] = [median(base), median(mine)];
    console.log(
      label.padEnd(18) + baseMedian.toFixed(2).padStart(10) + thisMedian.toFixed(2).padStart(10) + (thisMedian / baseMedian).toFixed(3).padStart(11) + `  ${lower} of ${ROUNDS}, p = ${signTestP(lower, ROUNDS).toFixed(2)}`,
    );
  }
}

main()
  .catch((err) => {
    console.error(`A/B bench failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
