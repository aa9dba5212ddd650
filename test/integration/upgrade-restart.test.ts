// restartInto (src/upgrade/restart.ts) with small shell scripts standing in for the new binary, each a
// real process: healthy under systemd (the checked child is stopped, exit code 75 for Restart=), healthy
// without (this process exits, the child stays), and a child that hangs without confirming (stopped
// after the health timeout, <binary>.previous put back, the services resumed).

import { chmodSync, existsSync, linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { silentLogger } from "../../src/log/index.ts";
import { EXIT_UPGRADE_RESTART, restartInto } from "../../src/upgrade/index.ts";
import { waitFor } from "../helpers/processes.ts";

const HEALTH_TIMEOUT_MS = 1_500;
const TEST_TIMEOUT_MS = 30_000;

let dir: string;
let childPids: number[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "inp2p-restart-"));
});

afterEach(() => {
  for (const pid of childPids.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Installs `script` as the new binary, the "old" one as <binary>.previous; returns the binary's path. */
function install(script: string): string {
  const binary = join(dir, "inp2pc");
  writeFileSync(join(dir, "old"), "#!/bin/sh\necho old\n", { mode: 0o755 });
  linkSync(join(dir, "old"), `${binary}.previous`);
  writeFileSync(binary, `#!/bin/sh\necho $$ > ${join(dir, "pid")}\n${script}\n`);
  chmodSync(binary, 0o755);
  return binary;
}

/** Runs restartInto; resolves with the exit code it asked for, or the rollback's reason. */
async function restart(binary: string, env: NodeJS.ProcessEnv) {
  const calls: string[] = [];
  let exitCode: number | undefined;
  const exited = new Error("exit");
  const reason = await restartInto({
    path: binary,
    args: ["--config", "x.toml"],
    version: "1.1.0",
    logger: silentLogger,
    stop: async () => void calls.push("stop"),
    resume: async () => void calls.push("resume"),
    healthTimeoutMs: HEALTH_TIMEOUT_MS,
    env,
    exit: (code) => {
      exitCode = code;
      throw exited;
    },
  }).catch((err) => {
    if (err !== exited) throw err;
    return undefined;
  });
  const pid = existsSync(join(dir, "pid")) ? Number(readFileSync(join(dir, "pid"), "utf8")) : undefined;
  if (pid) childPids.push(pid);
  return { calls, exitCode, reason, pid };
}

const HEALTHY = 'echo 1.1.0 > "$INP2P_UPGRADE_HEALTH_FILE"\nexec sleep 60';

describe("restartInto", () => {
  test("healthy, no systemd: this process exits 0 and the new one keeps running with the same arguments", async () => {
    const binary = install(`echo "$@" > ${join(dir, "args")}\n${HEALTHY}`);
    const { calls, exitCode, pid } = await restart(binary, { PATH: process.env.PATH });
    expect(calls).toEqual(["stop"]);
    expect(exitCode).toBe(0);
    expect(alive(pid!)).toBe(true);
    expect(readFileSync(join(dir, "args"), "utf8")).toBe("--config x.toml\n");
  }, TEST_TIMEOUT_MS);

  test("healthy under systemd: the checked child is stopped, and this process exits 75 for systemd to start the new binary", async () => {
    const binary = install(HEALTHY);
    const { calls, exitCode, pid } = await restart(binary, { PATH: process.env.PATH, INVOCATION_ID: "0123456789abcdef" });
    expect(calls).toEqual(["stop"]);
    expect(exitCode).toBe(EXIT_UPGRADE_RESTART);
    await waitFor("the checked child to be gone", () => !alive(pid!), 10_000);
  }, TEST_TIMEOUT_MS);

  test("a new binary that hangs without confirming is stopped after the health timeout and rolled back", async () => {
    const binary = install("exec sleep 60");
    const started = performance.now();
    const { calls, exitCode, reason, pid } = await restart(binary, { PATH: process.env.PATH });
    expect(performance.now() - started).toBeGreaterThanOrEqual(HEALTH_TIMEOUT_MS);
    expect(exitCode).toBeUndefined();
    expect(reason).toBe(`the new binary was not healthy: it was not healthy within ${HEALTH_TIMEOUT_MS} ms; rolled back to the previous binary`);
    expect(calls).toEqual(["stop", "resume"]);
    expect(readFileSync(binary, "utf8")).toBe("#!/bin/sh\necho old\n");
    await waitFor("the hung child to be gone", () => !alive(pid!), 10_000);
  }, TEST_TIMEOUT_MS);

  test("a new binary that reports another version is not healthy", async () => {
    const binary = install('echo 9.9.9 > "$INP2P_UPGRADE_HEALTH_FILE"\nexec sleep 60');
    const { reason, calls } = await restart(binary, { PATH: process.env.PATH });
    expect(reason).toBe("the new binary was not healthy: it reports version 9.9.9, not 1.1.0; rolled back to the previous binary");
    expect(calls).toEqual(["stop", "resume"]);
  }, TEST_TIMEOUT_MS);
});
