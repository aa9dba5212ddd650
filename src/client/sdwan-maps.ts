import type { SdwanDelta, SdwanMap } from "../protocol/index.ts";

/**
 * The virtual network's map as the server's deltas build it: the last full map (a join's answer, an
 * ACL refresh), then each delta applied to the version it follows on from, in order. Gives the map to
 * hand to the overlay (which applies maps newer than its own only), nothing for one not newer, or
 * "gap" when a delta does not follow on from the map held: then the node needs a full map again.
 */
export class SdwanMaps {
  private map?: SdwanMap;

  full(map: SdwanMap): SdwanMap | undefined {
    if (this.map && map.version <= this.map.version) return undefined;
    this.map = map;
    return map;
  }

  delta(delta: SdwanDelta): SdwanMap | "gap" | undefined {
    // None held yet: the join's answer (sent before any later delta) brings the map.
    if (!this.map || delta.version <= this.map.version) return undefined;
    if (delta.from !== this.map.version) return "gap";
    const nodes = new Map(this.map.nodes.map((node) => [node.name, node]));
    for (const name of delta.gone) nodes.delete(name);
    for (const node of delta.nodes) if (node.name !== this.map.self.name) nodes.set(node.name, node);
    this.map = { ...this.map, version: delta.version, nodes: [...nodes.values()] };
    return this.map;
  }

  /** A new login: the server (perhaps restarted) numbers its maps anew. */
  reset(): void {
    this.map = undefined;
  }
}
