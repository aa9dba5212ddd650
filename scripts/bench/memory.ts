#!/usr/bin/env bun
// Resident memory of the compiled inp2ps and inp2pc, idle and loaded, in one NAT-lab run. Needs root,
// iproute2, nftables, iperf3 and ping (installs iperf3 and ping when missing).
//
//   node_modules/.bin/bun scripts/bench/memory.ts [--dist DIR]... [--seconds 10] [--peers 100] [--rounds 1]
//                                                [--env NAME=VALUE]...
//
// --dist DIR: a directory holding a compiled inp2ps and inp2pc (default: this tree's linux-x64 target,
// built now into a temp dir). Give it twice (e.g. main's build and this tree's) and the rounds
// interleave them. --env: set for every inp2ps and inp2pc started (e.g. BUN_OPTIONS=--smol).
// Two public sites ("a", "b") and inp2ps in the lab's server namespace. Per binary set and round:
//   inp2ps idle     RSS of inp2ps with no node, settled
//   inp2pc idle     RSS of inp2pc at b logged in, no peer, settled
//   100 peers       RSS of inp2ps with --peers idle sessions logged in (one process in site a holds
//                   them: scripts/bench/idle-clients.ts --worker), settled
//   loaded          inp2pc at a and b with [client.sdwan] and a TCP app (a -> b's iperf3, over KCP):
//                   iperf3 TCP for --seconds over the SDWAN and then through the app, a -> b; the
//                   largest RSS of each inp2pc during each transfer, the CPU seconds both used per GB
//                   (the price of a smaller heap is more collections), where each one's memory was
//                   as the transfer ended (anonymous vs file-backed RSS, JS heap, external), and each
//                   one's RSS once the transfers are over and it has been idle for SETTLE_AFTER_LOAD_MS
// "Settled": SETTLE_IDLE_MS after the process logged in (or listened). RSS is VmRSS from /proc (MB =
// 10^6 bytes). It prints the binary sizes and, for reference, the RSS of a compiled Bun program that
// only waits (`setInterval`): the runtime's own floor. Only linux-x64 (the baseline build) runs here:
// the arm64 builds would run under qemu-user, which measures qemu, and the musl builds need a musl
// libstdc++/libgcc that no registry here has (see README, install notes).
// The lab, its processes and temp dirs are removed at the end, on error and on Ctrl-C.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { cleanupStaleLabs, labSupport, labUp, type Lab } from "../natlab/lab.ts";
import { BUN, Proc, REPO_ROOT, run, waitFor } from "../../test/helpers/processes.ts";
import { DIRECT_LINK_KINDS, labClientStatus, listening, spawnIn, startLabClient, startLabServer, WS_PORT, writeClientConfig } from "../../test/e2e/helpers.ts";
import { cleanUpOnExit, ensureCommands, fixed, iperf3, loadAverage, median, printTable, treeRssMb } from "./lab-measure.ts";

const STATUS_PORT = 27191;
const IPERF_PORT = 5201;
const APP_PORT = 5202;
const SUBNET = "10.10.0.0/24";
const SETTLE_IDLE_MS = 5_000;
const SETTLE_AFTER_LOAD_MS = 10_000;
const PEERS_ONLINE_TIMEOUT_MS = 120_000;
const LINK_UP_TIMEOUT_MS = 30_000;
const MB = 1e6;

const { values } = parseArgs({
  options: {
    dist: { type: "string", multiple: true },
    seconds: { type: "string", default: "10" },
    peers: { type: "string", default: "100" },
    rounds: { type: "string", default: "1" },
    env: { type: "string", multiple: true },
  },
});
const SECONDS = Number(values.seconds);
const PEERS = Number(values.peers);
const ROUNDS = Number(values.rounds);
if (!(Number.isInteger(SECONDS) && SECONDS >= 1 && Number.isInteger(PEERS) && PEERS >= 1 && Number.isInteger(ROUNDS) && ROUNDS >= 1)) {
  console.error("--seconds, --peers and --rounds take positive integers");
  process.exit(2);
}
const ENV = values.env ?? [];
const badEnv = ENV.find((pair) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(pair));
if (badEnv !== undefined) {
  console.error(`--env takes NAME=VALUE, got ${JSON.stringify(badEnv)}`);
  process.exit(2);
}

let lab: Lab | undefined;
let workDir = "";
const procs: Proc[] = [];
const cleanUp = cleanUpOnExit("memory bench", () => ({ procs, lab, workDir }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hostNs = (site: string) => lab!.sites[site]!.hostNs;

interface Figures {
  dist: string;
  /** Idle figures: VmRSS and its anonymous part (the file-backed rest moves with the page cache). */
  serverIdleMb: number;
  serverIdleAnonMb: number;
  clientIdleMb: number;
  clientIdleAnonMb: number;
  serverWithPeersMb: number;
  serverWithPeersAnonMb: number;
  sdwan: Loaded;
  app: Loaded;
  /** Each inp2pc's RSS SETTLE_AFTER_LOAD_MS after the transfers: [a, b]. */
  settledMb: [number, number];
}

/** One transfer a -> b: its rate, the largest RSS of each inp2pc during it and where each one's memory was as it ended ([a sending, b receiving]). */
interface Loaded {
  gbps: number;
  /** CPU seconds both inp2pc used per GB received. */
  cpuSPerGb: number;
  peakMb: [number, number];
  split: [Split, Split];
}

/** A process's memory in MB: anonymous and file-backed resident pages (/proc), its JavaScript heap and external (Buffer) memory (its /metrics). */
interface Split {
  anonMb: number;
  fileMb: number;
  heapUsedMb: number;
  heapTotalMb: number;
  externalMb: number;
}

/** A process's resident memory in MB, anonymous and file-backed (/proc/PID/status). */
function rssPartsMb(pid: number): { anonMb: number; fileMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const mbOf = (field: string) => (Number(status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"))?.[1] ?? NaN) * 1024) / MB;
  return { anonMb: mbOf("RssAnon"), fileMb: mbOf("RssFile") };
}

async function split(pid: number, ns: string): Promise<Split> {
  const metrics = (await lab!.exec(ns, ["curl", "-s", "--max-time", "5", `http://127.0.0.1:${STATUS_PORT}/metrics`])).stdout;
  const gauge = (name: string) => Number(metrics.match(new RegExp(`^${name} (\\S+)$`, "m"))?.[1] ?? NaN) / MB;
  return { ...rssPartsMb(pid), heapUsedMb: gauge("inp2p_heap_used_bytes"), heapTotalMb: gauge("inp2p_heap_total_bytes"), externalMb: gauge("inp2p_external_memory_bytes") };
}

/** The command that runs a compiled program, with --env set. */
const command = (dist: string, program: "inp2ps" | "inp2pc") => [...(ENV.length > 0 ? ["env", ...ENV] : []), join(dist, program)];

async function measure(dist: string, round: number): Promise<Figures> {
  const dir = join(workDir, `round-${round}-${dist.replaceAll("/", "_")}`);
  const emptyDir = join(dir, "cwd");
  mkdirSync(emptyDir, { recursive: true });
  const started: Proc[] = [];
  const start = (proc: Proc) => (procs.push(proc), started.push(proc), proc);
  try {
    // max_conns_per_ip: the idle peers all come from site a's one public address.
    const server = start(await startLabServer(lab!, join(dir, "server"), [`max_conns_per_ip = ${PEERS + 16}`, `max_conns_before_login = ${PEERS + 16}`, "[server.sdwan]", `subnet = "${SUBNET}"`], command(dist, "inp2ps")));
    await sleep(SETTLE_IDLE_MS);
    const serverIdleMb = treeRssMb(server.child.pid!);
    const serverIdleAnonMb = rssPartsMb(server.child.pid!).anonMb;

    const app = { name: "iperf", protocol: "tcp" as const, listen: `127.0.0.1:${APP_PORT}`, peer: "b", target: `127.0.0.1:${IPERF_PORT}` };
    const configB = writeClientConfig(lab!, join(dir, "b"), { node: "b", statusPort: STATUS_PORT, expose: [`127.0.0.1:${IPERF_PORT}`], extra: ["[client.sdwan]", "enabled = true"] });
    const configA = writeClientConfig(lab!, join(dir, "a"), { node: "a", statusPort: STATUS_PORT, apps: [app], extra: ["[client.sdwan]", "enabled = true"] });
    const b = start(await startLabClient(lab!, hostNs("b"), configB, emptyDir, {}, command(dist, "inp2pc")));
    await sleep(SETTLE_IDLE_MS);
    const clientIdleMb = treeRssMb(b.child.pid!);
    const clientIdleAnonMb = rssPartsMb(b.child.pid!).anonMb;

    mkdirSync(join(dir, "peers"), { recursive: true });
    const peers = start(spawnIn(lab!, hostNs("a"), emptyDir, [BUN, resolve(import.meta.dirname, "idle-clients.ts"), "--worker", [WS_PORT, "", 0, PEERS, join(dir, "peers"), lab!.server.ip].join(",")]));
    await peers.waitForOutput(new RegExp(`^online ${PEERS}$`, "m"), PEERS_ONLINE_TIMEOUT_MS);
    await sleep(SETTLE_IDLE_MS);
    const serverWithPeersMb = treeRssMb(server.child.pid!);
    const serverWithPeersAnonMb = rssPartsMb(server.child.pid!).anonMb;
    await peers.stop();

    const a = start(await startLabClient(lab!, hostNs("a"), configA, emptyDir, {}, command(dist, "inp2pc")));
    const overlayIp = await waitFor("b's virtual address", async () => (await labClientStatus(lab!, hostNs("b"), emptyDir, STATUS_PORT)).sdwan?.address as string | undefined, LINK_UP_TIMEOUT_MS, 300);
    await waitFor("the overlay answering", async () => (await lab!.exec(hostNs("a"), ["ping", "-c", "1", "-W", "1", overlayIp])).code === 0 || undefined, LINK_UP_TIMEOUT_MS, 300);
    await listening(lab!, hostNs("a"), "-t", `127.0.0.1:${APP_PORT}`, LINK_UP_TIMEOUT_MS);
    // The overlay answers over a relay first; the bench loads the direct link that replaces it.
    await waitFor("a direct link from a to b", async () => (DIRECT_LINK_KINDS as readonly string[]).includes((await labClientStatus(lab!, hostNs("a"), emptyDir, STATUS_PORT)).peers.b?.link) || undefined, LINK_UP_TIMEOUT_MS, 300);
    const pids = [a.child.pid!, b.child.pid!];
    const loaded = async (ip: string, port: number): Promise<Loaded> => {
      const transfer = await iperf3(lab!, hostNs("a"), ip, { port, seconds: SECONDS, reverse: false, pids });
      const splits = [await split(pids[0]!, hostNs("a")), await split(pids[1]!, hostNs("b"))] as [Split, Split];
      return { gbps: transfer.gbps, cpuSPerGb: transfer.cpuSeconds / (transfer.bytes / 1e9), peakMb: transfer.rssEachMb as [number, number], split: splits };
    };
    const sdwan = await loaded(overlayIp, IPERF_PORT);
    const appLoad = await loaded("127.0.0.1", APP_PORT);
    await sleep(SETTLE_AFTER_LOAD_MS);
    const settledMb = pids.map((pid) => treeRssMb(pid)) as [number, number];
    return { dist, serverIdleMb, serverIdleAnonMb, clientIdleMb, clientIdleAnonMb, serverWithPeersMb, serverWithPeersAnonMb, sdwan, app: appLoad, settledMb };
  } finally {
    for (const proc of started.reverse()) await proc.stop();
  }
}

/** Builds this tree's linux-x64 target into the work dir; returns the target's directory. */
async function buildThisTree(): Promise<string> {
  const outDir = join(workDir, "dist");
  const build = Bun.spawnSync([BUN, join(REPO_ROOT, "scripts/build.ts"), "--target", "linux-x64", "--outdir", outDir], { stdout: "pipe", stderr: "pipe" });
  if (build.exitCode !== 0) throw new Error(`scripts/build.ts failed (exit ${build.exitCode}): ${build.stderr.toString().trim()}`);
  return join(outDir, "linux-x64");
}

/** RSS of a compiled Bun program that only waits: what the runtime costs before any inp2p code. */
async function runtimeFloorMb(): Promise<number> {
  const source = join(workDir, "wait.ts");
  writeFileSync(source, "setInterval(() => {}, 1000);\n");
  const binary = join(workDir, "wait");
  const build = Bun.spawnSync([BUN, "build", "--compile", source, "--outfile", binary], { stdout: "pipe", stderr: "pipe" });
  if (build.exitCode !== 0) throw new Error(`bun build --compile of ${source} failed: ${build.stderr.toString().trim()}`);
  const proc = run(binary, [], { cwd: workDir, env: Object.fromEntries(ENV.map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)])) });
  procs.push(proc);
  try {
    await sleep(SETTLE_IDLE_MS);
    return treeRssMb(proc.child.pid!);
  } finally {
    await proc.stop();
  }
}

const mb = (value: number) => fixed(value, 0);
const sizeMiB = (path: string) => (existsSync(path) ? (statSync(path).size / 1024 / 1024).toFixed(1) : "–");

async function main(): Promise<void> {
  const support = labSupport();
  if (!support.ok) throw new Error(support.reason);
  await ensureCommands([["iperf3", "iperf3"], ["ping", "iputils-ping"]]);
  const loadAtStart = loadAverage();
  await cleanupStaleLabs();
  workDir = mkdtempSync(join(tmpdir(), "inp2p-bench-memory-"));
  const dists = values.dist?.map((dist) => resolve(dist)) ?? [await buildThisTree()];
  for (const dist of dists)
    for (const program of ["inp2ps", "inp2pc"]) if (!existsSync(join(dist, program))) throw new Error(`--dist ${dist} holds no ${program}`);
  const floorMb = await runtimeFloorMb();

  lab = await labUp({ sites: [{ name: "a", nat: "none" }, { name: "b", nat: "none" }] });
  procs.push(new Proc(lab.spawn(hostNs("b"), ["iperf3", "-s"])));
  const runs: Figures[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const dist of round % 2 === 0 ? dists : [...dists].reverse()) {
      const figures = await measure(dist, round);
      runs.push(figures);
      console.log(`round ${round + 1}/${ROUNDS} ${dist}: inp2pc idle ${mb(figures.clientIdleMb)} MB, SDWAN ${figures.sdwan.gbps.toFixed(3)} Gbit/s ${figures.sdwan.cpuSPerGb.toFixed(1)} CPU s/GB peak a/b ${figures.sdwan.peakMb.map(mb).join("/")} MB, app ${figures.app.gbps.toFixed(3)} Gbit/s ${figures.app.cpuSPerGb.toFixed(1)} CPU s/GB peak a/b ${figures.app.peakMb.map(mb).join("/")} MB (load ${loadAverage()})`);
    }
  }
  const loadAtEnd = loadAverage();

  console.log(`\nMemory bench: compiled binaries, VmRSS in MB (10^6 B), medians of ${ROUNDS} round(s); iperf3 TCP ${SECONDS} s a -> b; ${PEERS} idle peers${ENV.length ? `; env ${ENV.join(" ")}` : ""}`);
  console.log(`load average at start ${loadAtStart}, at end ${loadAtEnd}`);
  const of = (dist: string, pick: (f: Figures) => number) => mb(median(runs.filter((f) => f.dist === dist).map(pick)));
  printTable([
    ["binaries", "inp2ps MiB", "inp2pc MiB", "inp2ps idle", `inp2ps ${PEERS} peers`, "inp2pc idle", "SDWAN Gbit/s", "CPU s/GB", "SDWAN peak a/b", "app Gbit/s", "CPU s/GB", "app peak a/b", "after a/b"],
    ...dists.map((dist) => [
      dist,
      sizeMiB(join(dist, "inp2ps")),
      sizeMiB(join(dist, "inp2pc")),
      `${of(dist, (f) => f.serverIdleMb)} (${of(dist, (f) => f.serverIdleAnonMb)})`,
      `${of(dist, (f) => f.serverWithPeersMb)} (${of(dist, (f) => f.serverWithPeersAnonMb)})`,
      `${of(dist, (f) => f.clientIdleMb)} (${of(dist, (f) => f.clientIdleAnonMb)})`,
      fixed(median(runs.filter((f) => f.dist === dist).map((f) => f.sdwan.gbps)), 3),
      fixed(median(runs.filter((f) => f.dist === dist).map((f) => f.sdwan.cpuSPerGb)), 1),
      `${of(dist, (f) => f.sdwan.peakMb[0])}/${of(dist, (f) => f.sdwan.peakMb[1])}`,
      fixed(median(runs.filter((f) => f.dist === dist).map((f) => f.app.gbps)), 3),
      fixed(median(runs.filter((f) => f.dist === dist).map((f) => f.app.cpuSPerGb)), 1),
      `${of(dist, (f) => f.app.peakMb[0])}/${of(dist, (f) => f.app.peakMb[1])}`,
      `${of(dist, (f) => f.settledMb[0])}/${of(dist, (f) => f.settledMb[1])}`,
    ]),
  ]);
  console.log("\nWhere each inp2pc's memory was as a transfer ended (MB; heap and external from its /metrics; last round):");
  printTable([
    ["binaries", "transfer", "inp2pc", "RSS anon", "RSS file", "heap used", "heap total", "external"],
    ...dists.flatMap((dist) => {
      const last = runs.filter((f) => f.dist === dist).at(-1)!;
      return (["sdwan", "app"] as const).flatMap((kind) =>
        (["a", "b"] as const).map((site, i) => {
          const m = last[kind].split[i]!;
          return [dist, kind, site, mb(m.anonMb), mb(m.fileMb), mb(m.heapUsedMb), mb(m.heapTotalMb), mb(m.externalMb)];
        }),
      );
    }),
  ]);
  console.log(`Idle columns: VmRSS (its anonymous part; the file-backed rest, the executable's pages, moves with the page cache).`);
  console.log(`a sends, b receives; "after": ${SETTLE_AFTER_LOAD_MS / 1000} s after the transfers. A compiled Bun program that only waits: ${mb(floorMb)} MB.`);
  console.log("Measured: linux-x64 (baseline) only. Not measured: linux-arm64(-musl) (qemu-user would measure qemu), linux-x64-musl (needs a musl libstdc++/libgcc no registry here has).");
}

main()
  .catch((err) => {
    console.error(`memory bench failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
