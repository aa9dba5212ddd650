// scripts/build.ts defines the target a release binary was built for; `bun src/cli/...` has none.
declare const INP2P_RELEASE_TARGET: string;

/** This binary's release target (linux-x64, linux-arm64-musl, ...), or undefined when it runs from source. */
export const RELEASE_TARGET: string | undefined = typeof INP2P_RELEASE_TARGET === "string" ? INP2P_RELEASE_TARGET : undefined;
