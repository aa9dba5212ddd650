// Imported first by both programs: a release binary re-executes itself, once, with a smaller garbage
// collection budget for JavaScriptCore.
//
// JSC sizes its collection cycles from the machine's RAM: on a box with gigabytes it lets up to 32 MB
// of garbage pile up between collections, and the data plane makes garbage at the packet rate (a
// Buffer and a cipher per packet), so a saturated link held 150 MB where 85 MB do. JSC reads its
// options only from BUN_JSC_* variables, once, when the runtime starts, so the binary cannot set one
// for itself; process.execve replaces the process (same pid, systemd and supervisors see nothing). An
// operator who sets the variable keeps their value (0: JSC's own sizing).
import { RELEASE_TARGET } from "../upgrade/build-info.ts";

export const HEAP_RAM_SIZE_ENV = "BUN_JSC_forceRAMSize";
/** The RAM JSC sizes its heap for: a cycle's budget is a quarter of it (16 MiB instead of 32). */
export const HEAP_RAM_SIZE_BYTES = 64 * 1024 * 1024;

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
