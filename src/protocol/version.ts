import pkg from "../../package.json" with { type: "json" };

/** The inp2p version, from package.json (inlined by Bun at build time). */
export const VERSION: string = pkg.version;
