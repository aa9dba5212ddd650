import fc from "fast-check";

/** Seed of the fuzzing suite when FUZZ_SEED is not set: CI runs the same cases every time. */
export const DEFAULT_FUZZ_SEED = 20_261_202;

/**
 * One decoder under test: inputs to feed it (random bytes and mutations of valid encodings), and a
 * check that throws when a property fails (an error that is not the decoder's documented one, or an
 * output larger than its stated bound).
 */
export interface FuzzTarget<T = unknown> {
  name: string;
  inputs: fc.Arbitrary<T>;
  /** Returns whether the decoder accepted the input (so a run shows it reached both outcomes). */
  check: (input: T) => boolean;
  /** Cases in `npm test` (the long run takes its count from scripts/fuzz.ts). */
  shortRuns: number;
}

export function target<T>(t: FuzzTarget<T>): FuzzTarget {
  return t as FuzzTarget;
}

/** FUZZ_SEED, FUZZ_PATH and FUZZ_TARGET from the environment, as printed by a failure. */
export interface ReplaySettings {
  seed: number;
  path: string | undefined;
  target: string | undefined;
}

export function replaySettings(env: NodeJS.ProcessEnv = process.env): ReplaySettings {
  const seedText = env.FUZZ_SEED;
  const seed = seedText === undefined || seedText === "" ? DEFAULT_FUZZ_SEED : Number(seedText);
  if (!Number.isSafeInteger(seed)) throw new Error(`FUZZ_SEED must be an integer, got ${JSON.stringify(seedText)}`);
  const path = env.FUZZ_PATH || undefined;
  const target = env.FUZZ_TARGET || undefined;
  if (path !== undefined && target === undefined) throw new Error("FUZZ_PATH replays one target's case: set FUZZ_TARGET too");
  return { seed, path, target };
}

export interface FuzzOutcome {
  target: string;
  runs: number;
  /** Cases the decoder accepted; the rest it refused with its documented error or result. */
  accepted: number;
  /** The replay command and fast-check's report (counterexample, shrunk input, error) when a property failed. */
  failure: string | undefined;
}

/** Runs `runs` cases of one target; a failure carries the FUZZ_SEED/FUZZ_PATH/FUZZ_TARGET that replay it. */
export function runTarget(t: FuzzTarget, runs: number, settings: ReplaySettings): FuzzOutcome {
  const replaying = settings.path !== undefined && settings.target === t.name;
  let accepted = 0;
  const details = fc.check(
    fc.property(t.inputs, (input) => {
      if (t.check(input)) accepted++;
    }),
    { seed: settings.seed, numRuns: runs, ...(replaying ? { path: settings.path, endOnFailure: true } : {}) },
  );
  if (!details.failed) return { target: t.name, runs: details.numRuns, accepted, failure: undefined };
  const replay = `FUZZ_SEED=${details.seed} FUZZ_PATH=${details.counterexamplePath} FUZZ_TARGET=${t.name}`;
  const error = details.errorInstance instanceof Error ? (details.errorInstance.stack ?? details.errorInstance.message) : String(details.errorInstance);
  return { target: t.name, runs: details.numRuns, accepted, failure: `${t.name}: replay with ${replay}\n${fc.defaultReportMessage(details)}\nError: ${error}` };
}

// ---------- structure-aware mutation of valid encodings ----------

export type Mutation =
  | { kind: "flip"; at: number; xor: number }
  | { kind: "fill"; at: number; count: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "extend"; bytes: Uint8Array }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "delete"; at: number; count: number };

const MAX_MUTATIONS = 4;
const MAX_INSERTED_BYTES = 64;
/** Fills of 0xff/0x00/0x80/0x7f over 1..8 bytes make length fields huge, zero or sign-flipped. */
const FILL_VALUES = [0x00, 0xff, 0x80, 0x7f];

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("fill" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }), value: fc.constantFrom(...FILL_VALUES) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("extend" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: MAX_INSERTED_BYTES }) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: MAX_INSERTED_BYTES }) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 16 }) }),
);

function applyMutation(bytes: Buffer, m: Mutation): Buffer {
  const at = bytes.length === 0 ? 0 : m.kind === "extend" ? 0 : (m as { at: number }).at % bytes.length;
  switch (m.kind) {
    case "flip": {
      if (bytes.length === 0) return bytes;
      const out = Buffer.from(bytes);
      out[at] = out[at]! ^ m.xor;
      return out;
    }
    case "fill": {
      const out = Buffer.from(bytes);
      out.fill(m.value, at, Math.min(out.length, at + m.count));
      return out;
    }
    case "truncate":
      return Buffer.from(bytes.subarray(0, at));
    case "extend":
      return Buffer.concat([bytes, m.bytes]);
    case "insert":
      return Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
    case "delete":
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.count)]);
  }
}

/** 1..4 mutations: bytes flipped, filled, truncated, extended, inserted or deleted. */
export const mutations: fc.Arbitrary<Mutation[]> = fc.array(mutation, { minLength: 1, maxLength: MAX_MUTATIONS });

export function applyMutations(bytes: Uint8Array, list: readonly Mutation[]): Buffer {
  return list.reduce(applyMutation, Buffer.from(bytes));
}

/** Valid encodings from `valid`, mutated. */
export function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Buffer> {
  return fc.tuple(valid, mutations).map(([bytes, list]) => applyMutations(bytes, list));
}

/** Arbitrary bytes, valid encodings as they are, and mutations of them, in one input stream. */
export function bytesAround(valid: fc.Arbitrary<Uint8Array>, maxRandomBytes = 256): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { arbitrary: fc.uint8Array({ maxLength: maxRandomBytes }).map((b) => Buffer.from(b)), weight: 2 },
    { arbitrary: valid.map((b) => Buffer.from(b)), weight: 1 },
    { arbitrary: mutated(valid), weight: 4 },
  );
}

/** Throws unless `error` is an instance of one of the decoder's documented error classes. */
export function expectDocumentedError(error: unknown, ...documented: (abstract new (...args: never[]) => Error)[]): void {
  if (documented.some((type) => error instanceof type)) return;
  const what = error instanceof Error ? `${error.constructor.name}: ${error.message}` : String(error);
  throw new Error(`undocumented exception escaped the decoder: ${what}`, { cause: error });
}

/** Throws when a decoder's output is larger than its bound (bytes, entries). */
export function expectAtMost(what: string, actual: number, bound: number): void {
  if (actual > bound) throw new Error(`${what} is ${actual}, over the bound ${bound}`);
}
