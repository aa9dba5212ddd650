// The churn soak of issue 10, in the NAT lab with real inp2ps and inp2pc processes. Three sites: a
// public one ("pub"), a port-restricted cone ("cone") and a symmetric NAT ("sym"); plus a public host
// running a private relay ("relay1"). A rule on cone's router drops everything between cone and sym,
// so their link goes through the relay. Continuous traffic (churnload.ts) all along:
// - TCP apps cone -> pub, sym -> pub and sym -> cone (relayed) into sha256 sinks;
// - two UDP apps sym -> pub toward two different UDP services, each answer tagged by its service, so
//   a datagram delivered to the other app's target shows; the load moves each to a new source socket
//   every 10 s, and the schedule lets the first abandoned flows go idle past FLOW_IDLE_MS (the
//   serving side closes them) before anything breaks the sym <-> pub link;
// - SDWAN pings cone -> pub and sym -> cone over the virtual IPs.
// Meanwhile, on a fixed schedule: a peer restarts 10 times (SIGTERM or SIGKILL), the server restarts 3
// times, the relay in use dies once, the symmetric router flushes its NAT state, and every site drops
// 5% of UDP. Checked: no process crashed, every acknowledged transfer arrived intact, no datagram
// reached a wrong target, and recovery times against the issue's goals (p95 <= 2 s from the
// restarted node's login to the first successful request through its apps; <= 15 s after a server
// restart). Needs root, iproute2, nftables, conntrack and ping.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupStaleLabs, labUp, type Lab, type SiteSpec } from "../../scripts/natlab/lab.ts";
import { ENV_UDP_FLOW_IDLE_MS, UDP_FLOW_IDLE_MS } from "../../src/client/apps.ts";
import { BUN, INP2PC, waitFor, type Proc } from "../helpers/processes.ts";
import {
  labClientStatus,
  labSkipReason,
  listening,
  logTime,
  spawnIn,
  startLabServer,
  writeClientConfig,
  writeLabScripts,
  type ChurnLoad,
  type LabApp,
} from "./helpers.ts";

// ---------- the issue's goals ----------
/** p95 from a restarted node's "logged in" to the first successful request through each of its apps. */
const PEER_RECOVERY_GOAL_P95_MS = 2_000;
/** p95 from a restarted server listening again to every node back and every app working. */
const SERVER_RECOVERY_GOAL_P95_MS = 15_000;

// ---------- bounds (each event waits at most this long for recovery, then the schedule moves on) ----------
const PEER_RECOVERY_CAP_MS = 5_000;
const SERVER_RECOVERY_CAP_MS = 16_000;
const RELAY_FAILOVER_CAP_MS = 10_000;
const NAT_FLUSH_RECOVERY_CAP_MS = 10_000;
/** How long the server stays down on each restart. */
const SERVER_DOWN_MS = 2_000;
const LOGIN_WITHIN_MS = 8_000;
/**
 * How long a UDP app flow lives without traffic in the soak: a quarter of the default, so that waiting
 * for the first sweep takes less than a minute (the load sends on each flow every 50 ms).
 */
const FLOW_IDLE_MS = UDP_FLOW_IDLE_MS / 4;
/** The serving side sweeps idle UDP flows every 5 s; this covers one sweep and some. */
const UDP_SWEEP_MARGIN_MS = 8_000;
/** Every app working before the schedule starts, and every ping pair answering after it ends. */
const WARM_UP_WITHIN_MS = 30_000;
const SDWAN_BACK_WITHIN_MS = 20_000;
const SOAK_TIMEOUT_MS = 400_000;

const LOSS_PERCENT = 5;
const STATUS_PORT = 27190;
const RELAY_PORT = 27185;
const SEED = 10;
const SINK = "127.0.0.1:9000";
const SERVICES = { alpha: "127.0.0.1:9101", beta: "127.0.0.1:9102" } as const;
const SUBNET = "10.10.0.0/24";
const VIRTUAL_IPS = { pub: "10.10.0.100", cone: "10.10.0.101", sym: "10.10.0.102" } as const;
const PING_INTERVAL_S = 0.5;

type Node = "pub" | "cone" | "sym";
const NODES: Node[] = ["pub", "cone", "sym"];
const SITES: SiteSpec[] = [
  { name: "pub", nat: "none" },
  { name: "cone", nat: "port-restricted-cone" },
  { name: "sym", nat: "symmetric" },
  { name: "relayhost", nat: "none" },
];
/** TCP apps by name: who requests, toward whom, on which local port. */
const TCP_APPS = [
  { name: "cone>pub", from: "cone", to: "pub", listen: "127.0.0.1:10000" },
  { name: "sym>pub", from: "sym", to: "pub", listen: "127.0.0.1:10000" },
  { name: "sym>cone", from: "sym", to: "cone", listen: "127.0.0.1:10001" },
] as const;
const UDP_APPS = [
  { name: "udp-alpha", from: "sym", to: "pub", listen: "127.0.0.1:10011", service: "alpha" },
  { name: "udp-beta", from: "sym", to: "pub", listen: "127.0.0.1:10012", service: "beta" },
] as const;
const PINGS = [
  { from: "cone", to: "pub" },
  { from: "sym", to: "cone" },
] as const;
const LOAD: Omit<ChurnLoad, "tcp" | "udp"> = { seed: SEED, loops: 3, minBytes: 16 * 1024, maxBytes: 128 * 1024, timeoutMs: 2_000, pauseMs: 100, udpIntervalMs: 50, rotateMs: 10_000 };

type Event =
  | { kind: "peer"; node: Node; signal: "SIGTERM" | "SIGKILL" }
  | { kind: "server" }
  | { kind: "relay" }
  | { kind: "nat-flush"; site: Node }
  /** Until the UDP flows the load abandoned first have been idle past FLOW_IDLE_MS and swept. */
  | { kind: "idle-flows" };
/**
 * The fixed schedule: 20 peer restarts (cone 8, sym 6, pub 6), 3 server restarts, the relay in use
 * dies once, the symmetric router flushes its NAT state once. sym and pub run untouched until the
 * first abandoned UDP flows are swept, then their link breaks (flush, restarts): a flow closed by
 * the sweep is closed again when its link goes.
 */
const SCHEDULE: Event[] = [
  { kind: "relay" }, // first, while sym -> cone surely runs through relay1
  { kind: "peer", node: "cone", signal: "SIGTERM" },
  { kind: "peer", node: "cone", signal: "SIGKILL" },
  { kind: "server" },
  { kind: "peer", node: "cone", signal: "SIGTERM" },
  { kind: "idle-flows" },
  { kind: "nat-flush", site: "sym" },
  { kind: "peer", node: "sym", signal: "SIGTERM" },
  { kind: "server" },
  { kind: "peer", node: "cone", signal: "SIGKILL" },
  { kind: "peer", node: "sym", signal: "SIGKILL" },
  { kind: "peer", node: "pub", signal: "SIGKILL" },
  { kind: "peer", node: "sym", signal: "SIGTERM" },
  { kind: "peer", node: "pub", signal: "SIGTERM" },
  { kind: "peer", node: "pub", signal: "SIGTERM" },
  // Ten more, so that p95 is an estimate and not, as with ten, mostly the single slowest restart.
  { kind: "peer", node: "cone", signal: "SIGKILL" },
  { kind: "peer", node: "sym", signal: "SIGTERM" },
  { kind: "peer", node: "pub", signal: "SIGKILL" },
  { kind: "peer", node: "cone", signal: "SIGTERM" },
  { kind: "peer", node: "sym", signal: "SIGKILL" },
  { kind: "peer", node: "pub", signal: "SIGTERM" },
  { kind: "peer", node: "cone", signal: "SIGKILL" },
  { kind: "peer", node: "sym", signal: "SIGTERM" },
  { kind: "peer", node: "pub", signal: "SIGKILL" },
  { kind: "peer", node: "cone", signal: "SIGTERM" },
  { kind: "server" },
];

/** The apps a node's restart interrupts: those it requests and those it serves. */
const appsOf = (node: string) => TCP_APPS.filter((a) => a.from === node || a.to === node).map((a) => a.name);
/** An uncaught exception as Bun prints it (log lines start with a timestamp instead). */
const UNCAUGHT = /^(?:\w*Error|error): .*$|^Bun v\d+\.\d+\.\d+ \(/m;

interface Transfer {
  k: "tcp";
  app: string;
  start: number;
  end: number;
  bytes: number;
  acked: boolean;
  intact: boolean;
  error?: string;
}
interface UdpTally {
  k: "udp";
  app: string;
  sent: number;
  ok: number;
  wrong: number;
}

/**
 * Percentile by linear interpolation between the two nearest ranks (numpy's default, Excel's
 * PERCENTILE.INC): with 10 samples the nearest-rank p95 would be the maximum, one slow restart out of
 * ten. Infinity (not recovered within the cap) sorts last and makes any percentile that touches it Infinity.
 */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const below = sorted[Math.floor(rank)]!;
  const above = sorted[Math.ceil(rank)]!;
  if (!Number.isFinite(below) || !Number.isFinite(above)) return Infinity;
  return below + (above - below) * (rank - Math.floor(rank));
}
const fmt = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : "never (cap)");

const reason = labSkipReason([
  ["conntrack", "conntrack"],
  ["ping", "iputils-ping"],
]);
if (reason) console.warn(`churn soak e2e test skipped: ${reason}`);

describe.skipIf(reason)("churn soak in the NAT lab", () => {
  let lab: Lab;
  let workDir: string;
  let emptyDir: string;
  let serverDir: string;
  let script: ReturnType<typeof writeLabScripts>;
  let server: Proc;
  const clients = new Map<string, { proc: Proc; config: string }>();
  /** Every inp2ps/inp2pc process ever started, and how the test stopped it (undefined: still running, or crashed). */
  const processes: { name: string; proc: Proc; stoppedWith?: NodeJS.Signals }[] = [];
  const loads: Proc[] = [];
  const pings: { from: string; to: string; proc: Proc }[] = [];
  const figures: string[] = [];

  const hostOf = (site: string) => lab.sites[site]!.hostNs;
  const startServer = async () => {
    server = await startLabServer(lab, serverDir, [
      "relay_bw = 2000",
      "[server.sdwan]",
      `subnet = "${SUBNET}"`,
      `static = { ${NODES.map((n) => `${n} = "${VIRTUAL_IPS[n]}"`).join(", ")} }`,
    ]);
    processes.push({ name: "inp2ps", proc: server });
    return Date.now();
  };

  function writeConfig(node: string): string {
    const apps: LabApp[] = [
      ...TCP_APPS.filter((a) => a.from === node).map((a) => ({ name: a.name.replace(">", "-"), protocol: "tcp" as const, listen: a.listen, peer: a.to, target: SINK })),
      ...UDP_APPS.filter((a) => a.from === node).map((a) => ({ name: a.name, protocol: "udp" as const, listen: a.listen, peer: a.to, target: SERVICES[a.service] })),
    ];
    const extra = node === "relay1" ? ["relay = true", `relay_port = ${RELAY_PORT}`, "bw = 2000"] : ["[client.sdwan]", "enabled = true"];
    // Exactly the targets of the apps that point at this node.
    const expose = [...new Set([...TCP_APPS.filter((a) => a.to === node).map(() => SINK), ...UDP_APPS.filter((a) => a.to === node).map((a) => SERVICES[a.service])])];
    // Debug: a recovery that misses its cap prints each step its nodes took (logSince).
    return writeClientConfig(lab, join(workDir, "clients", node), { node, statusPort: STATUS_PORT, apps, extra, expose, logLevel: "debug" });
  }

  /**
   * Starts (or restarts) a node from its config; resolves with its "logged in" time, or undefined when
   * it has not logged in within LOGIN_WITHIN_MS (it keeps running and retrying; the soak goes on).
   */
  async function startNode(node: string): Promise<number | undefined> {
    const site = node === "relay1" ? "relayhost" : node;
    const config = clients.get(node)?.config ?? writeConfig(node);
    const proc = spawnIn(lab, hostOf(site), emptyDir, ["env", `${ENV_UDP_FLOW_IDLE_MS}=${FLOW_IDLE_MS}`, BUN, INP2PC, "--config", config]);
    clients.set(node, { proc, config });
    processes.push({ name: node, proc });
    const loggedIn = await proc.waitForOutput(/logged in/, LOGIN_WITHIN_MS).then(
      () => true,
      () => false,
    );
    return loggedIn ? (logTime(proc.output, /logged in/) ?? Date.now()) : undefined;
  }

  /**
   * A post-mortem for a recovery that missed its cap: what each of `nodes` logged since `sinceMs` about
   * its server, its peers and their links (not the SDWAN's packets), the first lines per node, so that
   * a failure in CI explains itself.
   */
  function logSince(sinceMs: number, nodes: string[]): string[] {
    return [...new Set(nodes)].flatMap((node) => {
      const output = clients.get(node)?.proc.output ?? "";
      const lines = output.split("\n").filter((line) => /WARN|ERROR|link|logged in|peer=|server/.test(line) && !/\[sdwan\]/.test(line) && (logTime(line, /./) ?? 0) >= sinceMs);
      return [`    ${node} since the stop:`, ...lines.slice(0, 30).map((line) => `      ${line.slice(0, 300)}`)];
    });
  }

  /** Stops a process the test started, recording that it did (so its exit is no crash). */
  async function stop(proc: Proc, signal: NodeJS.Signals): Promise<void> {
    const entry = processes.find((p) => p.proc === proc)!;
    if (proc.exitCode === null) entry.stoppedWith ??= signal; // one that already died by itself crashed
    await proc.stop(signal);
  }

  // The loads' transfer lines, parsed once each (the last line of an output may still be partial).
  const parsed = new Map<Proc, { upTo: number; transfers: Transfer[] }>();
  const transfers = (): Transfer[] =>
    loads.flatMap((load) => {
      const seen = parsed.get(load) ?? { upTo: 0, transfers: [] };
      const end = load.output.lastIndexOf("\n") + 1;
      for (const line of load.output.slice(seen.upTo, end).split("\n")) if (line.startsWith('{"k":"tcp"')) seen.transfers.push(JSON.parse(line) as Transfer);
      seen.upTo = Math.max(seen.upTo, end);
      parsed.set(load, seen);
      return seen.transfers;
    });

  /** Per app, the end of its first intact transfer that started at or after `sinceMs` (Infinity: none yet). */
  const firstsSince = (apps: string[], sinceMs: number) => apps.map((app) => transfers().find((t) => t.app === app && t.intact && t.start >= sinceMs)?.end ?? Infinity);
  /** "cone>pub 1.2 s, sym>cone never (cap)": each app's first success after `sinceMs`, counted from `fromMs`. */
  const perApp = (apps: string[], sinceMs: number, fromMs: number) => firstsSince(apps, sinceMs).map((end, i) => `${apps[i]} ${fmt(Math.max(0, end - fromMs))}`).join(", ");

  /**
   * Waits until every app in `apps` has carried a transfer intact that started at or after `sinceMs`;
   * resolves with the latest of those first successes (epoch ms), or Infinity after `capMs` from `fromMs`.
   */
  async function firstSuccess(apps: string[], sinceMs: number, fromMs: number, capMs: number): Promise<number> {
    await waitFor(`a transfer through ${apps.join(", ")}`, () => firstsSince(apps, sinceMs).every((t) => t < Infinity), capMs - (Date.now() - fromMs), 100).catch(() => undefined);
    return Math.max(...firstsSince(apps, sinceMs));
  }

  beforeAll(async () => {
    await cleanupStaleLabs();
    workDir = mkdtempSync(join(tmpdir(), "inp2p-e2e-churn-"));
    emptyDir = join(workDir, "cwd");
    serverDir = join(workDir, "server");
    mkdirSync(emptyDir);
    script = writeLabScripts(join(workDir, "scripts"));
    lab = await labUp({ sites: SITES });
    // cone and sym never reach each other directly: their link needs a relay.
    const symIp = lab.sites.sym!.publicIp;
    const block = `add table ip blockpeer\nadd chain ip blockpeer f { type filter hook forward priority -10; }\nadd rule ip blockpeer f ip daddr ${symIp} drop\nadd rule ip blockpeer f ip saddr ${symIp} drop\n`;
    expect((await lab.exec(lab.sites.cone!.routerNs, ["nft", "-f", "-"], { input: block })).code, "blocking rule on cone's router").toBe(0);
    await startServer();
    for (const site of ["pub", "cone"]) lab.spawn(hostOf(site), [BUN, script("sink.ts"), SINK]);
    for (const [tag, address] of Object.entries(SERVICES)) lab.spawn(hostOf("pub"), [BUN, script("udptag.ts"), address, tag]);
    for (const site of ["pub", "cone"]) await listening(lab, hostOf(site), "-t", SINK);
    for (const address of Object.values(SERVICES)) await listening(lab, hostOf("pub"), "-u", address);
    expect(await startNode("relay1"), "relay1 logged in").toBeDefined();
    await clients.get("relay1")!.proc.waitForOutput(/relaying for/, 10_000);
    await server.waitForOutput(/offers to relay node=relay1/, 10_000);
    for (const node of NODES) expect(await startNode(node), `${node} logged in`).toBeDefined();
  }, 120_000);

  afterAll(async () => {
    for (const load of loads) load.child.kill("SIGKILL");
    for (const ping of pings) ping.proc.child.kill("SIGKILL");
    const logDir = process.env.CHURN_LOG_DIR; // every process's full output, for a post-mortem
    if (logDir) {
      mkdirSync(logDir, { recursive: true });
      processes.forEach(({ name, proc }, i) => writeFileSync(join(logDir, `${String(i).padStart(2, "0")}-${name}.log`), proc.output));
      loads.forEach((load, i) => writeFileSync(join(logDir, `load-${i}.jsonl`), load.output));
    }
    for (const { proc } of processes) await proc.stop("SIGKILL");
    await lab?.down();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    if (figures.length) console.log(["churn soak:", ...figures.map((f) => `  ${f}`)].join("\n"));
  });

  it("survives peer, server and relay restarts, a NAT flush and 5% UDP loss: no crash, no corrupt byte, no misdelivered datagram, quick recovery", async () => {
    const soakStart = Date.now();
    for (const site of SITES) await lab.setLoss(site.name, LOSS_PERCENT);
    for (const from of ["cone", "sym"]) {
      const load: ChurnLoad = {
        ...LOAD,
        seed: SEED + loads.length,
        tcp: TCP_APPS.filter((a) => a.from === from).map((a) => ({ name: a.name, address: a.listen })),
        udp: UDP_APPS.filter((a) => a.from === from).map((a) => ({ name: a.name, address: a.listen, service: a.service })),
      };
      loads.push(spawnIn(lab, hostOf(from), emptyDir, [BUN, script("churnload.ts"), JSON.stringify(load)]));
    }
    for (const { from, to } of PINGS) pings.push({ from, to, proc: spawnIn(lab, hostOf(from), emptyDir, ["ping", "-D", "-n", "-i", String(PING_INTERVAL_S), "-W", "1", VIRTUAL_IPS[to]]) });
    const loadStart = Date.now();
    const warmStart = loadStart;
    const warm = await firstSuccess(TCP_APPS.map((a) => a.name), warmStart, warmStart, WARM_UP_WITHIN_MS);
    expect(warm, `every TCP app carries a transfer within ${WARM_UP_WITHIN_MS / 1000} s of the load starting`).toBeLessThan(Infinity);
    figures.push(`warm-up: every TCP app working ${warm - warmStart} ms after the load started (${LOSS_PERCENT}% UDP loss at every site)`);

    const peerRecoveries: number[] = [];
    const serverRecoveries: number[] = [];
    for (const [i, event] of SCHEDULE.entries()) {
      const at = `#${String(i + 1).padStart(2)} +${Math.round((Date.now() - soakStart) / 1000)} s`;
      if (event.kind === "peer") {
        const { proc } = clients.get(event.node)!;
        const stoppedAt = Date.now();
        const wasRunning = proc.exitCode === null;
        await stop(proc, event.signal);
        const loggedIn = await startNode(event.node);
        if (loggedIn === undefined) {
          peerRecoveries.push(Infinity);
          figures.push(`${at} ${event.node} restarted (${event.signal}${wasRunning ? "" : ", it had died by itself"}): NOT logged in within ${LOGIN_WITHIN_MS / 1000} s`, ...logSince(stoppedAt, [event.node]));
          continue;
        }
        const ok = await firstSuccess(appsOf(event.node), stoppedAt, loggedIn, PEER_RECOVERY_CAP_MS);
        peerRecoveries.push(ok - loggedIn);
        figures.push(`${at} ${event.node} restarted (${event.signal}${wasRunning ? "" : ", it had died by itself"}, logged in ${loggedIn - stoppedAt} ms after the stop): apps working ${fmt(Math.max(0, ok - loggedIn))} after its login (${perApp(appsOf(event.node), stoppedAt, loggedIn)})`);
        if (ok === Infinity) figures.push(...logSince(stoppedAt, [event.node, ...TCP_APPS.filter((a) => a.to === event.node).map((a) => a.from)]));
      } else if (event.kind === "server") {
        await stop(server, "SIGTERM");
        const downAt = Date.now();
        await new Promise((r) => setTimeout(r, SERVER_DOWN_MS)); // the outage itself, not an ordering wait
        const upAt = await startServer();
        // Back: every node logged in again, then every app carried a transfer that started after the last login.
        let back = Infinity;
        try {
          const logins = await waitFor("every node logged in again", () => {
            const times = [...clients.values()].map((c) => logTime(c.proc.output, /logged in/, downAt));
            return times.every((t) => t !== undefined) ? (times as number[]) : undefined;
          }, SERVER_RECOVERY_CAP_MS, 100);
          const lastLogin = Math.max(...logins);
          back = Math.max(lastLogin, await firstSuccess(TCP_APPS.map((a) => a.name), lastLogin, upAt, SERVER_RECOVERY_CAP_MS));
        } catch {
          // not back within the cap: recorded as Infinity
        }
        serverRecoveries.push(back - upAt);
        const relogins = [...clients].map(([node, c]) => `${node} ${fmt((logTime(c.proc.output, /logged in/, downAt) ?? Infinity) - upAt)}`).join(", ");
        figures.push(`${at} server restarted (down ${upAt - downAt} ms): every node back and every app working ${fmt(back - upAt)} after it listened again (logins: ${relogins}; apps: ${perApp(TCP_APPS.map((a) => a.name), upAt, upAt)})`);
      } else if (event.kind === "idle-flows") {
        const sweptBy = loadStart + LOAD.rotateMs + FLOW_IDLE_MS + UDP_SWEEP_MARGIN_MS;
        figures.push(`${at} waiting ${Math.max(0, Math.round((sweptBy - Date.now()) / 1000))} s until the first abandoned UDP flows are swept at pub`);
        if (sweptBy > Date.now()) await new Promise((r) => setTimeout(r, sweptBy - Date.now()));
      } else if (event.kind === "relay") {
        const link = (await labClientStatus(lab, hostOf("sym"), emptyDir, STATUS_PORT)).peers.cone?.link ?? null;
        expect.soft(link, "sym -> cone goes through the private relay before it dies").toBe("relay-private");
        const relay = clients.get("relay1")!;
        const killedAt = Date.now();
        await stop(relay.proc, "SIGKILL");
        const ok = await firstSuccess(["sym>cone"], killedAt, killedAt, RELAY_FAILOVER_CAP_MS);
        const after = (await labClientStatus(lab, hostOf("sym"), emptyDir, STATUS_PORT)).peers.cone?.link ?? null;
        figures.push(`${at} relay1 (in use: ${link}) killed: sym>cone working ${fmt(ok - killedAt)} later, over ${after}`);
        expect.soft(ok - killedAt, `sym>cone working again within ${RELAY_FAILOVER_CAP_MS / 1000} s of the relay's death`).toBeLessThan(RELAY_FAILOVER_CAP_MS);
        if ((await startNode("relay1")) === undefined) figures.push(`${at} relay1 restarted: NOT logged in within ${LOGIN_WITHIN_MS / 1000} s`);
      } else {
        const flushedAt = Date.now();
        await lab.flushNat(event.site);
        const ok = await firstSuccess(appsOf(event.site), flushedAt, flushedAt, NAT_FLUSH_RECOVERY_CAP_MS);
        figures.push(`${at} ${event.site}'s router flushed its NAT state: apps working ${fmt(ok - flushedAt)} later (${perApp(appsOf(event.site), flushedAt, flushedAt)})`);
        expect.soft(ok - flushedAt, `${appsOf(event.site).join(", ")} working again within ${NAT_FLUSH_RECOVERY_CAP_MS / 1000} s of the NAT flush`).toBeLessThan(NAT_FLUSH_RECOVERY_CAP_MS);
      }
    }

    // SDWAN: every ping pair answers again after the schedule.
    const scheduleEnd = Date.now();
    const pingTimes = (proc: Proc) => [...proc.output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Number(m[1]) * 1000);
    for (const ping of pings) {
      const back = await waitFor(`a ping reply ${ping.from} -> ${ping.to} after the schedule`, () => pingTimes(ping.proc).some((t) => t >= scheduleEnd), SDWAN_BACK_WITHIN_MS, 200).catch(() => false);
      const replies = pingTimes(ping.proc).length;
      const sent = Math.floor((Date.now() - soakStart) / 1000 / PING_INTERVAL_S);
      figures.push(`SDWAN ping ${ping.from} -> ${ping.to}: ${replies} of ~${sent} answered over the soak${back ? "" : `; NO reply within ${SDWAN_BACK_WITHIN_MS / 1000} s after the schedule`}`);
      expect.soft(back, `SDWAN ping ${ping.from} -> ${ping.to} answers within ${SDWAN_BACK_WITHIN_MS / 1000} s after the last event`).toBe(true);
    }

    for (const load of loads) await load.stop("SIGTERM");
    const all = transfers();
    const acked = all.filter((t) => t.acked);
    const corrupt = acked.filter((t) => !t.intact);
    const tallies = new Map<string, UdpTally>();
    for (const load of loads) for (const line of load.output.split("\n")) if (line.startsWith('{"k":"udp"')) tallies.set((JSON.parse(line) as UdpTally).app, JSON.parse(line) as UdpTally);
    const wrongExamples = loads.flatMap((load) => load.output.split("\n").filter((line) => line.startsWith('{"k":"udp-wrong"'))).slice(0, 3);
    for (const app of TCP_APPS) {
      const mine = all.filter((t) => t.app === app.name);
      const ok = mine.filter((t) => t.intact);
      figures.push(`TCP ${app.name}: ${ok.length} transfers intact (${(ok.reduce((n, t) => n + t.bytes, 0) / 2 ** 20).toFixed(1)} MiB), ${mine.length - mine.filter((t) => t.acked).length} unanswered, ${mine.filter((t) => t.acked && !t.intact).length} corrupt`);
    }
    for (const tally of tallies.values()) figures.push(`UDP ${tally.app}: ${tally.sent} sent, ${tally.ok} answered by its own service, ${tally.wrong} by the WRONG one`);
    if (wrongExamples.length) figures.push(`misdelivered, e.g. ${wrongExamples.join(" ")}`);

    const finite = (xs: number[]) => xs.map((x) => Math.max(0, x));
    const peerP = [50, 95].map((p) => percentile(finite(peerRecoveries), p));
    const serverP = [50, 95].map((p) => percentile(finite(serverRecoveries), p));
    figures.push(`peer restarts (${peerRecoveries.length}): login -> apps working p50 ${fmt(peerP[0]!)}, p95 ${fmt(peerP[1]!)}, worst ${fmt(Math.max(...finite(peerRecoveries)))} (goal p95 <= ${PEER_RECOVERY_GOAL_P95_MS / 1000} s; cap ${PEER_RECOVERY_CAP_MS / 1000} s)`);
    figures.push(`server restarts (${serverRecoveries.length}): listening -> all back p50 ${fmt(serverP[0]!)}, p95 ${fmt(serverP[1]!)}, worst ${fmt(Math.max(...finite(serverRecoveries)))} (goal p95 <= ${SERVER_RECOVERY_GOAL_P95_MS / 1000} s; cap ${SERVER_RECOVERY_CAP_MS / 1000} s)`);
    const dropped = processes.filter((p) => p.name === "inp2ps").flatMap((p) => p.proc.output.match(/dropping connection after repeated bad messages.*$/gm) ?? []);
    if (dropped.length) figures.push(`the server dropped a node for "bad messages" ${dropped.length} times, e.g. ${dropped[0]}`);
    figures.push(`soak: ${Math.round((Date.now() - soakStart) / 1000)} s`);

    // No crash: every process is still running or exited because the test stopped it (cleanly on SIGTERM).
    for (const { name, proc, stoppedWith } of processes) {
      const crashed = proc.exitCode !== null && stoppedWith === undefined;
      const dirtyStop = stoppedWith === "SIGTERM" && proc.exitCode !== 0;
      const uncaught = proc.output.match(UNCAUGHT)?.[0];
      expect.soft({ name, crashed, dirtyStop, uncaught }, `${name}: exit ${proc.exitCode}; last output:\n${proc.output.slice(-1500)}`).toEqual({ name, crashed: false, dirtyStop: false, uncaught: undefined });
    }
    expect.soft(acked.length, "acknowledged transfers (the check below needs some)").toBeGreaterThan(0);
    expect.soft(corrupt, "acknowledged transfers whose sink hash differs from what was sent").toEqual([]);
    for (const app of UDP_APPS) {
      const tally = tallies.get(app.name);
      expect.soft(tally?.ok ?? 0, `${app.name}: datagrams answered by its own service`).toBeGreaterThan(0);
      expect.soft(tally?.wrong ?? -1, `${app.name}: datagrams answered by the other app's service`).toBe(0);
    }
    expect.soft(peerP[1], `p95 of login -> apps working over ${peerRecoveries.length} peer restarts:\n${figures.filter((f) => / restarted \(SIG|^    /.test(f)).join("\n")}\n`).toBeLessThanOrEqual(PEER_RECOVERY_GOAL_P95_MS);
    expect.soft(serverP[1], `p95 of restart -> all back over ${serverRecoveries.length} server restarts:\n${figures.filter((f) => /server restarted/.test(f)).join("\n")}\n`).toBeLessThanOrEqual(SERVER_RECOVERY_GOAL_P95_MS);
  }, SOAK_TIMEOUT_MS);
});
