// The fleet's releases: the newest version the server knows — the highest of its own version,
// [server] latest_version and what its release checks found — is pushed to each node behind it after
// its login, and to every node behind it when it rises; auto_upgrade nodes take it. Only nodes behind
// are told: a node older than this push logs it as an unknown message, and one up to date needs nothing.
// The admin asks nodes to upgrade now (`inp2ps nodes upgrade`, REST), each to that version.

import type { Logger } from "../log/index.ts";
import { compareVersions, type ServerPush } from "../protocol/index.ts";
import type { NodeSession, Registry } from "./registry.ts";

export interface FleetInit {
  registry: Registry;
  logger: Logger;
  /** This server's own version: nodes behind it are behind. */
  version: string;
  /** [server] latest_version. */
  configured?: string;
  /** Finds the newest release (the server's release_url); absent: no checks. */
  check?: () => Promise<string>;
  /** Between checks; 0: none. */
  checkIntervalMs: number;
}

/** What the console and `nodes` show beside a node's version. */
export interface FleetView {
  latest: string;
}

export class Fleet {
  private found: string | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly init: FleetInit) {
    init.registry.onChange((session, event) => {
      // After the login's answer, which is sent once the registry has the session.
      if (event === "online" && this.behind(session.version)) queueMicrotask(() => this.tell(session, { type: "release", version: this.latest }));
    });
    if (init.check && init.checkIntervalMs > 0) {
      void this.checkNow();
      this.timer = setInterval(() => void this.checkNow(), init.checkIntervalMs);
    }
  }

  /** The newest version known. */
  get latest(): string {
    return [this.init.version, this.init.configured, this.found].filter((v): v is string => v !== undefined).reduce((a, b) => (compareVersions(a, b) >= 0 ? a : b));
  }

  /** Whether a node running `version` is behind the newest known (unknown versions are not). */
  behind(version: string | null): boolean {
    if (!version) return false;
    try {
      return compareVersions(version, this.latest) < 0;
    } catch {
      return false;
    }
  }

  /** A check (or an upgrade) found `version`: announced to every node when it is newer than what was known. */
  learn(version: string): void {
    const before = this.latest;
    this.found = this.found === undefined || compareVersions(version, this.found) > 0 ? version : this.found;
    this.announceIfRisen(before);
  }

  /** [server] latest_version after a reload. */
  setConfigured(version: string | undefined): void {
    const before = this.latest;
    this.init.configured = version;
    this.announceIfRisen(before);
  }

  /** Asks these nodes to upgrade now, to the newest version known. */
  askUpgrade(sessions: readonly NodeSession[]): { user: string; node: string; from: string; to: string }[] {
    const to = this.latest;
    return sessions.map((session) => {
      this.tell(session, { type: "upgrade", version: to });
      return { user: session.user, node: session.name, from: session.version, to };
    });
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private announceIfRisen(before: string): void {
    if (compareVersions(this.latest, before) <= 0) return;
    this.init.logger.info(`newest release is ${this.latest}; telling the nodes`, { version: this.latest });
    for (const session of this.init.registry.all()) if (this.behind(session.version)) this.tell(session, { type: "release", version: this.latest });
  }

  private async checkNow(): Promise<void> {
    try {
      this.learn(await this.init.check!());
    } catch (err) {
      this.init.logger.warn(`release check failed: ${(err as Error).message}`);
    }
  }

  private tell(session: NodeSession, message: ServerPush): void {
    session.send(JSON.stringify(message));
  }
}
