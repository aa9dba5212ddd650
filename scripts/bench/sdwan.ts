#!/usr/bin/env bun
// inp2p's SDWAN against the raw path, wireguard-go and Nebula (and tinc, when tincd is installed), in
// one NAT-lab run with interleaved rounds. Needs root, iproute2, nftables, iperf3 and ping; installs
// Debian's wireguard-go, wireguard-tools and nebula when missing (apt-get).
//
//   node_modules/.bin/bun scripts/bench/sdwan.ts [--seconds 5] [--rounds 3] [--json figures.json] [--profile DIR]
//                                                [--ping-intervals 0.05,0.01,0.002]
//
// --ping-intervals: in each round, after its 20 pings 0.2 s apart, each system is also pinged 40 times
// at each of these intervals (seconds, 0.002 to 1), and the end prints the medians by interval. An idle
// ping finds every step of its way cold; pings closer together find them warmer.
// --profile DIR: both inp2pc run under Bun's CPU profiler (BUN_OPTIONS=--cpu-prof, written into DIR/a
// and DIR/b at their exit), and the end prints where each spent its time during inp2p's a -> b
// transfers: a sending, b receiving.
// Two public sites ("a", "b") on the lab's bridge, and inp2ps. Between the hosts of a and b:
//   raw path       b's public address
//   inp2p SDWAN    inp2pc with [client.sdwan] at both ends (udp-direct), b's virtual address
//   wireguard-go   a userspace wg interface at each end, keys made per run, 10.31.0.0/24
//   Nebula         a CA and two host certificates made per run, no lighthouse: a static host map of
//                  the two public addresses, 10.32.0.0/24
//   tinc 1.0       router mode, its default cipher, 10.30.0.0/24 (only when tincd is installed)
// Each round runs, system after system: 20 pings (0.2 s apart), then iperf3 TCP for --seconds from a
// to b and back (-R). It prints the medians: ping, Gbit/s each way, TCP retransmits a -> b, CPU seconds
// per GB moved (both ends' processes: utime + stime from /proc/PID/stat over the transfers, divided by
// the bytes received), the largest RSS of both ends together during a transfer (inp2ps's apart), and
// each against wireguard-go, then each system's ping median round by round (inp2p's first round comes
// before any transfer, right after its start) and in how many rounds it was below wireguard-go's, with
// a sign test's p (how likely so uneven a split is if neither were faster). It also runs
// scripts/bench/tun-loop.ts in a scratch namespace: what the TUN read/write loop alone moves.
// The lab, its processes, the wireguard-go sockets and temp dirs are removed at the end, on error and
// on Ctrl-C.

import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { cleanupStaleLabs, hasCommand, labSupport, labUp, type Lab } from "../natlab/lab.ts";
import { BUN, Proc, waitFor } from "../../test/helpers/processes.ts";
import { DIRECT_LINK_KINDS, labClientStatus, startLabClient, startLabServer, writeClientConfig } from "../../test/e2e/helpers.ts";
import { startWireguard } from "./wireguard.ts";
import { benchOptions, cleanUpOnExit, cpuPerGb, ensureCommands, fixed, iperf3, loadAverage, median, pingRtts, printProfiles, printTable, profilerEnv, ratio, signTestP, treeRssMb, type Transfer } from "./lab-measure.ts";

const { seconds: SECONDS, rounds: ROUNDS, json: JSON_FILE, profile: PROFILE_DIR, pingIntervals: PING_INTERVALS } = benchOptions(true);
const PINGS_PER_ROUND = 20;
const PINGS_PER_INTERVAL = 40;
const RAW_PATH_LABEL = "raw path";
const STATUS_PORT = 27190;
const UP_TIMEOUT_MS = 30_000;
const INP2P_SUBNET = "10.10.0.0/24";
const TINC_SUBNET_PREFIX = "10.30.0";
const NEBULA_SUBNET_PREFIX = "10.32.0";
const NEBULA_PORT = 4242;
const SITES = ["a", "b"] as const;
type SiteName = (typeof SITES)[number];

/** A way from a's host to b's host, and the processes that carry it (none for the raw path). */
interface System {
  label: string;
  ip: string;
  pids: number[];
}

let lab: Lab | undefined;
let workDir = "";
const procs: Proc[] = [];
const wireguardSockets: string[] = [];
const cleanUp = cleanUpOnExit("SDWAN bench", () => ({ procs, lab, files: wireguardSockets, workDir }));

async function must(ns: string, argv: string[], input?: string): Promise<string> {
  const result = await lab!.exec(ns, argv, { input, timeoutMs: 60_000 });
  if (result.code !== 0) throw new Error(`\`${argv.join(" ")}\` in ${ns} failed (${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

function spawnFor(ns: string, argv: string[]): number {
  const proc = new Proc(lab!.spawn(ns, argv));
  procs.push(proc);
  return proc.child.pid!;
}

const hostNs = (site: SiteName) => lab!.sites[site]!.hostNs;

async function answering(what: string, ip: string): Promise<void> {
  await waitFor(`${what} answering`, async () => (await lab!.exec(hostNs("a"), ["ping", "-c", "1", "-W", "1", ip])).code === 0 || undefined, UP_TIMEOUT_MS, 300);
}

async function startInp2p(emptyDir: string): Promise<{ system: System; serverPid: number }> {
  const server = await startLabServer(lab!, join(workDir, "server"), ["[server.sdwan]", `subnet = "${INP2P_SUBNET}"`]);
  procs.push(server);
  const pids: number[] = [];
  for (const site of SITES) {
    const config = writeClientConfig(lab!, join(workDir, site), { node: site, statusPort: STATUS_PORT, extra: ["[client.sdwan]", "enabled = true"] });
    const proc = await startLabClient(lab!, hostNs(site), config, emptyDir, PROFILE_DIR ? profilerEnv(join(PROFILE_DIR, site)) : {});
    procs.push(proc);
    pids.push(proc.child.pid!);
  }
  const ip = await waitFor("b's virtual address", async () => (await labClientStatus(lab!, hostNs("b"), emptyDir, STATUS_PORT)).sdwan?.address ?? undefined, 15_000, 200);
  await answering("the inp2p overlay", ip);
  // The overlay answers over a relay first; the bench measures the direct link that replaces it.
  const link = await waitFor(
    "a direct link from a to b",
    async () => {
      const kind = (await labClientStatus(lab!, hostNs("a"), emptyDir, STATUS_PORT)).peers.b?.link;
      return (DIRECT_LINK_KINDS as readonly string[]).includes(kind) ? (kind as string) : undefined;
    },
    UP_TIMEOUT_MS,
    300,
  );
  return { system: { label: `inp2p SDWAN (${link})`, ip, pids }, serverPid: server.child.pid! };
}

async function startNebula(): Promise<System> {
  const dir = join(workDir, "nebula");
  mkdirSync(dir, { mode: 0o700 });
  const at = (name: string) => join(dir, name);
  await must(hostNs("a"), ["nebula-cert", "ca", "-name", "inp2p bench", "-out-crt", at("ca.crt"), "-out-key", at("ca.key")]);
  const pids: number[] = [];
  for (const [i, site] of SITES.entries()) {
    const other = SITES[1 - i]!;
    await must(hostNs(site), ["nebula-cert", "sign", "-ca-crt", at("ca.crt"), "-ca-key", at("ca.key"), "-name", site, "-ip", `${NEBULA_SUBNET_PREFIX}.${i + 1}/24`, "-out-crt", at(`${site}.crt`), "-out-key", at(`${site}.key`)]);
    const anyone = "[{ port: any, proto: any, host: any }]";
    writeFileSync(
      at(`${site}.yml`),
      [
        `pki: { ca: ${at("ca.crt")}, cert: ${at(`${site}.crt`)}, key: ${at(`${site}.key`)} }`,
        `static_host_map: { "${NEBULA_SUBNET_PREFIX}.${2 - i}": ["${lab!.sites[other]!.publicIp}:${NEBULA_PORT}"] }`,
        "lighthouse: { am_lighthouse: false, hosts: [] }",
        `listen: { host: 0.0.0.0, port: ${NEBULA_PORT} }`,
        `tun: { dev: neb${lab!.id}${site} }`,
        "logging: { level: warning }",
        `firewall: { outbound: ${anyone}, inbound: ${anyone} }`,
      ].join("\n") + "\n",
    );
    pids.push(spawnFor(hostNs(site), ["nebula", "-config", at(`${site}.yml`)]));
  }
  const ip = `${NEBULA_SUBNET_PREFIX}.2`;
  await answering("Nebula", ip);
  const version = (await lab!.exec(hostNs("a"), ["nebula", "-version"])).stdout.match(/([\d.]+)/)?.[1];
  return { label: `Nebula${version ? ` ${version}` : ""}`, ip, pids };
}

/** A two-node tinc 1.0 VPN between the hosts of sites a and b. */
async function startTinc(): Promise<System> {
  const dirs = Object.fromEntries(SITES.map((n) => [n, join(workDir, `tinc-${n}`)])) as Record<SiteName, string>;
  SITES.forEach((node, i) => {
    mkdirSync(join(dirs[node], "hosts"), { recursive: true });
    writeFileSync(join(dirs[node], "tinc.conf"), [`Name = ${node}`, `Interface = tinc${node}`, "Mode = router", "AddressFamily = ipv4", ...(node === "a" ? ["ConnectTo = b"] : [])].join("\n") + "\n");
    writeFileSync(join(dirs[node], "hosts", node), [`Address = ${lab!.sites[node]!.publicIp}`, `Subnet = ${TINC_SUBNET_PREFIX}.${i + 1}/32`].join("\n") + "\n");
    writeFileSync(join(dirs[node], "tinc-up"), `#!/bin/sh\nip addr add ${TINC_SUBNET_PREFIX}.${i + 1}/24 dev $INTERFACE\nip link set $INTERFACE up\n`);
    chmodSync(join(dirs[node], "tinc-up"), 0o755);
  });
  for (const node of SITES) await must(hostNs(node), ["tincd", "-c", dirs[node], "-K2048"], "\n\n");
  for (const node of SITES) for (const other of SITES) if (other !== node) writeFileSync(join(dirs[node], "hosts", other), readFileSync(join(dirs[other], "hosts", other)));
  const pids = SITES.map((node) => spawnFor(hostNs(node), ["tincd", "-c", dirs[node], "-D", `--pidfile=${join(dirs[node], "pid")}`]));
  const ip = `${TINC_SUBNET_PREFIX}.2`;
  await answering("tinc", ip);
  return { label: "tinc 1.0 (router mode)", ip, pids };
}

interface Figures {
  label: string;
  pingMs: number;
  abGbps: number;
  baGbps: number;
  abRetransmits: number | undefined;
  cpuSecondsPerGb: number | undefined;
  rssMb: number | undefined;
  /** Median ping at each of --ping-intervals, in their order. */
  pingByIntervalMs: number[];
  rounds: { pingMs: number[]; pingRoundMediansMs: number[]; pingAtIntervalMs: number[][]; ab: Transfer[]; ba: Transfer[] };
}

async function main(): Promise<void> {
  const support = labSupport();
  if (!support.ok) throw new Error(support.reason);
  await ensureCommands([["iperf3", "iperf3"], ["ping", "iputils-ping"], ["wireguard-go", "wireguard-go"], ["wg", "wireguard-tools"], ["nebula", "nebula"], ["nebula-cert", "nebula"]]);
  const loadAtStart = loadAverage();
  await cleanupStaleLabs();
  workDir = mkdtempSync(join(tmpdir(), "inp2p-bench-sdwan-"));
  const emptyDir = join(workDir, "cwd");
  mkdirSync(emptyDir);
  lab = await labUp({ sites: [{ name: "a", nat: "none" }, { name: "b", nat: "none" }, { name: "scratch", nat: "none" }] });
  spawnFor(hostNs("b"), ["iperf3", "-s"]);

  const inp2p = await startInp2p(emptyDir);
  const systems: System[] = [{ label: RAW_PATH_LABEL, ip: lab.sites.b!.publicIp, pids: [] }, inp2p.system, await startWireguard(lab, join(workDir, "wireguard"), spawnFor, wireguardSockets), await startNebula()];
  const tincNote = hasCommand("tincd") ? "" : "tinc: not installed (apt-get install tinc), skipped";
  if (!tincNote) systems.push(await startTinc());

  const runs = systems.map(() => ({ pingMs: [] as number[], pingRoundMediansMs: [] as number[], pingAtIntervalMs: PING_INTERVALS.map(() => [] as number[]), ab: [] as Transfer[], ba: [] as Transfer[] }));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [i, system] of systems.entries()) {
      const rtts = await pingRtts(lab, hostNs("a"), system.ip, PINGS_PER_ROUND);
      runs[i]!.pingMs.push(...rtts);
      runs[i]!.pingRoundMediansMs.push(median(rtts));
      for (const [k, seconds] of PING_INTERVALS.entries()) runs[i]!.pingAtIntervalMs[k]!.push(...(await pingRtts(lab, hostNs("a"), system.ip, PINGS_PER_INTERVAL, seconds)));
      for (const reverse of [false, true]) {
        const transfer = await iperf3(lab, hostNs("a"), system.ip, { seconds: SECONDS, reverse, pids: system.pids });
        (reverse ? runs[i]!.ba : runs[i]!.ab).push(transfer);
        console.log(`round ${round}/${ROUNDS} ${system.label} ${reverse ? "b -> a" : "a -> b"}: ${transfer.gbps.toFixed(3)} Gbit/s`);
      }
    }
  }
  const serverRssMb = treeRssMb(inp2p.serverPid);
  const loadAtEnd = loadAverage();

  const loop = await lab.exec(lab.sites.scratch!.hostNs, [BUN, resolve(import.meta.dirname, "tun-loop.ts"), "--seconds", "2"], { timeoutMs: 60_000 });
  const tun = JSON.parse(loop.stdout.trim().split("\n").pop() ?? "{}");

  const figures: Figures[] = systems.map((system, i) => {
    const r = runs[i]!;
    const measured = system.pids.length > 0;
    return {
      label: system.label,
      pingMs: median(r.pingMs),
      pingByIntervalMs: r.pingAtIntervalMs.map((rtts) => median(rtts)),
      abGbps: median(r.ab.map((t) => t.gbps)),
      baGbps: median(r.ba.map((t) => t.gbps)),
      abRetransmits: r.ab.every((t) => t.retransmits !== undefined) ? median(r.ab.map((t) => t.retransmits!)) : undefined,
      cpuSecondsPerGb: cpuPerGb([...r.ab, ...r.ba], measured),
      rssMb: measured ? median([...r.ab, ...r.ba].map((t) => t.rssMb)) : undefined,
      rounds: r,
    };
  });
  const wg = figures.find((f) => f.label.startsWith("wireguard-go"))!;
  console.log(`\nSDWAN bench: a <-> b, two public hosts in the NAT lab; ${ROUNDS} interleaved rounds of ${PINGS_PER_ROUND} pings and iperf3 TCP ${SECONDS} s each way; medians`);
  console.log(`load average at start ${loadAtStart}, at end ${loadAtEnd}`);
  printTable([
    ["system", "ping ms", "x wg", "a->b Gbit/s", "x wg", "b->a Gbit/s", "x wg", "retr a->b", "CPU s/GB", "x wg", "RSS MB", "x wg"],
    ...figures.map((f) => [
      f.label,
      fixed(f.pingMs, 3), ratio(f.pingMs, wg.pingMs),
      fixed(f.abGbps, 3), ratio(f.abGbps, wg.abGbps),
      fixed(f.baGbps, 3), ratio(f.baGbps, wg.baGbps),
      fixed(f.abRetransmits, 0),
      fixed(f.cpuSecondsPerGb, 1), ratio(f.cpuSecondsPerGb, wg.cpuSecondsPerGb),
      fixed(f.rssMb, 0), ratio(f.rssMb, wg.rssMb),
    ]),
  ]);
  console.log(`CPU: both ends' processes over the transfers, per GB received; RSS: both ends together, the largest seen during a transfer (median of the transfers); inp2ps ${serverRssMb.toFixed(0)} MB besides`);
  console.log(`ping medians round by round: ${figures.map((f) => `${f.label} ${f.rounds.pingRoundMediansMs.map((ms) => fixed(ms, 3)).join(" / ")}`).join("; ")}`);
  const pairedWithWg = figures.filter((f) => f !== wg && f.label !== RAW_PATH_LABEL);
  console.log(
    `ping against wireguard-go's in the same round: ${pairedWithWg
      .map((f) => {
        const lower = f.rounds.pingRoundMediansMs.filter((ms, round) => ms < wg.rounds.pingRoundMediansMs[round]!).length;
        return `${f.label} lower in ${lower} of ${ROUNDS} (sign test p = ${signTestP(lower, ROUNDS).toPrecision(2)})`;
      })
      .join("; ")}`,
  );
  if (PING_INTERVALS.length > 0) {
    console.log(`\nping by interval: ${PINGS_PER_INTERVAL} pings a round at each interval, medians over the rounds (ms, and x wireguard-go)`);
    printTable([
      ["system", ...PING_INTERVALS.flatMap((seconds) => [`${seconds} s`, "x wg"])],
      ...figures.map((f) => [f.label, ...f.pingByIntervalMs.flatMap((ms, k) => [fixed(ms, 3), ratio(ms, wg.pingByIntervalMs[k])])]),
    ]);
  }
  if (tincNote) console.log(tincNote);
  console.log(`TUN loop alone (1400-byte packets): reads ${tun.readPps} packets/s (${tun.readMbps} Mbit/s), writes ${tun.writePps} packets/s (${tun.writeMbps} Mbit/s)`);
  if (JSON_FILE) {
    writeFileSync(JSON_FILE, JSON.stringify({ seconds: SECONDS, rounds: ROUNDS, pingIntervals: PING_INTERVALS, loadAtStart, loadAtEnd, serverRssMb, tunLoop: tun, systems: figures }, null, 2) + "\n");
    console.log(`figures written to ${JSON_FILE}`);
  }
  inp2pTransfers = runs[1]!;
}

/** inp2p's transfers, for the profiles printed once its processes have exited (and written them). */
let inp2pTransfers: { ab: Transfer[]; ba: Transfer[] } | undefined;

main()
  .catch((err) => {
    console.error(`SDWAN bench failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await cleanUp();
    if (!PROFILE_DIR || !inp2pTransfers) return;
    printProfiles(join(PROFILE_DIR, "a"), "a, sending (a -> b)", inp2pTransfers.ab);
    printProfiles(join(PROFILE_DIR, "b"), "b, receiving (a -> b)", inp2pTransfers.ab);
  });
