// Real inp2ps / inp2pc processes for integration tests, on loopback only, with bounded waits.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createSocket } from "node:dgram";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ADMIN_CREDENTIAL_FILE } from "../../src/server/admin.ts";

export const REPO_ROOT = resolve(import.meta.dirname, "../..");
export const BUN = process.execPath.endsWith("bun") ? process.execPath : join(REPO_ROOT, "node_modules/.bin/bun");
export const INP2PS = join(REPO_ROOT, "src/cli/inp2ps.ts");
export const INP2PC = join(REPO_ROOT, "src/cli/inp2pc.ts");

export function tempDir(prefix = "inp2p-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Ports freePort hands out come from below the kernel's ephemeral range (32768-60999 by default), so
 * no process binding port 0 or connecting out can be given one between freePort and the test's own
 * bind (an inp2pc's peer socket once took an app's port that way). 27000-27999 stay out: inp2p's
 * default ports live there. Each test process starts at its own place in the range.
 */
const FREE_PORT_FIRST = 28_000;
const FREE_PORT_END = 32_768;
let nextFreePort = FREE_PORT_FIRST + ((process.pid * 97) % (FREE_PORT_END - FREE_PORT_FIRST));
const FREE_PORT_TRIES = 200;
const APPS_STARTED_TIMEOUT_MS = 10_000;

/** Whether `port` can be bound on 127.0.0.1 right now, for TCP and for UDP. */
async function bindable(port: number): Promise<boolean> {
  const tcp = await new Promise<boolean>((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, "127.0.0.1", () => server.close(() => done(true)));
  });
  if (!tcp) return false;
  return new Promise<boolean>((done) => {
    const socket = createSocket("udp4");
    socket.once("error", () => (socket.close(), done(false)));
    socket.bind(port, "127.0.0.1", () => socket.close(() => done(true)));
  });
}

/** A port free for TCP and UDP on 127.0.0.1 a moment ago, outside the ephemeral range, not handed out before by this process. */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < FREE_PORT_TRIES; tries++) {
    const port = nextFreePort;
    nextFreePort = port + 1 === FREE_PORT_END ? FREE_PORT_FIRST : port + 1;
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port in ${FREE_PORT_FIRST}-${FREE_PORT_END - 1} after ${FREE_PORT_TRIES} tries`);
}

/** Two UDP ports that were free a moment ago on 127.0.0.1 (see freePort). */
export async function freeUdpPorts(): Promise<[number, number]> {
  return [await freePort(), await freePort()];
}

export type StunPorts = Record<"stun_udp1" | "stun_udp2" | "stun_tcp1" | "stun_tcp2", number>;

/**
 * STUN and relay ports of its own for an inp2ps (TOML keys), free a moment ago: never the defaults, which
 * another inp2ps on this host (a bench, a test) may hold.
 */
export async function ownServerPorts(): Promise<StunPorts & { relay_port: number }> {
  const [udp1, udp2] = await freeUdpPorts();
  return { stun_udp1: udp1, stun_udp2: udp2, stun_tcp1: await freePort(), stun_tcp2: await freePort(), relay_port: await freePort() };
}

/** The command-line flags that set `ports` (TOML keys: stun_udp1 -> --stun-udp1). */
export const portFlags = (ports: Record<string, number>): string[] => Object.entries(ports).flatMap(([key, port]) => [`--${key.replaceAll("_", "-")}`, String(port)]);

/** The TOML lines that set `ports`. */
export const portToml = (ports: Record<string, number>): string => Object.entries(ports).map(([key, port]) => `${key} = ${port}`).join("\n");

/** What each process logged since `from` (an offset into its output), its last `lines` lines: for a failure message. */
export const logsSince = (sides: Record<string, { proc: Proc; from: number }>, lines = 20): string =>
  Object.entries(sides)
    .map(([name, { proc, from }]) => `--- ${name}:\n${proc.output.slice(from).split("\n").slice(-lines).join("\n")}`)
    .join("\n");

export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000, stepMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export class Proc {
  output = "";
  exitCode: number | null = null;
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.on("data", (d) => (this.output += d.toString()));
    child.stderr?.on("data", (d) => (this.output += d.toString()));
    this.exited = new Promise((done) => child.on("exit", (code, signal) => done((this.exitCode = code ?? (signal ? 128 : null)))));
  }

  /** Resolves with the first match of `pattern` in the output seen so far or later. */
  waitForOutput(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    return waitFor(
      `output matching ${pattern}`,
      () => {
        const match = this.output.match(pattern);
        if (match) return match;
        if (this.exitCode !== null) throw new Error(`process exited (${this.exitCode}) before printing ${pattern}; output:\n${this.output.slice(-2000)}`);
        return undefined;
      },
      timeoutMs,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\noutput so far:\n${this.output.slice(-2000)}`);
    });
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.exitCode !== null || this.child.exitCode !== null) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}

export function run(program: string, args: string[], options: { cwd?: string; env?: Record<string, string | undefined> } = {}): Proc {
  const env = { ...process.env, INP2P_TOKEN: undefined, INP2P_NODE: undefined, INP2P_SERVER: undefined, ...options.env };
  const command = program.endsWith(".ts") ? BUN : program;
  const argv = program.endsWith(".ts") ? [program, ...args] : args;
  return new Proc(spawn(command, argv, { cwd: options.cwd ?? REPO_ROOT, env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] }));
}

/** Runs a command to completion (bounded) and returns its exit code and combined output. */
export async function runToEnd(program: string, args: string[], options: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {}) {
  const proc = run(program, args, options);
  const timer = setTimeout(() => proc.child.kill("SIGKILL"), options.timeoutMs ?? 20_000);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, output: proc.output };
}

export interface ServerHandle {
  proc: Proc;
  /** The STUN ports the helper chose (unless the test set its own in extraToml). */
  stunPorts: StunPorts;
  dir: string;
  port: number;
  token: string;
  /** The admin credential: admin_token from extraToml, else the one inp2ps keeps in its data dir. */
  adminToken: string;
  fingerprint?: string;
  configPath: string;
  stop(): Promise<void>;
}

export interface ServerOptions {
  listen?: string; // default 127.0.0.1
  port?: number;
  dir?: string;
  token?: string;
  tls?: "auto" | "off";
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  maxConnsPerIp?: number;
  extraToml?: string; // appended inside [server]
  tail?: string; // appended after [server] (e.g. [[server.users]])
  /** The program to run: a built inp2ps binary instead of src/cli/inp2ps.ts. */
  program?: string;
}

/** Starts inp2ps from a TOML file in a fresh directory; resolves once it listens. */
export async function startServer(options: ServerOptions = {}): Promise<ServerHandle> {
  const dir = options.dir ?? tempDir("inp2ps-");
  const port = options.port ?? (await freePort());
  const token = options.token ?? "1234567890123456789";
  const configPath = join(dir, "inp2ps.toml");
  // Each server gets its own STUN and relay ports so that servers can run side by side, unless the test sets them.
  const { relay_port, ...stunPorts } = await ownServerPorts();
  const stunToml = /\bstun_(udp|tcp)[12]\b/.test(options.extraToml ?? "") ? "" : portToml(stunPorts);
  const relayToml = /\brelay_port\b/.test(options.extraToml ?? "") ? "" : portToml({ relay_port });
  writeFileSync(
    configPath,
    [
      'role = "server"',
      'log_level = "debug"',
      "[server]",
      `listen = "${options.listen ?? "127.0.0.1"}"`,
      `ws_port = ${port}`,
      `token = "${token}"`,
      `tls = "${options.tls ?? "auto"}"`,
      `heartbeat_interval_ms = ${options.heartbeatIntervalMs ?? 500}`,
      `heartbeat_timeout_ms = ${options.heartbeatTimeoutMs ?? 2000}`,
      `max_conns_per_ip = ${options.maxConnsPerIp ?? 64}`,
      stunToml,
      relayToml,
      options.extraToml ?? "",
      options.tail ?? "",
    ].join("\n"),
    { mode: 0o600 },
  );
  const proc = run(options.program ?? INP2PS, ["--config", configPath], { cwd: dir });
  await proc.waitForOutput(/listening on/).catch(async (err) => {
    await proc.stop();
    throw err;
  });
  const fingerprint = proc.output.match(/SHA-256:\s+([0-9A-F:]{95})/)?.[1];
  const adminToken = /\badmin_token\s*=\s*"([^"]+)"/.exec(options.extraToml ?? "")?.[1] ?? readFileSync(join(dir, ADMIN_CREDENTIAL_FILE), "utf8").trim();
  return {
    proc,
    stunPorts,
    dir,
    port,
    token,
    adminToken,
    fingerprint,
    configPath,
    async stop() {
      await proc.stop();
      if (!options.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ClientOptions {
  node: string;
  host?: string; // default 127.0.0.1
  port: number;
  token: string;
  dir?: string;
  insecure?: boolean;
  extraArgs?: string[];
  env?: Record<string, string | undefined>;
}

/** Starts inp2pc with flags in its own directory (identity key and known servers live there). */
export function startClient(options: ClientOptions): Proc & { dir: string } {
  const dir = options.dir ?? tempDir("inp2pc-");
  const args = [
    "-serverhost", options.host ?? "127.0.0.1",
    "-serverport", String(options.port),
    "-node", options.node,
    "-token", options.token,
    "--log-level", "debug",
    ...(options.insecure ? ["-insecure"] : []),
    ...(options.extraArgs ?? []),
  ];
  const proc = run(INP2PC, args, { cwd: dir, env: options.env }) as Proc & { dir: string };
  proc.dir = dir;
  return proc;
}

/** Calls a server's REST API (trusting its self-signed certificate); GET unless told otherwise. */
export async function api(server: ServerHandle, path: string, token?: string, method = "GET"): Promise<{ status: number; body: any }> {
  const scheme = server.fingerprint ? "https" : "http";
  const response = await fetch(`${scheme}://127.0.0.1:${server.port}${path}`, {
    method,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    ...(server.fingerprint ? { tls: { rejectUnauthorized: false } } : {}),
  } as RequestInit);
  return { status: response.status, body: await response.json() };
}

export async function onlineNodes(server: ServerHandle): Promise<string[]> {
  const { body } = await api(server, "/api/v1/nodes", server.adminToken);
  return (body.nodes as { name: string }[]).map((n) => n.name).sort();
}

// ---------- linked inp2pc processes (peer links, apps) ----------

export interface LinkedClient {
  proc: Proc;
  node: string;
  dir: string;
  config: string;
  statusPort: number;
  /** Extra environment variables it runs with (kept on restart). */
  env?: Record<string, string>;
}

/**
 * Starts an inp2pc from a TOML config in its own directory, on loopback only (peer_bind 127.0.0.1),
 * and waits until it is logged in. `toml` goes inside [client] after the connection keys: more keys,
 * then [[client.apps]] tables.
 */
export async function startLinkedClient(
  server: ServerHandle,
  node: string,
  toml = "",
  options: {
    dir?: string;
    logLevel?: string;
    token?: string;
    /** A command to run it under, e.g. setpriv. */
    wrap?: string[];
    env?: Record<string, string>;
    /** STUN ports other than the server's. */
    stunPorts?: Partial<ServerHandle["stunPorts"]>;
    /** The log line that says it is up (default: logged in); a node waiting for approval says so instead. */
    ready?: RegExp;
  } = {},
): Promise<LinkedClient> {
  const dir = options.dir ?? tempDir(`inp2pc-${node}-`);
  const statusPort = await freePort();
  const config = join(dir, "inp2pc.toml");
  writeFileSync(
    config,
    [
      'role = "client"',
      `log_level = "${options.logLevel ?? "debug"}"`,
      "[client]",
      'server_host = "127.0.0.1"',
      `server_port = ${server.port}`,
      `node = "${node}"`,
      `token = "${options.token ?? server.token}"`,
      `status_port = ${statusPort}`,
      'peer_bind = "127.0.0.1"',
      ...Object.entries({ ...server.stunPorts, ...options.stunPorts }).map(([key, port]) => `${key} = ${port}`),
      toml,
    ].join("\n"),
    { mode: 0o600 },
  );
  const env = options.env;
  const proc = options.wrap ? run(options.wrap[0]!, [...options.wrap.slice(1), BUN, INP2PC, "--config", config], { cwd: dir, env }) : run(INP2PC, ["--config", config], { cwd: dir, env });
  const client = { proc, node, dir, config, statusPort, env };
  try {
    await proc.waitForOutput(options.ready ?? /logged in/);
    // Apps start listening just after the login (tens of ms later on a busy box): a test that connects
    // to one right after "logged in" could be refused by the kernel.
    const apps = (toml.match(/^\[\[client\.apps\]\]/gm) ?? []).length;
    if (apps && !options.ready) {
      await waitFor(`${node}'s ${apps} app(s) started`, async () => {
        const started = ((await linkedClientStatus(client)).apps as { state: string }[]).filter((app) => app.state !== "starting");
        return started.length >= apps || undefined;
      }, APPS_STARTED_TIMEOUT_MS);
    }
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return client;
}

/** The `[client] expose` line of a serving node that lets peers reach exactly these "host:port" targets. */
export const exposeToml = (...targets: string[]): string => `expose = ${JSON.stringify(targets)}`;

/** One [[client.apps]] table: a local listener on 127.0.0.1 forwarding to `target` as seen from `peer`. */
export function appToml(app: { name: string; listen: number; peer: string; target: string | number; protocol?: "tcp" | "udp" }): string {
  const target = typeof app.target === "number" ? `127.0.0.1:${app.target}` : app.target;
  return ["[[client.apps]]", `name = "${app.name}"`, `protocol = "${app.protocol ?? "tcp"}"`, `listen = "127.0.0.1:${app.listen}"`, `peer = "${app.peer}"`, `target = "${target}"`].join("\n");
}

/** Runs a stopped (or killed) linked client again from the same directory: same config, same identity key. */
export async function restartLinkedClient(client: LinkedClient): Promise<LinkedClient> {
  await client.proc.stop();
  const proc = run(INP2PC, ["--config", client.config], { cwd: client.dir, env: client.env });
  await proc.waitForOutput(/logged in/).catch(async (err) => {
    await proc.stop();
    throw err;
  });
  return { ...client, proc };
}

/** When a linked client logged in, from its own log line (more exact than when the test saw it). */
export function loginTime(output: string): number {
  const match = output.match(/^(\S+) INFO +logged in/m);
  if (!match) throw new Error(`no "logged in" line in:\n${output.slice(-2000)}`);
  return Date.parse(match[1]!);
}

/** Stops a linked client and removes its directory. */
export async function stopLinkedClient(client: LinkedClient | undefined): Promise<void> {
  if (!client) return;
  await client.proc.stop();
  rmSync(client.dir, { recursive: true, force: true });
}

/** GET the client's local status API (the JSON `inp2pc status --json` prints). */
export async function linkedClientStatus(client: LinkedClient): Promise<any> {
  const response = await fetch(`http://127.0.0.1:${client.statusPort}/api/v1/status`, { signal: AbortSignal.timeout(3_000) });
  return response.json();
}

/** Resident memory of a process in MiB (Linux /proc), or undefined when it is gone. */
export function rssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+)\s+kB/m);
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}
