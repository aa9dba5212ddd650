import { MAX_PLAN_BUCKETS, PAIR_PLAN_BURST, PAIR_PLAN_INTERVAL_MS, REQUESTER_PLAN_BURST, REQUESTER_PLAN_INTERVAL_MS } from "./constants.ts";

interface Bucket {
  tokens: number;
  at: number;
}

/** A plan refused: why, and how long until the next one would be made. */
export interface PlanRefusal {
  limit: string;
  retryAfterMs: number;
}

/**
 * Token buckets for link plans, per requesting node and per (requester, peer), for each kind of plan.
 * A plan takes a token from both buckets, or from neither.
 */
export class PlanLimits {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Takes a plan of `kind` from `from` to `to` (nodes of `user`), or says why not. */
  take(kind: "connect" | "relay", user: string, from: string, to: string): PlanRefusal | undefined {
    const now = this.now();
    const requester = this.bucket(JSON.stringify([kind, user, from]), REQUESTER_PLAN_BURST, REQUESTER_PLAN_INTERVAL_MS, now);
    const pair = this.bucket(JSON.stringify([kind, user, from, to]), PAIR_PLAN_BURST, PAIR_PLAN_INTERVAL_MS, now);
    const interval = (ms: number) => `${(ms / 1000).toString()} s`;
    if (pair.tokens < 1)
      return { limit: `${kind} plans from ${from} to ${to}: ${PAIR_PLAN_BURST} at once, then one every ${interval(PAIR_PLAN_INTERVAL_MS)}`, retryAfterMs: Math.ceil((1 - pair.tokens) * PAIR_PLAN_INTERVAL_MS) };
    if (requester.tokens < 1)
      return { limit: `${kind} plans from ${from}: ${REQUESTER_PLAN_BURST} at once, then one every ${interval(REQUESTER_PLAN_INTERVAL_MS)}`, retryAfterMs: Math.ceil((1 - requester.tokens) * REQUESTER_PLAN_INTERVAL_MS) };
    pair.tokens -= 1;
    requester.tokens -= 1;
    return undefined;
  }

  private bucket(key: string, burst: number, intervalMs: number, now: number): Bucket {
    let bucket = this.buckets.get(key);
    if (bucket) {
      bucket.tokens = Math.min(burst, bucket.tokens + (now - bucket.at) / intervalMs);
      bucket.at = now;
      return bucket;
    }
    if (this.buckets.size >= MAX_PLAN_BUCKETS) this.forget(now);
    bucket = { tokens: burst, at: now };
    this.buckets.set(key, bucket);
    return bucket;
  }

  /** Makes room: buckets that have refilled are as good as new; else the oldest goes. */
  private forget(now: number): void {
    const longestRefillMs = Math.max(PAIR_PLAN_BURST * PAIR_PLAN_INTERVAL_MS, REQUESTER_PLAN_BURST * REQUESTER_PLAN_INTERVAL_MS);
    for (const [key, bucket] of this.buckets) if (now - bucket.at >= longestRefillMs) this.buckets.delete(key);
    if (this.buckets.size >= MAX_PLAN_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
  }
}
