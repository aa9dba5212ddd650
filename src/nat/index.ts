export { classify, detectNat, formatAllocation, formatNatReport, NatDetectError, tcpBinding, type DetectNatOptions, type NatReport } from "./detect.ts";
export { describesNat, NAT_CACHE_MAX_AGE_MS, NatCache } from "./cache.ts";
export { ADDRESS_CHECK_INTERVAL_MS, hostAddresses, localAddressFingerprint, type HostAddress, NAT_RECHECK_INTERVAL_MS, NAT_RETRY_BASE_DELAY_MS, natInfoOf, watchNat, type NatWatcher, type NatWatcherInit } from "./watch.ts";
export { DEFAULT_STUN_RESPONSES_PER_SECOND_PER_SOURCE, SourceRateLimiter, startStunServer, StunServerError, type RunningStunServer, type StunServerInit } from "./stun-server.ts";
export { ALLOCATION_FRESH_PROBES, classifyAllocation, freshMappings, isPredictable, SEQUENTIAL_MAX_DELTA, SEQUENTIAL_MAX_SKIPPED, type MappingObservation } from "./allocation.ts";
