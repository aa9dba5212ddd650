// What `upgrade` does, from the command line or inside a running program (asked by its local API or,
// for inp2pc, by the server): find the release, compare versions, install, restart.

import { compareVersions, VERSION } from "../protocol/index.ts";
import type { Logger } from "../log/index.ts";
import { RELEASE_TARGET } from "./build-info.ts";
import { UpgradeError } from "./errors.ts";
import { checkWritable, installProgram } from "./install.ts";
import { fetchRelease, type Release, type ReleaseQuery } from "./release.ts";
import { restartInto } from "./restart.ts";

export type Program = "inp2pc" | "inp2ps";

export interface UpgradeCheck {
  current: string;
  latest: string;
  /** Whether `latest` is newer than `current`. */
  newer: boolean;
  url: string;
}

/** This process's binary and target; throws when it runs from source. */
export function currentBinary(program: Program): { path: string; target: string } {
  if (RELEASE_TARGET === undefined) {
    throw new UpgradeError(
      "NOT_A_RELEASE_BUILD",
      `this ${program} runs from source (${process.execPath} ${process.argv[1] ?? ""}), not a release binary: update the checkout (git pull), or install a release with install.sh`,
    );
  }
  return { path: process.execPath, target: RELEASE_TARGET };
}

export async function checkUpgrade(query: ReleaseQuery): Promise<UpgradeCheck & { release: Release }> {
  const release = await fetchRelease(query);
  return { current: VERSION, latest: release.version, newer: compareVersions(release.version, VERSION) > 0, url: release.url, release };
}

export interface Installed {
  from: string;
  to: string;
  path: string;
  previous: string;
}

/**
 * Installs the newest release (or query.version, older or not) over this program's binary; undefined
 * when the newest is not newer than this one, or the version asked for is this one.
 */
export async function installUpgrade(program: Program, query: ReleaseQuery): Promise<Installed | undefined> {
  const binary = currentBinary(program);
  checkWritable(binary.path, program); // before any download
  const check = await checkUpgrade(query);
  if (query.version === undefined ? !check.newer : compareVersions(check.latest, VERSION) === 0) return undefined;
  const previous = await installProgram(check.release, { ...binary, program });
  return { from: VERSION, to: check.latest, path: binary.path, previous };
}

export interface SelfUpgradeInit {
  program: Program;
  releaseUrl: string;
  logger: Logger;
  /** Stop and start this process's services (see restart.ts). */
  stop(): Promise<void>;
  resume(): Promise<void>;
  /** @default process.argv.slice(2) */
  args?: readonly string[];
  healthTimeoutMs?: number;
}

/** The outcome of the last upgrade this process tried, as its status shows it. */
export interface UpgradeState {
  to: string | null;
  state: "installing" | "restarting" | "rolled-back" | "failed";
  error: string | null;
  at: string;
}

/** A running program upgrading itself: one upgrade at a time; the restart runs after the answer. */
export class SelfUpgrade {
  last: UpgradeState | undefined;
  private busy = false;

  constructor(private readonly init: SelfUpgradeInit) {}

  get releaseUrl(): string {
    return this.init.releaseUrl;
  }

  /** Installs, then restarts in the background; resolves with what was installed (undefined: already the newest). */
  async upgrade(query: { version?: string; releaseUrl?: string } = {}): Promise<Installed | undefined> {
    if (this.busy) throw new UpgradeError("BUSY", `an upgrade${this.last?.to ? ` to ${this.last.to}` : ""} is already under way`);
    this.busy = true;
    const at = () => new Date().toISOString();
    this.last = { to: query.version ?? null, state: "installing", error: null, at: at() };
    let installed: Installed | undefined;
    try {
      installed = await installUpgrade(this.init.program, { releaseUrl: query.releaseUrl ?? this.init.releaseUrl, version: query.version });
    } catch (err) {
      this.busy = false;
      this.last = { ...this.last, state: "failed", error: (err as Error).message, at: at() };
      throw err;
    }
    if (!installed) {
      this.busy = false;
      this.last = undefined;
      return undefined;
    }
    this.init.logger.info(`installed ${this.init.program} ${installed.to} over ${installed.from}`, { binary: installed.path, previous: installed.previous });
    this.last = { to: installed.to, state: "restarting", error: null, at: at() };
    const to = installed.to;
    // After the caller's answer went out: the restart stops the services that carry it.
    setTimeout(() => {
      restartInto({
        path: installed.path,
        args: this.init.args ?? process.argv.slice(2),
        version: to,
        logger: this.init.logger,
        stop: this.init.stop,
        resume: this.init.resume,
        healthTimeoutMs: this.init.healthTimeoutMs,
      })
        .then((reason) => (this.last = { to, state: "rolled-back", error: reason, at: at() }))
        .catch((err: Error) => {
          this.last = { to, state: "failed", error: err.message, at: at() };
          this.init.logger.error(`upgrade to ${to}: the restart failed`, { error: err.message });
        })
        .finally(() => (this.busy = false));
    }, 0);
    return installed;
  }
}
