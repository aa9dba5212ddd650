// Restarting into an upgraded binary, with a rollback. The running process is the supervisor: it stops
// its services (freeing the ports), starts the new binary with the same arguments and waits for it to
// say it is healthy — inp2pc once logged in to the server, inp2ps once listening — by writing its
// version into the file named by $INP2P_UPGRADE_HEALTH_FILE. Healthy: without systemd the new process
// stays and this one exits (a re-exec with a new pid); under systemd ($INVOCATION_ID or $NOTIFY_SOCKET)
// the new process is stopped again and this one exits with EXIT_UPGRADE_RESTART, so that systemd
// (Restart=) starts the checked binary as the unit's main process. Not healthy in time, or exited: the
// new process is stopped, <binary>.previous is put back, and this process starts its services again.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../log/index.ts";
import { ENV_UPGRADE_HEALTH_FILE, EXIT_UPGRADE_RESTART, HEALTH_POLL_INTERVAL_MS, UNHEALTHY_STOP_TIMEOUT_MS, UPGRADE_HEALTH_TIMEOUT_MS } from "./constants.ts";
import { rollBack } from "./install.ts";

export interface RestartInit {
  /** The binary, already replaced by the new version. */
  path: string;
  /** The arguments to start it with: this process's own. */
  args: readonly string[];
  /** The version the new binary must report. */
  version: string;
  logger: Logger;
  /** Stops this process's services and frees their ports. */
  stop(): Promise<void>;
  /** Starts them again, after a rollback. */
  resume(): Promise<void>;
  /** @default UPGRADE_HEALTH_TIMEOUT_MS */
  healthTimeoutMs?: number;
  /** @default process.env */
  env?: NodeJS.ProcessEnv;
  /** @default process.exit */
  exit?: (code: number) => never;
}

export const underSystemd = (env: NodeJS.ProcessEnv) => Boolean(env.INVOCATION_ID || env.NOTIFY_SOCKET);

/** Called by a program once it is healthy: tells the supervisor that started it, if any. */
export function confirmHealthy(version: string, env: NodeJS.ProcessEnv = process.env): void {
  const file = env[ENV_UPGRADE_HEALTH_FILE];
  if (!file) return;
  delete env[ENV_UPGRADE_HEALTH_FILE]; // a later upgrade of this process names a file of its own
  try {
    writeFileSync(file, `${version}\n`);
  } catch {
    // The supervisor gave up and removed its directory: it stops this process anyway.
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), UNHEALTHY_STOP_TIMEOUT_MS);
    child.once("exit", () => {
      clearTimeout(timer);
      done();
    });
    child.kill("SIGTERM");
  });
}

/** Why the child is not healthy, or undefined once it confirmed; bounded by timeoutMs. */
async function waitHealthy(child: ChildProcess, file: string, version: string, timeoutMs: number): Promise<string | undefined> {
  let exited: string | undefined;
  child.once("exit", (code, signal) => (exited = `it exited (${signal ?? `code ${code}`}) before it was healthy`));
  child.once("error", (err) => (exited = `it could not be started: ${err.message}`));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(file)) {
      const reported = readFileSync(file, "utf8").trim();
      return reported === version ? undefined : `it reports version ${reported}, not ${version}`;
    }
    if (exited) return exited;
    await new Promise((r) => setTimeout(r, HEALTH_POLL_INTERVAL_MS));
  }
  return `it was not healthy within ${timeoutMs} ms`;
}

/** Restarts into the new binary; returns only after a rollback (with the reason), having resumed the old services. */
export async function restartInto(init: RestartInit): Promise<string> {
  const env = init.env ?? process.env;
  const exit = init.exit ?? ((code: number) => process.exit(code));
  const timeoutMs = init.healthTimeoutMs ?? UPGRADE_HEALTH_TIMEOUT_MS;
  const scratch = mkdtempSync(join(tmpdir(), "inp2p-upgrade-"));
  const file = join(scratch, "healthy");
  // A SIGTERM while it waits ends the process without the finally below.
  const cleanUp = () => rmSync(scratch, { recursive: true, force: true });
  process.once("exit", cleanUp);
  try {
    init.logger.info(`restarting into ${init.version}`, { binary: init.path });
    await init.stop();
    const child = spawn(init.path, [...init.args], { stdio: "inherit", env: { ...env, [ENV_UPGRADE_HEALTH_FILE]: file } });
    const problem = await waitHealthy(child, file, init.version, timeoutMs);
    if (problem === undefined) {
      if (underSystemd(env)) {
        await stopChild(child);
        init.logger.info(`${init.version} is healthy; exiting for systemd to start it`, { exitCode: EXIT_UPGRADE_RESTART });
        exit(EXIT_UPGRADE_RESTART);
      }
      init.logger.info(`${init.version} is healthy and runs as pid ${child.pid}; this process exits`);
      child.unref();
      exit(0);
    }
    await stopChild(child);
    const restored = rollBack(init.path);
    const reason = `the new binary was not healthy: ${problem}; ${restored ? `rolled back to the previous binary` : "no previous binary to roll back to"}`;
    init.logger.error(`upgrade to ${init.version} failed: ${reason}`);
    await init.resume();
    return reason;
  } finally {
    process.off("exit", cleanUp);
    cleanUp();
  }
}
