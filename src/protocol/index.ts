export * from "./apps.ts";
export * from "./candidates.ts";
export * from "./node-report.ts";
export * from "./signal.ts";
export * from "./stun.ts";
export { VERSION } from "./version.ts";
export * from "./relay.ts";
export * from "./speedtest.ts";
export * from "./release.ts";
