import { networkInterfaces } from "node:os";
import type { Logger } from "../log/index.ts";
import type { NatInfo } from "../protocol/index.ts";
import { formatAllocation, type NatReport } from "./detect.ts";

/** How often the local addresses are compared with the last ones seen. */
export const ADDRESS_CHECK_INTERVAL_MS = 10_000;

/** The host's non-loopback addresses, as one comparable string. */
export function localAddressFingerprint(): string {
  return Object.values(networkInterfaces())
    .flat()
    .filter((a) => a && !a.internal)
    .map((a) => a!.address)
    .sort()
    .join(",");
}

export function natInfoOf(report: NatReport): NatInfo {
  const { natType, mapping, filtering, publicAddress, portPreserved, tcp, allocation } = report;
  return { natType, mapping, filtering, publicAddress, portPreserved, tcp, ...(allocation ? { allocation } : {}) };
}

export interface NatWatcher {
  stop(): void;
}

/** Detects the NAT now and again whenever the local addresses change; hands each result on. */
export function watchNat(detect: () => Promise<NatReport>, onResult: (report: NatReport) => void, logger: Logger): NatWatcher {
  let lastAddresses = localAddressFingerprint();
  let running = false;
  let stopped = false;
  const run = async (why: string) => {
    if (running || stopped) return;
    running = true;
    try {
      const report = await detect();
      if (stopped) return;
      logger.info(`NAT type: ${report.natType}`, { why, public: report.publicAddress, mapping: report.mapping, filtering: report.filtering, allocation: formatAllocation(report.allocation), tcp: report.tcp, ms: report.durationMs });
      onResult(report);
    } catch (err) {
      logger.warn("NAT detection failed", { why, error: (err as Error).message });
    } finally {
      running = false;
    }
  };
  void run("start-up");
  const timer = setInterval(() => {
    const now = localAddressFingerprint();
    if (now === lastAddresses) return;
    lastAddresses = now;
    void run("local addresses changed");
  }, ADDRESS_CHECK_INTERVAL_MS);
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
