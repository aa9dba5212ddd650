import type { LogFields, Logger } from "./index.ts";

/**
 * Warnings that a stranger or a busy client can make repeat (one per refused connection) go out once per
 * window and kind; the next one after the window says how many were held back, so a log stays readable
 * and cannot be flooded.
 */
export class RepeatedWarnings {
  private readonly windows = new Map<string, { until: number; heldBack: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly windowMs: number,
    /** Kinds tracked at once; a stranger cannot make this map grow past it. */
    private readonly maxKinds = 64,
  ) {}

  /** Returns whether it went out (false: held back in its window). */
  warn(kind: string, message: string, fields?: LogFields): boolean {
    const now = Date.now();
    const window = this.windows.get(kind);
    if (window && now < window.until) {
      window.heldBack++;
      return false;
    }
    if (!window && this.windows.size >= this.maxKinds) for (const [key, old] of this.windows) if (now >= old.until) this.windows.delete(key);
    const heldBack = window?.heldBack ?? 0;
    this.logger.warn(message, heldBack ? { ...fields, repeatsHeldBack: heldBack } : fields);
    if (this.windows.size < this.maxKinds || window) this.windows.set(kind, { until: now + this.windowMs, heldBack: 0 });
    return true;
  }
}
