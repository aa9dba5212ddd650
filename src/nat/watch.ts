import { networkInterfaces } from "node:os";
import type { Logger } from "../log/index.ts";
import type { NatInfo } from "../protocol/index.ts";
import { describesNat, type NatCache } from "./cache.ts";
import { formatAllocation, type NatReport } from "./detect.ts";

/** How often the local addresses are compared with the last ones seen. */
export const ADDRESS_CHECK_INTERVAL_MS = 10_000;

export interface HostAddress {
  device: string;
  address: string;
}

/** The host's non-loopback addresses, with the device each is on. */
export function hostAddresses(): HostAddress[] {
  return Object.entries(networkInterfaces()).flatMap(([device, addresses]) =>
    (addresses ?? []).filter((a) => !a.internal).map((a) => ({ device, address: a.address })),
  );
}

/** The host's non-loopback addresses, as one comparable string; without those the overlay owns (`tunnelled`). */
export function localAddressFingerprint(addresses = hostAddresses(), tunnelled: (address: HostAddress) => boolean = () => false): string {
  return addresses
    .filter((address) => !tunnelled(address))
    .map((a) => a.address)
    .sort()
    .join(",");
}

export function natInfoOf(report: NatInfo): NatInfo {
  const { natType, mapping, filtering, publicAddress, portPreserved, tcp, allocation } = report;
  return { natType, mapping, filtering, publicAddress, portPreserved, tcp, ...(allocation ? { allocation } : {}) };
}

/** How often a settled NAT type is detected again though nothing seemed to change (NATs get reconfigured, routers replaced). */
export const NAT_RECHECK_INTERVAL_MS = 5 * 60_000;
/** First retry after a failed or inconclusive detection; each further one waits twice as long, up to the recheck interval. */
export const NAT_RETRY_BASE_DELAY_MS = 5_000;

/**
 * A result worth keeping: a failed detection, UDP blocked, an unknown mapping or a TCP probe without an
 * answer may mean the server was away (or restarting), so such a result is detected again soon.
 */
function isSettled(report: NatReport | undefined): boolean {
  return report !== undefined && describesNat(report) && report.tcp;
}

export interface NatWatcherInit {
  detect: () => Promise<NatReport>;
  /** Called with the first result (the cached one, if used) and with each one that differs from the last. */
  onResult: (nat: NatInfo) => void;
  logger: Logger;
  /** The result of the last run: used at once if it holds for these local addresses, and kept up to date. */
  cache?: NatCache;
  /** Whether an address is the overlay's (on its TUN device, or in what it carries): no reason to detect again. */
  tunnelled?: (address: HostAddress) => boolean;
  /** @default hostAddresses */
  addresses?: () => HostAddress[];
  /** @default ADDRESS_CHECK_INTERVAL_MS */
  addressCheckIntervalMs?: number;
  /** @default NAT_RECHECK_INTERVAL_MS */
  recheckIntervalMs?: number;
  /** @default NAT_RETRY_BASE_DELAY_MS */
  retryBaseDelayMs?: number;
}

export interface NatWatcher {
  /** The server answered (a login): detect again now if the last result was failed or inconclusive. */
  serverReachable(): void;
  stop(): void;
}

/**
 * Detects the NAT now, again whenever the local addresses change, every recheck interval, soon (backing
 * off) while the result is failed or inconclusive, and at once when the server answers after such a result.
 */
export function watchNat(init: NatWatcherInit): NatWatcher {
  const { detect, onResult, logger, cache } = init;
  const recheckIntervalMs = init.recheckIntervalMs ?? NAT_RECHECK_INTERVAL_MS;
  const retryBaseDelayMs = init.retryBaseDelayMs ?? NAT_RETRY_BASE_DELAY_MS;
  const addresses = () => localAddressFingerprint((init.addresses ?? hostAddresses)(), init.tunnelled);
  let lastAddresses = addresses();
  let lastInfo = "";
  let settled = false;
  let unsettledRuns = 0;
  let running = false;
  /** A run asked for while one was under way: always, or only if that one ends unsettled. */
  let rerun: { why: string; onlyIfUnsettled: boolean } | undefined;
  let stopped = false;
  let next: ReturnType<typeof setTimeout> | undefined;

  const schedule = () => {
    clearTimeout(next);
    if (stopped) return;
    const delayMs = settled ? recheckIntervalMs : Math.min(recheckIntervalMs, retryBaseDelayMs * 2 ** Math.min(unsettledRuns - 1, 20));
    next = setTimeout(() => void run(settled ? "periodic re-check" : "retry after a failed or inconclusive result"), delayMs);
  };

  const run = async (why: string, onlyIfUnsettled = false) => {
    if (stopped) return;
    if (running) {
      if (!rerun || rerun.onlyIfUnsettled) rerun = { why, onlyIfUnsettled };
      return;
    }
    running = true;
    try {
      const report = await detect();
      if (stopped) return;
      settled = isSettled(report);
      const nat = natInfoOf(report);
      const info = JSON.stringify(nat);
      const changed = info !== lastInfo;
      const fields = { why, public: report.publicAddress, mapping: report.mapping, filtering: report.filtering, allocation: formatAllocation(report.allocation), tcp: report.tcp, ms: report.durationMs };
      logger[changed ? "info" : "debug"](`NAT type: ${report.natType}`, fields);
      lastInfo = info;
      cache?.save(lastAddresses, nat);
      if (changed) onResult(nat);
    } catch (err) {
      settled = false;
      logger.warn("NAT detection failed", { why, error: (err as Error).message });
    } finally {
      running = false;
    }
    if (stopped) return;
    unsettledRuns = settled ? 0 : unsettledRuns + 1;
    const again = rerun;
    rerun = undefined;
    if (again && !(again.onlyIfUnsettled && settled)) void run(again.why);
    else schedule();
  };

  const cached = cache?.load(lastAddresses);
  if (cached) {
    logger.info(`NAT type: ${cached.natType} (from the last run; checking again)`, { public: cached.publicAddress, mapping: cached.mapping, filtering: cached.filtering, allocation: formatAllocation(cached.allocation), tcp: cached.tcp });
    lastInfo = JSON.stringify(natInfoOf(cached));
    onResult(cached);
  }
  void run("start-up");
  const addressTimer = setInterval(() => {
    const now = addresses();
    if (now === lastAddresses) return;
    lastAddresses = now;
    void run("local addresses changed");
  }, init.addressCheckIntervalMs ?? ADDRESS_CHECK_INTERVAL_MS);
  return {
    serverReachable() {
      if (stopped || settled) return;
      void run("the server answered", true);
    },
    stop() {
      stopped = true;
      clearTimeout(next);
      clearInterval(addressTimer);
    },
  };
}
