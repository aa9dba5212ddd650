import { describe, expect, it } from "vitest";
import { signTestP } from "../../scripts/bench/lab-measure.ts";

// The benches' two-sided sign test (ab.ts against a baseline, sdwan.ts against wireguard-go), checked
// against the binomial distribution's values for fair coin tosses.
describe("signTestP", () => {
  it("gives the two-sided binomial tail for a split of paired rounds", () => {
    expect(signTestP(12, 12)).toBeCloseTo(2 / 4096, 10);
    expect(signTestP(0, 12)).toBeCloseTo(2 / 4096, 10);
    expect(signTestP(4, 12)).toBeCloseTo((2 * (1 + 12 + 66 + 220 + 495)) / 4096, 10); // 0.388
    expect(signTestP(10, 12)).toBeCloseTo((2 * (1 + 12 + 66)) / 4096, 10); // 0.039
  });

  it("is 1 for an even split, never above", () => {
    expect(signTestP(6, 12)).toBe(1);
    expect(signTestP(3, 7)).toBe(1);
  });
});
