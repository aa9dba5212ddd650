// `inp2pc ping`, `inp2pc speedtest` and `inp2pc doctor`: they ask the running inp2pc through its
// local status API (src/client/control.ts), and doctor checks each layer (src/client/doctor.ts).

import { writeSync } from "node:fs";
import type { CAC } from "cac";
import type { LoadedConfig } from "../config/index.ts";
import { callAction, PING_TIMEOUT_MS, SPEEDTEST_DEFAULT_SECONDS, SPEEDTEST_MAX_SECONDS, SPEEDTEST_MIN_SECONDS, type PingAnswer } from "../client/control.ts";
import { DOCTOR_EXIT_CODES, DOCTOR_LAYER_CHECKS, formatDoctor, runLayeredDoctor } from "../client/doctor.ts";
import type { SpeedtestLeg } from "../client/speedtest.ts";
import { SPEEDTEST_MAX_DIRECTION_MS } from "../protocol/index.ts";
import { resolveServerHost } from "../client/auto-server.ts";
import { createLogger } from "../log/index.ts";
import { EXIT_USAGE, exitWithError, UsageError } from "./common.ts";

const PING_DEFAULT_COUNT = 4;
const PING_MAX_COUNT = 10_000;
const PING_DEFAULT_INTERVAL_S = 1;
const PING_MIN_INTERVAL_S = 0.2;
const PING_MAX_INTERVAL_S = 60;
/** Width of the speedtest's progress bar on a terminal, in characters. */
const PROGRESS_BAR_CHARS = 30;
/** Without a terminal, a progress line at most this often. */
const PLAIN_PROGRESS_EVERY_MS = 1_000;

type Load = (parsed: Record<string, unknown>, options?: { requireAll?: boolean }) => LoadedConfig;

const out = (text: string) => writeSync(1, text + "\n");

/** A number option within bounds, or a usage error naming it. */
export function boundedNumber(value: unknown, name: string, fallback: number, min: number, max: number, integer: boolean): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n)))
    throw new UsageError(`${name} must be ${integer ? "a whole number" : "a number"} from ${min} to ${max}, not ${JSON.stringify(value)}`);
  return n;
}

const pathWords = (a: { path: string; via: string | null; remote: string }) => `${a.path}${a.via ? ` via relay ${a.via}` : ""} (${a.remote})`;
const fixed = (ms: number) => (ms < 10 ? ms.toFixed(3) : ms < 100 ? ms.toFixed(2) : ms.toFixed(1));

async function ping(load: Load, peer: string, parsed: Record<string, unknown>): Promise<number> {
  const count = boundedNumber(parsed.count, "--count", PING_DEFAULT_COUNT, 1, PING_MAX_COUNT, true);
  const intervalS = boundedNumber(parsed.interval, "--interval", PING_DEFAULT_INTERVAL_S, PING_MIN_INTERVAL_S, PING_MAX_INTERVAL_S, false);
  const port = load(parsed, { requireAll: false }).config.client!.status_port;
  const pings: { seq: number; rttMs: number | null; path: string | null; via: string | null; error?: string }[] = [];
  let first: PingAnswer | undefined;
  let latest: PingAnswer | undefined;
  for (let seq = 1; seq <= count; seq++) {
    const startedAt = Date.now();
    try {
      const answer = (await (await callAction(port, "/ping", { peer })).json()) as PingAnswer;
      first ??= answer;
      latest = answer;
      pings.push({ seq, rttMs: answer.rttMs, path: answer.path, via: answer.via });
      if (!parsed.json) {
        if (answer.made) out(`no link to ${peer} yet: made one over ${pathWords(answer)} in ${answer.madeMs} ms`);
        out(answer.rttMs === null ? `no pong from ${peer} within ${PING_TIMEOUT_MS} ms (seq ${seq})` : `pong from ${peer} over ${pathWords(answer)} in ${fixed(answer.rttMs)} ms (seq ${seq})`);
      }
    } catch (err) {
      if (!first) throw err; // nothing to summarize: say why
      // The link went away after the first ping (the peer left, say): a lost ping, and why.
      pings.push({ seq, rttMs: null, path: null, via: null, error: (err as Error).message });
      if (!parsed.json) out(`no pong from ${peer} (seq ${seq}): ${(err as Error).message}`);
    }
    if (seq < count) await new Promise((r) => setTimeout(r, Math.max(0, intervalS * 1000 - (Date.now() - startedAt))));
  }
  const times = pings.flatMap((p) => (p.rttMs === null ? [] : [p.rttMs]));
  const round = (ms: number) => Math.round(ms * 1000) / 1000;
  const summary = {
    peer,
    path: latest!.path,
    via: latest!.via,
    linkMade: first!.made,
    linkMadeMs: first!.madeMs,
    pings,
    sent: pings.length,
    received: times.length,
    lossPercent: round((100 * (pings.length - times.length)) / pings.length),
    minMs: times.length ? round(Math.min(...times)) : null,
    avgMs: times.length ? round(times.reduce((a, b) => a + b, 0) / times.length) : null,
    maxMs: times.length ? round(Math.max(...times)) : null,
  };
  if (parsed.json) out(JSON.stringify(summary, null, 2));
  else {
    out(`--- ${peer} ping over ${summary.path}${summary.via ? ` via relay ${summary.via}` : ""} ---`);
    out(
      `${summary.sent} sent, ${summary.received} received, ${summary.lossPercent}% loss` +
        (times.length ? `; rtt min/avg/max = ${fixed(summary.minMs!)}/${fixed(summary.avgMs!)}/${fixed(summary.maxMs!)} ms` : ""),
    );
  }
  return times.length > 0 ? 0 : 1;
}

interface SpeedtestEvent {
  event: "start" | "progress" | "result" | "error";
  error?: string;
  direction?: "upload" | "download";
  bytes?: number;
  ms?: number;
  totalMs?: number;
  path?: string;
  via?: string | null;
  remote?: string;
  made?: boolean;
  madeMs?: number | null;
  upload?: SpeedtestLeg;
  download?: SpeedtestLeg;
}

const megabits = (bytes: number, ms: number) => (ms > 0 ? (bytes * 8) / (ms * 1000) : 0);
const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

async function speedtest(load: Load, peer: string, parsed: Record<string, unknown>): Promise<number> {
  const seconds = boundedNumber(parsed.seconds, "--seconds", SPEEDTEST_DEFAULT_SECONDS, SPEEDTEST_MIN_SECONDS, SPEEDTEST_MAX_SECONDS, true);
  const port = load(parsed, { requireAll: false }).config.client!.status_port;
  const response = await callAction(port, "/speedtest", { peer, seconds });
  const tty = Boolean(process.stdout.isTTY) && !parsed.json;
  let lastPlainAt = 0;
  let result: SpeedtestEvent | undefined;
  const handle = (event: SpeedtestEvent) => {
    if (event.event === "error") throw new Error(event.error);
    if (event.event === "result") result = event;
    if (parsed.json) return;
    if (event.event === "start") {
      if (event.made) out(`no link to ${peer} yet: made one over ${pathWords(event as Required<SpeedtestEvent>)} in ${event.madeMs} ms`);
      out(`speedtest with ${peer} over ${pathWords(event as Required<SpeedtestEvent>)}: ${seconds / 2} s up, then ${seconds / 2} s down`);
    }
    if (event.event !== "progress") return;
    const rate = `${event.direction!.padEnd(8)} ${megabits(event.bytes!, event.ms!).toFixed(1).padStart(8)} Mbit/s  ${mib(event.bytes!)}`;
    if (tty) {
      const filled = Math.min(PROGRESS_BAR_CHARS, Math.round((event.ms! / event.totalMs!) * PROGRESS_BAR_CHARS));
      writeSync(1, `\r[${"#".repeat(filled)}${".".repeat(PROGRESS_BAR_CHARS - filled)}] ${rate}   `);
    } else if (Date.now() - lastPlainAt >= PLAIN_PROGRESS_EVERY_MS) {
      lastPlainAt = Date.now();
      out(`${rate} (${(event.ms! / 1000).toFixed(1)} s)`);
    }
  };
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    for (let at = pending.indexOf("\n"); at !== -1; at = pending.indexOf("\n")) {
      const line = pending.slice(0, at);
      pending = pending.slice(at + 1);
      if (line) handle(JSON.parse(line) as SpeedtestEvent);
    }
  }
  if (tty) writeSync(1, "\r" + " ".repeat(PROGRESS_BAR_CHARS + 40) + "\r");
  if (!result) throw new Error("the running inp2pc ended the speedtest without a result");
  const { upload, download } = result as Required<SpeedtestEvent>;
  if (parsed.json) {
    out(JSON.stringify({ peer, path: result.path, via: result.via, remote: result.remote, seconds, upload, download }, null, 2));
    return 0;
  }
  out(`upload    ${upload.mbps.toFixed(1).padStart(8)} Mbit/s  ${mib(upload.bytes)} (${upload.bytes} bytes) in ${(upload.ms / 1000).toFixed(2)} s`);
  out(`download  ${download.mbps.toFixed(1).padStart(8)} Mbit/s  ${mib(download.bytes)} (${download.bytes} bytes) in ${(download.ms / 1000).toFixed(2)} s`);
  out(`path      ${pathWords(result as Required<SpeedtestEvent>)}`);
  return 0;
}

export function addDiagCommands(cli: CAC, program: string, load: Load): void {
  cli
    .command("ping <peer>", "measure the round trip to PEER over this node's link to it (the running inp2pc makes one if there is none)")
    .usage(
      "ping <peer> [-c N] [-i SECONDS] [--json]\n\nAsks the running inp2pc (its status API on status_port) to ping PEER over its encrypted link, making one first\n" +
        "if there is none, and prints one line per ping (path kind, relay, time), then sent, received, loss and min/avg/max.\n" +
        `Exit code: 0 when a pong came back, 1 when none did or PEER is offline, unknown or denied by the server's ACL.`,
    )
    .option("-c, --count <n>", `pings to send (default: ${PING_DEFAULT_COUNT})`)
    .option("-i, --interval <seconds>", `seconds between pings, ${PING_MIN_INTERVAL_S} to ${PING_MAX_INTERVAL_S} (default: ${PING_DEFAULT_INTERVAL_S})`)
    .option("--json", "print JSON")
    .action(async (peer: string, parsed) => {
      try {
        process.exit(await ping(load, peer, parsed));
      } catch (err) {
        exitWithError(program, err);
      }
    });

  cli
    .command("speedtest <peer>", "measure throughput to and from PEER over the running inp2pc's link: an upload, then a download")
    .usage(
      "speedtest <peer> [--seconds N] [--json]\n\nThe running inp2pc sends to PEER for half the time, then PEER sends back for the other half, over their\n" +
        `encrypted link; PEER counts the upload. PEER serves one test per peer at a time, at most ${SPEEDTEST_MAX_DIRECTION_MS / 1000} s a direction, and\n` +
        "may refuse (BUSY, TOO_LONG) saying why. A progress bar on a terminal, plain lines otherwise.",
    )
    .option("--seconds <n>", `the whole test, both directions, ${SPEEDTEST_MIN_SECONDS} to ${SPEEDTEST_MAX_SECONDS} (default: ${SPEEDTEST_DEFAULT_SECONDS})`)
    .option("--json", "print JSON")
    .action(async (peer: string, parsed) => {
      try {
        process.exit(await speedtest(load, peer, parsed));
      } catch (err) {
        exitWithError(program, err);
      }
    });

  cli
    .command("doctor", "check each layer in turn (config, server, TLS, login, NAT, peers, apps, system); the exit code names the first that fails")
    .usage(
      [
        "doctor [--json] [--system]",
        "",
        "Checks each layer in turn; a layer that cannot run after a failing one says skipped, and why.",
        "Each check prints what it measured, its threshold and, when it fails, a one-line fix.",
        "Exit code: 0 when no layer fails, else the first failing layer's:",
        ...Object.entries(DOCTOR_EXIT_CODES).map(([layer, code]) => `  ${code}  ${layer.padEnd(6)}  ${DOCTOR_LAYER_CHECKS[layer as keyof typeof DOCTOR_EXIT_CODES]}`),
        `(${EXIT_USAGE} for a usage error, as every command)`,
      ].join("\n"),
    )
    .option("--system", "check only this machine's native needs (SDWAN's): FFI, /dev/net/tun, CAP_NET_ADMIN; needs no config")
    .option("--json", "print JSON")
    .action(async (parsed) => {
      const report = await runLayeredDoctor({ load: () => load(parsed), resolveServer: (loaded) => resolveServerHost(loaded, createLogger({ level: "error" })), systemOnly: Boolean(parsed.system) });
      // Synchronous: process.exit follows, and an asynchronous write to a pipe would be lost.
      out(parsed.json ? JSON.stringify(report, null, 2) : formatDoctor(report));
      process.exit(report.exitCode);
    });
}
