// Measurements shared by the NAT-lab data-plane benches (sdwan.ts, apps.ts): Debian packages installed
// when missing, iperf3 TCP and ping between namespaces, and the CPU time and memory of the processes
// that carry the traffic, read from /proc.
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { hasCommand, run, type Lab } from "../natlab/lab.ts";
import { formatTable } from "../../src/log/table.ts";
import { BUN, REPO_ROOT, waitFor, type Proc } from "../../test/helpers/processes.ts";

/** Kernel clock ticks a second, the unit of utime/stime in /proc/PID/stat (USER_HZ: 100 on Linux). */
const CLOCK_TICKS_PER_SECOND = 100;
const APT_LOCK_TIMEOUT_SECONDS = 300;
const APT_TIMEOUT_MS = 600_000;
const PING_INTERVAL_SECONDS = 0.2;
/** The least interval iputils' ping allows a user who is not root; closer pings are a flood, not pings. */
const PING_INTERVAL_MIN_SECONDS = 0.002;
const PING_INTERVAL_MAX_SECONDS = 1;
const RSS_SAMPLE_INTERVAL_MS = 500;
/** A forking forwarder (socat) reaps the child of a finished connection shortly after it ends. */
const CHILDREN_REAPED_TIMEOUT_MS = 5_000;
const BYTES_PER_GB = 1e9;
const IPERF_BUSY_ATTEMPTS = 20;
const IPERF_BUSY_RETRY_MS = 500;

/** What a bench made, read when it cleans up: its processes, its lab, other files, its temp dir. */
export interface BenchLeftovers {
  procs: readonly Proc[];
  lab?: Lab;
  files?: readonly string[];
  workDir: string;
}

/**
 * The clean-up of a bench: stops its processes, takes its lab down and removes its files, once, whether
 * it is called at the end, on an error, or on SIGINT/SIGTERM (then the bench exits 130).
 */
export function cleanUpOnExit(bench: string, leftovers: () => BenchLeftovers): () => Promise<void> {
  let cleaning: Promise<void> | undefined;
  const cleanUp = () =>
    (cleaning ??= (async () => {
      const { procs, lab, files = [], workDir } = leftovers();
      for (const proc of procs) await proc.stop();
      await lab?.down();
      for (const file of files) rmSync(file, { force: true });
      if (workDir) rmSync(workDir, { recursive: true, force: true });
    })());
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, () => {
      console.error(`\n${bench}: ${signal}, cleaning up`);
      void cleanUp().finally(() => process.exit(130));
    });
  return cleanUp;
}

/**
 * The options both benches take: `--seconds` of each iperf3 test, `--rounds`, `--json` file, `--profile`
 * directory (inp2pc runs under Bun's CPU profiler; see printProfiles), and with `withPingIntervals`
 * `--ping-intervals` (seconds, comma-separated); exits 2 on a bad one.
 */
export function benchOptions(withPingIntervals = false): { seconds: number; rounds: number; json: string | undefined; profile: string | undefined; pingIntervals: number[] } {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string", default: "5" },
      rounds: { type: "string", default: "3" },
      json: { type: "string" },
      profile: { type: "string" },
      ...(withPingIntervals && { "ping-intervals": { type: "string" as const } }),
    },
  });
  const positiveInteger = (name: string, text: string) => {
    const value = Number(text);
    if (Number.isInteger(value) && value >= 1) return value;
    console.error(`--${name} takes a positive integer, got ${JSON.stringify(text)}`);
    process.exit(2);
  };
  const intervalsText = (values as { "ping-intervals"?: string })["ping-intervals"];
  const pingIntervals = intervalsText === undefined ? [] : intervalsText.split(",").map(Number);
  if (pingIntervals.some((seconds) => !(seconds >= PING_INTERVAL_MIN_SECONDS && seconds <= PING_INTERVAL_MAX_SECONDS))) {
    console.error(`--ping-intervals takes seconds between ${PING_INTERVAL_MIN_SECONDS} and ${PING_INTERVAL_MAX_SECONDS}, comma-separated, got ${JSON.stringify(intervalsText)}`);
    process.exit(2);
  }
  return { seconds: positiveInteger("seconds", values.seconds), rounds: positiveInteger("rounds", values.rounds), json: values.json, profile: values.profile, pingIntervals };
}

/** The environment that makes a Bun program write a CPU profile into `dir` when it exits. */
export const profilerEnv = (dir: string): Record<string, string> => ({ BUN_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir}` });

/**
 * The functions a process spent its samples in during `windows` (wall-clock ms), from the CPU profiles
 * Bun wrote into `dir` at its exit (self time, the top `count`). Sampling while the JS thread is busy,
 * so the shares are of its busy time; names with no file are native (system calls, node:crypto).
 */
export function printProfiles(dir: string, title: string, windows: readonly { startMs: number; endMs: number }[], count = 15): void {
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")) : [];
  if (files.length === 0) return console.log(`${title}: no CPU profile in ${dir}`);
  const bySelf = new Map<string, number>();
  let total = 0;
  for (const file of files) {
    const profile = JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile;
    const frames = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
    let atUs = profile.startTime;
    profile.samples.forEach((id, i) => {
      atUs += profile.timeDeltas[i] ?? 0;
      const atMs = atUs / 1000;
      if (!windows.some((w) => atMs >= w.startMs && atMs <= w.endMs)) return;
      const frame = frames.get(id);
      if (!frame || frame.functionName === "(root)" || frame.functionName === "(program)" || frame.functionName === "(idle)") return;
      const where = frame.url ? ` ${frame.url.split("/").slice(-2).join("/")}:${frame.lineNumber + 1}` : "";
      const name = `${frame.functionName || "(anonymous)"}${where}`;
      bySelf.set(name, (bySelf.get(name) ?? 0) + 1);
      total++;
    });
  }
  console.log(`\n${title}: ${total} samples in the transfers, self time`);
  printTable([["share", "function"], ...[...bySelf].sort((x, y) => y[1] - x[1]).slice(0, count).map(([name, n]) => [`${((100 * n) / total).toFixed(1)}%`, name])]);
}

interface CpuProfile {
  startTime: number;
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

/** Installs the Debian packages of the missing commands (`[command, package]` pairs); throws saying what to do when it cannot. */
export async function ensureCommands(needs: readonly [string, string][]): Promise<void> {
  const missing = [...new Set(needs.filter(([command]) => !hasCommand(command)).map(([, pkg]) => pkg))];
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) throw new Error(`missing Debian packages ${missing.join(" ")}: run as root, or apt-get install -y ${missing.join(" ")}`);
  console.log(`installing ${missing.join(" ")} (apt-get)`);
  const install = () => run(["apt-get", "install", "-y", "-q", "-o", `DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_SECONDS}`, ...missing], { timeoutMs: APT_TIMEOUT_MS, env: { DEBIAN_FRONTEND: "noninteractive" } });
  let result = await install();
  if (result.code !== 0) {
    await run(["apt-get", "update", "-q"], { timeoutMs: APT_TIMEOUT_MS });
    result = await install();
  }
  const still = needs.filter(([command]) => !hasCommand(command)).map(([command]) => command);
  if (result.code !== 0 || still.length > 0)
    throw new Error(`apt-get install ${missing.join(" ")} failed (exit ${result.code}; still missing: ${still.join(", ") || "none"}): ${result.stderr.trim().split("\n").slice(-3).join(" / ")}`);
}

export const median = (values: readonly number[]): number => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/**
 * Two-sided sign test: how likely a split at least as uneven as `k` of `n` paired rounds is when neither
 * side is better (each round a coin toss).
 */
export function signTestP(k: number, n: number): number {
  const tail = Math.min(k, n - k);
  let probability = 0;
  for (let i = 0, ways = 1; i <= tail; i++, ways = (ways * (n - i + 1)) / i) probability += ways / 2 ** n;
  return Math.min(1, 2 * probability);
}

/** Round-trip times in ms of `count` pings from `ns` to `ip`, `intervalSeconds` apart; throws when none came back. */
export async function pingRtts(lab: Lab, ns: string, ip: string, count: number, intervalSeconds = PING_INTERVAL_SECONDS): Promise<number[]> {
  const result = await lab.exec(ns, ["ping", "-n", "-c", String(count), "-i", String(intervalSeconds), "-W", "1", ip], { timeoutMs: (count * intervalSeconds + 10) * 1000 });
  const rtts = [...result.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (rtts.length === 0) throw new Error(`ping ${ip} from ${ns}: no answer (${result.stdout.trim().split("\n").pop()})`);
  return rtts;
}

/** CPU seconds (user + system, with reaped children's) a process has used, from /proc/PID/stat; 0 when it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces): state is field 3, utime..cstime 14..17.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const [utime, stime, cutime, cstime] = fields.slice(11, 15).map(Number);
    return (utime! + stime! + cutime! + cstime!) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
}

/** Resident memory in MB (10^6 bytes) of a process and its descendants; 0 when it is gone. */
export function treeRssMb(pid: number): number {
  let kib = 0;
  try {
    kib = Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+)\s+kB/m)?.[1] ?? 0);
  } catch {
    return 0;
  }
  return (kib * 1024) / 1e6 + childrenOf(pid).reduce((sum, child) => sum + treeRssMb(child), 0);
}

/**
 * The largest resident memory (MB, with descendants) seen of each of `pids`, and of all together,
 * sampled every RSS_SAMPLE_INTERVAL_MS from now until stop() (which takes a last sample).
 */
export function rssPeaks(pids: readonly number[]): { readonly eachMb: number[]; readonly sumMb: number; stop(): void } {
  const peaks = { eachMb: pids.map(() => 0), sumMb: 0, stop: () => {} };
  const sample = () => {
    const now = pids.map((pid) => treeRssMb(pid));
    peaks.eachMb = peaks.eachMb.map((peak, i) => Math.max(peak, now[i]!));
    peaks.sumMb = Math.max(peaks.sumMb, now.reduce((sum, mb) => sum + mb, 0));
  };
  sample();
  const timer = setInterval(sample, RSS_SAMPLE_INTERVAL_MS);
  peaks.stop = () => {
    clearInterval(timer);
    sample();
  };
  return peaks;
}

export interface Transfer {
  gbps: number;
  bytes: number;
  retransmits: number | undefined;
  /** CPU seconds the measured processes used over the transfer. */
  cpuSeconds: number;
  /** Largest resident memory of the measured processes (summed) seen during the transfer, MB. */
  rssMb: number;
  /** Largest resident memory of each measured process seen during the transfer, MB, in the order of `pids`. */
  rssEachMb: number[];
  /** When the transfer ran (wall clock, ms). */
  startMs: number;
  endMs: number;
}

/**
 * One iperf3 TCP test of `seconds` from `ns` to `ip:port` (`reverse`: the server sends), with the CPU and
 * memory of `pids` (the processes that carry it, on both ends) over it.
 */
export async function iperf3(lab: Lab, ns: string, ip: string, opts: { port?: number; seconds: number; reverse: boolean; pids: readonly number[] }): Promise<Transfer> {
  const cpuBefore = opts.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const startMs = Date.now();
  const peaks = rssPeaks(opts.pids);
  let result;
  try {
    const argv = ["iperf3", "-c", ip, "-p", String(opts.port ?? 5201), "-t", String(opts.seconds), "-J", ...(opts.reverse ? ["-R"] : [])];
    // The server takes one test at a time and is "busy" until the last test's control connection has
    // closed, which through a forwarder comes a little after the client is done.
    for (let attempt = 1; ; attempt++) {
      result = await lab.exec(ns, argv, { timeoutMs: (opts.seconds + 30) * 1000 });
      if (!result.stdout.includes("the server is busy") || attempt === IPERF_BUSY_ATTEMPTS) break;
      await new Promise((r) => setTimeout(r, IPERF_BUSY_RETRY_MS));
    }
  } finally {
    peaks.stop();
  }
  const endMs = Date.now();
  for (const pid of opts.pids) await childrenReaped(pid);
  const cpuAfter = opts.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  let report;
  try {
    report = JSON.parse(result.stdout);
  } catch {
    throw new Error(`iperf3 to ${ip}:${opts.port ?? 5201} from ${ns} printed no report (exit ${result.code}): ${result.stderr.trim()}`);
  }
  if (report.error) throw new Error(`iperf3 to ${ip}:${opts.port ?? 5201} from ${ns}: ${report.error}`);
  return {
    gbps: report.end.sum_received.bits_per_second / 1e9,
    bytes: report.end.sum_received.bytes,
    retransmits: report.end.sum_sent.retransmits,
    cpuSeconds: cpuAfter - cpuBefore,
    rssMb: peaks.sumMb,
    rssEachMb: peaks.eachMb,
    startMs,
    endMs,
  };
}

async function childrenReaped(pid: number): Promise<void> {
  const deadline = Date.now() + CHILDREN_REAPED_TIMEOUT_MS;
  while (childrenOf(pid).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/** CPU seconds per GB moved over a set of transfers (undefined when no process was measured). */
export function cpuPerGb(transfers: readonly Transfer[], measured: boolean): number | undefined {
  if (!measured) return undefined;
  const bytes = transfers.reduce((sum, t) => sum + t.bytes, 0);
  return transfers.reduce((sum, t) => sum + t.cpuSeconds, 0) / (bytes / BYTES_PER_GB);
}

/** A figure with `digits` decimals, "–" when there is none. */
export const fixed = (value: number | undefined, digits: number): string => (value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(digits));
/** value / base as "0.00x", "–" when either is missing. */
export const ratio = (value: number | undefined, base: number | undefined): string => (value === undefined || base === undefined || !Number.isFinite(value) || !base ? "–" : `${(value / base).toFixed(2)}x`);

export function printTable(rows: string[][]): void {
  for (const line of formatTable(rows)) console.log(line);
}

/** The 1-, 5- and 15-minute load averages, as /proc/loadavg gives them. */
export function loadAverage(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

/**
 * The SDWAN address of the inp2pc at `site` (from `inp2pc status --json` on `statusPort`, run from
 * `emptyDir`), once the site `from` reaches it by ping over the overlay.
 */
export async function sdwanAddressAnswering(lab: Lab, site: string, from: string, emptyDir: string, statusPort: number, timeoutMs = 20_000): Promise<string> {
  const address = await waitFor(`${site}'s virtual address`, async () => {
    const status = await lab.exec(lab.sites[site]!.hostNs, ["sh", "-c", `cd "${emptyDir}" && exec "$@"`, "sh", BUN, join(REPO_ROOT, "src/cli/inp2pc.ts"), "status", "--json", "--status-port", String(statusPort)]);
    return status.code === 0 ? ((JSON.parse(status.stdout).sdwan?.address as string | undefined) ?? undefined) : undefined;
  }, timeoutMs, 300);
  await waitFor("the overlay answering", async () => (await lab.exec(lab.sites[from]!.hostNs, ["ping", "-c", "1", "-W", "1", address])).code === 0 || undefined, timeoutMs, 300);
  return address;
}
