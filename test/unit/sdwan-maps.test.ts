import { describe, expect, it } from "vitest";
import { SdwanMaps } from "../../src/client/sdwan-maps.ts";
import type { SdwanDelta, SdwanMap } from "../../src/protocol/index.ts";

const map = (version: number, names: string[]): SdwanMap => ({
  version,
  subnet: "10.9.0.0/24",
  self: { name: "me", ip: "10.9.0.1" },
  nodes: names.map((name, i) => ({ name, ip: `10.9.0.${i + 2}`, routes: [] })),
});
const joined = (from: number, name: string, ip: string, routes: string[] = []): SdwanDelta => ({ from, version: from + 1, nodes: [{ name, ip, routes }], gone: [] });
const left = (from: number, name: string): SdwanDelta => ({ from, version: from + 1, nodes: [], gone: [name] });
const members = (m: SdwanMap | "gap" | undefined) => (m && m !== "gap" ? m.nodes.map((n) => `${n.name}=${n.ip}${n.routes.length ? ` via ${n.routes.join(",")}` : ""}`) : m);

describe("SdwanMaps: the virtual network's map built from deltas", () => {
  it("applies deltas in version order on top of the last full map", () => {
    const maps = new SdwanMaps();
    expect(members(maps.full(map(4, ["a", "b"])))).toEqual(["a=10.9.0.2", "b=10.9.0.3"]);
    expect(members(maps.delta(joined(4, "c", "10.9.0.4")))).toEqual(["a=10.9.0.2", "b=10.9.0.3", "c=10.9.0.4"]);
    expect(members(maps.delta(left(5, "a")))).toEqual(["b=10.9.0.3", "c=10.9.0.4"]);
    const routed = maps.delta(joined(6, "b", "10.9.0.3", ["192.168.1.0/24"]));
    expect(members(routed)).toEqual(["b=10.9.0.3 via 192.168.1.0/24", "c=10.9.0.4"]);
    expect(routed !== "gap" && routed?.version).toBe(7);
  });

  it("ignores a delta or a map not newer than the one held, and says when a delta does not follow on", () => {
    const maps = new SdwanMaps();
    expect(maps.delta(joined(0, "early", "10.9.0.9"))).toBeUndefined(); // no map yet: the join's answer brings it
    maps.full(map(4, ["a"]));
    expect(maps.delta(joined(3, "old", "10.9.0.8"))).toBeUndefined();
    expect(maps.full(map(4, ["other"]))).toBeUndefined();
    expect(maps.delta(joined(5, "skipped-one", "10.9.0.7"))).toBe("gap");
    // The whole map again (the node joins anew) puts it back in step.
    expect(members(maps.full(map(6, ["a", "skipped-one"])))).toEqual(["a=10.9.0.2", "skipped-one=10.9.0.3"]);
    expect(members(maps.delta(left(6, "a")))).toEqual(["skipped-one=10.9.0.3"]);
  });

  it("starts over after a new login, whatever the new server's versions", () => {
    const maps = new SdwanMaps();
    maps.full(map(40, ["a"]));
    maps.reset();
    expect(members(maps.full(map(1, ["b"])))).toEqual(["b=10.9.0.2"]);
  });
});
