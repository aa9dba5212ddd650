#!/usr/bin/env bun
// How many idle clients one inp2ps holds, what they cost, and how long a cold start takes.
//
//   node_modules/.bin/bun scripts/bench/idle-clients.ts [--clients 1000] [--heartbeat-ms 10000] [--measure-s 30]
//       [--batch 50] [--fast-heartbeat-ms 1000] [--fast-measure-s 10] [--cold-runs 5] [--build | --no-build] [--skip-cold] [--trace]
//       [--no-reconnect] [--procs 1] [--profile DIR] [--login-rate R]
//
// 1. Starts a real inp2ps process (127.0.0.1, free port, tls auto, heartbeat timeout 3x the interval) in a
//    temp dir, then opens N real ServerSessions (real TLS, real login with their own identity key, real
//    heartbeats) from this one process, in batches. Reads the server's RSS and CPU time from /proc and
//    reports memory per node and CPU per heartbeat. A second row repeats it with a short heartbeat.
//    After the first row's window: kill -9 the server with all N online, restart it (same port, data dir and certificate)
//    and time until all N sessions are online again (the mass-reconnect row; --no-reconnect skips it).
//    --procs P > 1 (for fleets one process cannot hold: each session is a socket): P worker processes hold the
//    sessions and report how many are online; prints the fleet-scale row only (no per-heartbeat counts, no second row),
//    with the heartbeat answer times the workers saw while logging in and while coming back, and their warnings.
//    The fleet-scale row gives server CPU per login over the first and the last tenth of the logins, raw and net of
//    the heartbeat CPU of the nodes already online (see loginCost), and the heartbeat CPU per node.
//    Before starting, the bench says when N is more than the open-file limits (or loopback ports) of this box allow.
//    --login-rate R: the server's login_rate (default: inp2ps's own).
//    --profile DIR: each inp2ps of part 1 runs under Bun's CPU profiler (written into DIR when it exits; a kill -9
//    writes none, so the profile is the restarted server's, or the second row's); prints the top functions.
// 2. Times spawn -> "listening on" for inp2ps and spawn -> "logged in" for a fresh inp2pc (new temp dir, so it
//    creates its identity key), from source and from compiled binaries: dist/linux-<cpu>/ when it is newer than src/, else
//    built now into a temp dir (about a second; --build always does, --no-build never does).
// Batches shrink as N grows: each login makes the server send node-online to every online peer, and all peers live in
// this process, so unbounded batches delay heartbeat replies past an interval. --trace prints every batch and each second of the window.
// Everything stays on 127.0.0.1; all processes and temp dirs are removed at the end, on error and on Ctrl-C.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { ServerSession, KnownServers } from "../../src/client/index.ts";
import { generateIdentity } from "../../src/crypto/index.ts";
import { createLogger } from "../../src/log/index.ts";
import { VERSION } from "../../src/protocol/index.ts";
import { freePort, ownServerPorts, portToml } from "../../test/helpers/processes.ts";
import { printProfiles, profilerEnv } from "./lab-measure.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = process.execPath;
const SRC_INP2PS = join(ROOT, "src/cli/inp2ps.ts");
const SRC_INP2PC = join(ROOT, "src/cli/inp2pc.ts");
const TOKEN = "1234567890123456789";

/** An expected failure: printed without a stack. */
class BenchError extends Error {}

// ---------- arguments ----------

interface Options {
  clients: number;
  heartbeatMs: number;
  measureS: number;
  batch: number;
  fastHeartbeatMs: number; // 0 = skip the second row
  fastMeasureS: number;
  coldRuns: number;
  build: "auto" | "always" | "never";
  skipCold: boolean;
  trace: boolean;
  reconnect: boolean;
  procs: number;
  /** [server] login_rate; 0 = the server's default. */
  loginRate: number;
  profileDir?: string;
  /** Set in a worker process (--procs): the server to log in to and the sessions to hold. */
  /** `host` defaults to 127.0.0.1; an empty fingerprint means plain ws (a server with tls = "off", as in the NAT lab). */
  worker?: { port: number; fingerprint: string; first: number; count: number; dir: string; host: string };
}

function parseArgs(argv: string[]): Options {
  const o: Options = { clients: 1000, heartbeatMs: 10_000, measureS: 30, batch: 50, fastHeartbeatMs: 1000, fastMeasureS: 10, coldRuns: 5, build: "auto", skipCold: false, trace: false, reconnect: true, procs: 1, loginRate: 0 };
  const numeric: Record<string, keyof Options> = {
    "--clients": "clients",
    "--heartbeat-ms": "heartbeatMs",
    "--measure-s": "measureS",
    "--batch": "batch",
    "--fast-heartbeat-ms": "fastHeartbeatMs",
    "--fast-measure-s": "fastMeasureS",
    "--cold-runs": "coldRuns",
    "--procs": "procs",
    "--login-rate": "loginRate",
  };
  for (let i = 0; i < argv.length; i++) {
    const [name, inline] = argv[i]!.split("=", 2) as [string, string | undefined];
    if (name === "--build") o.build = "always";
    else if (name === "--no-build") o.build = "never";
    else if (name === "--skip-cold") o.skipCold = true;
    else if (name === "--trace") o.trace = true;
    else if (name === "--no-reconnect") o.reconnect = false;
    else if (name === "--profile") o.profileDir = resolve(inline ?? argv[++i] ?? "");
    else if (name === "--worker") {
      const [port, fingerprint, first, count, dir, host] = (inline ?? argv[++i] ?? "").split(",");
      o.worker = { port: Number(port), fingerprint: fingerprint!, first: Number(first), count: Number(count), dir: dir!, host: host || "127.0.0.1" };
    }
    else if (name === "-h" || name === "--help") {
      const lines = readFileSync(import.meta.path, "utf8").split("\n").slice(1);
      console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith("//"))).map((l) => l.replace(/^\/\/ ?/, "")).join("\n"));
      process.exit(0);
    } else if (numeric[name]) {
      const text = inline ?? argv[++i];
      const value = Number(text);
      if (!text || !Number.isFinite(value) || value < 0) throw new BenchError(`${name} needs a non-negative number, got ${text}`);
      (o as unknown as Record<string, number>)[numeric[name]!] = value;
    } else throw new BenchError(`unknown argument ${argv[i]} (see --help)`);
  }
  if (o.clients < 1 || o.clients > 50_000) throw new BenchError("--clients must be 1..50000");
  if (o.heartbeatMs < 100 || o.fastHeartbeatMs > 0 && o.fastHeartbeatMs < 100) throw new BenchError("heartbeat intervals must be >= 100 ms (the server's minimum)");
  if (o.batch < 1) throw new BenchError("--batch must be >= 1");
  if (o.procs < 1 || o.procs > 64) throw new BenchError("--procs must be 1..64");
  return o;
}

// ---------- cleanup ----------

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
const sessions = new Set<ServerSession>();
let cleanedUp = false;

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** Synchronous last-resort cleanup: stop sessions, kill every child we started (by pid), remove temp dirs. */
function cleanupNow(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const s of sessions) s.stop();
  sessions.clear();
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const dir of [...tempDirs]) removeDir(dir);
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: cleaning up\n`);
    cleanupNow();
    process.exit(130);
  });
process.on("exit", cleanupNow);

// ---------- processes ----------

const OUTPUT_KEPT = 64 * 1024;
/** node-online messages one login batch may make the server send to this process's sessions. */
const MAX_FANOUT_PER_BATCH = 10_000;
/** How long the mass-reconnect row waits for all N sessions to be online again. */
const RECONNECT_BOUND_MS = 600_000;

class Proc {
  output = "";
  exitCode: number | null = null;
  readonly spawnedAt = performance.now();
  readonly exited: Promise<number | null>;
  private waiters: { pattern: RegExp; done: (at: number) => void; fail: (e: Error) => void }[] = [];

  constructor(readonly child: ChildProcess, readonly label: string) {
    children.add(child);
    const onData = (d: Buffer) => {
      const at = performance.now();
      this.output = (this.output + d.toString()).slice(-OUTPUT_KEPT);
      this.waiters = this.waiters.filter((w) => (w.pattern.test(this.output) ? (w.done(at), false) : true));
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    this.exited = new Promise((done) =>
      child.on("exit", (code, signal) => {
        this.exitCode = code ?? (signal ? 128 : -1);
        children.delete(child);
        for (const w of this.waiters) w.fail(new Error(`${label} exited (${signal ?? code}) before printing ${w.pattern}; output:\n${this.output.slice(-2000)}`));
        this.waiters = [];
        done(this.exitCode);
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resolves with performance.now() at the moment the output first matched `pattern`. */
  waitForOutput(pattern: RegExp, timeoutMs = 15_000): Promise<number> {
    if (pattern.test(this.output)) return Promise.resolve(performance.now());
    if (this.exitCode !== null) return Promise.reject(new Error(`${this.label} already exited; output:\n${this.output.slice(-2000)}`));
    return new Promise((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`${this.label}: no ${pattern} within ${timeoutMs} ms; output:\n${this.output.slice(-2000)}`)), timeoutMs);
      this.waiters.push({ pattern, done: (at) => (clearTimeout(timer), done(at)), fail: (e) => (clearTimeout(timer), fail(e)) });
    });
  }

  async stop(): Promise<void> {
    if (this.exitCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Extra environment of the inp2ps processes of part 1 (--profile), and their login_rate (--login-rate; 0: the default). */
let serverEnv: Record<string, string> = {};
let serverLoginRate = 0;

function run(program: string, args: string[], cwd: string, label: string, extraEnv: Record<string, string> = {}): Proc {
  const env = { ...process.env, INP2P_TOKEN: undefined, INP2P_NODE: undefined, INP2P_SERVER: undefined, ...extraEnv };
  const [command, argv] = program.endsWith(".ts") ? [BUN, [program, ...args]] : [program, args];
  return new Proc(spawn(command, argv, { cwd, env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] }), label);
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------- /proc ----------

const CLK_TCK = (() => {
  const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** utime + stime of a process, in ms. */
function cpuMs(pid: number | "self"): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields[0] is field 3 (state)
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK; // fields 14 and 15
}

function rssKiB(pid: number | "self"): number {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+)\s+kB/m);
  return m ? Number(m[1]) : NaN;
}

/** The hard open-files limit: Bun raises the soft one to it by itself, and inp2ps and the workers inherit it from this process. */
function openFilesHardLimit(): number {
  const m = readFileSync("/proc/self/limits", "utf8").match(/^Max open files\s+\S+\s+(\d+|unlimited)/m);
  return !m ? NaN : m[1] === "unlimited" ? Infinity : Number(m[1]);
}

/** Files inp2ps and a bench process hold beside their sockets (measured: inp2ps 1013 with 1000 nodes). */
const SERVER_SPARE_FILES = 64;
const BENCH_SPARE_FILES = 256;

/** Why this box cannot hold N nodes (each a socket in inp2ps and one in a bench process, all from 127.0.0.1), or undefined. */
function fleetLimitProblem(n: number, procs: number): string | undefined {
  const hard = openFilesHardLimit();
  const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number) as [number, number];
  const ports = high - low + 1;
  if (n + SERVER_SPARE_FILES > hard)
    return `inp2ps needs a socket per node, ${n + SERVER_SPARE_FILES} files for ${n} nodes, but the hard open-files limit (ulimit -Hn) is ${hard}: ` +
      `at most ${hard - SERVER_SPARE_FILES} nodes here (raise it as root: ulimit -Hn ${n + 1024}, or LimitNOFILE in a systemd unit)`;
  const perProc = Math.ceil(n / procs);
  if (perProc + BENCH_SPARE_FILES > hard)
    return `each bench process would hold ${perProc} sessions but the hard open-files limit (ulimit -Hn) is ${hard}: use --procs ${Math.ceil(n / (hard - BENCH_SPARE_FILES))} or more`;
  if (n > ports) return `every session connects from 127.0.0.1 to one port, so at most ${ports} of them (net.ipv4.ip_local_port_range ${low}-${high}); ${n} do not fit`;
  return undefined;
}

const openFds = (pid: number | "self") => readdirSync(`/proc/${pid}/fd`).length;

// ---------- formatting ----------

const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
const ms = (x: number) => (x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows.map((r) => "  " + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ")).join("\n");
}

const progress = (text: string) => process.stderr.write(`  .. ${text}\n`);

// ---------- servers ----------

interface Server {
  proc: Proc;
  dir: string;
  port: number;
  /** Its STUN and relay ports (TOML), kept across a restart: never the defaults, which a test on this host may use. */
  ownPorts: string;
  fingerprint: string;
  startupMs: number;
}

async function startInp2ps(program: string, heartbeatMs: number, maxConns: number, label: string, again?: Server): Promise<Server> {
  const dir = again?.dir ?? tempDir("inp2p-bench-s-");
  const port = again?.port ?? (await freePort());
  const ownPorts = again?.ownPorts ?? portToml(await ownServerPorts());
  const configPath = join(dir, "inp2ps.toml");
  writeFileSync(
    configPath,
    [
      'role = "server"',
      'log_level = "info"',
      "[server]",
      'listen = "127.0.0.1"',
      `ws_port = ${port}`,
      ownPorts,
      `token = "${TOKEN}"`,
      'tls = "auto"',
      `heartbeat_interval_ms = ${heartbeatMs}`,
      `heartbeat_timeout_ms = ${heartbeatMs * 3}`,
      `max_conns_per_ip = ${maxConns}`,
      ...(serverLoginRate ? [`login_rate = ${serverLoginRate}`] : []),
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  const proc = run(program, ["--config", configPath], dir, label, program === SRC_INP2PS ? serverEnv : {});
  const at = await proc.waitForOutput(/listening on/);
  await proc.waitForOutput(/SHA-256:\s+[0-9A-F:]{95}/, 2_000);
  const fingerprint = proc.output.match(/SHA-256:\s+([0-9A-F:]{95})/)![1]!;
  return { proc, dir, port, ownPorts, fingerprint, startupMs: at - proc.spawnedAt };
}

async function stopServer(server: Server): Promise<void> {
  await server.proc.stop();
  removeDir(server.dir);
}

async function health(server: Server): Promise<{ status: string; nodes: number }> {
  const response = await fetch(`https://127.0.0.1:${server.port}/api/v1/health`, { tls: { rejectUnauthorized: false } } as RequestInit);
  return (await response.json()) as { status: string; nodes: number };
}

// ---------- part 1: idle clients ----------

interface IdleRow {
  heartbeatMs: number;
  clients: number;
  online: number;
  healthNodes: number;
  loginMs: number;
  rssIdleKiB: number;
  rssLoadedKiB: number;
  idleCpuMsPerS: number;
  cpuMsPerS: number;
  measureS: number;
  heartbeatsExpected: number;
  heartbeatsSent: number;
  benchCpuMsPerS: number;
  benchRssKiB: number;
  drops: number;
  warnings: Map<string, number>;
  warningsDuringLogin: number;
  warningsDuringWindow: number;
  loginServerCpuMs: number;
  /** Sessions online and the server's CPU while they logged in (the first at 0 online): CPU per login by tenth of N. */
  loginSamples: LoginSample[];
  /** kill -9 of the server with N online -> all N online again on the restarted server; undefined when not measured. */
  reconnectMs?: number;
  reconnectServerCpuMs?: number;
  reconnectedOnline?: number;
  /** Heartbeat answer times (sent -> answered, in the bench worker) while the N logged in and while they came back; --procs only. */
  heartbeatAnswersMs?: { login: number[]; reconnect: number[] };
  settleMs: number;
  stable: boolean;
  serverFds: number;
  healthAfter: number;
}

interface LoginSample {
  online: number;
  cpuMs: number;
  atMs: number;
}

/**
 * Server CPU per login over the first and the last tenth of the N logins, raw and net. Net takes off what the server
 * spends meanwhile without any login (the empty server, plus the heartbeat CPU per node, measured in the window after
 * the logins, times the nodes online), so that the last tenth is not charged for the heartbeats of the nine before it.
 */
function loginCost(r: IdleRow) {
  const heartbeatCpuMsPerNodeS = (r.cpuMsPerS - r.idleCpuMsPerS) / r.clients;
  const samples = r.loginSamples;
  const between = (from: number, to: number) => {
    let [raw, baseline] = [0, 0];
    for (let i = from + 1; i <= to; i++) {
      const [a, b] = [samples[i - 1]!, samples[i]!];
      raw += b.cpuMs - a.cpuMs;
      baseline += ((b.atMs - a.atMs) / 1000) * (r.idleCpuMsPerS + (heartbeatCpuMsPerNodeS * (a.online + b.online)) / 2);
    }
    const logins = samples[to]!.online - samples[from]!.online;
    return { rawMs: raw / logins, netMs: (raw - baseline) / logins };
  };
  const tenth = Math.max(1, Math.floor(r.clients / 10));
  const firstEnd = samples.findIndex((x) => x.online >= tenth);
  const lastStart = samples.length - 1 - [...samples].reverse().findIndex((x) => x.online <= r.clients - tenth);
  return { heartbeatCpuMsPerNodeS, first: between(0, firstEnd), last: between(lastStart, samples.length - 1) };
}

/** Top client warning messages with counts, e.g. `1900x "heartbeat went unanswered; reconnecting"`. */
const topWarnings = (w: Map<string, number>, k = 3) =>
  [...w].sort((a, b) => b[1] - a[1]).slice(0, k).map(([m, c]) => `${c}x "${m}"`).join(", ");

async function idleClients(opts: Options, heartbeatMs: number, requestedMeasureS: number): Promise<IdleRow> {
  const n = opts.clients;
  // A window of whole heartbeat intervals holds exactly one heartbeat per session per interval, whatever the phases.
  const measureS = (Math.max(1, Math.round((requestedMeasureS * 1000) / heartbeatMs)) * heartbeatMs) / 1000;
  if (measureS !== requestedMeasureS) progress(`measuring ${measureS} s instead of ${requestedMeasureS} s: a whole number of heartbeat intervals`);
  const server = await startInp2ps(SRC_INP2PS, heartbeatMs, Math.min(100_000, n + 64), `inp2ps (heartbeat ${heartbeatMs} ms)`);
  const clientDir = tempDir("inp2p-bench-c-");
  const pid = server.proc.pid;

  // Idle baseline: the empty server, settled.
  await sleep(1_500);
  const rssIdleKiB = rssKiB(pid);
  const idleWindowS = 3;
  const idleCpu0 = cpuMs(pid);
  await sleep(idleWindowS * 1000);
  const idleCpuMsPerS = (cpuMs(pid) - idleCpu0) / idleWindowS;

  // Log N clients in, a batch at a time.
  // Client warnings and errors (reconnects, unanswered heartbeats), counted by message.
  const warnings = new Map<string, number>();
  let warningCount = 0;
  const logger = createLogger({
    level: "warn",
    format: "json",
    write: (line) => {
      warningCount++;
      const msg = String((JSON.parse(line) as { msg: string }).msg).replace(/[\d.]+ s$/, "N s");
      warnings.set(msg, (warnings.get(msg) ?? 0) + 1);
    },
  });
  const knownServers = new KnownServers(join(clientDir, "known_servers.json"));
  let counting = false;
  let heartbeatsSent = 0;
  let drops = 0;
  let online = 0;
  let peerOnlineReceived = 0;
  const started = performance.now();
  const loginCpu0 = cpuMs(pid);
  const mine: ServerSession[] = [];
  const warningsBeforeLogin = warningCount;
  const loginSamples: LoginSample[] = [{ online: 0, cpuMs: loginCpu0, atMs: started }];
  for (let first = 0, count = 0; first < n; first += count) {
    // A server that tells every online peer of each login (node-online; before presence by interest) sends all N peers,
    // which live in this one process, K fan-out messages per login: keep each batch's fan-out bounded so heartbeat
    // replies do not queue behind it for longer than an interval.
    const fanoutPerLogin = peerOnlineReceived > 0 ? online : 1;
    count = Math.max(1, Math.min(opts.batch, n - first, Math.floor(MAX_FANOUT_PER_BATCH / Math.max(1, fanoutPerLogin))));
    const logins: Promise<void>[] = [];
    for (let i = first; i < first + count; i++) {
      let loggedIn!: () => void;
      logins.push(new Promise<void>((r) => (loggedIn = r)));
      const session = new ServerSession(
        {
          host: "127.0.0.1",
          port: server.port,
          insecure: false,
          node: `bench-${i}`,
          token: TOKEN,
          identity: generateIdentity(),
          version: VERSION,
          tlsFingerprint: server.fingerprint,
          knownServers,
          logger,
        },
        {
          online: () => {
            online++;
            loggedIn();
          },
          offline: () => {
            online--;
            drops++;
          },
          peerOnline: () => {
            peerOnlineReceived++;
          },
        },
      );
      // Count the heartbeats this session really sends (heartbeat() goes through request()).
      const request = session.request.bind(session);
      session.request = ((type: Parameters<typeof request>[0], fields: Parameters<typeof request>[1]) => {
        if (counting && type === "heartbeat") heartbeatsSent++;
        return request(type, fields);
      }) as typeof session.request;
      sessions.add(session);
      mine.push(session);
      session.start();
    }
    const timeout = sleep(30_000).then(() => "timeout" as const);
    if ((await Promise.race([Promise.all(logins), timeout])) === "timeout")
      throw new Error(
        `batch ${first}..${first + count - 1}: only ${online}/${first + count} sessions online after 30 s` +
          `\nserver fds: ${openFds(pid)}, bench fds: ${openFds("self")}\nclient warnings: ${topWarnings(warnings)}\nserver output:\n${server.proc.output.slice(-1500)}`,
      );
    // Wait until this process has read the node-online fan-out of the batch (K online => K(K-1)/2 in total).
    // (None to wait for from a server that tells only interested nodes: no session here asks about a peer.)
    const fanout = ((first + count) * (first + count - 1)) / 2;
    const drainDeadline = performance.now() + 10_000;
    while (peerOnlineReceived > 0 && peerOnlineReceived < fanout && performance.now() < drainDeadline) await sleep(10);
    loginSamples.push({ online, cpuMs: cpuMs(pid), atMs: performance.now() });
    const step = Math.floor((first + count) / Math.ceil(n / 4));
    if (opts.trace || step !== Math.floor(first / Math.ceil(n / 4)) || first + count === n)
      progress(`${online}/${n} online after ${ms(performance.now() - started)} (batch ${count}), server CPU ${Math.round(cpuMs(pid) - loginCpu0)} ms, ${warningCount} client warnings`);
  }
  const loginMs = performance.now() - started;
  const loginServerCpuMs = cpuMs(pid) - loginCpu0;
  const warningsDuringLogin = warningCount - warningsBeforeLogin;
  const healthNodes = (await health(server)).nodes;

  // Let the login burst settle: all N online and no client warning for two heartbeat intervals (at least 2 s),
  // bounded; then measure pure heartbeating.
  const settleStart = performance.now();
  const minWaitMs = Math.min(3_000, heartbeatMs);
  const quietMs = Math.max(2_000, 2 * heartbeatMs);
  let [quietSince, seen, stable] = [settleStart, warningCount, false];
  while (performance.now() - settleStart < minWaitMs + quietMs + 30_000) {
    await sleep(250);
    if (warningCount !== seen || online !== n) {
      [quietSince, seen] = [performance.now(), warningCount];
      continue;
    }
    const needQuietMs = warningCount === warningsBeforeLogin ? 0 : quietMs;
    if (performance.now() - settleStart >= minWaitMs && performance.now() - quietSince >= needQuietMs && (await health(server)).nodes === n) {
      stable = true;
      break;
    }
  }
  const settleMs = performance.now() - settleStart;
  if (!stable) progress(`NOT STABLE after ${ms(settleMs)}: ${online}/${n} online, client warnings: ${topWarnings(warnings)}; measuring anyway`);
  const warningsBeforeWindow = warningCount;
  const rssLoadedKiB = rssKiB(pid);
  const serverFds = openFds(pid);
  const dropsBefore = drops;
  const cpu0 = cpuMs(pid);
  const bench0 = cpuMs("self");
  const t0 = performance.now();
  counting = true;
  if (opts.trace) {
    const end = t0 + measureS * 1000;
    let [c, b, h, w] = [cpu0, bench0, 0, warningCount];
    while (performance.now() < end - 1) {
      await sleep(Math.min(1000, end - performance.now()));
      const [c2, b2] = [cpuMs(pid), cpuMs("self")];
      progress(
        `t=${((performance.now() - t0) / 1000).toFixed(1)} s: server ${Math.round(c2 - c)} ms CPU, bench ${Math.round(b2 - b)} ms CPU, ` +
          `${heartbeatsSent - h} heartbeats, ${warningCount - w} client warnings, ${online} online`,
      );
      [c, b, h, w] = [c2, b2, heartbeatsSent, warningCount];
    }
  } else await sleep(measureS * 1000);
  counting = false;
  const elapsedS = (performance.now() - t0) / 1000;
  const cpuMsPerS = (cpuMs(pid) - cpu0) / elapsedS;
  const benchCpuMsPerS = (cpuMs("self") - bench0) / elapsedS;
  const healthAfter = (await health(server)).nodes;
  const benchRssKiB = rssKiB("self");
  const [dropsInWindow, warningsInWindow] = [drops - dropsBefore, warningCount - warningsBeforeWindow];

  // Mass reconnect: the server dies with all N online and comes back on the same port, data dir and certificate.
  let reconnect: Pick<IdleRow, "reconnectMs" | "reconnectServerCpuMs" | "reconnectedOnline"> = {};
  if (opts.reconnect && opts.heartbeatMs === heartbeatMs) {
    progress(`kill -9 inp2ps with ${online} online; restarting it`);
    const killedAt = performance.now();
    server.proc.child.kill("SIGKILL");
    await server.proc.exited;
    const deadline = killedAt + RECONNECT_BOUND_MS;
    // The sessions notice the dead server (their sockets close) before it is back.
    while (online > 0 && performance.now() < deadline) await sleep(50);
    Object.assign(server, await startInp2ps(SRC_INP2PS, heartbeatMs, Math.min(100_000, n + 64), `inp2ps restarted (heartbeat ${heartbeatMs} ms)`, server));
    const restartedPid = server.proc.pid;
    while (online < n && performance.now() < deadline) {
      await sleep(100);
      if (opts.trace) progress(`${online}/${n} online again after ${ms(performance.now() - killedAt)}, server CPU ${Math.round(cpuMs(restartedPid))} ms`);
    }
    reconnect = { reconnectMs: performance.now() - killedAt, reconnectServerCpuMs: cpuMs(restartedPid), reconnectedOnline: online };
    progress(`${online}/${n} online again ${ms(reconnect.reconnectMs!)} after the kill, restarted server CPU ${Math.round(reconnect.reconnectServerCpuMs!)} ms`);
  }

  for (const s of mine) {
    s.stop();
    sessions.delete(s);
  }
  await stopServer(server);
  removeDir(clientDir);
  return {
    heartbeatMs,
    clients: n,
    online,
    healthNodes,
    loginMs,
    rssIdleKiB,
    rssLoadedKiB,
    idleCpuMsPerS,
    cpuMsPerS,
    measureS: elapsedS,
    heartbeatsExpected: (n * elapsedS * 1000) / heartbeatMs,
    heartbeatsSent,
    benchCpuMsPerS,
    benchRssKiB,
    drops: dropsInWindow,
    warnings,
    warningsDuringLogin,
    warningsDuringWindow: warningsInWindow,
    loginServerCpuMs,
    loginSamples,
    ...reconnect,
    settleMs,
    stable,
    serverFds,
    healthAfter,
  };
}

// ---------- part 2: cold start ----------

interface ColdSample {
  serverMs: number;
  clientMs: number;
}

async function coldStart(inp2ps: string, inp2pc: string, label: string, index: number): Promise<ColdSample> {
  const server = await startInp2ps(inp2ps, 10_000, 32, `${label} inp2ps`);
  const dir = tempDir("inp2p-bench-cold-");
  const node = `cold-${label.replace(/\W/g, "")}-${index}`;
  const client = run(inp2pc, ["-serverhost", "127.0.0.1", "-serverport", String(server.port), "-node", node, "-token", TOKEN], dir, `${label} inp2pc`);
  try {
    const at = await client.waitForOutput(/logged in/);
    if (!/created this node's identity key/.test(client.output)) throw new Error(`${label} inp2pc did not create a fresh identity key:\n${client.output}`);
    return { serverMs: server.startupMs, clientMs: at - client.spawnedAt };
  } finally {
    await client.stop();
    removeDir(dir);
    await stopServer(server);
  }
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

// ---------- main ----------

// ---------- part 1b: idle clients from several processes ----------

/** A worker (--procs): logs its share of sessions in, a batch at a time, and prints "online K" whenever K changes (at most every 100 ms). */
async function worker(opts: Options): Promise<void> {
  const { port, fingerprint, first, count, dir, host } = opts.worker!;
  const knownServers = new KnownServers(join(dir, `known-${first}.json`));
  // Warnings and errors go to the main process, a line each, without their numbers (counted by message).
  const logger = createLogger({ level: "warn", format: "json", write: (line) => process.stdout.write(`warning ${(JSON.parse(line) as { msg: string }).msg.replace(/\d+(\.\d+)?/g, "N")}\n`) });
  let online = 0;
  let told = -1;
  let heartbeatAnswersMs: number[] = [];
  const report = setInterval(() => {
    if (online !== told) process.stdout.write(`online ${(told = online)}\n`);
    if (heartbeatAnswersMs.length) process.stdout.write(`heartbeats ${heartbeatAnswersMs.join(",")}\n`);
    heartbeatAnswersMs = [];
  }, 100);
  for (let i = first; i < first + count; ) {
    const batch = Math.min(opts.batch, first + count - i);
    const target = online + batch;
    for (let j = 0; j < batch; j++, i++) {
      const session = new ServerSession(
        { host, port, insecure: !fingerprint, node: `bench-${i}`, token: TOKEN, identity: generateIdentity(), version: VERSION, tlsFingerprint: fingerprint || undefined, knownServers, logger },
        { online: () => void online++, offline: () => void online-- },
      );
      const request = session.request.bind(session);
      session.request = ((type: Parameters<typeof request>[0], fields: Parameters<typeof request>[1]) => {
        const sentAt = performance.now();
        const answer = request(type, fields);
        if (type === "heartbeat") void answer.then(() => heartbeatAnswersMs.push(Math.round(performance.now() - sentAt)), () => {});
        return answer;
      }) as typeof session.request;
      sessions.add(session);
      session.start();
    }
    const deadline = performance.now() + 60_000;
    while (online < target && performance.now() < deadline) await sleep(20);
  }
  await new Promise(() => clearInterval.bind(null, report)); // held until the main process ends it (SIGTERM: cleanupNow)
}

/** The fleet-scale row for N sessions held by opts.procs worker processes. */
async function idleClientsFromProcs(opts: Options): Promise<IdleRow> {
  const n = opts.clients;
  const heartbeatMs = opts.heartbeatMs;
  const server = await startInp2ps(SRC_INP2PS, heartbeatMs, n + 64, `inp2ps (heartbeat ${heartbeatMs} ms)`);
  const pid = server.proc.pid;
  const clientDir = tempDir("inp2p-bench-c-");
  await sleep(1_500);
  const rssIdleKiB = rssKiB(pid);
  const idleCpu0 = cpuMs(pid);
  await sleep(3_000);
  const idleCpuMsPerS = (cpuMs(pid) - idleCpu0) / 3;
  const per = Math.ceil(n / opts.procs);
  const counts = new Map<Proc, number>();
  const warnings = new Map<string, number>();
  /** Heartbeat answer times the workers measured (request sent -> answer read), with when they told us. */
  const heartbeatAnswers: { atMs: number; answerMs: number }[] = [];
  const heartbeatsBetween = (fromMs: number, toMs: number) => heartbeatAnswers.filter((h) => h.atMs >= fromMs && h.atMs <= toMs).map((h) => h.answerMs);
  const total = () => [...counts.values()].reduce((a, b) => a + b, 0);
  const loginCpu0 = cpuMs(pid);
  const started = performance.now();
  const loginSamples: LoginSample[] = [{ online: 0, cpuMs: loginCpu0, atMs: started }];
  for (let p = 0; p < opts.procs; p++) {
    const first = p * per;
    const count = Math.min(per, n - first);
    if (count <= 0) break;
    const proc = run(import.meta.path, ["--worker", [server.port, server.fingerprint, first, count, clientDir].join(","), "--batch", String(opts.batch)], clientDir, `bench worker ${p}`);
    counts.set(proc, 0);
    let partial = "";
    proc.child.stdout?.on("data", (d: Buffer) => {
      const lines = (partial + d.toString()).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        const [word, value = ""] = line.split(" ");
        if (word === "online") counts.set(proc, Number(value));
        else if (word === "warning") {
          const message = line.slice("warning ".length);
          warnings.set(message, (warnings.get(message) ?? 0) + 1);
        } else if (word === "heartbeats") for (const answerMs of value.split(",")) heartbeatAnswers.push({ atMs: performance.now(), answerMs: Number(answerMs) });
      }
    });
  }
  const loginBound = performance.now() + RECONNECT_BOUND_MS;
  let shown = 0;
  while (total() < n && performance.now() < loginBound) {
    await sleep(250);
    loginSamples.push({ online: total(), cpuMs: cpuMs(pid), atMs: performance.now() });
    if (total() >= shown + n / 10 || opts.trace) progress(`${(shown = total())}/${n} online after ${ms(performance.now() - started)}, server CPU ${Math.round(cpuMs(pid) - loginCpu0)} ms`);
  }
  const loginMs = performance.now() - started;
  const loginServerCpuMs = cpuMs(pid) - loginCpu0;
  loginSamples.push({ online: total(), cpuMs: cpuMs(pid), atMs: performance.now() });
  if (total() < n) throw new BenchError(`only ${total()}/${n} online after ${ms(loginMs)}`);

  await sleep(Math.min(3_000, heartbeatMs));
  const rssLoadedKiB = rssKiB(pid);
  const cpu0 = cpuMs(pid);
  const t0 = performance.now();
  await sleep(opts.measureS * 1000);
  const measureS = (performance.now() - t0) / 1000;
  const cpuMsPerS = (cpuMs(pid) - cpu0) / measureS;
  const heartbeatsExpected = (n * measureS * 1000) / heartbeatMs;
  const stillOnline = total();
  const serverFds = openFds(pid);

  const loginHeartbeats = heartbeatsBetween(started, started + loginMs);
  let reconnect: Pick<IdleRow, "reconnectMs" | "reconnectServerCpuMs" | "reconnectedOnline"> = {};
  let reconnectHeartbeats: number[] = [];
  if (opts.reconnect) {
    progress(`kill -9 inp2ps with ${total()} online; restarting it`);
    const killedAt = performance.now();
    server.proc.child.kill("SIGKILL");
    await server.proc.exited;
    const deadline = killedAt + RECONNECT_BOUND_MS;
    while (total() > 0 && performance.now() < deadline) await sleep(50);
    Object.assign(server, await startInp2ps(SRC_INP2PS, heartbeatMs, n + 64, `inp2ps restarted (heartbeat ${heartbeatMs} ms)`, server));
    shown = 0;
    while (total() < n && performance.now() < deadline) {
      await sleep(100);
      if (total() >= shown + n / 10 || opts.trace) progress(`${(shown = total())}/${n} online again after ${ms(performance.now() - killedAt)}`);
    }
    reconnect = { reconnectMs: performance.now() - killedAt, reconnectServerCpuMs: cpuMs(server.proc.pid), reconnectedOnline: total() };
    reconnectHeartbeats = heartbeatsBetween(killedAt, performance.now());
  }
  for (const proc of counts.keys()) await proc.stop();
  await stopServer(server);
  removeDir(clientDir);
  return {
    heartbeatMs,
    clients: n,
    online: stillOnline,
    healthNodes: n,
    loginMs,
    rssIdleKiB,
    rssLoadedKiB,
    idleCpuMsPerS,
    cpuMsPerS,
    measureS,
    heartbeatsExpected,
    heartbeatsSent: Math.round(heartbeatsExpected), // the workers do not count theirs
    benchCpuMsPerS: NaN,
    benchRssKiB: NaN,
    drops: n - stillOnline,
    warnings,
    warningsDuringLogin: 0,
    warningsDuringWindow: 0,
    loginServerCpuMs,
    loginSamples,
    ...reconnect,
    heartbeatAnswersMs: { login: loginHeartbeats, reconnect: reconnectHeartbeats },
    settleMs: 0,
    stable: true,
    serverFds,
    healthAfter: n,
  };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.worker) return worker(opts);
  const started = performance.now();
  const model = cpus()[0]?.model?.trim() ?? "?";
  const nproc = spawnSync("nproc", { encoding: "utf8" }).stdout?.trim() || String(cpus().length);
  console.log(`inp2p ${VERSION} bench: idle clients and cold start`);
  console.log(`machine: nproc ${nproc} (${model}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}`);
  console.log(`bun ${Bun.version} (${BUN}), CLK_TCK ${CLK_TCK}, open-files hard limit ${openFilesHardLimit()}`);
  const limitProblem = fleetLimitProblem(opts.clients, opts.procs);
  if (limitProblem) throw new BenchError(`--clients ${opts.clients} is more than this box allows: ${limitProblem}`);

  if (opts.profileDir) serverEnv = profilerEnv(opts.profileDir);
  serverLoginRate = opts.loginRate;
  // 1. idle clients
  const rows: IdleRow[] = [];
  console.log(`\n== 1. idle clients held by one inp2ps process: ${opts.clients} real ServerSessions (TLS, own identity, login, heartbeats) from one bench process, batches of <= ${opts.batch} (fewer when the node-online fan-out grows), one user ==`);
  progress(`heartbeat ${opts.heartbeatMs} ms, measuring ${opts.measureS} s`);
  if (opts.procs > 1) progress(`${opts.procs} worker processes hold the sessions`);
  rows.push(opts.procs > 1 ? await idleClientsFromProcs(opts) : await idleClients(opts, opts.heartbeatMs, opts.measureS));
  if (opts.procs === 1 && opts.fastHeartbeatMs > 0 && opts.fastHeartbeatMs !== opts.heartbeatMs) {
    progress(`heartbeat ${opts.fastHeartbeatMs} ms, measuring ${opts.fastMeasureS} s`);
    Bun.gc(true); // the first row's sessions are gone; do not let their garbage land in the second row
    await sleep(500);
    rows.push(await idleClients(opts, opts.fastHeartbeatMs, opts.fastMeasureS));
  }
  const perNodeKiB = (r: IdleRow) => (r.rssLoadedKiB - r.rssIdleKiB) / r.clients;
  const netCpu = (r: IdleRow) => r.cpuMsPerS - r.idleCpuMsPerS;
  console.log("  holding and logging in:");
  console.log(
    table([
      ["heartbeat", "online/N", "health nodes", "log in all N", "server CPU for it", "per login", "RSS empty", "RSS with N", "KiB/node", "server fds", "settled in"],
      ...rows.map((r) => [
        `${r.heartbeatMs} ms`,
        `${r.online}/${r.clients}`,
        `${r.healthNodes}→${r.healthAfter}`,
        ms(r.loginMs),
        ms(r.loginServerCpuMs),
        `${(r.loginServerCpuMs / r.clients).toFixed(2)} ms`,
        mib(r.rssIdleKiB),
        mib(r.rssLoadedKiB),
        perNodeKiB(r).toFixed(1),
        String(r.serverFds),
        `${ms(r.settleMs)}${r.stable ? "" : " NOT STABLE"}`,
      ]),
    ]),
  );
  console.log("  steady heartbeating (server process):");
  console.log(
    table([
      ["heartbeat", "window", "heartbeats sent (expected)", "CPU empty", "CPU with N", "% of a core", "µs/heartbeat", "µs/hb net", "drops", "client warn login/window", "bench CPU", "bench RSS"],
      ...rows.map((r) => [
        `${r.heartbeatMs} ms`,
        `${r.measureS.toFixed(1)} s`,
        `${r.heartbeatsSent} (${Math.round(r.heartbeatsExpected)})`,
        `${r.idleCpuMsPerS.toFixed(1)} ms/s`,
        `${r.cpuMsPerS.toFixed(1)} ms/s`,
        `${(r.cpuMsPerS / 10).toFixed(2)}%`,
        ((r.cpuMsPerS * r.measureS * 1000) / r.heartbeatsSent).toFixed(1),
        ((netCpu(r) * r.measureS * 1000) / r.heartbeatsSent).toFixed(1),
        String(r.drops),
        `${r.warningsDuringLogin}/${r.warningsDuringWindow}`,
        `${(r.benchCpuMsPerS / 10).toFixed(1)}%`,
        mib(r.benchRssKiB),
      ]),
    ]),
  );
  console.log(
    "  health nodes = GET /api/v1/health after login → after the window. settled = all online, health == N, no new client warning.\n" +
      "  CPU = utime+stime from /proc; empty = the server before any client; µs/hb net = (CPU with N - CPU empty) / heartbeats.\n" +
      "  heartbeats = really sent by the sessions in the window (expected N*window/interval); drops = sessions offline in the window;\n" +
      "  bench = this process, which runs all N client sessions.",
  );
  if (rows.length === 2) {
    const [slow, fast] = rows as [IdleRow, IdleRow];
    console.log(
      `  ratios ${fast.heartbeatMs} ms vs ${slow.heartbeatMs} ms heartbeat: heartbeats/s x${(fast.heartbeatsSent / fast.measureS / (slow.heartbeatsSent / slow.measureS)).toFixed(1)}, ` +
        `server CPU x${(fast.cpuMsPerS / slow.cpuMsPerS).toFixed(1)} (net of empty x${(netCpu(fast) / netCpu(slow)).toFixed(1)}), ` +
        `RSS/node x${(perNodeKiB(fast) / perNodeKiB(slow)).toFixed(2)}`,
    );
  }
  console.log("  fleet scale (issue #17):");
  console.log(
    table([
      ["N", "time to all online", "CPU/login first tenth raw", "net", "last tenth raw", "net", "last/first raw", "net", "heartbeat CPU/node", "KiB/node", "µs/heartbeat", "kill -9 -> all N online again", "its server CPU"],
      ...rows.map((r) => {
        const cost = loginCost(r);
        return [
          String(r.clients),
          ms(r.loginMs),
          `${cost.first.rawMs.toFixed(2)} ms`,
          `${cost.first.netMs.toFixed(2)} ms`,
          `${cost.last.rawMs.toFixed(2)} ms`,
          `${cost.last.netMs.toFixed(2)} ms`,
          (cost.last.rawMs / cost.first.rawMs).toFixed(2),
          (cost.last.netMs / cost.first.netMs).toFixed(2),
          `${(cost.heartbeatCpuMsPerNodeS * 1000).toFixed(1)} µs/s`,
          perNodeKiB(r).toFixed(1),
          ((r.cpuMsPerS * r.measureS * 1000) / r.heartbeatsSent).toFixed(1),
          r.reconnectMs === undefined ? "-" : `${ms(r.reconnectMs)}${r.reconnectedOnline === r.clients ? "" : ` (${r.reconnectedOnline}/${r.clients})`}`,
          r.reconnectServerCpuMs === undefined ? "-" : ms(r.reconnectServerCpuMs),
        ];
      }),
    ]),
  );
  console.log(
    "  raw = the server's CPU over a tenth of the logins / its logins; net = less what the server spends in that time with no login\n" +
      "  (CPU empty + heartbeat CPU/node x nodes online; heartbeat CPU/node = (CPU with N - CPU empty) / N, from the window after the logins).",
  );
  const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
  const answers = (xs: number[]) => (xs.length ? `median ${quantile(xs, 0.5)} ms, p99 ${quantile(xs, 0.99)} ms, max ${Math.max(...xs)} ms (${xs.length} heartbeats)` : "none answered");
  for (const r of rows)
    if (r.heartbeatAnswersMs)
      console.log(
        `  heartbeat answer time (sent -> answered, as a bench worker saw it), N ${r.clients}: while logging in ${answers(r.heartbeatAnswersMs.login)}; ` +
          `while coming back after kill -9 ${answers(r.heartbeatAnswersMs.reconnect)}`,
      );
  if (opts.profileDir) printProfiles(opts.profileDir, "inp2ps CPU profile", [{ startMs: 0, endMs: Infinity }], 25);
  for (const r of rows) if (r.warnings.size) console.log(`  client warnings at ${r.heartbeatMs} ms: ${topWarnings(r.warnings, 8)}`);

  // 2. cold start
  if (!opts.skipCold) {
    console.log(`\n== 2. cold start (fresh temp dirs: inp2ps generates its TLS cert, inp2pc its identity key), ${opts.coldRuns} runs each ==`);
    // scripts/build.ts writes dist/<target>/; this machine's target is the glibc one of its CPU.
    const hostTarget = `linux-${process.arch}`;
    const dist = { inp2ps: join(ROOT, "dist", hostTarget, "inp2ps"), inp2pc: join(ROOT, "dist", hostTarget, "inp2pc") };
    const distState = !existsSync(dist.inp2ps) || !existsSync(dist.inp2pc)
      ? "missing"
      : Math.min(statSync(dist.inp2ps).mtimeMs, statSync(dist.inp2pc).mtimeMs) < newestMtime(join(ROOT, "src")) ? "stale" : "fresh";
    let compiled: { inp2ps: string; inp2pc: string } | undefined;
    let compiledNote = "";
    let compiledMissing = "run npm run build first";
    if (opts.build === "always" || (opts.build === "auto" && distState !== "fresh")) {
      const outDir = tempDir("inp2p-bench-dist-");
      progress(`building the binaries with scripts/build.ts into a temp dir (dist/ is ${distState})`);
      const r = spawnSync(BUN, [join(ROOT, "scripts/build.ts"), "--target", hostTarget, "--outdir", outDir], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
      if (r.status === 0) [compiled, compiledNote] = [{ inp2ps: join(outDir, hostTarget, "inp2ps"), inp2pc: join(outDir, hostTarget, "inp2pc") }, `built now; dist/ ${distState}`];
      else compiledMissing = `build failed (${(r.stderr || r.stdout || "").trim().split("\n").at(-1)}): run npm run build`;
    } else if (distState !== "missing") [compiled, compiledNote] = [dist, distState === "stale" ? "dist/, OLDER than src/" : "dist/"];
    const variants: { label: string; inp2ps: string; inp2pc: string }[] = [{ label: "source (bun src/cli/*.ts)", inp2ps: SRC_INP2PS, inp2pc: SRC_INP2PC }];
    if (compiled) variants.push({ label: `compiled (${compiledNote})`, ...compiled });
    const samples = new Map<string, ColdSample[]>(variants.map((v) => [v.label, []]));
    for (let i = 0; i < opts.coldRuns; i++)
      for (const v of variants) samples.get(v.label)!.push(await coldStart(v.inp2ps, v.inp2pc, v.label, i)); // interleaved
    const coldRows = [["", "inp2ps spawn→listening", "", "inp2pc spawn→logged in", ""], ["", "median", "max", "median", "max"]];
    for (const v of variants) {
      const s = samples.get(v.label)!;
      const server = s.map((x) => x.serverMs);
      const client = s.map((x) => x.clientMs);
      coldRows.push([v.label, ms(median(server)), ms(Math.max(...server)), ms(median(client)), ms(Math.max(...client))]);
    }
    if (!compiled) coldRows.push(["compiled", compiledMissing, "", "", ""]);
    console.log(table(coldRows));
    if (variants.length === 2) {
      const [a, b] = variants.map((v) => samples.get(v.label)!);
      console.log(
        `  ratios compiled/source (medians): inp2ps x${(median(b!.map((x) => x.serverMs)) / median(a!.map((x) => x.serverMs))).toFixed(2)}, ` +
          `inp2pc x${(median(b!.map((x) => x.clientMs)) / median(a!.map((x) => x.clientMs))).toFixed(2)}`,
      );
    }
  }
  console.log(`\ntotal bench time ${ms(performance.now() - started)}`);
}

main()
  .then(() => {
    cleanupNow();
    process.exit(0);
  })
  .catch((err) => {
    process.stderr.write(`bench failed: ${err instanceof BenchError ? err.message : ((err as Error).stack ?? err)}\n`);
    cleanupNow();
    process.exit(1);
  });
