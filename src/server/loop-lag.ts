/** How often the event loop's lag is sampled. */
export const LOOP_LAG_SAMPLE_INTERVAL_MS = 50;
/** A lag peak halves every this long once the loop keeps up, so one slow turn counts for about a second. */
export const LOOP_LAG_HALF_LIFE_MS = 250;

/**
 * How late the event loop runs timers: the highest lag of the recent samples, fading with time. A timer
 * due every LOOP_LAG_SAMPLE_INTERVAL_MS that runs late means heartbeats and link plans wait as long.
 */
export class LoopLag {
  private peakMs = 0;
  private lastAt = performance.now();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor() {
    this.timer = setInterval(() => this.sample(), LOOP_LAG_SAMPLE_INTERVAL_MS);
    this.timer.unref?.();
  }

  /** The lag now, in ms. */
  get ms(): number {
    return this.peakMs;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sample(): void {
    const now = performance.now();
    const elapsedMs = now - this.lastAt;
    this.lastAt = now;
    const lateMs = Math.max(0, elapsedMs - LOOP_LAG_SAMPLE_INTERVAL_MS);
    this.peakMs = Math.max(lateMs, this.peakMs * 0.5 ** (elapsedMs / LOOP_LAG_HALF_LIFE_MS));
  }
}
