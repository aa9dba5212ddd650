import { describe, expect, it } from "vitest";
import { classifyAllocation, formatAllocation, formatNatReport, type MappingObservation, type NatReport } from "../../src/nat/index.ts";

/** Observations from one local port (a main socket's mappings), then from fresh sockets. */
const seen = (mapped: number[], local: number[] = mapped.map(() => 40000)): MappingObservation[] => mapped.map((mappedPort, i) => ({ localPort: local[i]!, mappedPort }));

describe("classifyAllocation", () => {
  it.each([
    ["+1 each time", [30000, 30001, 30002, 30003, 30004], { kind: "sequential", delta: 1 }],
    ["+2 each time", [5000, 5002, 5004, 5006], { kind: "sequential", delta: 2 }],
    ["-1 each time (counting down)", [61000, 60999, 60998, 60997], { kind: "sequential", delta: -1 }],
    ["+1 with one allocation taken by another flow", [30000, 30002, 30003, 30004, 30005], { kind: "sequential", delta: 1 }],
    ["+2 with a skip of one allocation", [7000, 7004, 7006, 7008], { kind: "sequential", delta: 2 }],
    ["two steps only, both +1", [20000, 20001, 20002], { kind: "sequential", delta: 1 }],
    ["random ports", [41234, 1822, 60211, 33007, 9120], { kind: "random" }],
    ["a repeated small step among random ones", [30000, 30001, 30002, 51000, 12000], { kind: "random" }],
    ["a constant step too large to be a counter", [10000, 10100, 10200, 10300], { kind: "random" }],
    ["steps of mixed sign", [30000, 30001, 30000, 30001], { kind: "random" }],
    ["a step skipping too many allocations", [30000, 30001, 30002, 30010], { kind: "random" }],
    ["one step alone", [30000, 30001], { kind: "unknown" }],
    ["nothing", [], { kind: "unknown" }],
  ] as const)("%s: %j", (_, mapped, expected) => {
    expect(classifyAllocation(seen([...mapped]))).toEqual(expected);
  });

  it("public port equal to the local port every time is preserving", () => {
    expect(classifyAllocation(seen([40000, 51111, 52222], [40000, 51111, 52222]))).toEqual({ kind: "preserving" });
    expect(classifyAllocation(seen([40000, 51111], [40000, 51111]))).toEqual({ kind: "preserving" });
  });

  it("a NAT that preserves only sometimes is not preserving", () => {
    expect(classifyAllocation(seen([40000, 1234, 52222, 8000], [40000, 51111, 52222, 53333]))).toEqual({ kind: "random" });
  });
});

describe("allocation in the report", () => {
  it("formats each kind, the delta with its sign", () => {
    expect(formatAllocation({ kind: "sequential", delta: 1 })).toBe("sequential (delta +1)");
    expect(formatAllocation({ kind: "sequential", delta: -2 })).toBe("sequential (delta -2)");
    expect(formatAllocation({ kind: "random" })).toBe("random");
    expect(formatAllocation(undefined)).toBe("unknown");
  });

  it("shows in the table inp2pc nat prints", () => {
    const report: NatReport = {
      natType: "symmetric",
      mapping: "address-and-port-dependent",
      filtering: "address-and-port-dependent",
      publicAddress: "198.51.100.20:30004",
      portPreserved: false,
      tcp: true,
      allocation: { kind: "sequential", delta: 1 },
      localAddress: "192.168.10.2:40000",
      hairpinning: false,
      tcpPublicAddress: "198.51.100.20:30000",
      durationMs: 1200,
      notes: [],
    };
    expect(formatNatReport(report)).toMatch(/^port allocation +sequential \(delta \+1\)$/m);
  });
});
