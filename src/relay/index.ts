export * from "./constants.ts";
export { TokenBucket } from "./limiter.ts";
export { startRelay, type RelayAnswer, type RelayInit, type RelayLoad, type RunningRelay } from "./relay.ts";
