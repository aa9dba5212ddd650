// Imported first by both programs: a release binary re-executes itself, once, with a smaller garbage
// collection budget for JavaScriptCore.
//
// JSC sizes its collection cycles from the machine's RAM, and collects eagerly only once the process's
// footprint nears most of that RAM. On a box with gigabytes it lets tens of MB of garbage pile up, and
// the data plane makes garbage at the packet rate (Buffers and a cipher per packet): a saturated link
// held 115-150 MB. Told it has 128 MiB, it holds about 100 MB for 10-20% more CPU per GB (64 MiB held
// 80-85 MB but cost 2.7x the CPU per GB: about 50 MB of the footprint is the runtime's own code, so the
// process never left the eager zone). Numbers: scripts/bench/memory.ts, README "Memory".
// JSC reads its options only from BUN_JSC_* variables, once, when the runtime starts, so the binary
// cannot set one for itself; process.execve replaces the process (same pid, systemd and supervisors
// see nothing). An operator who sets the variable keeps their value (0: JSC's own sizing).
import { RELEASE_TARGET } from "../upgrade/build-info.ts";

export const HEAP_RAM_SIZE_ENV = "BUN_JSC_forceRAMSize";
/** The RAM JSC sizes its heap and collections for. */
export const HEAP_RAM_SIZE_BYTES = 128 * 1024 * 1024;

/** The environment to re-execute a release binary with, or undefined when it needs none (run from source, or already set). */
export function heapTunedEnv(env: NodeJS.ProcessEnv, releaseTarget: string | undefined): NodeJS.ProcessEnv | undefined {
  if (releaseTarget === undefined || env[HEAP_RAM_SIZE_ENV] !== undefined) return undefined;
  return { ...env, [HEAP_RAM_SIZE_ENV]: String(HEAP_RAM_SIZE_BYTES) };
}

const tuned = heapTunedEnv(process.env, RELEASE_TARGET);
if (tuned) {
  try {
    // A compiled binary's argv is [runtime, embedded entry, ...arguments].
    process.execve?.(process.execPath, [process.execPath, ...process.argv.slice(2)], tuned);
  } catch {
    // No re-execution (a sandbox without execve): run with JSC's own sizing.
  }
}
