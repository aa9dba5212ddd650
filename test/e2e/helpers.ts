// Shared bits of the NAT-lab e2e tests: why a lab test must skip, inp2ps in the lab's server namespace,
// inp2pc processes with TOML configs inside site hosts, and commands run from an empty directory.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hasCommand, labSupport, type ExecResult, type Lab, type NatKind, type SiteSpec } from "../../scripts/natlab/lab.ts";
import { ADMIN_CREDENTIAL_FILE } from "../../src/server/admin.ts";
import { BUN, INP2PC, INP2PS, Proc, REPO_ROOT, waitFor } from "../helpers/processes.ts";

export const STUN_UDP1 = 27182;
export const WS_PORT = 27183;
export const TOKEN = "1234567890123456789";
export const COMMAND_TIMEOUT_MS = 20_000;

/** Why the lab tests cannot run here (undefined: they can). `commands` are [command, apt package] pairs. */
export function labSkipReason(commands: [string, string][] = []): string | undefined {
  const support = labSupport();
  if (!support.ok) return support.reason;
  for (const [command, pkg] of commands) {
    if (!hasCommand(command)) return `\`${command}\` missing (apt package ${pkg}; run scripts/natlab/deps.sh)`;
  }
  return undefined;
}

/** Runs a command inside a namespace from `cwd` (an empty directory: no stray ./inp2pc.toml). */
export function inNamespace(lab: Lab, ns: string, cwd: string, argv: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<ExecResult> {
  return lab.exec(ns, ["sh", "-c", `cd "${cwd}" && exec "$@"`, "sh", ...argv], { timeoutMs: opts.timeoutMs ?? COMMAND_TIMEOUT_MS, input: opts.input });
}

/** A long-running process inside a namespace, started from `cwd`, its output collected. */
export function spawnIn(lab: Lab, ns: string, cwd: string, argv: string[]): Proc {
  return new Proc(lab.spawn(ns, ["sh", "-c", `cd "${cwd}" && exec "$@"`, "sh", ...argv]));
}

/** Resolves once `address` (e.g. "127.0.0.1:9000") listens in `ns`. */
export function listening(lab: Lab, ns: string, proto: "-u" | "-t", address: string, timeoutMs = 10_000): Promise<boolean> {
  return waitFor(`${address} listening in ${ns}`, async () => (await lab.exec(ns, ["ss", "-Hln", proto])).stdout.includes(address), timeoutMs);
}

/**
 * Starts inp2ps in the lab's server namespace (plain ws, STUN with the alternate IP) and waits until
 * its STUN and ws ports listen. Its config and data live in `dir`. `command` runs it (default: from
 * source; a bench passes a compiled binary, perhaps behind `env`).
 */
export async function startLabServer(lab: Lab, dir: string, extraToml: string[] = [], command: string[] = [BUN, INP2PS]): Promise<Proc> {
  mkdirSync(dir, { recursive: true });
  const config = join(dir, "inp2ps.toml");
  writeFileSync(
    config,
    [
      'role = "server"',
      "[server]",
      `token = "${TOKEN}"`,
      `listen = "${lab.server.ip}"`,
      ...(lab.server.altIp ? [`stun_alt_ip = "${lab.server.altIp}"`] : []),
      'tls = "off"',
      `data_dir = "${join(dir, "data")}"`,
      ...extraToml,
    ].join("\n"),
    { mode: 0o600 },
  );
  const server = spawnIn(lab, lab.server.ns, dir, [...command, "--config", config]);
  if (lab.server.altIp) await listening(lab, lab.server.ns, "-u", `${lab.server.altIp}:${STUN_UDP1}`, 15_000);
  await listening(lab, lab.server.ns, "-t", `${lab.server.ip}:${WS_PORT}`, 15_000);
  return server;
}

/** The admin credential inp2ps generated in the data dir of a server started by startLabServer(lab, dir). */
export function labAdminCredential(dir: string): string {
  return readFileSync(join(dir, "data", ADMIN_CREDENTIAL_FILE), "utf8").trim();
}

export interface LabApp {
  name: string;
  protocol: "tcp" | "udp";
  listen: string;
  peer: string;
  target: string;
}

/** Writes `dir/inp2pc.toml` for a client of the lab's server (insecure: the server runs tls = "off"). */
export function writeClientConfig(
  lab: Lab,
  dir: string,
  client: { node: string; statusPort: number; apps?: LabApp[]; logLevel?: string; extra?: string[]; token?: string; /** Targets peers may reach through it ([client] expose). */ expose?: string[] },
): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "inp2pc.toml");
  const lines = [
    'role = "client"',
    `log_level = "${client.logLevel ?? "info"}"`,
    "[client]",
    `server_host = "${lab.server.ip}"`,
    `server_port = ${WS_PORT}`,
    `node = "${client.node}"`,
    `token = "${client.token ?? TOKEN}"`,
    "insecure = true",
    `status_port = ${client.statusPort}`,
    ...(client.expose?.length ? [`expose = ${JSON.stringify(client.expose)}`] : []),
    ...(client.extra ?? []),
  ];
  for (const app of client.apps ?? []) {
    lines.push("", "[[client.apps]]");
    for (const [key, value] of Object.entries(app)) lines.push(`${key} = "${value}"`);
  }
  writeFileSync(path, lines.join("\n") + "\n", { mode: 0o600 });
  return path;
}

/** Starts inp2pc from its config inside `ns` (`command`: see startLabServer); resolves once it has logged in. */
export async function startLabClient(lab: Lab, ns: string, configPath: string, cwd: string, env: Record<string, string> = {}, command: string[] = [BUN, INP2PC]): Promise<Proc> {
  const setEnv = Object.entries(env).map(([name, value]) => `${name}=${value}`);
  const proc = spawnIn(lab, ns, cwd, [...(setEnv.length > 0 ? ["env", ...setEnv] : []), ...command, "--config", configPath]);
  await proc.waitForOutput(/logged in/, 15_000);
  return proc;
}

// ---------- hole punching: shared by test/e2e/punch.test.ts and scripts/bench/punch-matrix.ts ----------

/** Link kinds that are direct paths (no relay). */
export const DIRECT_LINK_KINDS = ["lan", "udp-direct", "udp-punch", "tcp-direct", "tcp-punch"] as const;

/** The site types of the punching matrix, easiest first. */
export const PUNCH_TYPES = ["public", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric"] as const;
export type PunchType = (typeof PUNCH_TYPES)[number];
/** The NAT site whose router drops all UDP (TCP punch / TCP direct only). */
export const UDP_BLOCKED_SITE = "udp-blocked";
/** Symmetric NATs that allocate ports sequentially (port prediction), not in the full matrix. */
export const SEQUENTIAL_SITES = ["symmetric-sequential", "symmetric-sequential-2"] as const;

export interface PunchPair {
  /** The requester: it holds the app toward `to`. */
  from: string;
  to: string;
  /** "tcp": only tcp-punch or tcp-direct can work. */
  expect: "direct" | "tcp" | "needs-relay";
  /** The requester must link through a predicted port of the (sequential symmetric) target. */
  predicted?: boolean;
}

/**
 * The lab sites of the punching matrix: one of each type plus a second one ("<type>-2"), so that
 * same-type pairs are real pairs, and the UDP-blocked site (a port-restricted cone dropping UDP).
 */
export function punchSites(): SiteSpec[] {
  const nat = (t: PunchType): NatKind => (t === "public" ? "none" : t);
  return [
    ...PUNCH_TYPES.flatMap((t) => [
      { name: t, nat: nat(t) },
      { name: `${t}-2`, nat: nat(t) },
    ]),
    { name: UDP_BLOCKED_SITE, nat: "port-restricted-cone", blockUdp: true },
    ...SEQUENTIAL_SITES.map((name): SiteSpec => ({ name, nat: "symmetric-sequential" })),
  ];
}

/**
 * Every unordered pair of site types (distinct types: the easier side requests the harder one; a
 * public requester makes the server turn the roles round, so both directions get exercised; same
 * type: X requests X-2), then the UDP-blocked site toward a public and a full-cone peer.
 * symmetric <-> symmetric-2 is expected to end in "needs-relay". Then port prediction: a
 * port-restricted cone toward a sequential symmetric NAT, and two sequential symmetric NATs.
 */
export function punchPairs(): PunchPair[] {
  return [
    ...PUNCH_TYPES.flatMap((a, i) => PUNCH_TYPES.slice(i + 1).map((b): PunchPair => ({ from: a, to: b, expect: "direct" }))),
    ...PUNCH_TYPES.map((t): PunchPair => ({ from: t, to: `${t}-2`, expect: t === "symmetric" ? "needs-relay" : "direct" })),
    { from: UDP_BLOCKED_SITE, to: "public", expect: "tcp" },
    { from: UDP_BLOCKED_SITE, to: "full-cone", expect: "tcp" },
    { from: "port-restricted-cone", to: SEQUENTIAL_SITES[0], expect: "direct", predicted: true },
    { from: SEQUENTIAL_SITES[0], to: SEQUENTIAL_SITES[1], expect: "direct", predicted: true },
  ];
}

/**
 * Small programs run inside lab namespaces (bun, so they need nothing else):
 * - sink.ts HOST:PORT: sha256 of everything a connection sends; answers "<hex> <bytes>" once the sender half-closes.
 * - send.ts HOST:PORT BYTES TIMEOUT_MS [MARKER]: sends random bytes (or MARKER over and over), hashing
 *   them, half-closes, prints JSON { sha, sent, reply, ms, at, error? } (ms from connect to the sink's
 *   answer, `at` when that answer ended or the attempt failed).
 * - statuswatch.ts STATUS_PORT PEER UNTIL DURATION_MS: polls the local status API every 100 ms until
 *   UNTIL holds for PEER ("link": a link is up; "needs-relay": peers.PEER.state is "needs-relay";
 *   "settled": either, or state "failed"; "direct": a link of a DIRECT_LINK_KINDS kind) or DURATION_MS
 *   passes; prints JSON { linkAt, kind, needsRelayAt, failedAt, directAt, directKind, last, polls }
 *   (epoch ms, comparable across namespaces).
 * - udptag.ts HOST:PORT TAG: a UDP service answering each datagram with "TAG|" and the datagram.
 * - churnload.ts JSON: continuous traffic until SIGTERM (see ChurnLoad below); one JSON line per TCP
 *   transfer ({ k: "tcp", app, start, end, bytes, acked, intact, error? }: acked = the sink answered
 *   with a hash and a count; intact = that answer is the sender's own sha256 and count), per UDP
 *   datagram answered by the wrong service or for the wrong app ({ k: "udp-wrong", app, t, got }),
 *   and a per-app UDP tally every second and on SIGTERM ({ k: "udp", app, t, sent, ok, wrong }).
 *   Transfer sizes and contents come from the seeded PRNG (test/helpers/prng.ts). Each UDP app's
 *   datagrams leave from a new socket every `rotateMs`, so the serving side also holds flows that go idle.
 */
export const LAB_SCRIPTS: Record<string, string> = {
  "sink.ts": `import { createServer } from "node:net"; import { createHash } from "node:crypto";
    const [host, port] = process.argv[2].split(":");
    createServer({ allowHalfOpen: true }, (s) => {
      const hash = createHash("sha256"); let n = 0;
      s.on("data", (d) => { hash.update(d); n += d.length; });
      s.on("end", () => s.end(hash.digest("hex") + " " + n + "\\n"));
      s.on("error", () => s.destroy());
    }).listen(Number(port), host);`,
  "send.ts": `import { connect } from "node:net"; import { createHash, randomBytes } from "node:crypto";
    const [address, bytesText, timeoutText, marker] = process.argv.slice(2);
    const [host, port] = address.split(":"); const total = Number(bytesText);
    const hash = createHash("sha256"); let sent = 0; let reply = ""; let started = 0; let finished = false;
    const finish = (error) => { if (finished) return; finished = true;
      console.log(JSON.stringify({ sha: hash.digest("hex"), sent, reply: reply.trim(), ms: started ? Math.round(performance.now() - started) : 0, at: Date.now(), error })); process.exit(0); };
    setTimeout(() => finish("timed out after " + timeoutText + " ms"), Number(timeoutText));
    const socket = connect({ host, port: Number(port), allowHalfOpen: true });
    socket.on("data", (d) => (reply += d));
    socket.on("error", (e) => finish(e.message));
    socket.on("end", () => finish(reply ? undefined : "closed without an answer"));
    socket.on("close", () => finish("closed before the answer"));
    const block = marker ? Buffer.alloc(1 << 20, marker) : randomBytes(1 << 20);
    const pump = () => { while (sent < total) {
      const n = Math.min(block.length, total - sent);
      const chunk = Buffer.from(block.subarray(0, n)); chunk.writeUInt32BE(sent >>> 0, 0); // every MiB differs
      hash.update(chunk); sent += n;
      if (!socket.write(chunk)) return socket.once("drain", pump);
    } socket.end(); };
    socket.on("connect", () => { started = performance.now(); pump(); });`,
  "statuswatch.ts": `const [port, peer, until, durationText] = process.argv.slice(2); const end = Date.now() + Number(durationText);
    let linkAt = null, kind = null, needsRelayAt = null, failedAt = null, directAt = null, directKind = null, last = null, polls = 0;
    const direct = ${JSON.stringify(DIRECT_LINK_KINDS)};
    while (Date.now() < end) {
      try {
        const s = await (await fetch("http://127.0.0.1:" + port + "/api/v1/status", { signal: AbortSignal.timeout(2000) })).json();
        const now = Date.now(); polls++; last = s.peers?.[peer] ?? null;
        if (last?.link && linkAt === null) { linkAt = now; kind = last.link; }
        if (last?.state === "needs-relay" && needsRelayAt === null) needsRelayAt = now;
        if (last?.state === "failed" && failedAt === null) failedAt = now;
        if (direct.includes(last?.link) && directAt === null) { directAt = now; directKind = last.link; }
        if (until === "direct" && directAt !== null) break;
        if ((until === "link" || until === "settled") && linkAt !== null) break;
        if ((until === "needs-relay" || until === "settled") && needsRelayAt !== null) break;
        if (until === "settled" && failedAt !== null) break;
      } catch {}
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log(JSON.stringify({ linkAt, kind, needsRelayAt, failedAt, directAt, directKind, last, polls }));`,
  "udptag.ts": `import { createSocket } from "node:dgram";
    const [address, tag] = process.argv.slice(2); const [host, port] = address.split(":");
    const s = createSocket("udp4"); const prefix = Buffer.from(tag + "|");
    s.on("message", (m, from) => s.send(Buffer.concat([prefix, m]), from.port, from.address)); s.bind(Number(port), host);`,
  "churnload.ts": `import { connect } from "node:net"; import { createSocket } from "node:dgram"; import { createHash } from "node:crypto";
    import { prng } from ${JSON.stringify(join(REPO_ROOT, "test/helpers/prng.ts"))};
    const load = JSON.parse(process.argv[2]); const random = prng(load.seed);
    const out = (line) => process.stdout.write(JSON.stringify(line) + "\\n");
    let stopping = false;
    const content = (bytes) => { const b = Buffer.allocUnsafe(bytes + 3); for (let i = 0; i < bytes; i += 4) b.writeUInt32BE((random() * 4294967296) >>> 0, i); return b.subarray(0, bytes); };
    const transfer = (app) => new Promise((done) => {
      const bytes = load.minBytes + Math.floor(random() * (load.maxBytes - load.minBytes + 1));
      const data = content(bytes); const sha = createHash("sha256").update(data).digest("hex");
      const [host, port] = app.address.split(":"); const start = Date.now(); let reply = ""; let finished = false;
      const socket = connect({ host, port: Number(port), allowHalfOpen: true });
      const finish = (error) => { if (finished) return; finished = true; clearTimeout(timer); socket.destroy(); reply = reply.trim();
        const acked = /^[0-9a-f]{64} [0-9]+$/.test(reply);
        out({ k: "tcp", app: app.name, start, end: Date.now(), bytes, acked, intact: acked && reply === sha + " " + bytes, ...(acked ? {} : { error: error ?? "no answer" }), ...(acked && reply !== sha + " " + bytes ? { reply, sha } : {}) });
        done(); };
      const timer = setTimeout(() => finish("timed out after " + load.timeoutMs + " ms"), load.timeoutMs);
      socket.on("data", (d) => (reply += d));
      socket.on("error", (e) => finish(e.message));
      socket.on("end", () => finish());
      socket.on("close", () => finish("closed before the answer"));
      socket.on("connect", () => socket.end(data));
    });
    const tcpLoop = async (app, delayMs) => {
      await new Promise((r) => setTimeout(r, delayMs));
      while (!stopping) { await transfer(app); await new Promise((r) => setTimeout(r, load.pauseMs)); }
    };
    const tallies = [];
    const udpLoop = (app) => {
      const tally = { k: "udp", app: app.name, t: 0, sent: 0, ok: 0, wrong: 0 }; tallies.push(tally);
      const [host, port] = app.address.split(":"); let socket; let seq = 0;
      const open = () => { socket?.close(); socket = createSocket("udp4"); socket.bind(0, "127.0.0.1");
        socket.on("message", (m) => { const text = m.toString(); const bar = text.indexOf("|");
          if (text.slice(0, bar) === app.service && text.slice(bar + 1).startsWith(app.name + ":")) tally.ok++;
          else { tally.wrong++; out({ k: "udp-wrong", app: app.name, t: Date.now(), got: text.slice(0, 80) }); } }); };
      open(); setInterval(open, load.rotateMs);
      setInterval(() => { socket.send(app.name + ":" + seq++, Number(port), host); tally.sent++; }, load.udpIntervalMs);
    };
    const report = () => { for (const tally of tallies) out({ ...tally, t: Date.now() }); };
    setInterval(report, 1000);
    process.on("SIGTERM", () => { stopping = true; report(); process.exit(0); });
    for (const app of load.udp) udpLoop(app);
    for (const app of load.tcp) for (let i = 0; i < load.loops; i++) tcpLoop(app, Math.round((i * load.pauseMs) / load.loops) + i * 150);`,
};

/** What churnload.ts sends (see LAB_SCRIPTS). */
export interface ChurnLoad {
  seed: number;
  /** TCP apps (to a sink.ts); `loops` transfers in flight on each, one after another. */
  tcp: { name: string; address: string }[];
  /** UDP apps, each to a udptag.ts answering with `service` as its tag. */
  udp: { name: string; address: string; service: string }[];
  loops: number;
  minBytes: number;
  maxBytes: number;
  /** A transfer not answered within this counts as failed (not acknowledged). */
  timeoutMs: number;
  /** Between two transfers of one loop. */
  pauseMs: number;
  udpIntervalMs: number;
  rotateMs: number;
}

/** Writes LAB_SCRIPTS into `dir`; returns the path of one by name. */
export function writeLabScripts(dir: string): (name: keyof typeof LAB_SCRIPTS) => string {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(LAB_SCRIPTS)) writeFileSync(join(dir, name), text);
  return (name) => join(dir, name);
}

export interface SendResult {
  sha: string;
  sent: number;
  reply: string;
  ms: number;
  /** Epoch ms when the answer ended or the attempt failed. */
  at?: number;
  error?: string;
}

/** Sends `bytes` through a TCP app listening at `address` in `ns` (send.ts) and returns what the sink answered. */
export async function sendThrough(lab: Lab, ns: string, cwd: string, sendScript: string, address: string, bytes: number, timeoutMs: number, marker?: string): Promise<SendResult> {
  const argv = [BUN, sendScript, address, String(bytes), String(timeoutMs), ...(marker ? [marker] : [])];
  const result = await inNamespace(lab, ns, cwd, argv, { timeoutMs: timeoutMs + 10_000 });
  try {
    return JSON.parse(result.stdout) as SendResult;
  } catch {
    return { sha: "", sent: 0, reply: "", ms: 0, error: `send.ts failed (${result.code}): ${result.stderr.trim().slice(-500)}` };
  }
}

/** The sink's answer is the sender's own sha256 and byte count, and nothing went wrong. */
export const isIntact = (result: SendResult, bytes: number) => !result.error && result.sent === bytes && result.reply === `${result.sha} ${bytes}`;

/** `inp2pc status --json` inside `ns` (the status API of the client there). */
export async function labClientStatus(lab: Lab, ns: string, cwd: string, statusPort: number): Promise<any> {
  const result = await inNamespace(lab, ns, cwd, [BUN, INP2PC, "status", "--json", "--status-port", String(statusPort)]);
  if (result.code !== 0) throw new Error(`inp2pc status in ${ns} failed (${result.code}): ${result.stderr.trim()}`);
  return JSON.parse(result.stdout);
}

export interface WatchResult {
  linkAt: number | null;
  kind: string | null;
  needsRelayAt: number | null;
  failedAt: number | null;
  directAt: number | null;
  directKind: string | null;
  last: any;
  polls: number;
}

/** Starts statuswatch.ts in `ns`; resolves with its verdict (see LAB_SCRIPTS). */
export async function watchPeerStatus(lab: Lab, ns: string, cwd: string, watchScript: string, statusPort: number, peer: string, until: "link" | "needs-relay" | "settled" | "direct", durationMs: number): Promise<WatchResult> {
  const result = await inNamespace(lab, ns, cwd, [BUN, watchScript, String(statusPort), peer, until, String(durationMs)], { timeoutMs: durationMs + 10_000 });
  try {
    return JSON.parse(result.stdout) as WatchResult;
  } catch {
    throw new Error(`statuswatch.ts in ${ns} failed (${result.code}): ${result.stderr.trim().slice(-500)}`);
  }
}

/** Epoch ms of the first log line (text format) matching `pattern`, at or after `sinceMs` when given, or undefined. */
export function logTime(output: string, pattern: RegExp, sinceMs = 0): number | undefined {
  for (const line of output.split("\n")) {
    if (!pattern.test(line)) continue;
    const t = Date.parse(line.slice(0, line.indexOf(" ")));
    if (!Number.isNaN(t) && t >= sinceMs) return t;
  }
  return undefined;
}

/**
 * The punch time the client reports for `peer`: status peers.PEER.punchMs when it has one, else a
 * "peer linked" / "peer link up" log line's "in N ms" (or punchMs=N / ms=N). Undefined when neither says.
 */
export function reportedPunchMs(peerStatus: any, output: string, peer: string): number | undefined {
  if (typeof peerStatus?.punchMs === "number") return peerStatus.punchMs;
  for (const line of output.split("\n")) {
    if (!/peer link(ed| up)/.test(line) || !new RegExp(`peer=${peer}(\\s|$)`).test(line)) continue;
    const m = line.match(/\bin (\d+(?:\.\d+)?) ?ms\b/) ?? line.match(/\b(?:punchMs|punch_ms|ms)=(\d+(?:\.\d+)?)/);
    if (m) return Number(m[1]);
  }
  return undefined;
}

/**
 * Counts the peer-to-peer UDP packets through a NAT router (both ways, dropped ones included: the
 * counters sit in prerouting before NAT and filtering), leaving out traffic with the server's
 * addresses. Its own table, so the lab's rules are untouched; remove() deletes it.
 */
export async function countPeerUdp(lab: Lab, site: string): Promise<{ read(): Promise<{ out: number; in: number }>; reset(): Promise<void>; remove(): Promise<void> }> {
  const s = lab.sites[site];
  if (!s) throw new Error(`no site ${site}`);
  if (s.nat === "none") throw new Error(`site ${site} has no router to count at`);
  const server = [lab.server.ip, ...(lab.server.altIp ? [lab.server.altIp] : [])].join(", ");
  const nft = async (script: string) => {
    const result = await lab.exec(s.routerNs, ["nft", "-f", "-"], { input: script });
    if (result.code !== 0) throw new Error(`nft in ${s.routerNs} failed: ${result.stderr.trim()}`);
  };
  await lab.exec(s.routerNs, ["nft", "delete", "table", "ip", "punchcount"]);
  await nft(`
table ip punchcount {
  counter peer_out { }
  counter peer_in { }
  chain pre {
    type filter hook prerouting priority -350; policy accept
    iifname "lan" meta l4proto udp ip daddr != { ${server} } counter name peer_out
    iifname "wan" meta l4proto udp ip saddr != { ${server} } counter name peer_in
  }
}
`);
  const read = async () => {
    const result = await lab.exec(s.routerNs, ["nft", "-j", "list", "counters", "table", "ip", "punchcount"]);
    const counts: Record<string, number> = {};
    for (const item of (JSON.parse(result.stdout).nftables ?? []) as any[]) if (item.counter) counts[item.counter.name] = item.counter.packets;
    return { out: counts.peer_out ?? 0, in: counts.peer_in ?? 0 };
  };
  return {
    read,
    reset: async () => void (await lab.exec(s.routerNs, ["nft", "reset", "counters", "table", "ip", "punchcount"])),
    remove: async () => void (await lab.exec(s.routerNs, ["nft", "delete", "table", "ip", "punchcount"])),
  };
}

// ---------- fairness under a flood: shared by test/e2e/fairness.test.ts and scripts/bench/fairness.ts ----------

export const FLOOD_TCP_PORT = 5201;
export const FLOOD_UDP_PORT = 5202;
/** iperf3 flags of the flood: UDP, no rate limit, 1200-byte datagrams. */
export const FLOOD_FLAGS = ["-u", "-b", "0", "-l", "1200"];
const IPERF_BUSY_ATTEMPTS = 20;
const IPERF_BUSY_RETRY_MS = 500;
/** The flood starts this long before the TCP connection, so that it is at full rate when TCP starts. */
const FLOOD_LEAD_S = 1;

/** iperf3 from `ns` to `ip`:`port` (an iperf3 server) for `seconds`; Mbit/s received (for UDP, what was not lost). */
export async function labIperfMbps(lab: Lab, ns: string, ip: string, port: number, seconds: number, extra: string[] = []): Promise<number> {
  let report;
  // The server is "busy" until the last test's control connection has closed, a moment after the client is done.
  for (let attempt = 1; ; attempt++) {
    const result = await lab.exec(ns, ["iperf3", "-c", ip, "-p", String(port), "-t", String(seconds), "-J", ...extra], { timeoutMs: (seconds + 20) * 1000 });
    report = JSON.parse(result.stdout);
    if (!String(report.error ?? "").includes("busy") || attempt === IPERF_BUSY_ATTEMPTS) break;
    await new Promise((resolve) => setTimeout(resolve, IPERF_BUSY_RETRY_MS));
  }
  if (report.error) throw new Error(`iperf3 to ${ip}:${port}: ${report.error}`);
  return (extra.includes("-u") ? report.end.sum.bits_per_second * (1 - report.end.sum.lost_percent / 100) : report.end.sum_received.bits_per_second) / 1e6;
}

export interface FloodPair {
  /** b's virtual address. */
  overlayIp: string;
  /** The kind of a's link to b: a direct one. */
  link: string;
}

/**
 * For the lab's public sites "a" and "b": inp2ps with [server.sdwan] and inp2pc with [client.sdwan] at
 * both (configs and data in `workDir`), b's iperf3 servers; resolves once a reaches b over a direct link
 * (the first link may be a relay carrying the first bytes while the punch runs). Pushes each process
 * to `procs` as it starts, so that the caller can stop them if this fails.
 */
export async function startFloodPair(lab: Lab, workDir: string, cwd: string, statusPort: number, procs: Proc[]): Promise<FloodPair> {
  procs.push(await startLabServer(lab, join(workDir, "server"), ["[server.sdwan]", 'subnet = "10.10.0.0/24"']));
  for (const site of ["a", "b"]) {
    const config = writeClientConfig(lab, join(workDir, site), { node: site, statusPort, extra: ["[client.sdwan]", "enabled = true"] });
    procs.push(await startLabClient(lab, lab.sites[site]!.hostNs, config, cwd));
  }
  const [a, b] = [lab.sites.a!, lab.sites.b!];
  const overlayIp = await waitFor("b's virtual address", async () => (await labClientStatus(lab, b.hostNs, cwd, statusPort)).sdwan?.address ?? undefined, 15_000, 200);
  for (const port of [FLOOD_TCP_PORT, FLOOD_UDP_PORT]) procs.push(new Proc(lab.spawn(b.hostNs, ["iperf3", "-s", "-p", String(port)])));
  await waitFor("the overlay answering", async () => (await lab.exec(a.hostNs, ["ping", "-c", "1", "-W", "1", overlayIp])).code === 0 || undefined, 20_000, 300);
  const link = await waitFor(
    "a direct link from a to b",
    async () => {
      const kind = (await labClientStatus(lab, a.hostNs, cwd, statusPort)).peers.b?.link;
      return (DIRECT_LINK_KINDS as readonly string[]).includes(kind) ? (kind as string) : undefined;
    },
    30_000,
    300,
  );
  return { overlayIp, link };
}

export interface FloodRound {
  /** TCP Mbit/s alone, then beside the flood (0 if the TCP test failed beside it), and the flood's delivered Mbit/s. */
  alone: number;
  shared: number;
  flood: number;
}

/**
 * iperf3 TCP from `ns` to `ip` alone, then again beside an unlimited UDP flood (iperf3 -u -b 0, 1200-byte
 * datagrams) from `ns` to `ip`, `seconds` each (b's servers of startFloodPair).
 */
export async function floodRound(lab: Lab, ns: string, ip: string, seconds: number): Promise<FloodRound> {
  const alone = await labIperfMbps(lab, ns, ip, FLOOD_TCP_PORT, seconds);
  const flood = labIperfMbps(lab, ns, ip, FLOOD_UDP_PORT, seconds + 2 * FLOOD_LEAD_S, FLOOD_FLAGS);
  await new Promise((resolve) => setTimeout(resolve, FLOOD_LEAD_S * 1000));
  const shared = await labIperfMbps(lab, ns, ip, FLOOD_TCP_PORT, seconds).catch(() => 0);
  return { alone, shared, flood: await flood };
}
