import { describe, expect, it } from "vitest";
import { HEAP_RAM_SIZE_BYTES, HEAP_RAM_SIZE_ENV, heapTunedEnv } from "../../src/cli/heap.ts";

describe("heapTunedEnv: the environment a release binary re-executes itself with", () => {
  it("sets the JSC heap budget for a release binary that runs without it, keeping the rest of the environment", () => {
    const env = heapTunedEnv({ PATH: "/usr/bin", INP2P_TOKEN: "t" }, "linux-x64");
    expect(env).toEqual({ PATH: "/usr/bin", INP2P_TOKEN: "t", [HEAP_RAM_SIZE_ENV]: String(HEAP_RAM_SIZE_BYTES) });
  });

  it("re-executes only once: with the variable set (by itself or by the operator, even to 0) it asks for nothing", () => {
    expect(heapTunedEnv({ [HEAP_RAM_SIZE_ENV]: String(HEAP_RAM_SIZE_BYTES) }, "linux-x64")).toBeUndefined();
    expect(heapTunedEnv({ [HEAP_RAM_SIZE_ENV]: "0" }, "linux-arm64-musl")).toBeUndefined();
  });

  it("leaves a program run from source alone (no release target)", () => {
    expect(heapTunedEnv({ PATH: "/usr/bin" }, undefined)).toBeUndefined();
  });
});
