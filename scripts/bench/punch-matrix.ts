#!/usr/bin/env bun
// Hole punching, measured per pair type in the NAT lab (issue 5). Manual, not in CI; needs root,
// iproute2 and nftables.
//
//   node_modules/.bin/bun scripts/bench/punch-matrix.ts [--repeat 20] [--pairs FROM->TO,...] [--settle-s 20]
//       [--linger-ms 1000] [--log-dir DIR] [--json FILE]
//
// One lab with the sites of test/e2e/punch.test.ts (punchSites: one per NAT type, a second of each, a
// UDP-blocked site) and inp2ps. For each pair (punchPairs) and each attempt, both clients start afresh
// (new identity dir and node name, so new ports, new NAT mappings, a new pin: every attempt punches
// anew): the target first, without apps, until it has logged in and detected its NAT; then the
// requester, whose app toward the target makes it link at once (LINK_RETRY_DELAY_MS after login). A
// status watcher in the requester's host sees the outcome: a link (its kind), or "needs-relay"/"failed",
// or nothing within --settle-s. The punch time is peers.<target>.punchMs from status (request to first
// authenticated packet), else the "peer linked ... ms=N" log line, else (marked ~) the link's log time
// minus login + LINK_RETRY_DELAY_MS; for "needs-relay", the time from the request to that state.
// Pairs with a symmetric side also count the peer UDP packets (both ways, dropped ones included,
// server/STUN traffic left out) at the symmetric router, from the requester's start to --linger-ms
// after the outcome: the packets spent per punch.
// Prints one table: pair, direct rate, median and worst punch time, link kinds seen, packets/punch.
// The lab, every process in it and the temp dirs are removed at the end, on error and on Ctrl-C.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LINK_RETRY_DELAY_MS } from "../../src/client/constants.ts";
import type { Proc } from "../../test/helpers/processes.ts";
import { countPeerUdp, DIRECT_LINK_KINDS, logTime, punchPairs, reportedPunchMs, watchPeerStatus, type PunchPair, type WatchResult } from "../../test/e2e/helpers.ts";
import { startPairLab, STATUS_PORT, type PairLab } from "./pair-lab.ts";

const APP_LISTEN = "127.0.0.1:10000";
const NAT_DETECT_TIMEOUT_MS = 5_000;

const { values: args } = parseArgs({
  options: {
    repeat: { type: "string", default: "20" },
    pairs: { type: "string" },
    "settle-s": { type: "string", default: "20" },
    "linger-ms": { type: "string", default: "1000" },
    "log-dir": { type: "string" },
    json: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (args.help) {
  console.log("usage: bun scripts/bench/punch-matrix.ts [--repeat 20] [--pairs FROM->TO,...] [--settle-s 20] [--linger-ms 1000] [--log-dir DIR] [--json FILE]");
  console.log(`pairs: ${punchPairs().map((p) => `${p.from}->${p.to}`).join(", ")}`);
  process.exit(0);
}
const REPEAT = Number(args.repeat);
const SETTLE_MS = Number(args["settle-s"]) * 1000;
const LINGER_MS = Number(args["linger-ms"]);
if (!(REPEAT >= 1) || !(SETTLE_MS > 0) || !(LINGER_MS >= 0)) throw new Error("--repeat, --settle-s and --linger-ms must be positive numbers");
const wantedPairs = args.pairs?.split(",").map((p) => p.trim());
const PAIRS = punchPairs().filter((p) => !wantedPairs || wantedPairs.includes(`${p.from}->${p.to}`));
if (PAIRS.length === 0) throw new Error(`--pairs matched nothing; pairs are: ${punchPairs().map((p) => `${p.from}->${p.to}`).join(", ")}`);

interface Attempt {
  outcome: "direct" | "needs-relay" | "failed" | "relayed" | "timeout" | "error";
  kind: string | null;
  /** Request to link (or to "needs-relay"); `estimated` when only log times gave it. */
  ms?: number;
  estimated?: boolean;
  packets?: { out: number; in: number };
  error?: string;
}

const isSymmetric = (site: string) => site.startsWith("symmetric");
/** The symmetric side whose router counts packets (the requester when both are). */
const countingSite = (pair: PunchPair) => (isSymmetric(pair.from) ? pair.from : isSymmetric(pair.to) ? pair.to : undefined);

let pairLab: PairLab | undefined;

function startClient(site: string, node: string, dir: string, peer?: string): Promise<{ proc: Proc; loggedInAt: number }> {
  // The app only makes the requester link at once; nothing connects through it, so the target needs no expose.
  return pairLab!.startClient(site, node, dir, peer ? [{ name: "bench", protocol: "tcp", listen: APP_LISTEN, peer, target: "127.0.0.1:9" }] : []);
}

async function attempt(pair: PunchPair, pairIndex: number, i: number): Promise<Attempt> {
  const { lab, workDir, emptyDir, script } = pairLab!;
  const tag = `p${pairIndex}a${i}`;
  const fromNode = `${pair.from}.${tag}`;
  const toNode = `${pair.to}.${tag}`;
  const dir = join(workDir, "attempts", tag);
  const counter = countingSite(pair) ? await countPeerUdp(lab, countingSite(pair)!) : undefined;
  let target: Proc | undefined;
  let requester: Proc | undefined;
  try {
    const t = await startClient(pair.to, toNode, join(dir, "to"));
    target = t.proc;
    await t.proc.waitForOutput(/NAT type:/, NAT_DETECT_TIMEOUT_MS).catch(() => {}); // its NAT known before anyone asks
    await counter?.reset();
    const watch: Promise<WatchResult> = watchPeerStatus(lab, lab.sites[pair.from]!.hostNs, emptyDir, script("statuswatch.ts"), STATUS_PORT, toNode, "settled", SETTLE_MS + 5_000);
    const r = await startClient(pair.from, fromNode, join(dir, "from"), toNode);
    requester = r.proc;
    const requestedAt = r.loggedInAt + LINK_RETRY_DELAY_MS;
    const seen = await watch;
    await new Promise((done) => setTimeout(done, LINGER_MS)); // probes still in flight count too
    const packets = await counter?.read();
    const last = seen.last;
    let result: Attempt;
    if (seen.kind) {
      const reported = reportedPunchMs(last, r.proc.output, toNode);
      const loggedAt = logTime(r.proc.output, new RegExp(`peer link(ed| up).*peer=${toNode.replace(/\./g, "\\.")}(\\s|$)`));
      const ms = reported ?? (loggedAt ?? seen.linkAt!) - requestedAt;
      result = {
        outcome: (DIRECT_LINK_KINDS as readonly string[]).includes(seen.kind) ? "direct" : "relayed",
        kind: seen.kind,
        ms,
        estimated: reported === undefined,
        packets,
      };
    } else if (seen.needsRelayAt) {
      const logged = r.proc.output.match(new RegExp(`needs a relay.*\\bms=(\\d+)`));
      result = { outcome: "needs-relay", kind: null, ms: logged ? Number(logged[1]) : seen.needsRelayAt - requestedAt, estimated: !logged, packets };
    } else {
      result = { outcome: seen.failedAt ? "failed" : "timeout", kind: null, packets, error: JSON.stringify(last) };
    }
    if (args["log-dir"] && result.outcome !== "direct" && pair.expect !== "needs-relay") {
      mkdirSync(args["log-dir"], { recursive: true });
      writeFileSync(join(args["log-dir"], `${tag}-${pair.from}.log`), r.proc.output);
      writeFileSync(join(args["log-dir"], `${tag}-${pair.to}.log`), t.proc.output);
    }
    return result;
  } catch (err) {
    return { outcome: "error", kind: null, error: (err as Error).message.split("\n")[0] };
  } finally {
    await Promise.all([requester, target].flatMap((p) => (p ? [pairLab!.stopClient(p)] : [])));
    await counter?.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : Math.round((s[s.length / 2 - 1]! + s[s.length / 2]!) / 2);
};

async function main(): Promise<void> {
  const startedAt = Date.now();
  pairLab = await startPairLab("punch-matrix", ["relay = false"]); // direct paths only
  const stopping = () => pairLab!.stopping;
  console.log(`punch-matrix: ${PAIRS.length} pair types x ${REPEAT} attempts, fresh clients each time (lab ${pairLab.lab.id})`);

  const rows: { pair: PunchPair; attempts: Attempt[] }[] = [];
  for (const [pairIndex, pair] of PAIRS.entries()) {
    if (stopping()) return;
    const attempts: Attempt[] = [];
    for (let i = 1; i <= REPEAT && !stopping(); i++) {
      const a = await attempt(pair, pairIndex, i);
      if (stopping()) return;
      attempts.push(a);
      const packets = a.packets ? ` ${a.packets.out + a.packets.in} pkts (${a.packets.out} out, ${a.packets.in} in)` : "";
      console.log(`  ${`${pair.from} -> ${pair.to}`.padEnd(46)} #${String(i).padEnd(3)} ${a.outcome.padEnd(11)} ${String(a.kind ?? "").padEnd(10)} ${a.ms !== undefined ? `${a.estimated ? "~" : ""}${a.ms} ms` : ""}${packets}${a.error ? `  ${a.error.slice(0, 200)}` : ""}`);
    }
    rows.push({ pair, attempts });
  }

  const table = rows.map(({ pair, attempts }) => {
    const direct = attempts.filter((a) => a.outcome === "direct");
    const times = direct.map((a) => a.ms!).filter((ms) => ms !== undefined);
    const relay = attempts.filter((a) => a.outcome === "needs-relay");
    const relayTimes = relay.map((a) => a.ms!);
    const estimated = direct.some((a) => a.estimated);
    const kinds = [...new Set(attempts.map((a) => a.kind ?? a.outcome))].join(",");
    const packets = attempts.flatMap((a) => (a.packets ? [a.packets.out + a.packets.in] : []));
    return {
      pair: `${pair.from} <-> ${pair.to}`,
      direct: `${direct.length}/${attempts.length}`,
      median: pair.expect === "needs-relay" && direct.length === 0 ? (relayTimes.length ? `(nr ${median(relayTimes)})` : "-") : times.length ? `${estimated ? "~" : ""}${median(times)}` : "-",
      worst: pair.expect === "needs-relay" && direct.length === 0 ? (relayTimes.length ? `(nr ${Math.max(...relayTimes)})` : "-") : times.length ? `${estimated ? "~" : ""}${Math.max(...times)}` : "-",
      kinds,
      packets: packets.length ? `${median(packets)} (max ${Math.max(...packets)})` : "",
    };
  });
  const columns = [
    ["pair", "pair"],
    ["direct", "direct"],
    ["median", "median ms"],
    ["worst", "worst ms"],
    ["kinds", "kinds seen"],
    ["packets", "pkts/punch"],
  ] as const;
  const widths = columns.map(([k, title]) => Math.max(title.length, ...table.map((row) => row[k].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  console.log(`\npunch matrix: ${REPEAT} attempt(s) per pair, fresh clients each; ms = request to link (status punchMs), "nr" = request to needs-relay;`);
  console.log(`pkts/punch = peer UDP packets both ways at the symmetric router, median (max), STUN to the server left out; ${Math.round((Date.now() - startedAt) / 1000)} s in all\n`);
  console.log(line(columns.map(([, title]) => title)));
  for (const row of table) console.log(line(columns.map(([k]) => row[k])));
  if (args.json) writeFileSync(args.json, JSON.stringify({ repeat: REPEAT, rows: rows.map(({ pair, attempts }) => ({ ...pair, attempts })) }, null, 2));
}

try {
  await main();
} catch (err) {
  console.error(`punch-matrix: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
} finally {
  await pairLab?.cleanup();
}
