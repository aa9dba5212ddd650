#!/usr/bin/env bun
// A TCP app over each of inp2p's reliable paths against a plain forward, in one NAT-lab run with
// interleaved rounds. Needs root, iproute2, nftables, iperf3 and socat (installed when missing).
//
//   node_modules/.bin/bun scripts/bench/apps.ts [--seconds 5] [--rounds 3] [--json figures.json] [--profile DIR]
//
// --profile DIR: the inp2pc processes run under Bun's CPU profiler (written into DIR/<node> at their
// exit), and the end prints where each spent its time during its forward's a -> b transfers.
// Two public sites ("a", "b") on the lab's bridge, and inp2ps; iperf3's server listens on b's
// 127.0.0.1. From a, through:
//   KCP        a TCP app of a "near" inp2pc at a to a "far" inp2pc at b over the UDP path (KCP), the default
//   TCP path   the same with peer_paths = ["tcp"] at both ends (the mux straight on the TCP path)
//   socat      a socat at a forwarding to a socat at b, which forwards to iperf3 (no crypto)
// Each round runs, path after path, iperf3 TCP for --seconds from a to b and back (-R). It prints the
// medians of Gbit/s each way, CPU seconds per GB moved (both forwarders' processes, forked children
// included: utime + stime + cutime + cstime from /proc/PID/stat over the transfers, per GB received),
// the largest RSS of both ends together during a transfer (median of the transfers), and the ratios
// KCP / TCP path and TCP path / socat.
// The lab, its processes and temp dirs are removed at the end, on error and on Ctrl-C.

import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanupStaleLabs, labSupport, labUp, type Lab } from "../natlab/lab.ts";
import { Proc, waitFor } from "../../test/helpers/processes.ts";
import { DIRECT_LINK_KINDS, labClientStatus, listening, startLabClient, startLabServer, writeClientConfig } from "../../test/e2e/helpers.ts";
import { benchOptions, cleanUpOnExit, cpuPerGb, ensureCommands, fixed, iperf3, loadAverage, median, printProfiles, printTable, profilerEnv, ratio, type Transfer } from "./lab-measure.ts";

const { seconds: SECONDS, rounds: ROUNDS, json: JSON_FILE, profile: PROFILE_DIR } = benchOptions();
const IPERF_PORT = 5201;
const TARGET = `127.0.0.1:${IPERF_PORT}`;
const SOCAT_PORT = 15201;
const UP_TIMEOUT_MS = 30_000;
const WARM_UP_SECONDS = 1;

/** A forwarded port on a's 127.0.0.1 that ends at b's iperf3, and the processes that carry it. */
interface Forward {
  label: string;
  link: string;
  port: number;
  pids: number[];
}

let lab: Lab | undefined;
let workDir = "";
const procs: Proc[] = [];
const cleanUp = cleanUpOnExit("apps bench", () => ({ procs, lab, workDir }));

const hostNs = (site: "a" | "b") => lab!.sites[site]!.hostNs;

/** A near/far pair of inp2pc (`name`-near at a, `name`-far at b) whose app at a forwards `port` to b's iperf3. */
async function inp2pApp(emptyDir: string, name: string, opts: { label: string; port: number; statusPort: number; extra: string[]; linkKinds: readonly string[] }): Promise<Forward> {
  const pids: number[] = [];
  const far = writeClientConfig(lab!, join(workDir, `${name}-far`), { node: `${name}-far`, statusPort: opts.statusPort, expose: [TARGET], extra: opts.extra });
  const near = writeClientConfig(lab!, join(workDir, `${name}-near`), {
    node: `${name}-near`,
    statusPort: opts.statusPort,
    extra: opts.extra,
    apps: [{ name: "bench", protocol: "tcp", listen: `127.0.0.1:${opts.port}`, peer: `${name}-far`, target: TARGET }],
  });
  for (const [site, config, node] of [["b", far, `${name}-far`], ["a", near, `${name}-near`]] as const) {
    const proc = await startLabClient(lab!, hostNs(site), config, emptyDir, PROFILE_DIR ? profilerEnv(join(PROFILE_DIR, node)) : {});
    procs.push(proc);
    pids.push(proc.child.pid!);
  }
  await listening(lab!, hostNs("a"), "-t", `127.0.0.1:${opts.port}`, UP_TIMEOUT_MS);
  // An app's peer is linked at start, maybe relayed first and then direct: the bench measures the path it is about.
  const link = await waitFor(
    `${name}-near's link on ${opts.linkKinds.join(" or ")}`,
    async () => {
      const kind = (await labClientStatus(lab!, hostNs("a"), emptyDir, opts.statusPort)).peers[`${name}-far`]?.link;
      return opts.linkKinds.includes(kind) ? (kind as string) : undefined;
    },
    UP_TIMEOUT_MS,
    300,
  );
  await iperf3(lab!, hostNs("a"), "127.0.0.1", { port: opts.port, seconds: WARM_UP_SECONDS, reverse: false, pids: [] });
  return { label: opts.label, link, port: opts.port, pids };
}

async function socatForward(): Promise<Forward> {
  const spawn = (site: "a" | "b", argv: string[]) => {
    const proc = new Proc(lab!.spawn(hostNs(site), argv));
    procs.push(proc);
    return proc.child.pid!;
  };
  const pids = [
    spawn("b", ["socat", `TCP-LISTEN:${SOCAT_PORT},bind=${lab!.sites.b!.publicIp},reuseaddr,fork`, `TCP:${TARGET}`]),
    spawn("a", ["socat", `TCP-LISTEN:${SOCAT_PORT},bind=127.0.0.1,reuseaddr,fork`, `TCP:${lab!.sites.b!.publicIp}:${SOCAT_PORT}`]),
  ];
  await listening(lab!, hostNs("b"), "-t", `${lab!.sites.b!.publicIp}:${SOCAT_PORT}`, UP_TIMEOUT_MS);
  await listening(lab!, hostNs("a"), "-t", `127.0.0.1:${SOCAT_PORT}`, UP_TIMEOUT_MS);
  return { label: "socat TCP forward (no crypto)", link: "tcp", port: SOCAT_PORT, pids };
}

interface Figures {
  label: string;
  link: string;
  abGbps: number;
  baGbps: number;
  cpuSecondsPerGb: number | undefined;
  rssMb: number;
  rounds: { ab: Transfer[]; ba: Transfer[] };
}

async function main(): Promise<void> {
  const support = labSupport();
  if (!support.ok) throw new Error(support.reason);
  await ensureCommands([["iperf3", "iperf3"], ["socat", "socat"]]);
  const loadAtStart = loadAverage();
  await cleanupStaleLabs();
  workDir = mkdtempSync(join(tmpdir(), "inp2p-bench-apps-"));
  const emptyDir = join(workDir, "cwd");
  mkdirSync(emptyDir);
  lab = await labUp({ sites: [{ name: "a", nat: "none" }, { name: "b", nat: "none" }] });
  procs.push(new Proc(lab.spawn(hostNs("b"), ["iperf3", "-s", "-B", "127.0.0.1", "-p", String(IPERF_PORT)])));
  await listening(lab, hostNs("b"), "-t", TARGET);
  procs.push(await startLabServer(lab, join(workDir, "server")));

  const udpKinds = DIRECT_LINK_KINDS.filter((kind) => kind === "lan" || kind.startsWith("udp"));
  const tcpKinds = DIRECT_LINK_KINDS.filter((kind) => kind.startsWith("tcp"));
  const forwards = [
    await inp2pApp(emptyDir, "kcp", { label: "inp2p TCP app, UDP path (KCP)", port: 15202, statusPort: 27190, extra: [], linkKinds: udpKinds }),
    await inp2pApp(emptyDir, "tcp", { label: "inp2p TCP app, TCP path", port: 15203, statusPort: 27191, extra: ['peer_paths = ["tcp"]'], linkKinds: tcpKinds }),
    await socatForward(),
  ];

  const runs = forwards.map(() => ({ ab: [] as Transfer[], ba: [] as Transfer[] }));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [i, forward] of forwards.entries()) {
      for (const reverse of [false, true]) {
        const transfer = await iperf3(lab, hostNs("a"), "127.0.0.1", { port: forward.port, seconds: SECONDS, reverse, pids: forward.pids });
        (reverse ? runs[i]!.ba : runs[i]!.ab).push(transfer);
        console.log(`round ${round}/${ROUNDS} ${forward.label} ${reverse ? "b -> a" : "a -> b"}: ${transfer.gbps.toFixed(3)} Gbit/s`);
      }
    }
  }
  const loadAtEnd = loadAverage();

  const figures: Figures[] = forwards.map((forward, i) => {
    const r = runs[i]!;
    return {
      label: forward.label,
      link: forward.link,
      abGbps: median(r.ab.map((t) => t.gbps)),
      baGbps: median(r.ba.map((t) => t.gbps)),
      cpuSecondsPerGb: cpuPerGb([...r.ab, ...r.ba], true),
      rssMb: median([...r.ab, ...r.ba].map((t) => t.rssMb)),
      rounds: r,
    };
  });
  const [kcp, tcp, socat] = figures as [Figures, Figures, Figures];
  const ratioRow = (label: string, x: Figures, y: Figures) => [label, "", ratio(x.abGbps, y.abGbps), ratio(x.baGbps, y.baGbps), ratio(x.cpuSecondsPerGb, y.cpuSecondsPerGb), ratio(x.rssMb, y.rssMb)];
  console.log(`\nApps bench: a <-> b (b's iperf3 on its 127.0.0.1), two public hosts in the NAT lab; ${ROUNDS} interleaved rounds of iperf3 TCP ${SECONDS} s each way; medians`);
  console.log(`load average at start ${loadAtStart}, at end ${loadAtEnd}`);
  printTable([
    ["forward", "link", "a->b Gbit/s", "b->a Gbit/s", "CPU s/GB", "RSS MB"],
    ...figures.map((f) => [f.label, f.link, fixed(f.abGbps, 3), fixed(f.baGbps, 3), fixed(f.cpuSecondsPerGb, 1), fixed(f.rssMb, 0)]),
    ratioRow("KCP / TCP path", kcp, tcp),
    ratioRow("TCP path / socat", tcp, socat),
  ]);
  console.log("CPU: both ends' forwarding processes (forked children included) over the transfers, per GB received; RSS: both ends together, the largest seen during a transfer");
  if (JSON_FILE) {
    writeFileSync(JSON_FILE, JSON.stringify({ seconds: SECONDS, rounds: ROUNDS, loadAtStart, loadAtEnd, forwards: figures }, null, 2) + "\n");
    console.log(`figures written to ${JSON_FILE}`);
  }
  inp2pTransfers = { kcp: runs[0]!.ab, tcp: runs[1]!.ab };
}

/** The inp2p forwards' a -> b transfers, for the profiles printed once their processes have exited (and written them). */
let inp2pTransfers: { kcp: Transfer[]; tcp: Transfer[] } | undefined;

main()
  .catch((err) => {
    console.error(`apps bench failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await cleanUp();
    if (!PROFILE_DIR || !inp2pTransfers) return;
    for (const name of ["kcp", "tcp"] as const) {
      printProfiles(join(PROFILE_DIR, `${name}-near`), `${name}-near at a, sending (a -> b)`, inp2pTransfers[name]);
      printProfiles(join(PROFILE_DIR, `${name}-far`), `${name}-far at b, receiving (a -> b)`, inp2pTransfers[name]);
    }
  });
