import { RELAY_BURST_MS, RELAY_MIN_BURST_BYTES } from "./constants.ts";

/**
 * A token bucket in bytes: `take` spends tokens (going into debt if need be) and says how long the
 * sender should now wait before sending more, so the long-run rate is `bytesPerSecond`.
 */
export class TokenBucket {
  private tokens: number;
  private refilledAt = performance.now();
  readonly capacityBytes: number;

  constructor(readonly bytesPerSecond: number) {
    this.capacityBytes = Math.max(RELAY_MIN_BURST_BYTES, (bytesPerSecond * RELAY_BURST_MS) / 1000);
    this.tokens = this.capacityBytes;
  }

  static mbps(megabitsPerSecond: number): TokenBucket {
    return new TokenBucket((megabitsPerSecond * 1_000_000) / 8);
  }

  /** Spends `bytes`; returns the milliseconds to wait before the next send (0: go on). */
  take(bytes: number): number {
    const now = performance.now();
    this.tokens = Math.min(this.capacityBytes, this.tokens + ((now - this.refilledAt) / 1000) * this.bytesPerSecond);
    this.refilledAt = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.bytesPerSecond) * 1000);
  }
}
