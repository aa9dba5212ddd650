import { readFileSync, renameSync, writeFileSync } from "node:fs";
import type { Logger } from "../log/index.ts";
import { natInfo, type NatInfo } from "../protocol/index.ts";
import type { DetectNatOptions } from "./detect.ts";

/** A cached NAT result older than this is not used: NATs get reconfigured, routers replaced. */
export const NAT_CACHE_MAX_AGE_MS = 24 * 3_600_000;
const NAT_CACHE_VERSION = 1;

/** Whether a result tells anything about the NAT (one from while the server was away may not). */
export function describesNat(nat: NatInfo): boolean {
  return nat.natType !== "udp-blocked" && nat.mapping !== "unknown";
}

/**
 * The last NAT detection result, kept in a small JSON file so that a restarted node can use it at once
 * while it detects again. It holds only for the same STUN server and the same local addresses.
 */
export class NatCache {
  constructor(
    readonly file: string,
    private readonly server: DetectNatOptions,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** What the result depends on: the STUN server and this host's local addresses (a fingerprint). */
  private key(addresses: string) {
    const { serverHost, udpPorts, tcpPorts } = this.server;
    return { serverHost, udpPorts, tcpPorts, addresses };
  }

  /** The cached result for these local addresses (a fingerprint), if there is one that still holds. */
  load(addresses: string): NatInfo | undefined {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch {
      return undefined; // none yet
    }
    const ignore = (why: string): undefined => {
      this.logger.warn("ignoring the NAT result of the last run", { file: this.file, why });
    };
    let saved: { version?: unknown; key?: unknown; savedAt?: unknown; nat?: unknown };
    try {
      saved = JSON.parse(text);
      if (typeof saved !== "object" || saved === null) throw new Error("not an object");
    } catch (err) {
      return ignore(`not valid JSON: ${(err as Error).message}`);
    }
    if (saved.version !== NAT_CACHE_VERSION || typeof saved.savedAt !== "number") return ignore("unknown format");
    const nat = natInfo.safeParse(saved.nat);
    if (!nat.success) return ignore(`bad nat: ${nat.error.issues[0]?.path.join(".")} ${nat.error.issues[0]?.message}`);
    if (JSON.stringify(saved.key) !== JSON.stringify(this.key(addresses))) {
      this.logger.debug("not using the NAT result of the last run: it was for another server or other local addresses", { file: this.file });
      return undefined;
    }
    if (this.now() - saved.savedAt > NAT_CACHE_MAX_AGE_MS) {
      this.logger.debug("not using the NAT result of the last run: too old", { file: this.file, savedAt: new Date(saved.savedAt).toISOString() });
      return undefined;
    }
    return nat.data;
  }

  /** Keeps `nat` (if it tells anything about the NAT) for these local addresses; written atomically. */
  save(addresses: string, nat: NatInfo): void {
    if (!describesNat(nat)) return;
    const temporary = `${this.file}.tmp`;
    try {
      writeFileSync(temporary, JSON.stringify({ version: NAT_CACHE_VERSION, key: this.key(addresses), savedAt: this.now(), nat }, null, 2) + "\n");
      renameSync(temporary, this.file);
    } catch (err) {
      this.logger.warn("could not keep the NAT result for the next run", { file: this.file, error: (err as Error).message });
    }
  }
}
