// The NAT lab of the per-pair benches (punch-matrix.ts, first-byte.ts): the sites of
// test/e2e/punch.test.ts (punchSites) and inp2ps, fresh inp2pc processes per attempt, and cleanup of
// the lab, every process in it and the temp dirs at the end, on error and on Ctrl-C.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanupStaleLabs, labSupport, labUp, type Lab } from "../natlab/lab.ts";
import { BUN, INP2PC, type Proc } from "../../test/helpers/processes.ts";
import { logTime, punchSites, spawnIn, startLabServer, writeClientConfig, writeLabScripts, type LabApp } from "../../test/e2e/helpers.ts";

export const STATUS_PORT = 27190;
const START_TIMEOUT_MS = 15_000;

export interface PairLab {
  lab: Lab;
  workDir: string;
  /** An empty directory to run commands from. */
  emptyDir: string;
  script: ReturnType<typeof writeLabScripts>;
  /** Set once Ctrl-C (or SIGTERM) started the cleanup: stop at the next step. */
  readonly stopping: boolean;
  /** Starts inp2pc at `site` as `node` from a fresh `dir`; resolves once it has logged in. */
  /** `expose`: the targets peers may reach through this node. */
  startClient(site: string, node: string, dir: string, apps?: LabApp[], expose?: string[]): Promise<{ proc: Proc; loggedInAt: number }>;
  stopClient(proc: Proc): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * Brings the lab up (exits with 2 and the reason when it cannot run here) with inp2ps started with
 * `serverToml` inside [server]. `name` prefixes the temp dir and the Ctrl-C message.
 */
export async function startPairLab(name: string, serverToml: string[] = []): Promise<PairLab> {
  const support = labSupport();
  if (!support.ok) {
    console.error(`${name}: ${support.reason}`);
    process.exit(2);
  }
  await cleanupStaleLabs();
  const workDir = mkdtempSync(join(tmpdir(), `inp2p-bench-${name}-`));
  const emptyDir = join(workDir, "cwd");
  mkdirSync(emptyDir);
  const running = new Set<Proc>();
  let lab: Lab | undefined;
  let stopping = false;
  const cleanup = async () => {
    await Promise.all([...running].map((proc) => proc.stop("SIGKILL").catch(() => {})));
    await lab?.down();
    rmSync(workDir, { recursive: true, force: true });
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, () => {
      stopping = true;
      console.error(`\n${name}: ${signal}, cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });
  try {
    lab = await labUp({ sites: punchSites() });
    running.add(await startLabServer(lab, join(workDir, "server"), serverToml));
  } catch (err) {
    await cleanup();
    throw err;
  }
  const up = lab;
  return {
    lab: up,
    workDir,
    emptyDir,
    script: writeLabScripts(join(workDir, "scripts")),
    get stopping() {
      return stopping;
    },
    async startClient(site, node, dir, apps = [], expose = []) {
      const config = writeClientConfig(up, dir, { node, statusPort: STATUS_PORT, logLevel: "info", apps, expose });
      const proc = spawnIn(up, up.sites[site]!.hostNs, dir, [BUN, INP2PC, "--config", config]);
      running.add(proc);
      await proc.waitForOutput(/logged in/, START_TIMEOUT_MS);
      return { proc, loggedInAt: logTime(proc.output, /logged in/) ?? Date.now() };
    },
    async stopClient(proc) {
      running.delete(proc);
      await proc.stop("SIGTERM");
    },
    cleanup,
  };
}
