import { describe, expect, it } from "vitest";
import { replaySettings, runTarget } from "./harness.ts";
import { FUZZ_TARGETS } from "./targets.ts";

// The short run of the fuzzing suite (scripts/fuzz.ts is the long one). A failure prints the
// FUZZ_SEED=… FUZZ_PATH=… FUZZ_TARGET=… that replay its case, and fast-check's shrunk counterexample.
const settings = replaySettings();

describe("fuzzing: decoders of untrusted input", () => {
  for (const t of FUZZ_TARGETS) {
    it.skipIf(settings.target !== undefined && settings.target !== t.name)(`${t.name}: no undocumented exception, no output past its bound`, () => {
      const outcome = runTarget(t, t.shortRuns, settings);
      expect(outcome.failure).toBeUndefined();
      if (settings.path !== undefined) return; // a replay runs one case
      expect(outcome.runs).toBe(t.shortRuns);
      // The inputs reached both sides of the decoder: some accepted (the generators make valid
      // encodings), most refused (the mutations are caught).
      expect(outcome.accepted).toBeGreaterThan(0);
      expect(outcome.accepted).toBeLessThan(outcome.runs);
    });
  }
});
