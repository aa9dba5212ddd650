// The event-loop lag inp2ps admits logins by: timers that run late show up, and fade once the loop keeps up.
import { afterEach, describe, expect, it } from "vitest";
import { LOOP_LAG_SAMPLE_INTERVAL_MS, LoopLag } from "../../src/server/loop-lag.ts";
import { waitFor } from "../helpers/processes.ts";

describe("LoopLag", () => {
  let lag: LoopLag | undefined;
  afterEach(() => lag?.stop());

  it("sees the loop blocked, then fades once it keeps up again", async () => {
    lag = new LoopLag();
    await waitFor("a first quiet reading", () => lag!.ms < 100, 10_000);
    const blockedUntil = performance.now() + 400;
    while (performance.now() < blockedUntil); // a slow turn of the loop: no timer runs meanwhile
    // A timer due after LoopLag's sampling one, which fell due during the block: it runs once that sample is taken.
    await new Promise((resolve) => setTimeout(resolve, 1));
    expect(lag.ms).toBeGreaterThanOrEqual(400 - LOOP_LAG_SAMPLE_INTERVAL_MS - 10);
    await waitFor("the lag to fade", () => lag!.ms < 100, 10_000);
  });
});
