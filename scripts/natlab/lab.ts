// NAT lab: real NATs made of Linux network namespaces, veth pairs and nftables (see DESIGN.md,
// "Testing across real NATs on one machine"). Needs root, `ip` (iproute2) and `nft` (nftables).
//
// Topology (i = site index, 0-based):
//   <prefix><id>-pub   bridge br0: the public segment 198.51.100.0/24
//   <prefix><id>-srv   server host, eth0 = 198.51.100.2 and 198.51.100.3 (alt)
//   <prefix><id>-r<i>  NAT router, wan = 198.51.100.(20+i), lan = 192.168.(10+i).1/24
//   <prefix><id>-h<i>  host behind it, eth0 = 192.168.(10+i).2, default route via the router
// A "none" site has no router: its host sits on the bridge with 198.51.100.(20+i) (a public node),
// and routerNs === hostNs; its loss/blockUdp rules then live in the host's own input/output hooks.
//
// Shared LAN (SiteSpec.shareLanWith): two or more hosts on one LAN, each behind its OWN router (own NAT
// kind, own public IP). Site j with `shareLanWith: "A"` (A = an earlier NAT site i) gets no LAN of its
// own: its host and router join A's LAN 192.168.(10+i).0/24 through a switch namespace
//   <prefix><id>-l<i>  bridge br0, ports to every member's router "lan" and host "eth0"
// A's router stays .1 and A's host .2; the k-th site sharing A's LAN (k = 1, 2, ...) has its router at
// 192.168.(10+i).(200+k) and its host at 192.168.(10+i).(2+k), with that router as default gateway.
// So the hosts reach each other directly on the LAN, while their STUN-mapped public addresses differ.
// Loss/blockUdp of such a site act in its router only: LAN traffic between the hosts is not impaired.
// Side LAN (LabSpec.sideLan): hosts of NAT sites that also sit on one more segment, 192.168.250.0/24,
// through a second interface (eth1 = 192.168.250.(10+i)) into the switch namespace <prefix><id>-side.
// Their default route stays via their own router: multi-homed hosts, as a box on an office LAN beside
// the uplink to its own router. The switch is a plain bridge: multicast (mDNS) crosses it.
// No namespace has a route outside the lab, and IPv6 is disabled everywhere.
import { spawn as spawnChild, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type NatKind = "none" | "full-cone" | "restricted-cone" | "port-restricted-cone" | "symmetric" | "symmetric-sequential";
export const NAT_KINDS: readonly NatKind[] = ["none", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric", "symmetric-sequential"];

export interface SiteSpec {
  name: string;
  nat: NatKind;
  /** Random loss of forwarded UDP, both ways (nft numgen). */
  lossPercent?: number;
  /** The router drops all forwarded UDP (both ways); TCP still works. */
  blockUdp?: boolean;
  /**
   * Name of an earlier NAT site whose LAN this site's host joins (see "Shared LAN" above). This site
   * keeps its own router, NAT kind and public IP. Neither site may be "none", and the named site may
   * not itself share another's LAN.
   */
  shareLanWith?: string;
}
export interface LabSpec {
  id?: string;
  sites: SiteSpec[];
  /** Default true: the server host gets a second public IP (for STUN change-IP). */
  serverAltIp?: boolean;
  /** Recorded owner process; a lab whose owner died is stale. 0 = never stale (labs made by the CLI). */
  ownerPid?: number;
  /** NAT sites whose hosts also join the side LAN (see "Side LAN" above). */
  sideLan?: string[];
}
export interface LabSite {
  routerNs: string;
  hostNs: string;
  publicIp: string;
  hostIp: string;
  nat: NatKind;
  /** Set on every member of a shared LAN (the owner too): the switch namespace and the LAN's subnet. */
  sharedLan?: { ns: string; subnet: string };
  /** The host's address on the side LAN (eth1), when it is on it. */
  sideIp?: string;
}
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}
export interface ExecOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
  input?: string;
}
export interface Lab {
  id: string;
  namespaces: string[];
  server: { ns: string; ip: string; altIp: string };
  sites: Record<string, LabSite>;
  exec(ns: string, argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Long-running process inside a namespace; killed by down(). */
  spawn(ns: string, argv: string[], opts?: { env?: Record<string, string>; stdio?: SpawnOptions["stdio"] }): ChildProcess;
  setBlockUdp(site: string, blocked: boolean): Promise<void>;
  setLoss(site: string, percent: number): Promise<void>;
  /**
   * A router that loses its NAT state, as on a reboot: every conntrack entry (NAT mappings included)
   * and the cone sets of remembered mappings are flushed. Needs `conntrack` (apt package conntrack).
   */
  flushNat(site: string): Promise<void>;
  down(): Promise<void>;
}

export const LAB_PREFIX = "inp2plab-";
export const PUBLIC_SUBNET = "198.51.100.0/24";
export const SERVER_IP = "198.51.100.2";
export const SERVER_ALT_IP = "198.51.100.3";
export const SIDE_LAN_SUBNET = "192.168.250.0/24";
const STATE_DIR = "/run/inp2plab";
const MAX_SITES = 100;
/** Sites that may share one site's LAN (routers at .201 and up). */
const MAX_LAN_SHARERS = 50;
const COMMAND_TIMEOUT_MS = 10_000;
const KILL_GRACE_MS = 1_000;
// How long a cone NAT keeps a UDP mapping open to new sources after the host last sent through it.
const MAPPING_TIMEOUT_SECONDS = 120;
/** A symmetric-sequential router gives new mappings ports from this one up, one after another (then wraps). */
const SEQUENTIAL_FIRST_PORT = 30_000;
const SEQUENTIAL_PORTS = 10_000;

// ---------- commands ----------

export async function run(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? COMMAND_TIMEOUT_MS;
  return new Promise((done) => {
    const child = spawnChild(argv[0]!, argv.slice(1), {
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("error", (error) => {
      clearTimeout(timer);
      done({ code: 127, stdout, stderr: stderr + String(error) });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      done({ code: timedOut ? 124 : (code ?? (signal ? 128 : 1)), stdout, stderr: timedOut ? `${stderr}\ntimed out after ${timeoutMs} ms` : stderr });
    });
    child.stdin!.on("error", () => {}); // the command may exit without reading its input
    child.stdin!.end(opts.input ?? "");
  });
}

async function must(argv: string[], input?: string): Promise<string> {
  const result = await run(argv, { input });
  if (result.code !== 0) throw new Error(`natlab: \`${argv.join(" ")}\` failed (${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

const ip = (ns: string, ...args: string[]) => must(["ip", "-n", ns, ...args]);
const inNs = (ns: string, argv: string[], input?: string) => must(["ip", "netns", "exec", ns, ...argv], input);

export function hasCommand(command: string): boolean {
  return (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin")
    .split(":")
    .concat(["/usr/sbin", "/sbin"])
    .some((dir) => dir && existsSync(join(dir, command)));
}

// ---------- support ----------

let supportCache: ReturnType<typeof labSupport> | undefined;

export function labSupport(): { ok: true } | { ok: false; reason: string } {
  if (supportCache) return supportCache;
  supportCache = probeSupport();
  return supportCache;
}

function probeSupport(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== "linux") return { ok: false, reason: `NAT lab needs Linux (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: "NAT lab needs root (network namespaces, nftables)" };
  for (const [command, pkg] of [["ip", "iproute2"], ["nft", "nftables"]]) {
    if (!hasCommand(command!)) return { ok: false, reason: `NAT lab needs \`${command}\` (apt package ${pkg}; run scripts/natlab/deps.sh)` };
  }
  const probe = `${LAB_PREFIX}probe${process.pid}`;
  const sync = (argv: string[]) => spawnSync(argv[0]!, argv.slice(1), { timeout: COMMAND_TIMEOUT_MS, encoding: "utf8" });
  try {
    const steps: [string, string[]][] = [
      ["create a network namespace", ["ip", "netns", "add", probe]],
      ["create a veth pair", ["ip", "-n", probe, "link", "add", "name", "p0", "type", "veth", "peer", "name", "p1"]],
      ["create a bridge", ["ip", "-n", probe, "link", "add", "name", "br0", "type", "bridge"]],
      ["load nftables nat rules", ["ip", "netns", "exec", probe, "nft", "add table ip t; add chain ip t c { type nat hook postrouting priority srcnat; }; add rule ip t c masquerade random,fully-random"]],
    ];
    for (const [what, argv] of steps) {
      const result = sync(argv);
      if (result.status !== 0) return { ok: false, reason: `NAT lab cannot ${what} here: ${(result.stderr || String(result.error)).trim()}` };
    }
    return { ok: true };
  } finally {
    sync(["ip", "netns", "del", probe]);
  }
}

// ---------- lab state (owner of each lab, so stale ones can be found) ----------

interface LabState {
  id: string;
  ownerPid: number;
  ownerStart: string;
  spec: LabSpec;
  namespaces: string[];
}

function processStart(pid: number): string | undefined {
  try {
    // Field 22 (start time) tells a live owner from a later process that reused its pid.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function readState(id: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(join(STATE_DIR, `${id}.json`), "utf8")) as LabState;
  } catch {
    return undefined;
  }
}

export function listLabStates(): LabState[] {
  if (!existsSync(STATE_DIR)) return [];
  return readdirSync(STATE_DIR)
    .filter((f) => f.endsWith(".json"))
    .flatMap((f) => readState(f.slice(0, -5)) ?? []);
}

function isStale(state: LabState | undefined): boolean {
  if (!state) return true;
  if (state.ownerPid === 0) return false;
  return processStart(state.ownerPid) !== state.ownerStart;
}

// ---------- namespaces ----------

export async function listNamespaces(prefix = LAB_PREFIX): Promise<string[]> {
  const out = await must(["ip", "netns", "list"]);
  return out
    .split("\n")
    .map((line) => line.split(" ")[0]!)
    .filter((name) => name.startsWith(LAB_PREFIX) && name.startsWith(prefix));
}

function labIdOf(ns: string): string {
  return ns.slice(LAB_PREFIX.length).split("-")[0]!;
}

async function namespacePids(ns: string): Promise<number[]> {
  const result = await run(["ip", "netns", "pids", ns]);
  return result.stdout.split(/\s+/).filter(Boolean).map(Number);
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Kills every process inside the namespaces (TERM, then KILL after a grace period) and deletes them. */
async function removeNamespaces(namespaces: string[]): Promise<void> {
  const pidsInside = async () => (await Promise.all(namespaces.map(namespacePids))).flat();
  let pids = await pidsInside();
  pids.forEach((pid) => signal(pid, "SIGTERM"));
  // Poll the namespaces, not the pids: an orphan's zombie can outlive its exit, but not inside a namespace.
  const deadline = Date.now() + KILL_GRACE_MS;
  while (pids.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
    pids = await pidsInside();
  }
  pids.forEach((pid) => signal(pid, "SIGKILL"));
  await Promise.all(namespaces.map((ns) => run(["ip", "netns", "del", ns])));
}

async function removeLab(id: string): Promise<string[]> {
  const namespaces = await listNamespaces(`${LAB_PREFIX}${id}-`);
  await removeNamespaces(namespaces);
  rmSync(join(STATE_DIR, `${id}.json`), { force: true });
  return namespaces;
}

/** Removes labs whose owner process is gone (or that have no record). Returns the namespaces removed. */
export async function cleanupStaleLabs(prefix = LAB_PREFIX, opts: { all?: boolean } = {}): Promise<string[]> {
  const ids = new Set((await listNamespaces(prefix)).map(labIdOf));
  for (const state of listLabStates()) if (`${LAB_PREFIX}${state.id}-`.startsWith(prefix)) ids.add(state.id);
  const removed: string[] = [];
  for (const id of ids) {
    if (opts.all || isStale(readState(id))) removed.push(...(await removeLab(id)));
  }
  return removed;
}

// ---------- nftables ----------

/**
 * How the router maps: cone NATs keep ports; "symmetric" picks a random port per mapping;
 * "symmetric-sequential" takes the next port of one counter shared by TCP and UDP. NAT rules run only
 * on a flow's first packet, so `numgen inc` counts new mappings. numgen yields a host-order integer
 * that snat would read as a network-order port (+256 per step), hence the map to real port numbers.
 */
function mappingRules(nat: NatKind, publicIp: string): string {
  if (nat === "symmetric") return `oifname "wan" masquerade random,fully-random`;
  if (nat !== "symmetric-sequential") return `oifname "wan" masquerade persistent`;
  const ports = Array.from({ length: SEQUENTIAL_PORTS }, (_, i) => `${i} : ${SEQUENTIAL_FIRST_PORT + i}`).join(", ");
  return [
    `oifname "wan" meta l4proto { tcp, udp } snat to ${publicIp} : numgen inc mod ${SEQUENTIAL_PORTS} map { ${ports} }`,
    `oifname "wan" masquerade random,fully-random`,
  ].join("\n    ");
}

function routerRuleset(nat: NatKind, hostIp: string, publicIp: string): string {
  // The cone NATs keep ports (only one host behind each router), so a mapping's public port equals the
  // host's source port. Sets record the mappings on the way out, per mapping as a real NAT does:
  // full-cone lets any source reach a mapped port; restricted-cone only sources that mapping sent to.
  const rules: Record<NatKind, { remember: string; dnat: string }> = {
    "full-cone": { remember: "update @mapped { udp sport }", dnat: `udp dport @mapped dnat to ${hostIp}` },
    "restricted-cone": { remember: "update @contacted { ip daddr . udp sport }", dnat: `ip saddr . udp dport @contacted dnat to ${hostIp}` },
    "port-restricted-cone": { remember: "", dnat: "" },
    symmetric: { remember: "", dnat: "" },
    "symmetric-sequential": { remember: "", dnat: "" },
    none: { remember: "", dnat: "" },
  };
  const { remember, dnat } = rules[nat];
  // Unsolicited packets to the router itself are dropped in input, before conntrack confirms them:
  // a confirmed entry for such a packet would clash with the host's later mapping to that peer and
  // make the NAT pick another port (breaking endpoint-independent mapping).
  return `
table ip natlab {
  set mapped {
    type inet_service; flags dynamic,timeout; timeout ${MAPPING_TIMEOUT_SECONDS}s
  }
  set contacted {
    type ipv4_addr . inet_service; flags dynamic,timeout; timeout ${MAPPING_TIMEOUT_SECONDS}s
  }
  chain nat_pre {
    type nat hook prerouting priority dstnat; policy accept
    ${dnat ? `iifname "wan" ${dnat}` : ""}
  }
  chain nat_post {
    type nat hook postrouting priority srcnat; policy accept
    ${mappingRules(nat, publicIp)}
  }
  chain filter_fwd {
    type filter hook forward priority filter; policy drop
    jump impair
    ${remember ? `iifname "lan" oifname "wan" meta l4proto udp ${remember}` : ""}
    iifname "lan" oifname "wan" accept
    ct state established,related accept
    ct status dnat accept
  }
  chain filter_in {
    type filter hook input priority filter; policy accept
    iifname "wan" ct state established,related accept
    iifname "wan" icmp type echo-request accept
    iifname "wan" drop
  }
  chain impair {
  }
}
`;
}

// A public host filters nothing; only loss/blockUdp apply, on its own traffic.
const PUBLIC_HOST_RULESET = `
table ip natlab {
  chain filter_in {
    type filter hook input priority filter; policy accept
    iifname "eth0" jump impair
  }
  chain filter_out {
    type filter hook output priority filter; policy accept
    oifname "eth0" jump impair
  }
  chain impair {
  }
}
`;

function impairRules(lossPercent: number, blockUdp: boolean): string {
  const lines = ["flush chain ip natlab impair"];
  if (blockUdp) lines.push("add rule ip natlab impair meta l4proto udp drop");
  if (lossPercent > 0) lines.push(`add rule ip natlab impair meta l4proto udp numgen random mod 100 < ${Math.round(lossPercent)} drop`);
  return lines.join("\n") + "\n";
}

// ---------- up / down ----------

function randomId(): string {
  return Math.random().toString(36).slice(2, 8);
}

export async function labUp(spec: LabSpec): Promise<Lab> {
  const id = spec.id ?? randomId();
  if (!/^[a-z0-9]{1,16}$/.test(id)) throw new Error(`natlab: lab id must be 1-16 of [a-z0-9], got ${JSON.stringify(id)}`);
  if (spec.sites.length > MAX_SITES) throw new Error(`natlab: at most ${MAX_SITES} sites`);
  const names = new Set<string>();
  for (const site of spec.sites) {
    if (!NAT_KINDS.includes(site.nat)) throw new Error(`natlab: unknown NAT kind ${JSON.stringify(site.nat)}`);
    if (names.has(site.name)) throw new Error(`natlab: duplicate site name ${JSON.stringify(site.name)}`);
    if (site.shareLanWith !== undefined) {
      const owner = spec.sites.find((s) => s.name === site.shareLanWith);
      if (!owner || !names.has(owner.name)) throw new Error(`natlab: site ${JSON.stringify(site.name)}: shareLanWith must name an earlier site, got ${JSON.stringify(site.shareLanWith)}`);
      if (site.nat === "none" || owner.nat === "none") throw new Error(`natlab: site ${JSON.stringify(site.name)}: a shared LAN needs NAT sites on both ends (not "none")`);
      if (owner.shareLanWith !== undefined) throw new Error(`natlab: site ${JSON.stringify(site.name)}: ${JSON.stringify(owner.name)} itself shares another site's LAN; name the LAN's owner`);
      if (spec.sites.filter((s) => s.shareLanWith === owner.name).length > MAX_LAN_SHARERS) throw new Error(`natlab: at most ${MAX_LAN_SHARERS} sites may share one LAN`);
    }
    names.add(site.name);
  }
  for (const name of spec.sideLan ?? []) {
    const site = spec.sites.find((s) => s.name === name);
    if (!site || site.nat === "none") throw new Error(`natlab: sideLan: ${JSON.stringify(name)} must name a NAT site (not "none")`);
  }
  await removeLab(id);

  const ns = (role: string) => `${LAB_PREFIX}${id}-${role}`;
  const pub = ns("pub");
  const srv = ns("srv");
  const serverAltIp = spec.serverAltIp ?? true;
  const sites: Record<string, LabSite> = {};
  // Per site: its LAN's router address (the host's gateway), and the switch namespace when the LAN is shared.
  const lanOf = new Map<string, { gateway: string; switchNs?: string }>();
  const indexOf = new Map(spec.sites.map((site, i) => [site.name, i]));
  const hasSharers = (name: string) => spec.sites.some((s) => s.shareLanWith === name);
  spec.sites.forEach((site, i) => {
    const publicIp = `198.51.100.${20 + i}`;
    if (site.nat === "none") {
      sites[site.name] = { routerNs: ns(`h${i}`), hostNs: ns(`h${i}`), publicIp, hostIp: publicIp, nat: "none" };
      return;
    }
    const ownerIndex = site.shareLanWith !== undefined ? indexOf.get(site.shareLanWith)! : i;
    const net = `192.168.${10 + ownerIndex}`;
    // k = 0 for a LAN's owner, 1, 2, ... for the sites sharing it, in spec order.
    const k = site.shareLanWith === undefined ? 0 : spec.sites.slice(0, i + 1).filter((s) => s.shareLanWith === site.shareLanWith).length;
    const shared = k > 0 || hasSharers(site.name);
    const switchNs = shared ? ns(`l${ownerIndex}`) : undefined;
    lanOf.set(site.name, { gateway: k === 0 ? `${net}.1` : `${net}.${200 + k}`, switchNs });
    sites[site.name] = {
      routerNs: ns(`r${i}`),
      hostNs: ns(`h${i}`),
      publicIp,
      hostIp: `${net}.${2 + k}`,
      nat: site.nat,
      ...(switchNs ? { sharedLan: { ns: switchNs, subnet: `${net}.0/24` } } : {}),
      ...(spec.sideLan?.includes(site.name) ? { sideIp: `192.168.250.${10 + i}` } : {}),
    };
  });
  const sideNs = spec.sideLan?.length ? ns("side") : undefined;
  const switches = [...new Set([...lanOf.values()].flatMap((l) => (l.switchNs ? [l.switchNs] : []))), ...(sideNs ? [sideNs] : [])];
  const namespaces = [pub, srv, ...Object.values(sites).flatMap((s) => (s.nat === "none" ? [s.hostNs] : [s.routerNs, s.hostNs])), ...switches];

  const ownerPid = spec.ownerPid ?? process.pid;
  mkdirSync(STATE_DIR, { recursive: true });
  const state: LabState = { id, ownerPid, ownerStart: ownerPid ? (processStart(ownerPid) ?? "") : "", spec: { ...spec, id }, namespaces };
  writeFileSync(join(STATE_DIR, `${id}.json`), JSON.stringify(state, null, 2));

  const children = new Set<ChildProcess>();
  const impairment = new Map(spec.sites.map((s) => [s.name, { lossPercent: s.lossPercent ?? 0, blockUdp: s.blockUdp ?? false }]));
  let isDown = false;

  const down = async () => {
    if (isDown) return;
    isDown = true;
    for (const child of children) child.kill("SIGKILL");
    await removeLab(id);
  };

  try {
    for (const name of namespaces) {
      await must(["ip", "netns", "add", name]);
      await ip(name, "link", "set", "lo", "up");
      await inNs(name, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
    }
    for (const name of [pub, ...switches]) {
      await ip(name, "link", "add", "name", "br0", "type", "bridge");
      await ip(name, "link", "set", "br0", "up");
    }

    // Attaches `peerNs` to the public bridge through a veth named `peerIf` there.
    const attach = async (port: string, peerNs: string, peerIf: string, addresses: string[]) => {
      await ip(pub, "link", "add", "name", port, "type", "veth", "peer", "name", peerIf, "netns", peerNs);
      await ip(pub, "link", "set", port, "master", "br0", "up");
      for (const address of addresses) await ip(peerNs, "addr", "add", `${address}/24`, "dev", peerIf);
      await ip(peerNs, "link", "set", peerIf, "up");
    };

    await attach("vsrv", srv, "eth0", serverAltIp ? [SERVER_IP, SERVER_ALT_IP] : [SERVER_IP]);
    for (const [i, site] of spec.sites.entries()) {
      const s = sites[site.name]!;
      if (s.nat === "none") {
        await attach(`v${i}`, s.hostNs, "eth0", [s.publicIp]);
        await inNs(s.hostNs, ["nft", "-f", "-"], PUBLIC_HOST_RULESET);
      } else {
        const { gateway: lanIp, switchNs } = lanOf.get(site.name)!;
        await attach(`v${i}`, s.routerNs, "wan", [s.publicIp]);
        if (switchNs) {
          // A shared LAN: router and host each get a veth into the LAN's switch.
          for (const [memberNs, memberIf, port] of [[s.routerNs, "lan", `r${i}`], [s.hostNs, "eth0", `h${i}`]] as const) {
            await ip(switchNs, "link", "add", "name", port, "type", "veth", "peer", "name", memberIf, "netns", memberNs);
            await ip(switchNs, "link", "set", port, "master", "br0", "up");
          }
        } else {
          await ip(s.routerNs, "link", "add", "name", "lan", "type", "veth", "peer", "name", "eth0", "netns", s.hostNs);
        }
        await ip(s.routerNs, "addr", "add", `${lanIp}/24`, "dev", "lan");
        await ip(s.routerNs, "link", "set", "lan", "up");
        await ip(s.hostNs, "addr", "add", `${s.hostIp}/24`, "dev", "eth0");
        await ip(s.hostNs, "link", "set", "eth0", "up");
        await ip(s.hostNs, "route", "add", "default", "via", lanIp);
        await inNs(s.routerNs, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        await inNs(s.routerNs, ["nft", "-f", "-"], routerRuleset(s.nat, s.hostIp, s.publicIp));
      }
      if (sideNs && s.sideIp) {
        await ip(sideNs, "link", "add", "name", `s${i}`, "type", "veth", "peer", "name", "eth1", "netns", s.hostNs);
        await ip(sideNs, "link", "set", `s${i}`, "master", "br0", "up");
        await ip(s.hostNs, "addr", "add", `${s.sideIp}/24`, "dev", "eth1");
        await ip(s.hostNs, "link", "set", "eth1", "up");
      }
      const { lossPercent, blockUdp } = impairment.get(site.name)!;
      if (lossPercent > 0 || blockUdp) await inNs(s.routerNs, ["nft", "-f", "-"], impairRules(lossPercent, blockUdp));
    }
  } catch (error) {
    await down();
    throw error;
  }

  const siteOf = (name: string) => {
    const site = sites[name];
    if (!site) throw new Error(`natlab: no site ${JSON.stringify(name)} in lab ${id}`);
    return site;
  };
  const impair = async (name: string, change: { lossPercent?: number; blockUdp?: boolean }) => {
    const site = siteOf(name);
    const next = { ...impairment.get(name)!, ...change };
    impairment.set(name, next);
    await inNs(site.routerNs, ["nft", "-f", "-"], impairRules(next.lossPercent, next.blockUdp));
  };

  return {
    id,
    namespaces,
    server: { ns: srv, ip: SERVER_IP, altIp: serverAltIp ? SERVER_ALT_IP : "" },
    sites,
    exec: (nsName, argv, opts) => run(["ip", "netns", "exec", nsName, ...argv], opts),
    spawn(nsName, argv, opts = {}) {
      if (isDown) throw new Error(`natlab: lab ${id} is down`);
      const child = spawnChild("ip", ["netns", "exec", nsName, ...argv], {
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
        stdio: opts.stdio ?? ["ignore", "pipe", "pipe"],
      });
      children.add(child);
      child.on("exit", () => children.delete(child));
      return child;
    },
    setBlockUdp: (name, blocked) => impair(name, { blockUdp: blocked }),
    setLoss: (name, percent) => impair(name, { lossPercent: percent }),
    async flushNat(name) {
      const site = siteOf(name);
      // conntrack -F exits 0 even when the table was already empty; the sets exist only on NAT routers.
      await inNs(site.routerNs, ["conntrack", "-F"]);
      if (site.nat !== "none") await inNs(site.routerNs, ["nft", "-f", "-"], "flush set ip natlab mapped\nflush set ip natlab contacted\n");
    },
    down,
  };
}
