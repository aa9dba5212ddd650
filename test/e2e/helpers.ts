// Shared bits of the NAT-lab e2e tests: why a lab test must skip, inp2ps in the lab's server namespace,
// inp2pc processes with TOML configs inside site hosts, and commands run from an empty directory.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hasCommand, labSupport, type ExecResult, type Lab } from "../../scripts/natlab/lab.ts";
import { BUN, INP2PC, INP2PS, Proc, waitFor } from "../helpers/processes.ts";

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
 * its STUN and ws ports listen. Its config and data live in `dir`.
 */
export async function startLabServer(lab: Lab, dir: string, extraToml: string[] = []): Promise<Proc> {
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
  const server = spawnIn(lab, lab.server.ns, dir, [BUN, INP2PS, "--config", config]);
  if (lab.server.altIp) await listening(lab, lab.server.ns, "-u", `${lab.server.altIp}:${STUN_UDP1}`, 15_000);
  await listening(lab, lab.server.ns, "-t", `${lab.server.ip}:${WS_PORT}`, 15_000);
  return server;
}

export interface LabApp {
  name: string;
  protocol: "tcp" | "udp";
  listen: string;
  peer: string;
  target: string;
}

/** Writes `dir/inp2pc.toml` for a client of the lab's server (insecure: the server runs tls = "off"). */
export function writeClientConfig(lab: Lab, dir: string, client: { node: string; statusPort: number; apps?: LabApp[]; logLevel?: string }): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "inp2pc.toml");
  const lines = [
    'role = "client"',
    `log_level = "${client.logLevel ?? "info"}"`,
    "[client]",
    `server_host = "${lab.server.ip}"`,
    `server_port = ${WS_PORT}`,
    `node = "${client.node}"`,
    `token = "${TOKEN}"`,
    "insecure = true",
    `status_port = ${client.statusPort}`,
  ];
  for (const app of client.apps ?? []) {
    lines.push("", "[[client.apps]]");
    for (const [key, value] of Object.entries(app)) lines.push(`${key} = "${value}"`);
  }
  writeFileSync(path, lines.join("\n") + "\n", { mode: 0o600 });
  return path;
}

/** Starts inp2pc from its config inside `ns`; resolves once it has logged in. */
export async function startLabClient(lab: Lab, ns: string, configPath: string, cwd: string): Promise<Proc> {
  const proc = spawnIn(lab, ns, cwd, [BUN, INP2PC, "--config", configPath]);
  await proc.waitForOutput(/logged in/, 15_000);
  return proc;
}
