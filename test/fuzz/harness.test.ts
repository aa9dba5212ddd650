import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_FUZZ_SEED, replaySettings, runTarget, target } from "./harness.ts";

// A decoder with a planted bug: it throws a TypeError for any input with a byte over 200.
const planted = target({
  name: "planted",
  shortRuns: 1000,
  inputs: fc.uint8Array({ maxLength: 16 }),
  check(bytes: Uint8Array) {
    if (bytes.some((b) => b > 200)) throw new TypeError("planted bug");
    return true;
  },
});

describe("fuzzing harness", () => {
  it("reports a failure with the FUZZ_SEED, FUZZ_PATH and FUZZ_TARGET that replay it, and the replay fails at once", () => {
    const first = runTarget(planted, planted.shortRuns, replaySettings({}));
    expect(first.failure).toContain(`FUZZ_SEED=${DEFAULT_FUZZ_SEED} `);
    expect(first.failure).toContain("planted bug");
    const replay = /FUZZ_SEED=(\d+) FUZZ_PATH=(\S+) FUZZ_TARGET=(\S+)/.exec(first.failure!);
    expect(replay).not.toBeNull();
    const [, seed, path, name] = replay!;
    expect(name).toBe("planted");
    const again = runTarget(planted, planted.shortRuns, replaySettings({ FUZZ_SEED: seed, FUZZ_PATH: path, FUZZ_TARGET: name }));
    expect(again.runs).toBe(1);
    expect(again.failure).toContain("planted bug");
  });

  it("runs the same cases for the same seed", () => {
    const seen = (seed: string) => {
      const inputs: string[] = [];
      runTarget({ ...planted, check: (b: unknown) => inputs.push(Buffer.from(b as Uint8Array).toString("hex")) > 0 }, 50, replaySettings({ FUZZ_SEED: seed }));
      return inputs;
    };
    expect(seen("7")).toEqual(seen("7"));
    expect(seen("7")).not.toEqual(seen("8"));
  });

  it("refuses a bad FUZZ_SEED and a FUZZ_PATH without its FUZZ_TARGET, naming the variable", () => {
    expect(() => replaySettings({ FUZZ_SEED: "abc" })).toThrow(/FUZZ_SEED must be an integer, got "abc"/);
    expect(() => replaySettings({ FUZZ_PATH: "3:1" })).toThrow(/set FUZZ_TARGET too/);
  });
});
