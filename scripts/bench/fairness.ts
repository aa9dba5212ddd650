#!/usr/bin/env bun
// Fairness between flows on one peer link, in one NAT-lab run. Needs root, iproute2, nftables, iperf3
// and ping (iperf3 is installed with apt-get when missing).
//
//   node_modules/.bin/bun scripts/bench/fairness.ts [--seconds 5] [--rounds 3]
//
// Two public sites ("a", "b") and inp2ps; both run inp2pc with [client.sdwan] (the link's kind is
// printed). From a to b over the overlay, each round measures an unlimited UDP flood alone (iperf3 -u
// -b 0: what it delivers), iperf3 TCP alone (what the link carries), then the same TCP connection
// while the flood runs beside it on the same link, and prints the TCP connection's share (beside the
// flood / alone), and where packets were dropped: a's TUN queue, b's UDP receive buffer. Medians over
// the rounds.
// The lab, its processes and temp dirs are removed at the end, on error and on Ctrl-C.

import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cleanupStaleLabs, labUp, type Lab } from "../natlab/lab.ts";
import type { Proc } from "../../test/helpers/processes.ts";
import { FLOOD_FLAGS, FLOOD_UDP_PORT, floodRound, labIperfMbps, startFloodPair, type FloodRound } from "../../test/e2e/helpers.ts";
import { cleanUpOnExit, ensureCommands, median } from "./lab-measure.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, rounds: { type: "string", default: "3" } } });
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const STATUS_PORT = 27190;
let lab: Lab | undefined;
let workDir = "";
const procs: Proc[] = [];
const cleanUp = cleanUpOnExit("fairness bench", () => ({ procs, lab, workDir }));

/** Packets the sender's TUN device dropped (its queue full: the node did not read fast enough), and the receiver's kernel UDP receive-buffer drops. */
async function drops(senderNs: string, receiverNs: string): Promise<{ tun: number; udp: number }> {
  const tun = await lab!.exec(senderNs, ["sh", "-c", "cat /sys/class/net/inp2p*/statistics/tx_dropped"]);
  const udp = await lab!.exec(receiverNs, ["nstat", "-az", "UdpRcvbufErrors"]);
  return { tun: Number(tun.stdout.trim().split("\n")[0] ?? 0), udp: Number(udp.stdout.match(/UdpRcvbufErrors\s+(\d+)/)?.[1] ?? 0) };
}

async function main(): Promise<void> {
  await ensureCommands([["iperf3", "iperf3"], ["nstat", "iproute2"]]);
  await cleanupStaleLabs();
  workDir = mkdtempSync(join(tmpdir(), "inp2p-bench-fairness-"));
  const emptyDir = join(workDir, "cwd");
  mkdirSync(emptyDir);
  lab = await labUp({ sites: [{ name: "a", nat: "none" }, { name: "b", nat: "none" }] });
  const { overlayIp, link } = await startFloodPair(lab, workDir, emptyDir, STATUS_PORT, procs);
  const [a, b] = [lab.sites.a!, lab.sites.b!];
  const load = Bun.spawnSync(["cat", "/proc/loadavg"]).stdout.toString().trim();

  const rows: (FloodRound & { floodAlone: number })[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const before = await drops(a.hostNs, b.hostNs);
    const floodAlone = await labIperfMbps(lab, a.hostNs, overlayIp, FLOOD_UDP_PORT, SECONDS, FLOOD_FLAGS);
    const { alone, shared, flood } = await floodRound(lab, a.hostNs, overlayIp, SECONDS);
    rows.push({ alone, shared, flood, floodAlone });
    const after = await drops(a.hostNs, b.hostNs);
    console.log(
      `round ${round + 1}: flood alone delivered ${floodAlone.toFixed(0)} Mbit/s; TCP alone ${alone.toFixed(0)} Mbit/s; beside the flood ${shared.toFixed(0)} Mbit/s (${((100 * shared) / alone).toFixed(0)}%); flood delivered ${flood.toFixed(0)} Mbit/s;` +
        ` dropped by a's TUN queue ${after.tun - before.tun} packets, by b's UDP receive buffer ${after.udp - before.udp}`,
    );
  }
  console.log(`\nFairness bench: a -> b over the overlay (${link}); iperf3 ${SECONDS} s x ${ROUNDS} rounds; load at start ${load}`);
  console.log(`TCP alone (median) ${median(rows.map((r) => r.alone)).toFixed(0)} Mbit/s`);
  console.log(`TCP beside an unlimited UDP flood (median) ${median(rows.map((r) => r.shared)).toFixed(0)} Mbit/s = ${(100 * median(rows.map((r) => r.shared / r.alone))).toFixed(0)}% of TCP alone`);
  console.log(`UDP flood delivered (median) ${median(rows.map((r) => r.flood)).toFixed(0)} Mbit/s beside TCP, ${median(rows.map((r) => r.floodAlone)).toFixed(0)} Mbit/s alone`);
}

main()
  .catch((err) => {
    console.error(`fairness bench failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
