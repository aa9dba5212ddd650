#!/usr/bin/env bun
// Fairness between flows on one peer link, in one NAT-lab run. Needs root, iproute2, nftables, iperf3
// and ping (iperf3 is installed with apt-get when missing).
//
//   node_modules/.bin/bun scripts/bench/fairness.ts [--seconds 5] [--rounds 3]
//
// Two public sites ("a", "b") and inp2ps; both run inp2pc with [client.sdwan] (the link's kind is
// printed). From a to b over the overlay, each round measures iperf3 TCP alone (what the link
// carries), then the same TCP connection while an unlimited UDP flood (iperf3 -u -b 0) runs beside it
// on the same link, and prints the TCP connection's share (beside the flood / alone), and where
// packets were dropped: a's TUN queue, b's UDP receive buffer. Medians over the rounds.
// The lab, its processes and temp dirs are removed at the end, on error and on Ctrl-C.

import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cleanupStaleLabs, labUp, type Lab } from "../natlab/lab.ts";
import { Proc, waitFor } from "../../test/helpers/processes.ts";
import { DIRECT_LINK_KINDS, labClientStatus, startLabClient, startLabServer, writeClientConfig } from "../../test/e2e/helpers.ts";
import { cleanUpOnExit, ensureCommands, median } from "./lab-measure.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, rounds: { type: "string", default: "3" } } });
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const STATUS_PORT = 27190;
const TCP_PORT = 5201;
const FLOOD_PORT = 5202;
const IPERF_BUSY_ATTEMPTS = 20;
const IPERF_BUSY_RETRY_MS = 500;
/** The flood starts this long before the TCP connection, so that it is at full rate when TCP starts. */
const FLOOD_LEAD_S = 1;

let lab: Lab | undefined;
let workDir = "";
const procs: Proc[] = [];
const cleanUp = cleanUpOnExit("fairness bench", () => ({ procs, lab, workDir }));

/** iperf3 from `ns` to `ip`:`port` for `seconds`; received Mbit/s. */
async function iperf(ns: string, ip: string, port: number, seconds: number, extra: string[] = []): Promise<number> {
  let report;
  // The server is "busy" until the last test's control connection has closed, a moment after the client is done.
  for (let attempt = 1; ; attempt++) {
    const result = await lab!.exec(ns, ["iperf3", "-c", ip, "-p", String(port), "-t", String(seconds), "-J", ...extra], { timeoutMs: (seconds + 20) * 1000 });
    report = JSON.parse(result.stdout);
    if (!String(report.error ?? "").includes("busy") || attempt === IPERF_BUSY_ATTEMPTS) break;
    await new Promise((resolve) => setTimeout(resolve, IPERF_BUSY_RETRY_MS));
  }
  if (report.error) throw new Error(`iperf3 to ${ip}:${port}: ${report.error}`);
  return (extra.includes("-u") ? report.end.sum.bits_per_second * (1 - report.end.sum.lost_percent / 100) : report.end.sum_received.bits_per_second) / 1e6;
}

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
  procs.push(await startLabServer(lab, join(workDir, "server"), ["[server.sdwan]", 'subnet = "10.10.0.0/24"']));
  for (const site of ["a", "b"]) {
    const config = writeClientConfig(lab, join(workDir, site), { node: site, statusPort: STATUS_PORT, extra: ["[client.sdwan]", "enabled = true"] });
    procs.push(await startLabClient(lab, lab.sites[site]!.hostNs, config, emptyDir));
  }
  const [a, b] = [lab.sites.a!, lab.sites.b!];
  const overlayIp = await waitFor("b's virtual address", async () => (await labClientStatus(lab!, b.hostNs, emptyDir, STATUS_PORT)).sdwan?.address ?? undefined, 15_000, 200);
  for (const port of [TCP_PORT, FLOOD_PORT]) procs.push(new Proc(lab.spawn(b.hostNs, ["iperf3", "-s", "-p", String(port)])));
  await waitFor("the overlay answering", async () => (await lab!.exec(a.hostNs, ["ping", "-c", "1", "-W", "1", overlayIp])).code === 0 || undefined, 20_000, 300);
  // The first link may be a relay carrying the first bytes while the punch runs: measure the direct one.
  const link = await waitFor(
    "a direct link from a to b",
    async () => {
      const kind = (await labClientStatus(lab!, a.hostNs, emptyDir, STATUS_PORT)).peers.b?.link;
      return (DIRECT_LINK_KINDS as readonly string[]).includes(kind) ? (kind as string) : undefined;
    },
    30_000,
    300,
  );
  const load = Bun.spawnSync(["cat", "/proc/loadavg"]).stdout.toString().trim();

  const rows: { alone: number; shared: number; flood: number }[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const before = await drops(a.hostNs, b.hostNs);
    const alone = await iperf(a.hostNs, overlayIp, TCP_PORT, SECONDS);
    const flood = iperf(a.hostNs, overlayIp, FLOOD_PORT, SECONDS + 2 * FLOOD_LEAD_S, ["-u", "-b", "0", "-l", "1200"]);
    await new Promise((resolve) => setTimeout(resolve, FLOOD_LEAD_S * 1000));
    const shared = await iperf(a.hostNs, overlayIp, TCP_PORT, SECONDS).catch(() => 0);
    rows.push({ alone, shared, flood: await flood });
    const after = await drops(a.hostNs, b.hostNs);
    console.log(
      `round ${round + 1}: TCP alone ${alone.toFixed(0)} Mbit/s; beside the flood ${shared.toFixed(0)} Mbit/s (${((100 * shared) / alone).toFixed(0)}%); flood delivered ${rows.at(-1)!.flood.toFixed(0)} Mbit/s;` +
        ` dropped by a's TUN queue ${after.tun - before.tun} packets, by b's UDP receive buffer ${after.udp - before.udp}`,
    );
  }
  console.log(`\nFairness bench: a -> b over the overlay (${link}); iperf3 ${SECONDS} s x ${ROUNDS} rounds; load at start ${load}`);
  console.log(`TCP alone (median) ${median(rows.map((r) => r.alone)).toFixed(0)} Mbit/s`);
  console.log(`TCP beside an unlimited UDP flood (median) ${median(rows.map((r) => r.shared)).toFixed(0)} Mbit/s = ${(100 * median(rows.map((r) => r.shared / r.alone))).toFixed(0)}% of TCP alone`);
  console.log(`UDP flood delivered (median) ${median(rows.map((r) => r.flood)).toFixed(0)} Mbit/s`);
}

main()
  .catch((err) => {
    console.error(`fairness bench failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
