import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger, RepeatedWarnings } from "../../src/log/index.ts";

describe("RepeatedWarnings", () => {
  afterEach(() => vi.useRealTimers());

  it("says each kind once a window, then how many it held back; other kinds are not held back", () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(1_000_000);
    const lines: string[] = [];
    const warnings = new RepeatedWarnings(createLogger({ write: (line) => lines.push(line) }), 10_000);
    for (let i = 0; i < 5; i++) warnings.warn("peer away", "cannot reach peer ghost");
    warnings.warn("stranger", "refused a connection from 192.0.2.1");
    vi.setSystemTime(1_010_000);
    warnings.warn("peer away", "cannot reach peer ghost");
    expect(lines.map((line) => line.replace(/^\S+ /, ""))).toEqual([
      "WARN  cannot reach peer ghost",
      "WARN  refused a connection from 192.0.2.1",
      "WARN  cannot reach peer ghost repeatsHeldBack=4",
    ]);
  });

  it("tracks a bounded number of kinds, so a stranger cannot make it grow", () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(1_000_000);
    const lines: string[] = [];
    const warnings = new RepeatedWarnings(createLogger({ write: (line) => lines.push(line) }), 10_000, 4);
    for (let i = 0; i < 100; i++) warnings.warn(`stranger ${i}`, `refused ${i}`);
    expect((warnings as unknown as { windows: Map<string, unknown> }).windows.size).toBeLessThanOrEqual(4);
    expect(lines).toHaveLength(100); // untracked kinds still speak: nothing is lost, only not held back
  });
});
