// auto_upgrade: when the server announces a release newer than this one, upgrade at a time within
// auto_upgrade_window_s of the announcement. The time is a hash of the node's name and the version, so
// that a fleet spreads out evenly, and each node's time is the same on every run (no randomness to seed).

import { createHash } from "node:crypto";
import type { Logger } from "../log/index.ts";
import { compareVersions } from "../protocol/index.ts";
import type { SelfUpgrade } from "../upgrade/index.ts";

/** This node's delay for this version: from 0 up to (not including) the window. */
export function autoUpgradeDelayMs(node: string, version: string, windowS: number): number {
  const hash = createHash("sha256").update(`${node}\0${version}`).digest();
  return Math.floor((hash.readUInt32BE(0) / 2 ** 32) * windowS * 1000);
}

export interface AutoUpgradeInit {
  node: string;
  current: string;
  windowS: number;
  upgrade: SelfUpgrade;
  logger: Logger;
}

export class AutoUpgrade {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private scheduled: string | undefined;

  constructor(private readonly init: AutoUpgradeInit) {}

  /** The server announced `version`: schedules the upgrade when it is newer than this one (and than one scheduled). */
  announce(version: string): void {
    if (compareVersions(version, this.init.current) <= 0) return;
    if (this.scheduled !== undefined && compareVersions(version, this.scheduled) <= 0) return;
    this.stop();
    const delayMs = autoUpgradeDelayMs(this.init.node, version, this.init.windowS);
    this.scheduled = version;
    this.init.logger.info(`the server announces ${version}; auto_upgrade takes it in ${Math.round(delayMs / 1000)} s`, { version, delayMs });
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.init.upgrade
        .upgrade({ version })
        .catch((err: Error) => this.init.logger.error(`auto_upgrade to ${version} failed: ${err.message}`))
        .finally(() => (this.scheduled = undefined));
    }, delayMs);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.scheduled = undefined;
  }
}
