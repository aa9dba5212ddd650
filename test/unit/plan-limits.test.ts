import { describe, expect, it } from "vitest";
import { WindowBudget } from "../../src/transport/budget.ts";
import { PAIR_PLAN_BURST, PAIR_PLAN_INTERVAL_MS, REQUESTER_PLAN_BURST, REQUESTER_PLAN_INTERVAL_MS } from "../../src/server/constants.ts";
import { PlanLimits } from "../../src/server/plan-limits.ts";

describe("the server's plan limits", () => {
  it("a pair gets its burst, then one plan per interval, and is told how long to wait", () => {
    let now = 1_000_000;
    const limits = new PlanLimits(() => now);
    for (let i = 0; i < PAIR_PLAN_BURST; i++) expect(limits.take("connect", "u", "a", "b")).toBeUndefined();
    expect(limits.take("connect", "u", "a", "b")).toEqual({ limit: `connect plans from a to b: ${PAIR_PLAN_BURST} at once, then one every ${PAIR_PLAN_INTERVAL_MS / 1000} s`, retryAfterMs: PAIR_PLAN_INTERVAL_MS });
    now += PAIR_PLAN_INTERVAL_MS / 2;
    expect(limits.take("connect", "u", "a", "b")?.retryAfterMs).toBe(PAIR_PLAN_INTERVAL_MS / 2);
    now += PAIR_PLAN_INTERVAL_MS / 2;
    expect(limits.take("connect", "u", "a", "b")).toBeUndefined();
    expect(limits.take("connect", "u", "a", "b")).toBeDefined();
    // Other pairs, kinds and users have shares of their own.
    expect(limits.take("connect", "u", "a", "c")).toBeUndefined();
    expect(limits.take("connect", "u", "b", "a")).toBeUndefined();
    expect(limits.take("relay", "u", "a", "b")).toBeUndefined();
    expect(limits.take("connect", "v", "a", "b")).toBeUndefined();
  });

  it("a requester gets its burst over all its peers, then one plan per interval; a refused plan takes nothing", () => {
    let now = 1_000_000;
    const limits = new PlanLimits(() => now);
    for (let i = 0; i < REQUESTER_PLAN_BURST; i++) expect(limits.take("relay", "u", "a", `peer-${i}`)).toBeUndefined();
    const refused = limits.take("relay", "u", "a", "one-more");
    expect(refused?.limit).toBe(`relay plans from a: ${REQUESTER_PLAN_BURST} at once, then one every ${REQUESTER_PLAN_INTERVAL_MS / 1000} s`);
    now += REQUESTER_PLAN_INTERVAL_MS;
    expect(limits.take("relay", "u", "a", "one-more")).toBeUndefined();
    expect(limits.take("relay", "u", "a", "one-more")).toBeDefined();
  });
});

describe("a node's budget of plans per peer", () => {
  it("takes so many per window and key, then refuses until the next window", () => {
    let now = 0;
    const budget = new WindowBudget(3, 10_000, () => now);
    expect([1, 2, 3, 4].map(() => budget.take("connect:m"))).toEqual([true, true, true, false]);
    expect(budget.take("connect:other")).toBe(true);
    now = 9_999;
    expect(budget.take("connect:m")).toBe(false);
    now = 10_000;
    expect([1, 2, 3, 4].map(() => budget.take("connect:m"))).toEqual([true, true, true, false]);
  });
});
