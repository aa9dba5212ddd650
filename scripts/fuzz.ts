// The long run of the fuzzing suite: N cases per decoder, e.g. `bun scripts/fuzz.ts --runs 100000`.
// Options: --runs N (default 100000), --seed S (or FUZZ_SEED), --target NAME (or FUZZ_TARGET);
// FUZZ_PATH with FUZZ_TARGET replays one failing case. Exits 1 when any target found something.
import { parseArgs } from "node:util";
import { replaySettings, runTarget } from "../test/fuzz/harness.ts";
import { FUZZ_TARGETS } from "../test/fuzz/targets.ts";

const DEFAULT_LONG_RUNS = 100_000;

const { values } = parseArgs({ options: { runs: { type: "string" }, seed: { type: "string" }, target: { type: "string" } } });
const runs = values.runs === undefined ? DEFAULT_LONG_RUNS : Number(values.runs);
if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${JSON.stringify(values.runs)}`);
const settings = replaySettings({ ...process.env, ...(values.seed ? { FUZZ_SEED: values.seed } : {}), ...(values.target ? { FUZZ_TARGET: values.target } : {}) });
const targets = FUZZ_TARGETS.filter((t) => settings.target === undefined || t.name === settings.target);
if (targets.length === 0) throw new Error(`no fuzz target named ${JSON.stringify(settings.target)}; targets: ${FUZZ_TARGETS.map((t) => t.name).join(", ")}`);

console.log(`fuzz: seed ${settings.seed}, ${runs} cases per target`);
let findings = 0;
const started = performance.now();
for (const t of targets) {
  const targetStarted = performance.now();
  const outcome = runTarget(t, runs, settings);
  const seconds = ((performance.now() - targetStarted) / 1000).toFixed(1);
  console.log(`${t.name.padEnd(20)} ${String(outcome.runs).padStart(8)} cases  ${seconds.padStart(7)} s  ${outcome.failure ? "1 finding" : "0 findings"}`);
  if (outcome.failure) {
    findings++;
    console.log(outcome.failure);
  }
}
console.log(`fuzz: ${targets.length} targets, ${findings} with findings, ${((performance.now() - started) / 1000).toFixed(1)} s`);
process.exitCode = findings > 0 ? 1 : 0;
