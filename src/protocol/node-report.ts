import * as z from "zod";

// The link table a node reports to the server for the operator's console: its peer links and its
// apps, every NODE_REPORT_INTERVAL_MS and soon after a link or app changes. Byte counts are totals
// since the link was made; the server derives throughput from two reports.

/** How two peers are connected; the order is preference, best first (transport/path.ts). */
export const LINK_KINDS = ["lan", "udp-direct", "udp-punch", "tcp-direct", "tcp-punch", "relay-private", "relay-super", "relay-server"] as const;
export type LinkKind = (typeof LINK_KINDS)[number];
export const APP_STATES = ["starting", "listening", "disabled", "failed"] as const;

/** Links and apps one report may carry; more is refused. */
export const MAX_REPORTED_LINKS = 256;
export const MAX_REPORTED_APPS = 64;
/** Byte totals a report may carry: 2^53, far beyond any link's life. */
const byteCount = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const name = z.string().regex(/^[A-Za-z0-9._-]{1,63}$/, "a name of 1-63 letters, digits, '.', '_' or '-'");

export const reportedLink = z.strictObject({
  peer: name,
  kind: z.enum(LINK_KINDS),
  /** The relay ("user/node" or "server") of a relayed link. */
  relay: z.string().regex(/^(server|[A-Za-z0-9._-]{1,63}\/[A-Za-z0-9._-]{1,63})$/, '"user/node" or "server"').nullable(),
  rttMs: z.number().nonnegative().max(600_000).nullable(),
  bytesIn: byteCount,
  bytesOut: byteCount,
});
export type ReportedLink = z.infer<typeof reportedLink>;

export const reportedApp = z.strictObject({
  name,
  protocol: z.enum(["tcp", "udp"]),
  peer: name,
  state: z.enum(APP_STATES),
  connections: z.number().int().nonnegative().max(1_000_000),
});
export type ReportedApp = z.infer<typeof reportedApp>;

/** A node's link table (request type "links"); the server answers with an empty result. */
export const linksRequest = z.strictObject({
  type: z.literal("links"),
  id: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  links: z.array(reportedLink).max(MAX_REPORTED_LINKS),
  apps: z.array(reportedApp).max(MAX_REPORTED_APPS),
});
export type LinksRequest = z.infer<typeof linksRequest>;
