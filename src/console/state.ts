import type { ReportedApp } from "../protocol/index.ts";
import type { AuditEntry, AuditLog } from "../server/audit.ts";
import { listNodes, type NodeListing } from "../server/node-list.ts";
import type { Fleet } from "../server/fleet.ts";
import type { NodeStore } from "../server/nodes.ts";
import type { PairingRequest } from "../server/pairing.ts";
import type { Registry } from "../server/registry.ts";
import type { TrustedRelays } from "../server/relay-trust.ts";
import { relayListings, type RelayListing } from "../server/rest-relays.ts";

/** Audit entries the console shows, newest first. */
export const CONSOLE_AUDIT_ENTRIES = 50;

/** What the console needs of the server: the same internals the admin REST API reads. */
export interface ConsoleSources {
  registry: Registry;
  nodes: NodeStore;
  audit: AuditLog;
  trustedRelays: TrustedRelays;
  hub: { pendingRequests(): readonly PairingRequest[] };
  /** The newest release known, to mark nodes behind it. */
  fleet?: Pick<Fleet, "behind" | "latest">;
}

/** One link between two nodes of a user, as one of them reported it. */
export interface TopologyLink {
  user: string;
  a: string;
  b: string;
  kind: string;
  relay: string | null;
  rttMs: number | null;
  /** Both directions together, from the reporting node's byte totals; null on its first report. */
  bitsPerS: number | null;
}

export interface ConsoleState {
  nodes: NodeListing[];
  links: TopologyLink[];
  relays: RelayListing[];
  pairing: { user: string; node: string; address: string; since: string; newKey: boolean; waiting: boolean }[];
  sdwan: { user: string; name: string; ip: string; routes: string[] }[];
  apps: (ReportedApp & { user: string; node: string })[];
  audit: AuditEntry[];
  /** What the latest link tables cost: how many nodes sent one, and their mean size in bytes. */
  reports: { nodes: number; meanBytes: number };
}

export function consoleState(sources: ConsoleSources): ConsoleState {
  const pending = sources.hub.pendingRequests();
  const { online, offline, pending: waiting } = listNodes(sources.registry, sources.nodes, pending, sources.fleet);
  const links = new Map<string, TopologyLink>();
  const apps: ConsoleState["apps"] = [];
  let reportBytes = 0;
  let reporting = 0;
  for (const node of online) {
    const report = node.report;
    if (!report) continue;
    reporting++;
    reportBytes += report.bytes;
    for (const link of report.links) {
      // Both ends report a link: one line per pair.
      const key = JSON.stringify([node.user, ...[node.name, link.peer].sort()]);
      if (links.has(key)) continue;
      const bitsPerS = link.inBitsPerS === null || link.outBitsPerS === null ? null : link.inBitsPerS + link.outBitsPerS;
      links.set(key, { user: node.user, a: node.name, b: link.peer, kind: link.kind, relay: link.relay, rttMs: link.rttMs, bitsPerS });
    }
    for (const app of report.apps) apps.push({ ...app, user: node.user, node: node.name });
  }
  return {
    nodes: [...online, ...waiting, ...offline],
    links: [...links.values()],
    relays: relayListings(sources.registry, sources.trustedRelays),
    pairing: pending.map((r) => ({ user: r.user, node: r.node, address: r.address, since: new Date(r.since).toISOString(), newKey: r.replacesKey !== undefined, waiting: r.waiting !== undefined })),
    sdwan: sources.registry
      .all()
      .flatMap((s) => (s.sdwan ? [{ user: s.user, name: s.name, ip: s.sdwan.ip, routes: s.sdwan.routes }] : []))
      .sort((x, y) => x.ip.localeCompare(y.ip, undefined, { numeric: true })),
    apps,
    audit: sources.audit.list().slice(-CONSOLE_AUDIT_ENTRIES).reverse(),
    reports: { nodes: reporting, meanBytes: reporting ? Math.round(reportBytes / reporting) : 0 },
  };
}
