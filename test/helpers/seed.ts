import { onTestFailed } from "vitest";
import { prng } from "./prng.ts";

/**
 * The seeded PRNG for one fuzzing test. The seed is fixed so CI runs the same inputs every time;
 * TEST_SEED=n tries other inputs locally, and a failing test prints the seed that replays it.
 * Call inside the test body.
 */
export function testRandom(defaultSeed: number): () => number {
  const fromEnv = process.env.TEST_SEED;
  const seed = fromEnv === undefined || fromEnv === "" ? defaultSeed : Number(fromEnv);
  if (!Number.isSafeInteger(seed)) throw new Error(`TEST_SEED must be an integer, got ${JSON.stringify(fromEnv)}`);
  onTestFailed(() => console.error(`replay with TEST_SEED=${seed}`));
  return prng(seed);
}
