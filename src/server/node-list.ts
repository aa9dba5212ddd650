import type { NatAllocation } from "../protocol/index.ts";
import type { NodeReport } from "./node-reports.ts";
import type { NodeStore } from "./nodes.ts";
import type { PairingRequest } from "./pairing.ts";
import type { Registry } from "./registry.ts";
import type { Fleet } from "./fleet.ts";

/** A node as `GET /api/v1/nodes`, `inp2ps nodes` and the console show it; an offline one as it was when last seen. */
export interface NodeListing {
  name: string;
  user: string;
  /** online; offline (known, approved); revoked (known, refused); pending (waits for the admin's approval). */
  state: "online" | "offline" | "revoked" | "pending";
  /** Where it connects from (online, pending) or last did (offline); null when never seen. */
  address: string | null;
  natType: string | null;
  /** How its NAT allocates public ports ("sequential +1", "random", ...); null when not reported. */
  allocation: string | null;
  publicAddress: string | null;
  version: string | null;
  /** The newest release the server knows, when this node runs an older one; else null. */
  behind: string | null;
  tags: string[];
  onlineSince: string | null;
  lastHeartbeat: string | null;
  /** When it was last online: now for online nodes; null for a node never seen since last-seen times were kept. */
  lastSeen: string | null;
  /** Its latest link table (online nodes that sent one). */
  report: NodeReport | null;
}

export function allocationText(allocation: NatAllocation | undefined): string | null {
  if (!allocation) return null;
  return allocation.kind === "sequential" && allocation.delta !== undefined ? `sequential ${allocation.delta > 0 ? "+" : ""}${allocation.delta}` : allocation.kind;
}

/** The nodes online (as the REST answer always listed them), the known ones offline, and the pending ones. */
export function listNodes(
  registry: Registry,
  nodes: NodeStore,
  pending: readonly PairingRequest[],
  fleet?: Pick<Fleet, "behind" | "latest">,
): { online: NodeListing[]; offline: NodeListing[]; pending: NodeListing[] } {
  const now = new Date().toISOString();
  const behind = (version: string | null) => (fleet?.behind(version) ? fleet.latest : null);
  const online = registry
    .all()
    .sort((a, b) => a.user.localeCompare(b.user) || a.name.localeCompare(b.name))
    .map((s): NodeListing => ({
      name: s.name,
      user: s.user,
      state: "online",
      address: s.address,
      natType: s.nat?.natType ?? null,
      allocation: allocationText(s.nat?.allocation),
      publicAddress: s.nat?.publicAddress ?? null,
      version: s.version,
      behind: behind(s.version),
      tags: nodes.tagsOf(s.user, s.name),
      onlineSince: new Date(s.onlineSince).toISOString(),
      lastHeartbeat: new Date(s.lastHeartbeat).toISOString(),
      lastSeen: now,
      report: s.report ?? null,
    }));
  const offline = nodes
    .list()
    .filter(({ user, name }) => !registry.get(user, name))
    .map(({ user, name, record }): NodeListing => ({
      name,
      user,
      state: record.state === "revoked" ? "revoked" : "offline",
      address: record.lastAddress ?? null,
      natType: record.lastNat?.natType ?? null,
      allocation: record.lastNat?.allocation ?? null,
      publicAddress: null,
      version: record.lastVersion ?? null,
      behind: behind(record.lastVersion ?? null),
      tags: record.tags,
      onlineSince: null,
      lastHeartbeat: null,
      lastSeen: record.lastSeen ?? null,
      report: null,
    }));
  const waiting = pending.map((r): NodeListing => ({
    name: r.node,
    user: r.user,
    state: "pending",
    address: r.address,
    natType: r.login.nat?.natType ?? null,
    allocation: allocationText(r.login.nat?.allocation),
    publicAddress: r.login.nat?.publicAddress ?? null,
    version: r.login.version,
    behind: behind(r.login.version),
    tags: nodes.tagsOf(r.user, r.node),
    onlineSince: null,
    lastHeartbeat: null,
    lastSeen: null,
    report: null,
  }));
  return { online, offline, pending: waiting };
}

/** `inp2ps nodes`' table: the heading, then a row per node; an empty cell is "-". */
export function nodeTable(nodes: readonly NodeListing[]): string[][] {
  const rows = nodes.map((n) => [
    n.name,
    n.user,
    n.state,
    n.address,
    n.natType,
    n.allocation,
    n.version && n.behind ? `${n.version} (behind ${n.behind})` : n.version,
    n.tags.join(","),
    n.onlineSince,
    n.state === "online" ? "now" : n.state === "pending" ? null : (n.lastSeen ?? "never"),
  ]);
  return [["NAME", "USER", "STATE", "ADDRESS", "NAT", "ALLOCATION", "VERSION", "TAGS", "ONLINE SINCE", "LAST SEEN"], ...rows.map((row) => row.map((cell) => cell || "-"))];
}
