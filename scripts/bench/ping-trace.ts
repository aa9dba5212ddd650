#!/usr/bin/env bun
// Where an idle ping over the SDWAN spends its round trip, hop by hop, from the kernel's side, beside
// wireguard-go's and a bare forwarder's in the same run: the system calls of both ends and of ping,
// recorded with perf's syscall tracepoints (no change to inp2pc, no debug build), and which thread ran
// on which CPU meanwhile (perf's sched_switch). Needs root, iproute2, nftables, ping, perf, wireguard-go
// and wireguard-tools (installs Debian's linux-perf, wireguard-go and wireguard-tools when missing);
// x86-64 only (the system call numbers below).
//
//   node_modules/.bin/bun scripts/bench/ping-trace.ts [--pings 40]
//
// Two public sites ("a", "b") and inp2ps, an inp2pc pair from this tree with [client.sdwan], a
// wireguard-go pair, and a floor pair (floor-node.ts: inp2pc's TUN read loop and session, one Bun UDP
// socket, nothing else; 10.33.0.0/24). Each is flood-pinged (3,000) first, so that every one runs its
// per-packet code optimised; then, for each: a few pings to warm up, --pings pings from a's host to b's
// address on the overlay (0.2 s apart), as many while perf records system calls, and as many while it
// records context switches. Each ping's steps, in order (medians over the pings that show every step):
//   a wakes         ping's sendto returned (the request is on a's TUN device) -> a's read of it returned
//   a: work         -> a's UDP send entered (route, seal)
//   a: send         the send's own time (the kernel takes the datagram across the veth to b's socket)
//   b wakes         -> b's UDP receive returned
//   b: work         -> b's write to its device entered (open, checks)
//   b: write        the write's own time (the kernel answers the echo on b's device)
//   b: reads reply  -> b's read of the reply returned
//   b: work, send   as a's
//   a wakes         -> a's UDP receive returned
//   a: work, write  as b's
//   ping wakes      -> ping's recvmsg returned
// A step is the first matching system call of that end's process after the step before: a device read
// or write moves at least an IP header (20 bytes), which leaves out wake-up reads and writes of 8.
// Tracing costs each system call a little: the round trips run above the untraced pings' (both printed).
// The second table is each ping's time on a CPU, from ping's sendto to its recvmsg (medians): each end's
// main thread (inp2pc's JS thread; for Go, the thread the process started with) and its other threads,
// ping, the CPUs' idle time, and how long two CPUs or more ran at once (what the ends did in parallel).
// The lab, its processes, the wireguard-go sockets and temp dirs are removed at the end, on error and on Ctrl-C.

import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { arch, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cleanupStaleLabs, labUp, type Lab } from "../natlab/lab.ts";
import { BUN, Proc, REPO_ROOT, waitFor } from "../../test/helpers/processes.ts";
import { spawnIn, startLabServer, writeClientConfig } from "../../test/e2e/helpers.ts";
import { cleanUpOnExit, ensureCommands, median, pingRtts, printTable, sdwanAddressAnswering } from "./lab-measure.ts";
import { startWireguard } from "./wireguard.ts";

const { values } = parseArgs({ options: { pings: { type: "string", default: "40" } } });
const PINGS = Number(values.pings);
const STATUS_PORT = 27192;
const WARM_UP_PINGS = 5;
const PERF_START_MS = 1_500;
const FLOOD_PINGS = 3_000;
const FLOOR_SUBNET_PREFIX = "10.33.0";
const FLOOR_PORT = 51830;
const FLOOR_UP_TIMEOUT_MS = 20_000;
const SESSION_SECRETS_BYTES = 96;
/** x86-64 system call numbers. */
const SYSCALL = { read: 0, write: 1, writev: 20, sendto: 44, recvfrom: 45, sendmsg: 46, recvmsg: 47, recvmmsg: 299, sendmmsg: 307 } as const;
const DEVICE_READS: readonly number[] = [SYSCALL.read];
const DEVICE_WRITES: readonly number[] = [SYSCALL.write, SYSCALL.writev];
const UDP_SENDS: readonly number[] = [SYSCALL.sendto, SYSCALL.sendmsg, SYSCALL.sendmmsg];
const UDP_RECEIVES: readonly number[] = [SYSCALL.recvfrom, SYSCALL.recvmsg, SYSCALL.recvmmsg];
const IP_HEADER_BYTES = 20;

let lab: Lab | undefined;
let workDir = "";
const procs: Proc[] = [];
const wireguardSockets: string[] = [];
const cleanUp = cleanUpOnExit("ping trace", () => ({ procs, lab, files: wireguardSockets, workDir }));

interface Call {
  time: number;
  comm: string;
  /** The process (thread group). */
  pid: number;
  enter: boolean;
  nr: number;
  /** sys_exit's return value. */
  result: number;
}

/** sys_enter and sys_exit lines of `perf script -F comm,pid,time,event,trace`, times in µs. */
function parseCalls(script: string): Call[] {
  const calls: Call[] = [];
  const line = /^\s*(.+?)\s+(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)(?: = (-?\d+))?/;
  for (const text of script.split("\n")) {
    const m = line.exec(text);
    if (m) calls.push({ comm: m[1]!, pid: Number(m[2]), time: Number(m[3]) * 1e6, enter: m[4] === "enter", nr: Number(m[5]), result: Number(m[6] ?? 0) });
  }
  return calls;
}

/** The two ends of an overlay: their processes (thread groups). */
interface Ends {
  a: number;
  b: number;
}

const entered = (end: keyof Ends, nrs: readonly number[]) => (c: Call, ends: Ends) => c.pid === ends[end] && c.enter && nrs.includes(c.nr);
const returned = (end: keyof Ends, nrs: readonly number[], minResult: number) => (c: Call, ends: Ends) => c.pid === ends[end] && !c.enter && nrs.includes(c.nr) && c.result >= minResult;

const either = (first: (c: Call, ends: Ends) => boolean, second: (c: Call, ends: Ends) => boolean) => (c: Call, ends: Ends) => first(c, ends) || second(c, ends);
/** A UDP receive that returned a datagram: recvmmsg counts messages, the others bytes (more than the transmit tap's 1-byte notice). */
const receivedDatagram = (end: keyof Ends) => (c: Call, ends: Ends) =>
  c.pid === ends[end] && !c.enter && UDP_RECEIVES.includes(c.nr) && c.result >= (c.nr === SYSCALL.recvmmsg ? 1 : 2);

/**
 * A ping's steps in order, each ending at the first call it matches after the step before (see the
 * header). A receiver woken by a send may run before the send returns (it preempted the sender on its
 * CPU): the send then ends at the receive, and the wake-up (`orSame`: it may end at the same call) is 0.
 */
const STEPS: { name: string; kind: "wake" | "work" | "call"; ends: (c: Call, ends: Ends) => boolean; orSame?: boolean }[] = [
  { name: "a wakes", kind: "wake", ends: returned("a", DEVICE_READS, IP_HEADER_BYTES) },
  { name: "a: work", kind: "work", ends: entered("a", UDP_SENDS) },
  { name: "a: send", kind: "call", ends: either(returned("a", UDP_SENDS, 1), receivedDatagram("b")) },
  { name: "b wakes", kind: "wake", ends: receivedDatagram("b"), orSame: true },
  { name: "b: work", kind: "work", ends: entered("b", DEVICE_WRITES) },
  { name: "b: write", kind: "call", ends: returned("b", DEVICE_WRITES, IP_HEADER_BYTES) },
  { name: "b: reads reply", kind: "call", ends: returned("b", DEVICE_READS, IP_HEADER_BYTES) },
  { name: "b: work", kind: "work", ends: entered("b", UDP_SENDS) },
  { name: "b: send", kind: "call", ends: either(returned("b", UDP_SENDS, 1), receivedDatagram("a")) },
  { name: "a wakes", kind: "wake", ends: receivedDatagram("a"), orSame: true },
  { name: "a: work", kind: "work", ends: entered("a", DEVICE_WRITES) },
  { name: "a: write", kind: "call", ends: returned("a", DEVICE_WRITES, IP_HEADER_BYTES) },
  { name: "ping wakes", kind: "wake", ends: (c) => c.comm === "ping" && !c.enter && c.nr === SYSCALL.recvmsg && c.result > 0 },
];

/** Each ping's step durations (µs) between the two ends, for the pings whose every step was seen, and their round trip as traced. */
function pingSteps(calls: Call[], ends: Ends): { steps: number[][]; traced: number[] } {
  const steps: number[][] = [];
  const traced: number[] = [];
  const starts = calls.flatMap((c, index) => (c.comm === "ping" && !c.enter && c.nr === SYSCALL.sendto && c.result > 0 ? [index] : []));
  for (const [i, startAt] of starts.entries()) {
    const until = starts[i + 1] ?? calls.length; // a step must end before the next ping starts
    let at = startAt;
    const marks: number[] = [];
    for (const step of STEPS) {
      const from = calls[at]!.time;
      if (!(step.orSame && step.ends(calls[at]!, ends))) {
        do at++;
        while (at < until && !step.ends(calls[at]!, ends));
      }
      if (at >= until) break;
      marks.push(calls[at]!.time - from);
    }
    if (marks.length < STEPS.length) continue;
    steps.push(marks);
    traced.push(calls[at]!.time - calls[startAt]!.time);
  }
  return { steps, traced };
}

interface Traced {
  label: string;
  steps: number[][];
  traced: number[];
  rtts: number[];
  untraced: number[];
}

/** --pings pings to `ip` untraced, then as many traced between `ends`. */
async function trace(label: string, ip: string, ends: Ends): Promise<Traced> {
  const ns = lab!.sites.a!.hostNs;
  await pingRtts(lab!, ns, ip, WARM_UP_PINGS);
  const untraced = await pingRtts(lab!, ns, ip, PINGS);
  const data = join(workDir, "perf.data");
  // perf's own writes to its file would be traced too, and traced again: `$$` is perf itself after the exec.
  const filter = `(${Object.values(SYSCALL).map((nr) => `id == ${nr}`).join(" || ")}) && common_pid != $$`;
  const perf = Bun.spawn(["sh", "-c", `exec perf record -a -q -o ${data} -e raw_syscalls:sys_enter --filter "${filter}" -e raw_syscalls:sys_exit --filter "${filter}"`], { stdout: "ignore", stderr: "pipe" });
  await Bun.sleep(PERF_START_MS);
  if (perf.exitCode !== null) throw new Error(`perf record failed: ${await new Response(perf.stderr).text()}`);
  const rtts = await pingRtts(lab!, ns, ip, PINGS);
  perf.kill("SIGINT");
  await perf.exited;
  const script = Bun.spawnSync(["perf", "script", "-i", data, "-F", "comm,pid,time,event,trace"], { stdout: "pipe", stderr: "ignore" }).stdout.toString();
  rmSync(data, { force: true });
  const { steps, traced } = pingSteps(parseCalls(script), ends);
  if (steps.length === 0) throw new Error(`${label}: no ping showed every step (is perf's syscall tracing available here?)`);
  return { label, steps, traced, rtts, untraced };
}

/** Each ping's time on a CPU (µs), by who ran: see the header. */
interface OnCpu {
  aMain: number;
  aOther: number;
  bMain: number;
  bOther: number;
  ping: number;
  idle: number;
  parallel: number;
}

/** The threads of the two ends, named by end and whether each is the process's first thread. */
function threadsOf(ends: Ends): Map<number, keyof OnCpu> {
  const threads = new Map<number, keyof OnCpu>();
  for (const [end, pid] of Object.entries(ends) as [keyof Ends, number][])
    for (const tid of readdirSync(`/proc/${pid}/task`).map(Number)) threads.set(tid, tid === pid ? `${end}Main` : `${end}Other`);
  return threads;
}

/** --pings pings to `ip` while perf records context switches (and ping's own sendto and recvmsg, to delimit each ping); each ping's time on a CPU. */
async function onCpu(label: string, ip: string, ends: Ends): Promise<OnCpu[]> {
  const threadsBefore = threadsOf(ends);
  const data = join(workDir, "sched.data");
  const pingCalls = `(id == ${SYSCALL.sendto} || id == ${SYSCALL.recvmsg}) && common_pid != $$`;
  const perf = Bun.spawn(["sh", "-c", `exec perf record -a -q -o ${data} -e sched:sched_switch -e raw_syscalls:sys_enter --filter "${pingCalls}" -e raw_syscalls:sys_exit --filter "${pingCalls}"`], { stdout: "ignore", stderr: "pipe" });
  await Bun.sleep(PERF_START_MS);
  if (perf.exitCode !== null) throw new Error(`perf record failed: ${await new Response(perf.stderr).text()}`);
  await pingRtts(lab!, lab!.sites.a!.hostNs, ip, PINGS);
  perf.kill("SIGINT");
  await perf.exited;
  const script = Bun.spawnSync(["perf", "script", "-i", data, "-F", "comm,tid,cpu,time,event,trace"], { stdout: "pipe", stderr: "ignore" }).stdout.toString();
  rmSync(data, { force: true });
  const threads = new Map([...threadsBefore, ...threadsOf(ends)]); // also those started meanwhile
  const running = new Map<number, keyof OnCpu | "other">(); // by CPU
  let pingWindow: OnCpu | undefined;
  let lastAt = 0;
  const windows: OnCpu[] = [];
  const line = /^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$/;
  const pingReplied = new RegExp(`^NR ${SYSCALL.recvmsg} = [1-9]`);
  for (const text of script.split("\n")) {
    const m = line.exec(text);
    if (!m) continue;
    const [, comm, , cpu, seconds, event, rest] = m;
    const at = Number(seconds) * 1e6;
    if (pingWindow) {
      let busy = 0;
      for (const who of running.values()) {
        if (who !== "other") pingWindow[who] += at - lastAt;
        if (who !== "idle") busy++;
      }
      if (busy >= 2) pingWindow.parallel += at - lastAt;
    }
    lastAt = at;
    if (event === "sched:sched_switch") {
      const next = /next_comm=(.*) next_pid=(\d+)/.exec(rest!);
      const tid = Number(next?.[2]);
      running.set(Number(cpu), tid === 0 ? "idle" : next?.[1] === "ping" ? "ping" : (threads.get(tid) ?? "other"));
    } else if (comm === "ping" && event === "raw_syscalls:sys_enter" && rest!.startsWith(`NR ${SYSCALL.sendto} `)) {
      pingWindow = { aMain: 0, aOther: 0, bMain: 0, bOther: 0, ping: 0, idle: 0, parallel: 0 };
    } else if (comm === "ping" && event === "raw_syscalls:sys_exit" && pingReplied.test(rest!) && pingWindow) {
      windows.push(pingWindow);
      pingWindow = undefined;
    }
  }
  if (windows.length === 0) throw new Error(`${label}: perf saw no ping's context switches (is its sched tracing available here?)`);
  return windows;
}

/** Starts the floor pair (floor-node.ts) between a and b; its processes and b's address on it. */
async function startFloor(spawn: (ns: string, argv: string[]) => number): Promise<{ ip: string; pids: number[] }> {
  const secrets = randomBytes(SESSION_SECRETS_BYTES).toString("hex");
  const pids: number[] = [];
  for (const [i, site] of (["a", "b"] as const).entries()) {
    const other = i === 0 ? "b" : "a";
    const ns = lab!.sites[site]!.hostNs;
    const device = `fl${lab!.id}${site}`;
    pids.push(spawn(ns, [BUN, join(import.meta.dirname, "floor-node.ts"), device, lab!.sites[site]!.publicIp, lab!.sites[other]!.publicIp, String(FLOOR_PORT), i === 0 ? "initiator" : "responder", secrets]));
    await waitFor(`the floor's ${device}`, async () => (await lab!.exec(ns, ["ip", "link", "show", device])).code === 0 || undefined, FLOOR_UP_TIMEOUT_MS, 100);
    for (const argv of [["ip", "addr", "add", `${FLOOR_SUBNET_PREFIX}.${i + 1}/24`, "dev", device], ["ip", "link", "set", device, "up"]]) {
      const result = await lab!.exec(ns, argv);
      if (result.code !== 0) throw new Error(`\`${argv.join(" ")}\` in ${ns} failed: ${result.stderr.trim()}`);
    }
  }
  const ip = `${FLOOR_SUBNET_PREFIX}.2`;
  await waitFor("the floor answering", async () => (await lab!.exec(lab!.sites.a!.hostNs, ["ping", "-c", "1", "-W", "1", ip])).code === 0 || undefined, FLOOR_UP_TIMEOUT_MS, 300);
  return { ip, pids };
}

async function main(): Promise<void> {
  if (arch() !== "x64") throw new Error(`the system call numbers here are x86-64's; this machine is ${arch()}`);
  if (!(Number.isInteger(PINGS) && PINGS >= 5)) throw new Error("--pings must be an integer of at least 5");
  await ensureCommands([["perf", "linux-perf"], ["ping", "iputils-ping"], ["wireguard-go", "wireguard-go"], ["wg", "wireguard-tools"]]);
  await cleanupStaleLabs();
  workDir = mkdtempSync(join(tmpdir(), "inp2p-bench-ping-trace-"));
  const emptyDir = join(workDir, "cwd");
  mkdirSync(emptyDir);
  lab = await labUp({ sites: [{ name: "a", nat: "none" }, { name: "b", nat: "none" }] });
  procs.push(await startLabServer(lab, join(workDir, "server"), ["[server.sdwan]", 'subnet = "10.10.0.0/24"']));
  const pids: Record<string, number> = {};
  for (const site of ["b", "a"]) {
    writeClientConfig(lab, join(workDir, site), { node: site, statusPort: STATUS_PORT, extra: ["[client.sdwan]", "enabled = true"] });
    const proc = spawnIn(lab, lab.sites[site]!.hostNs, emptyDir, [BUN, join(REPO_ROOT, "src/cli/inp2pc.ts"), "--config", join(workDir, site, "inp2pc.toml")]);
    procs.push(proc);
    pids[site] = proc.child.pid!; // exec'd by the shell: inp2pc's own process
    await proc.waitForOutput(/logged in/, 20_000);
  }
  const overlayIp = await sdwanAddressAnswering(lab!, "b", "a", emptyDir, STATUS_PORT);
  const spawn = (ns: string, argv: string[]) => {
    const proc = new Proc(lab!.spawn(ns, argv));
    procs.push(proc);
    return proc.child.pid!;
  };
  const wireguard = await startWireguard(lab, join(workDir, "wireguard"), spawn, wireguardSockets);

  const floor = await startFloor(spawn);
  const systems = [
    { label: "inp2p SDWAN", ip: overlayIp, ends: { a: pids.a!, b: pids.b! } },
    { label: wireguard.label, ip: wireguard.ip, ends: { a: wireguard.pids[0]!, b: wireguard.pids[1]! } },
    { label: "floor (floor-node.ts)", ip: floor.ip, ends: { a: floor.pids[0]!, b: floor.pids[1]! } },
  ];
  for (const system of systems) await lab.exec(lab.sites.a!.hostNs, ["ping", "-f", "-c", String(FLOOD_PINGS), system.ip], { timeoutMs: 60_000 });
  const runs: Traced[] = [];
  const cpu: OnCpu[][] = [];
  for (const system of systems) {
    runs.push(await trace(system.label, system.ip, system.ends));
    cpu.push(await onCpu(system.label, system.ip, system.ends));
  }
  const row = (label: string, pick: (run: Traced) => number) => [label, ...runs.map((run) => pick(run).toFixed(0))];
  const stepMedian = (run: Traced, i: number) => median(run.steps.map((s) => s[i]!));
  const sum = (run: Traced, kind: (typeof STEPS)[number]["kind"]) => STEPS.reduce((total, step, i) => total + (step.kind === kind ? stepMedian(run, i) : 0), 0);
  console.log(`\nidle ping a -> b over each overlay, ${PINGS} pings traced (${runs.map((run) => `${run.label}: ${run.steps.length} in full`).join(", ")}); medians in µs`);
  printTable([
    ["step", ...runs.map((run) => run.label)],
    ...STEPS.map((step, i) => row(step.name, (run) => stepMedian(run, i))),
    row("round trip", (run) => median(run.traced)),
    row("work (4 steps)", (run) => sum(run, "work")),
    row("wake-ups (4)", (run) => sum(run, "wake")),
    row("ping's own, traced", (run) => median(run.rtts) * 1000),
    row("ping's own, untraced", (run) => median(run.untraced) * 1000),
  ]);
  const cpuRow = (label: string, pick: (window: OnCpu) => number) => [label, ...cpu.map((windows) => median(windows.map(pick)).toFixed(0))];
  console.log(`\neach ping's time on a CPU, ${PINGS} pings (${cpu.map((windows, i) => `${runs[i]!.label}: ${windows.length}`).join(", ")}); medians in µs`);
  printTable([
    ["on a CPU", ...runs.map((run) => run.label)],
    cpuRow("a: main thread", (w) => w.aMain),
    cpuRow("a: other threads", (w) => w.aOther),
    cpuRow("b: main thread", (w) => w.bMain),
    cpuRow("b: other threads", (w) => w.bOther),
    cpuRow("a and b", (w) => w.aMain + w.aOther + w.bMain + w.bOther),
    cpuRow("ping", (w) => w.ping),
    cpuRow("CPUs idle", (w) => w.idle),
    cpuRow("two CPUs at once", (w) => w.parallel),
  ]);
}

main()
  .catch((err) => {
    console.error(`ping trace failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
