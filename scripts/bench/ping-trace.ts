#!/usr/bin/env bun
// Where an idle ping over the SDWAN spends its round trip, hop by hop, from the kernel's side: the
// system calls of both inp2pc and of ping, recorded with perf's syscall tracepoints (no change to
// inp2pc, no debug build). Needs root, iproute2, nftables, ping and perf (installs Debian's linux-perf
// when missing); x86-64 only (the system call numbers below).
//
//   node_modules/.bin/bun scripts/bench/ping-trace.ts [--pings 40]
//
// Two public sites ("a", "b") and inp2ps, an inp2pc pair from this tree with [client.sdwan], a few pings
// to warm up, --pings pings from a's host to b's virtual address (0.2 s apart), then as many while perf records.
// Each ping's steps, in order (medians over the pings that show every step):
//   a wakes        ping's sendto returned (the request is on a's TUN device) -> a's read of it returned
//   a: JS          -> a's sendmmsg entered (route, seal)
//   a: send        sendmmsg's own time (the kernel takes the datagram across the veth to b's socket)
//   b wakes        -> b's recvmmsg returned
//   b: JS          -> b's writev entered (open, checks)
//   b: write       writev's own time (the kernel answers the echo on b's device)
//   b: reads reply -> b's read of the reply returned
//   b: JS          -> b's sendmmsg entered (route, seal)
//   b: send        sendmmsg's own time
//   a wakes        -> a's recvmmsg returned
//   a: JS          -> a's writev entered
//   a: write       writev's own time
//   ping wakes     -> ping's recvmsg returned
// Tracing costs each system call a little: the round trip runs above the untraced pings' (both printed).
// The lab, its processes and temp dirs are removed at the end, on error and on Ctrl-C.

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { arch, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cleanupStaleLabs, labUp, type Lab } from "../natlab/lab.ts";
import { BUN, Proc, REPO_ROOT, waitFor } from "../../test/helpers/processes.ts";
import { spawnIn, startLabServer, writeClientConfig } from "../../test/e2e/helpers.ts";
import { cleanUpOnExit, ensureCommands, median, pingRtts } from "./lab-measure.ts";

const { values } = parseArgs({ options: { pings: { type: "string", default: "40" } } });
const PINGS = Number(values.pings);
const STATUS_PORT = 27192;
const WARM_UP_PINGS = 5;
const PERF_START_MS = 1_500;
/** x86-64 system call numbers. */
const SYSCALL = { read: 0, writev: 20, sendto: 44, recvmsg: 47, recvmmsg: 299, sendmmsg: 307 } as const;

let lab: Lab | undefined;
let workDir = "";
const procs: Proc[] = [];
const cleanUp = cleanUpOnExit("ping trace", () => ({ procs, lab, workDir }));

interface Call {
  time: number;
  comm: string;
  tid: number;
  enter: boolean;
  nr: number;
  /** sys_exit's return value. */
  result: number;
}

/** sys_enter and sys_exit lines of `perf script -F comm,tid,time,event,trace`, times in µs. */
function parseCalls(script: string): Call[] {
  const calls: Call[] = [];
  const line = /^\s*(.+?)\s+(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)(?: = (-?\d+))?/;
  for (const text of script.split("\n")) {
    const m = line.exec(text);
    if (m) calls.push({ comm: m[1]!, tid: Number(m[2]), time: Number(m[3]) * 1e6, enter: m[4] === "enter", nr: Number(m[5]), result: Number(m[6] ?? 0) });
  }
  return calls;
}

const STEPS = ["a wakes", "a: JS", "a: send", "b wakes", "b: JS", "b: write", "b: reads reply", "b: JS ", "b: send", "a wakes ", "a: JS ", "a: write", "ping wakes"] as const;

/** Each ping's step durations (µs), for the pings whose every step was seen, and their round trip as traced. */
function pingSteps(calls: Call[], a: number, b: number): { steps: number[][]; traced: number[] } {
  const steps: number[][] = [];
  const traced: number[] = [];
  const starts = calls.filter((c) => c.comm === "ping" && !c.enter && c.nr === SYSCALL.sendto && c.result > 0);
  for (const [i, start] of starts.entries()) {
    const until = starts[i + 1]?.time ?? Infinity;
    let at = calls.indexOf(start);
    let time = start.time;
    const marks: number[] = [];
    // The next matching call after the last one found, before the next ping.
    const next = (match: (c: Call) => boolean) => {
      for (at++; at < calls.length && calls[at]!.time < until; at++) {
        if (match(calls[at]!)) {
          marks.push(calls[at]!.time - time);
          time = calls[at]!.time;
          return true;
        }
      }
      return false;
    };
    const on = (tid: number, nr: number, enter: boolean, minResult = -Infinity) => (c: Call) => c.tid === tid && c.nr === nr && c.enter === enter && (enter || c.result >= minResult);
    const seen =
      next(on(a, SYSCALL.read, false, 1)) &&
      next(on(a, SYSCALL.sendmmsg, true)) &&
      next(on(a, SYSCALL.sendmmsg, false)) &&
      next(on(b, SYSCALL.recvmmsg, false, 1)) &&
      next(on(b, SYSCALL.writev, true)) &&
      next(on(b, SYSCALL.writev, false)) &&
      next(on(b, SYSCALL.read, false, 1)) &&
      next(on(b, SYSCALL.sendmmsg, true)) &&
      next(on(b, SYSCALL.sendmmsg, false)) &&
      next(on(a, SYSCALL.recvmmsg, false, 1)) &&
      next(on(a, SYSCALL.writev, true)) &&
      next(on(a, SYSCALL.writev, false)) &&
      next((c) => c.comm === "ping" && !c.enter && c.nr === SYSCALL.recvmsg && c.result > 0);
    if (!seen) continue;
    steps.push(marks);
    traced.push(time - start.time);
  }
  return { steps, traced };
}

async function main(): Promise<void> {
  if (arch() !== "x64") throw new Error(`the system call numbers here are x86-64's; this machine is ${arch()}`);
  if (!(Number.isInteger(PINGS) && PINGS >= 5)) throw new Error("--pings must be an integer of at least 5");
  await ensureCommands([["perf", "linux-perf"], ["ping", "iputils-ping"]]);
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
    pids[site] = proc.child.pid!; // exec'd by the shell: the JS thread's id
    await proc.waitForOutput(/logged in/, 20_000);
  }
  const [a, b] = [lab.sites.a!, lab.sites.b!];
  const overlayIp = await waitFor("b's virtual address", async () => {
    const status = await lab!.exec(b.hostNs, ["sh", "-c", `cd "${emptyDir}" && exec "$@"`, "sh", BUN, join(REPO_ROOT, "src/cli/inp2pc.ts"), "status", "--json", "--status-port", String(STATUS_PORT)]);
    return status.code === 0 ? ((JSON.parse(status.stdout).sdwan?.address as string | undefined) ?? undefined) : undefined;
  }, 20_000, 300);
  await waitFor("the overlay answering", async () => (await lab!.exec(a.hostNs, ["ping", "-c", "1", "-W", "1", overlayIp])).code === 0 || undefined, 20_000, 300);
  await pingRtts(lab, a.hostNs, overlayIp, WARM_UP_PINGS);
  const untraced = await pingRtts(lab, a.hostNs, overlayIp, PINGS);

  const data = join(workDir, "perf.data");
  const filter = Object.values(SYSCALL).map((nr) => `id == ${nr}`).join(" || ");
  const perf = Bun.spawn(["perf", "record", "-a", "-q", "-o", data, "-e", "raw_syscalls:sys_enter", "--filter", filter, "-e", "raw_syscalls:sys_exit", "--filter", filter], { stdout: "ignore", stderr: "pipe" });
  await Bun.sleep(PERF_START_MS);
  if (perf.exitCode !== null) throw new Error(`perf record failed: ${await new Response(perf.stderr).text()}`);
  const rtts = await pingRtts(lab, a.hostNs, overlayIp, PINGS);
  perf.kill("SIGINT");
  await perf.exited;
  const script = Bun.spawnSync(["perf", "script", "-i", data, "-F", "comm,tid,time,event,trace"], { stdout: "pipe", stderr: "ignore" }).stdout.toString();
  rmSync(data, { force: true });
  const { steps, traced } = pingSteps(parseCalls(script), pids.a!, pids.b!);
  if (steps.length === 0) throw new Error("no ping showed every step (is perf's syscall tracing available here?)");

  console.log(`\nidle ping over the SDWAN, a -> b (udp-direct), ${steps.length} of ${rtts.length} pings traced in full; medians in µs`);
  STEPS.forEach((name, i) => console.log(`${name.trim().padEnd(16)}${median(steps.map((s) => s[i]!)).toFixed(0).padStart(6)}`));
  const inJs = [1, 4, 7, 10].map((i) => median(steps.map((s) => s[i]!)));
  const wakes = [0, 3, 9, 12].map((i) => median(steps.map((s) => s[i]!)));
  console.log(`${"".padEnd(16)}------`);
  console.log(`${"round trip".padEnd(16)}${median(traced).toFixed(0).padStart(6)}   (ping's own median: ${(median(rtts) * 1000).toFixed(0)} µs traced, ${(median(untraced) * 1000).toFixed(0)} µs in the ${PINGS} pings before, untraced)`);
  console.log(`of which the JS threads' work ${inJs.reduce((x, y) => x + y, 0).toFixed(0)} µs, wake-ups ${wakes.reduce((x, y) => x + y, 0).toFixed(0)} µs, the rest in system calls`);
}

main()
  .catch((err) => {
    console.error(`ping trace failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
