export * from "./signal.ts";
export { VERSION } from "./version.ts";
