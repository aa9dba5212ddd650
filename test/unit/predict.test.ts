import { describe, expect, it } from "vitest";
import type { ConnectPlan, NatInfo } from "../../src/protocol/index.ts";
import { needsBirthday, punchIsUncertain } from "../../src/transport/connect.ts";
import { needsPrediction, peerPrediction, predictedPorts, PREDICT_LOCKSTEP_PORTS, type Prediction } from "../../src/transport/predict.ts";

const nat = (natType: NatInfo["natType"], allocation?: NatInfo["allocation"], filtering: NatInfo["filtering"] = "address-and-port-dependent"): NatInfo => ({
  natType,
  mapping: natType === "symmetric" ? "address-and-port-dependent" : "endpoint-independent",
  filtering,
  publicAddress: "198.51.100.21:30004",
  portPreserved: false,
  tcp: true,
  ...(allocation ? { allocation } : {}),
});
const peer = (info: NatInfo, udpPredict?: { base: number; delta: number }): ConnectPlan["peer"] => ({
  name: "hard",
  publicKey: "x",
  nat: info,
  candidates: { udpLan: [], tcpLan: [], udpPublic: "198.51.100.21:30004", tcpPublic: null, ...(udpPredict ? { udpPredict } : {}) },
});

describe("port prediction", () => {
  it("predicts only a symmetric NAT that allocates sequentially, from its fresh base, else its mapping toward the server", () => {
    expect(peerPrediction(peer(nat("symmetric", { kind: "sequential", delta: 2 }), { base: 30010, delta: 2 }))).toEqual({ ip: "198.51.100.21", base: 30010, delta: 2 });
    expect(peerPrediction(peer(nat("symmetric", { kind: "sequential", delta: 1 })))).toEqual({ ip: "198.51.100.21", base: 30004, delta: 1 });
    expect(peerPrediction(peer(nat("symmetric", { kind: "random" })))).toBeUndefined();
    expect(peerPrediction(peer(nat("symmetric")))).toBeUndefined(); // a node older than allocation learning
    expect(peerPrediction(peer(nat("port-restricted-cone", { kind: "preserving" })))).toBeUndefined();
  });

  it("probes only when our NAT lets in exact addresses only", () => {
    expect(needsPrediction(nat("port-restricted-cone", { kind: "preserving" }))).toBe(true);
    expect(needsPrediction(nat("symmetric", { kind: "sequential", delta: 1 }))).toBe(true);
    expect(needsPrediction(nat("restricted-cone", { kind: "preserving" }, "address-dependent"))).toBe(false);
    expect(needsPrediction(nat("public", undefined, "endpoint-independent"))).toBe(false);
    expect(needsPrediction(undefined)).toBe(false);
  });

  it("lists the window in order, dense or odd, within the port range", () => {
    expect(predictedPorts({ ip: "x", base: 30000, delta: 1 }, "dense", 4)).toEqual([30001, 30002, 30003, 30004]);
    expect(predictedPorts({ ip: "x", base: 30000, delta: 2 }, "odd", 3)).toEqual([30002, 30006, 30010]);
    expect(predictedPorts({ ip: "x", base: 65534, delta: 1 }, "dense", 3)).toEqual([65535]);
    expect(predictedPorts({ ip: "x", base: 3, delta: -1 }, "dense", 4)).toEqual([2, 1]);
  });

  // Two sequential symmetric NATs, each having made `drift` other mappings since publishing its base:
  // does some poke of the initiator (dense) cross some poke of the responder (odd) on the same pair of
  // public addresses? The k-th poke of a side leaves from its (drift + k)-th next port.
  const lockstepMeets = (a: Prediction, driftA: number, b: Prediction, driftB: number) => {
    const aTargets = predictedPorts(b, "dense", PREDICT_LOCKSTEP_PORTS);
    const bTargets = predictedPorts(a, "odd", PREDICT_LOCKSTEP_PORTS);
    const aFrom = (k: number) => a.base + a.delta * (driftA + k + 1);
    const bFrom = (j: number) => b.base + b.delta * (driftB + j + 1);
    return aTargets.some((to, k) => bTargets.some((back, j) => to === bFrom(j) && back === aFrom(k)));
  };

  it("lockstep: both sides' pokes meet while the two together drifted by less than a window", () => {
    const a = { ip: "198.51.100.21", base: 30010, delta: 1 };
    const b = { ip: "198.51.100.22", base: 41000, delta: 2 };
    for (let driftA = 0; driftA <= 30; driftA++) for (let driftB = 0; driftB <= 16; driftB++) expect(lockstepMeets(a, driftA, b, driftB), `drift ${driftA} + ${driftB}`).toBe(true);
    expect(lockstepMeets(a, 40, b, 30)).toBe(false); // too far: a relay's job
  });
});

describe("the birthday technique", () => {
  const random = { kind: "random" } as const;
  it("runs for a random symmetric NAT facing a port-restricted cone, and for nothing else", () => {
    expect(needsBirthday(nat("symmetric", random), nat("port-restricted-cone"))).toBe(true);
    expect(needsBirthday(nat("symmetric", { kind: "sequential", delta: 1 }), nat("port-restricted-cone")), "predictable ports: prediction instead").toBe(false);
    expect(needsBirthday(nat("symmetric", random), nat("full-cone", undefined, "endpoint-independent"))).toBe(false);
    // Two symmetric NATs: the spraying side maps every probe anew, so no probe can ever match.
    expect(needsBirthday(nat("symmetric", random), nat("symmetric", random))).toBe(false);
  });
});

describe("an uncertain punch (a relay starts beside it)", () => {
  const random = { kind: "random" } as const;
  it("is uncertain for unknown or UDP-blocked NATs, and a symmetric NAT facing a port-restricted or symmetric one; certain otherwise", () => {
    const uncertain: [NatInfo | null, NatInfo | null][] = [
      [null, nat("public")],
      [nat("full-cone"), null],
      [nat("udp-blocked"), nat("public")],
      [nat("symmetric", random), nat("port-restricted-cone")], // the birthday technique
      [nat("port-restricted-cone"), nat("symmetric", { kind: "sequential", delta: 1 })], // port prediction
      [nat("symmetric", random), nat("symmetric", random)],
    ];
    const certain: [NatInfo, NatInfo][] = [
      [nat("public"), nat("symmetric", random)],
      [nat("full-cone"), nat("symmetric", random)],
      [nat("restricted-cone"), nat("symmetric", random)],
      [nat("port-restricted-cone"), nat("port-restricted-cone")],
      [nat("full-cone"), nat("port-restricted-cone")],
    ];
    for (const [a, b] of uncertain) for (const [x, y] of [[a, b], [b, a]]) expect(punchIsUncertain(x, y), `${x?.natType} <-> ${y?.natType}`).toBe(true);
    for (const [a, b] of certain) for (const [x, y] of [[a, b], [b, a]]) expect(punchIsUncertain(x, y), `${x.natType} <-> ${y.natType}`).toBe(false);
  });
});
