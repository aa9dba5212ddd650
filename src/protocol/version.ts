import pkg from "../../package.json" with { type: "json" };

// scripts/build.ts --version defines it; otherwise (bun run, a build without --version) package.json's.
declare const INP2P_BUILD_VERSION: string;

/** The inp2p version: the build's (--version of scripts/build.ts), else package.json's, inlined by Bun at build time. */
export const VERSION: string = typeof INP2P_BUILD_VERSION === "string" ? INP2P_BUILD_VERSION : pkg.version;
