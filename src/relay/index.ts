export * from "./constants.ts";
export { TokenBucket } from "./limiter.ts";
export { privateRelayRefusal, startRelay, type RelayInit, type RelayLoad, type RunningRelay } from "./relay.ts";
