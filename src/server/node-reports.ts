import type { LinksRequest, ReportedApp, ReportedLink } from "../protocol/index.ts";

/** A reported link with the throughput the server derived from the node's previous report (null on a link's first). */
export interface LinkView extends ReportedLink {
  inBitsPerS: number | null;
  outBitsPerS: number | null;
}

/** A node's latest link table as the server keeps it (on the node's session: it goes when the node goes offline). */
export interface NodeReport {
  at: number;
  /** The report's size on the wire, for the console's cost figures. */
  bytes: number;
  links: LinkView[];
  apps: ReportedApp[];
}

/** Bits per second between two byte totals; null when the link is new or was made anew (the total went down). */
function rate(before: number | undefined, after: number, seconds: number): number | null {
  if (before === undefined || after < before || seconds <= 0) return null;
  return Math.round(((after - before) * 8) / seconds);
}

/** The node's new report: `request`'s links and apps, with throughput derived from `previous`. */
export function nodeReport(previous: NodeReport | undefined, request: LinksRequest, now = Date.now()): NodeReport {
  const seconds = previous ? (now - previous.at) / 1000 : 0;
  const links = request.links.map((link): LinkView => {
    const before = previous?.links.find((old) => old.peer === link.peer && old.kind === link.kind);
    return { ...link, inBitsPerS: rate(before?.bytesIn, link.bytesIn, seconds), outBitsPerS: rate(before?.bytesOut, link.bytesOut, seconds) };
  });
  return { at: now, bytes: Buffer.byteLength(JSON.stringify(request)), links, apps: request.apps };
}
