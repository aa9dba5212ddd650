// Fairness between flows on one SDWAN link (issue 14): an unlimited UDP flood over the overlay must not
// starve a TCP connection on the same link. Two public sites of the NAT lab, inp2pc with [client.sdwan]
// at both, iperf3 from a to b. Needs root, iproute2, nftables, iperf3 and ping.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupStaleLabs, labUp, type Lab } from "../../scripts/natlab/lab.ts";
import type { Proc } from "../helpers/processes.ts";
import { floodRound, labSkipReason, startFloodPair, type FloodPair, type FloodRound } from "./helpers.ts";

const STATUS_PORT = 27190;
/** Before issue 14's fix about one round in three starved TCP: in five, at least one does, nearly always. */
const ROUNDS = 5;
const SECONDS = 3;
/**
 * Issue 14's goal: beside an unlimited UDP flood, a TCP connection still gets at least a quarter of the
 * link, that is of what the link carries while both run (median of the rounds).
 */
const MIN_MEDIAN_TCP_LINK_SHARE = 0.25;
/**
 * And no round starves it. Before the fix, starved rounds gave TCP 0-2% of its rate alone while the
 * flood delivered 100-160 Mbit/s: a share of the link of 0-6%.
 */
const MIN_ROUND_TCP_LINK_SHARE = 0.15;

const reason = labSkipReason([
  ["iperf3", "iperf3"],
  ["ping", "iputils-ping"],
]);
if (reason) console.warn(`SDWAN fairness e2e test skipped: ${reason}`);

describe.skipIf(reason)("SDWAN fairness under a flood", () => {
  let lab: Lab;
  let workDir: string;
  const procs: Proc[] = [];
  let pair: FloodPair;

  beforeAll(async () => {
    await cleanupStaleLabs();
    workDir = mkdtempSync(join(tmpdir(), "inp2p-e2e-fairness-"));
    const emptyDir = join(workDir, "cwd");
    mkdirSync(emptyDir);
    lab = await labUp({ sites: [{ name: "a", nat: "none" }, { name: "b", nat: "none" }] });
    pair = await startFloodPair(lab, workDir, emptyDir, STATUS_PORT, procs);
  }, 120_000);

  afterAll(async () => {
    for (const proc of procs.reverse()) await proc.stop();
    await lab?.down();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it("a TCP connection keeps at least a quarter of the link (median), and never starves, beside an unlimited UDP flood on the same link", async () => {
    const rounds: FloodRound[] = [];
    for (let round = 0; round < ROUNDS; round++) rounds.push(await floodRound(lab, lab.sites.a!.hostNs, pair.overlayIp, SECONDS));
    const linkShares = rounds.map((r) => r.shared / (r.shared + r.flood)).sort((x, y) => x - y);
    console.log(
      `fairness over ${pair.link} (load ${loadavg().map((l) => l.toFixed(1)).join(" ")}): ` +
        rounds.map((r) => `TCP ${r.alone.toFixed(0)} Mbit/s alone, ${r.shared.toFixed(0)} (${((100 * r.shared) / r.alone).toFixed(0)}%) beside a flood delivering ${r.flood.toFixed(0)}`).join("; "),
    );
    for (const r of rounds) {
      expect(r.alone, "TCP alone moved something").toBeGreaterThan(0);
      expect(r.flood, "the flood delivered something: it ran beside TCP").toBeGreaterThan(0);
    }
    const sharesText = linkShares.map((s) => s.toFixed(2)).join(", ");
    expect(linkShares[0], `smallest TCP share of the link beside the flood (rounds: ${sharesText})`).toBeGreaterThanOrEqual(MIN_ROUND_TCP_LINK_SHARE);
    expect(linkShares[Math.floor(ROUNDS / 2)], `median TCP share of the link beside the flood (rounds: ${sharesText})`).toBeGreaterThanOrEqual(MIN_MEDIAN_TCP_LINK_SHARE);
  }, 240_000);
});
