/** Bound on the keys tracked at once; spent windows are forgotten first. */
const MAX_TRACKED_KEYS = 1_024;

/** A count of uses per key per fixed window: `take` says whether one more fits. */
export class WindowBudget {
  private readonly windows = new Map<string, { until: number; used: number }>();

  constructor(
    private readonly perWindow: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  take(key: string): boolean {
    const now = this.now();
    let window = this.windows.get(key);
    if (!window || now >= window.until) {
      if (!window && this.windows.size >= MAX_TRACKED_KEYS) for (const [old, spent] of this.windows) if (now >= spent.until) this.windows.delete(old);
      window = { until: now + this.windowMs, used: 0 };
      this.windows.set(key, window);
    }
    if (window.used >= this.perWindow) return false;
    window.used++;
    return true;
  }
}
