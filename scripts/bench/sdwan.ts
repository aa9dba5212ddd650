#!/usr/bin/env bun
// SDWAN against the raw path (and tinc, when tincd is installed), in one NAT-lab run. Needs root,
// iproute2, nftables, iperf3 and ping; tinc is optional (apt-get install tinc).
//
//   node_modules/.bin/bun scripts/bench/sdwan.ts [--seconds 5]
//
// Two public sites ("a", "b") and inp2ps; both run inp2pc with [client.sdwan], linked directly
// (udp-direct). From a to b, over:
//   1. the raw path (b's public address)
//   2. the inp2p overlay (b's virtual address)
//   3. a tinc 1.0 VPN between the same hosts (router mode, its default cipher), when tincd exists
// it measures ping RTT (20 pings, 0.2 s apart) and iperf3 TCP throughput (--seconds), and prints each
// against the raw path. It also runs scripts/bench/tun-loop.ts in a scratch namespace: what the TUN
// read/write loop alone moves, to show whether it is the bottleneck.
// The lab, its processes and temp dirs are removed at the end, on error and on Ctrl-C.

import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { cleanupStaleLabs, labUp, type Lab } from "../natlab/lab.ts";
import { BUN, Proc, waitFor } from "../../test/helpers/processes.ts";
import { labClientStatus, startLabClient, startLabServer, writeClientConfig } from "../../test/e2e/helpers.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" } } });
const SECONDS = Number(values.seconds);
const STATUS_PORT = 27190;
const TINC_SUBNET_PREFIX = "10.30.0";

let lab: Lab | undefined;
let workDir = "";
const procs: Proc[] = [];

async function cleanUp(): Promise<void> {
  for (const proc of procs) await proc.stop();
  await lab?.down();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
}
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => void cleanUp().finally(() => process.exit(130)));

async function ping(ns: string, ip: string): Promise<number> {
  const result = await lab!.exec(ns, ["ping", "-n", "-q", "-c", "20", "-i", "0.2", "-W", "1", ip], { timeoutMs: 30_000 });
  const avg = result.stdout.match(/= [\d.]+\/([\d.]+)\//)?.[1];
  if (!avg) throw new Error(`ping ${ip} from ${ns} failed: ${result.stdout.trim().split("\n").pop()}`);
  return Number(avg);
}

async function iperf(ns: string, ip: string): Promise<number> {
  const result = await lab!.exec(ns, ["iperf3", "-c", ip, "-t", String(SECONDS), "-J"], { timeoutMs: (SECONDS + 20) * 1000 });
  const report = JSON.parse(result.stdout);
  if (report.error) throw new Error(`iperf3 to ${ip}: ${report.error}`);
  return report.end.sum_received.bits_per_second / 1e6;
}

/** A two-node tinc 1.0 VPN between the hosts of sites a and b; resolves with b's tinc address. */
async function startTinc(): Promise<string> {
  const nodes = ["a", "b"] as const;
  const dirs = Object.fromEntries(nodes.map((n) => [n, join(workDir, `tinc-${n}`)])) as Record<(typeof nodes)[number], string>;
  nodes.forEach((node, i) => {
    mkdirSync(join(dirs[node], "hosts"), { recursive: true });
    writeFileSync(join(dirs[node], "tinc.conf"), [`Name = ${node}`, `Interface = tinc${node}`, "Mode = router", "AddressFamily = ipv4", ...(node === "a" ? ["ConnectTo = b"] : [])].join("\n") + "\n");
    writeFileSync(join(dirs[node], "hosts", node), [`Address = ${lab!.sites[node]!.publicIp}`, `Subnet = ${TINC_SUBNET_PREFIX}.${i + 1}/32`].join("\n") + "\n");
    writeFileSync(join(dirs[node], "tinc-up"), `#!/bin/sh\nip addr add ${TINC_SUBNET_PREFIX}.${i + 1}/24 dev $INTERFACE\nip link set $INTERFACE up\n`);
    chmodSync(join(dirs[node], "tinc-up"), 0o755);
  });
  for (const node of nodes) {
    const keys = await lab!.exec(lab!.sites[node]!.hostNs, ["tincd", "-c", dirs[node], "-K2048"], { input: "\n\n", timeoutMs: 60_000 });
    if (keys.code !== 0) throw new Error(`tincd -K failed: ${keys.stderr.trim()}`);
  }
  for (const node of nodes) for (const other of nodes) if (other !== node) writeFileSync(join(dirs[node], "hosts", other), readFileSync(join(dirs[other], "hosts", other)));
  for (const node of nodes) {
    procs.push(new Proc(lab!.spawn(lab!.sites[node]!.hostNs, ["tincd", "-c", dirs[node], "-D", `--pidfile=${join(dirs[node], "pid")}`])));
  }
  const target = `${TINC_SUBNET_PREFIX}.2`;
  await waitFor("tinc up", async () => (await lab!.exec(lab!.sites.a!.hostNs, ["ping", "-c", "1", "-W", "1", target])).code === 0 || undefined, 30_000, 500);
  return target;
}

async function main(): Promise<void> {
  await cleanupStaleLabs();
  workDir = mkdtempSync(join(tmpdir(), "inp2p-bench-sdwan-"));
  const emptyDir = join(workDir, "cwd");
  mkdirSync(emptyDir);
  lab = await labUp({ sites: [{ name: "a", nat: "none" }, { name: "b", nat: "none" }, { name: "scratch", nat: "none" }] });
  procs.push(await startLabServer(lab, join(workDir, "server"), ["[server.sdwan]", 'subnet = "10.10.0.0/24"']));
  for (const site of ["a", "b"]) {
    const config = writeClientConfig(lab, join(workDir, site), { node: site, statusPort: STATUS_PORT, extra: ["[client.sdwan]", "enabled = true"] });
    procs.push(await startLabClient(lab, lab.sites[site]!.hostNs, config, emptyDir));
  }
  const [a, b] = [lab.sites.a!, lab.sites.b!];
  const overlayIp = await waitFor("b's virtual address", async () => (await labClientStatus(lab!, b.hostNs, emptyDir, STATUS_PORT)).sdwan?.address ?? undefined, 15_000, 200);
  procs.push(new Proc(lab.spawn(b.hostNs, ["iperf3", "-s"])));
  await waitFor("the overlay answering", async () => (await lab!.exec(a.hostNs, ["ping", "-c", "1", "-W", "1", overlayIp])).code === 0 || undefined, 20_000, 300);
  const link = (await labClientStatus(lab, a.hostNs, emptyDir, STATUS_PORT)).peers.b?.link;

  const rows: { label: string; rttMs: number; mbps: number }[] = [];
  rows.push({ label: "raw path", rttMs: await ping(a.hostNs, b.publicIp), mbps: await iperf(a.hostNs, b.publicIp) });
  rows.push({ label: `inp2p overlay (${link})`, rttMs: await ping(a.hostNs, overlayIp), mbps: await iperf(a.hostNs, overlayIp) });
  let tincNote = "";
  if ((await lab.exec(a.hostNs, ["sh", "-c", "command -v tincd"])).code === 0) {
    const tincIp = await startTinc();
    rows.push({ label: "tinc 1.0 (router mode)", rttMs: await ping(a.hostNs, tincIp), mbps: await iperf(a.hostNs, tincIp) });
  } else tincNote = "tinc: not installed (apt-get install tinc), skipped";

  const loop = await lab.exec(lab.sites.scratch!.hostNs, [BUN, resolve(import.meta.dirname, "tun-loop.ts"), "--seconds", "2"], { timeoutMs: 60_000 });
  const tun = JSON.parse(loop.stdout.trim().split("\n").pop() ?? "{}");

  const raw = rows[0]!;
  console.log(`\nSDWAN bench: a -> b, both public hosts in the NAT lab; iperf3 TCP ${SECONDS} s, 20 pings`);
  console.log("path".padEnd(34) + "RTT ms".padStart(8) + "x raw".padStart(8) + "Mbit/s".padStart(10) + "x raw".padStart(8));
  for (const row of rows)
    console.log(row.label.padEnd(34) + row.rttMs.toFixed(3).padStart(8) + (row.rttMs / raw.rttMs).toFixed(2).padStart(8) + row.mbps.toFixed(0).padStart(10) + (row.mbps / raw.mbps).toFixed(3).padStart(8));
  if (tincNote) console.log(tincNote);
  console.log(`TUN loop alone (1400-byte packets): reads ${tun.readPps} packets/s (${tun.readMbps} Mbit/s), writes ${tun.writePps} packets/s (${tun.writeMbps} Mbit/s)`);
}

main()
  .catch((err) => {
    console.error(`SDWAN bench failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
