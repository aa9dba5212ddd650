#!/usr/bin/env bun
// Time to first byte through a TCP app, and from then to a direct link, per pair kind in the NAT lab
// (issue 10, "fast relay, then direct"). Manual, not in CI; needs root, iproute2 and nftables.
//
//   node_modules/.bin/bun scripts/bench/first-byte.ts [--repeat 3] [--pairs NAME,...] [--direct-wait-s 40]
//
// The lab of punch-matrix.ts (pair-lab.ts), with the server relaying. For each pair kind and each
// attempt, both clients start afresh (new node names and identity dirs, so new ports, mappings and
// pins): the target first, until it has logged in and detected its NAT; then the requester with a TCP
// app toward a sha256 sink in the target's host. The moment the requester has logged in, send.ts opens
// a connection through the app and sends 1 KiB; the first byte is the sink's answer (it answers once
// the sender half-closes, so that byte has crossed the link both ways). Printed per attempt and as
// medians: time to first byte from the connection's start, the link kind the app first used, and the
// time from the first byte to a direct link kind in the status ("at once" when the first link was
// direct), or "stays relayed" when none came within --direct-wait-s.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Proc } from "../../test/helpers/processes.ts";
import { DIRECT_LINK_KINDS, listening, sendThrough, UDP_BLOCKED_SITE, watchPeerStatus, type WatchResult } from "../../test/e2e/helpers.ts";
import { BUN } from "../../test/helpers/processes.ts";
import { startPairLab, STATUS_PORT, type PairLab } from "./pair-lab.ts";

const APP_LISTEN = "127.0.0.1:10000";
const SINK = "127.0.0.1:9000";
const REQUEST_BYTES = 1024;
/** How long the first connection may take; the app itself gives up on a link sooner. */
const FIRST_BYTE_TIMEOUT_MS = 30_000;
const NAT_DETECT_TIMEOUT_MS = 5_000;

/** The pair kinds of issue 10: requester site -> target site, both from punchSites(). */
const PAIR_KINDS = [
  { name: "public<->cone", from: "public", to: "port-restricted-cone" },
  { name: "cone<->cone", from: "full-cone", to: "port-restricted-cone" },
  { name: "cone<->symmetric", from: "full-cone", to: "symmetric" },
  { name: "port-restricted<->symmetric (birthday)", from: "port-restricted-cone", to: "symmetric" },
  { name: "symmetric<->symmetric-2 (relay only)", from: "symmetric", to: "symmetric-2" },
  { name: "udp-blocked<->public", from: UDP_BLOCKED_SITE, to: "public" },
  { name: "sequential prediction", from: "port-restricted-cone", to: "symmetric-sequential" },
] as const;
type PairKind = (typeof PAIR_KINDS)[number];

const { values: args } = parseArgs({
  options: {
    repeat: { type: "string", default: "3" },
    pairs: { type: "string" },
    "direct-wait-s": { type: "string", default: "40" },
    help: { type: "boolean", short: "h" },
  },
});
if (args.help) {
  console.log("usage: bun scripts/bench/first-byte.ts [--repeat 3] [--pairs NAME,...] [--direct-wait-s 40]");
  console.log(`pairs: ${PAIR_KINDS.map((p) => p.name).join(", ")}`);
  process.exit(0);
}
const REPEAT = Number(args.repeat);
const DIRECT_WAIT_MS = Number(args["direct-wait-s"]) * 1000;
if (!(REPEAT >= 1) || !(DIRECT_WAIT_MS > 0)) throw new Error("--repeat and --direct-wait-s must be positive numbers");
const wanted = args.pairs?.split(",").map((p) => p.trim());
const PAIRS = PAIR_KINDS.filter((p) => !wanted || wanted.includes(p.name));
if (PAIRS.length === 0) throw new Error(`--pairs matched nothing; pairs are: ${PAIR_KINDS.map((p) => p.name).join(", ")}`);

interface Attempt {
  /** Connection start to the first byte back; undefined when none came. */
  firstByteMs?: number;
  /** The link kind the requester first had to the target. */
  firstKind: string | null;
  /** First byte to a direct link kind (0 when the first link was direct, or went direct before the first byte); undefined when none came. */
  toDirectMs?: number;
  directKind: string | null;
  error?: string;
}

let pairLab: PairLab | undefined;

async function attempt(pair: PairKind, pairIndex: number, i: number): Promise<Attempt> {
  const { lab, workDir, emptyDir, script } = pairLab!;
  const tag = `p${pairIndex}a${i}`;
  const toNode = `${pair.to}.${tag}`;
  const dir = join(workDir, "attempts", tag);
  const procs: Proc[] = [];
  try {
    const target = await pairLab!.startClient(pair.to, toNode, join(dir, "to"), [], [SINK]);
    procs.push(target.proc);
    await target.proc.waitForOutput(/NAT type:/, NAT_DETECT_TIMEOUT_MS).catch(() => {}); // its NAT known before anyone asks
    const requesterNs = lab.sites[pair.from]!.hostNs;
    const watch: Promise<WatchResult> = watchPeerStatus(lab, requesterNs, emptyDir, script("statuswatch.ts"), STATUS_PORT, toNode, "direct", FIRST_BYTE_TIMEOUT_MS + DIRECT_WAIT_MS);
    const app = { name: "bench", protocol: "tcp" as const, listen: APP_LISTEN, peer: toNode, target: SINK };
    const requester = await pairLab!.startClient(pair.from, `${pair.from}.${tag}`, join(dir, "from"), [app]);
    procs.push(requester.proc);
    const sent = await sendThrough(lab, requesterNs, emptyDir, script("send.ts"), APP_LISTEN, REQUEST_BYTES, FIRST_BYTE_TIMEOUT_MS);
    const ok = !sent.error && sent.reply === `${sent.sha} ${REQUEST_BYTES}`;
    if (!ok) {
      void watch.catch(() => {}); // it runs out by itself; no link matters now
      return { firstKind: null, directKind: null, error: sent.error ?? `answer ${JSON.stringify(sent.reply)}` };
    }
    const seen = await watch;
    const firstByteAt = sent.at ?? Date.now();
    const toDirectMs = seen.directAt === null ? undefined : isDirect(seen.kind) ? 0 : Math.max(0, seen.directAt - firstByteAt);
    return { firstByteMs: sent.ms, firstKind: seen.kind, toDirectMs, directKind: seen.directKind };
  } catch (err) {
    return { firstKind: null, directKind: null, error: (err as Error).message.split("\n")[0] };
  } finally {
    await Promise.all(procs.map((p) => pairLab!.stopClient(p)));
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : Math.round((s[s.length / 2 - 1]! + s[s.length / 2]!) / 2);
};
const isDirect = (kind: string | null) => (DIRECT_LINK_KINDS as readonly (string | null)[]).includes(kind);

async function main(): Promise<void> {
  const startedAt = Date.now();
  pairLab = await startPairLab("first-byte");
  const { lab } = pairLab;
  for (const site of new Set(PAIRS.map((p) => p.to))) lab.spawn(lab.sites[site]!.hostNs, [BUN, pairLab.script("sink.ts"), SINK]);
  for (const site of new Set(PAIRS.map((p) => p.to))) await listening(lab, lab.sites[site]!.hostNs, "-t", SINK);
  console.log(`first-byte: ${PAIRS.length} pair kinds x ${REPEAT} attempts, fresh clients each time (lab ${lab.id})`);

  const rows: { pair: PairKind; attempts: Attempt[] }[] = [];
  for (const [pairIndex, pair] of PAIRS.entries()) {
    const attempts: Attempt[] = [];
    for (let i = 1; i <= REPEAT && !pairLab.stopping; i++) {
      const a = await attempt(pair, pairIndex, i);
      attempts.push(a);
      const toDirect = a.toDirectMs === undefined ? "stays relayed" : isDirect(a.firstKind) ? "direct at once" : `direct after ${a.toDirectMs} ms (${a.directKind})`;
      console.log(`  ${pair.name.padEnd(40)} #${String(i).padEnd(3)} ${a.error ? `no first byte: ${a.error.slice(0, 200)}` : `first byte ${a.firstByteMs} ms over ${a.firstKind}, ${toDirect}`}`);
    }
    if (pairLab.stopping) return;
    rows.push({ pair, attempts });
  }

  const table = rows.map(({ pair, attempts }) => {
    const answered = attempts.filter((a) => a.firstByteMs !== undefined);
    const upgraded = answered.filter((a) => a.toDirectMs !== undefined && !isDirect(a.firstKind));
    const firstKinds = [...new Set(answered.map((a) => a.firstKind ?? "?"))].join(",");
    const stayed = answered.filter((a) => a.toDirectMs === undefined).length;
    const atOnce = answered.filter((a) => isDirect(a.firstKind)).length;
    const toDirect = [
      ...(atOnce ? [`at once ${atOnce}x`] : []),
      ...(upgraded.length ? [`median ${median(upgraded.map((a) => a.toDirectMs!))} ms ${upgraded.length}x`] : []),
      ...(stayed ? [`stays relayed ${stayed}x`] : []),
    ].join(", ");
    return {
      pair: pair.name,
      answered: `${answered.length}/${attempts.length}`,
      firstByte: answered.length ? String(median(answered.map((a) => a.firstByteMs!))) : "-",
      worst: answered.length ? String(Math.max(...answered.map((a) => a.firstByteMs!))) : "-",
      firstKinds: firstKinds || "-",
      toDirect: toDirect || "-",
      finalKinds: [...new Set(answered.map((a) => a.directKind ?? (isDirect(a.firstKind) ? a.firstKind : "relayed")))].join(",") || "-",
    };
  });
  const columns = [
    ["pair", "pair kind"],
    ["answered", "answered"],
    ["firstByte", "first byte median ms"],
    ["worst", "worst ms"],
    ["firstKinds", "first link"],
    ["toDirect", "first byte -> direct"],
    ["finalKinds", "direct kind"],
  ] as const;
  const widths = columns.map(([k, title]) => Math.max(title.length, ...table.map((row) => row[k].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  console.log(`\nfirst byte: ${REPEAT} attempt(s) per pair kind, fresh clients each; first byte = a new connection through the app (sent the moment the requester`);
  console.log(`logged in) to the sink's answer; direct = a ${DIRECT_LINK_KINDS.join("/")} link in status within ${DIRECT_WAIT_MS / 1000} s; ${Math.round((Date.now() - startedAt) / 1000)} s in all\n`);
  console.log(line(columns.map(([, title]) => title)));
  for (const row of table) console.log(line(columns.map(([k]) => row[k])));
}

try {
  await main();
} catch (err) {
  console.error(`first-byte: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
} finally {
  await pairLab?.cleanup();
}
