import { describe, expect, test } from "vitest";
import { autoUpgradeDelayMs } from "../../src/client/auto-upgrade.ts";
import { parseServerMessage } from "../../src/protocol/index.ts";

describe("auto_upgrade's delay", () => {
  test("each node's delay lies within the window, is the same on every run, and a fleet spreads over the window", () => {
    const windowS = 3600;
    const delays = Array.from({ length: 200 }, (_, i) => autoUpgradeDelayMs(`node-${i}`, "1.2.0", windowS));
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(windowS * 1000);
    }
    expect(autoUpgradeDelayMs("node-7", "1.2.0", windowS)).toBe(delays[7]);
    // Each tenth of the window holds some of the 200 nodes (a hash, not one shared moment).
    const tenths = new Set(delays.map((d) => Math.floor(d / (windowS * 100))));
    expect(tenths.size).toBe(10);
    expect(autoUpgradeDelayMs("node-7", "1.3.0", windowS)).not.toBe(delays[7]);
    expect(autoUpgradeDelayMs("node-7", "1.2.0", 0)).toBe(0);
  });
});

describe("release and upgrade pushes", () => {
  test("carry a version, checked like every server message", () => {
    expect(parseServerMessage(JSON.stringify({ type: "release", version: "1.2.0" }))).toEqual({ type: "release", version: "1.2.0" });
    expect(parseServerMessage(JSON.stringify({ type: "upgrade" }))).toEqual({ type: "upgrade" });
    expect(() => parseServerMessage(JSON.stringify({ type: "release", version: "1.2.0; rm -rf /" }))).toThrow('a malformed "release" message from the server: version');
    expect(() => parseServerMessage(JSON.stringify({ type: "upgrade", version: 12 }))).toThrow('a malformed "upgrade" message');
  });
});
