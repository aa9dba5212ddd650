import type { Logger } from "../log/index.ts";
import { MAX_REPORTED_APPS, MAX_REPORTED_LINKS, type RequestFields } from "../protocol/index.ts";
import type { Link } from "../transport/index.ts";
import type { AppStatus } from "./apps.ts";
import { RequestError, type ServerSession } from "./session.ts";

/** How often a node sends the server its link table (for the operator's console). */
export const LINK_REPORT_INTERVAL_MS = 5_000;
/** After a link or app changes, the report goes this soon; changes within it go together. */
export const LINK_REPORT_COALESCE_MS = 500;

/** The link table as the server wants it: each link's peer, kind, relay, RTT and byte totals; each app's state. */
export function linksReport(links: readonly [string, Link][], apps: readonly AppStatus[]): RequestFields<"links"> {
  return {
    links: links.slice(0, MAX_REPORTED_LINKS).map(([peer, link]) => {
      const stats = link.stats();
      return { peer, kind: stats.kind, relay: stats.via, rttMs: stats.rttMs === null ? null : Math.round(stats.rttMs * 10) / 10, bytesIn: stats.bytesIn, bytesOut: stats.bytesOut };
    }),
    apps: apps.slice(0, MAX_REPORTED_APPS).map((app) => ({ name: app.name, protocol: app.protocol, peer: app.peer, state: app.state, connections: app.connections })),
  };
}

/**
 * Sends the link table every LINK_REPORT_INTERVAL_MS while logged in (not while pending approval), and
 * LINK_REPORT_COALESCE_MS after a change.
 */
export class LinkReporter {
  private readonly timer: ReturnType<typeof setInterval>;
  private soon?: ReturnType<typeof setTimeout>;
  /** An older server does not know the request (and counts unknown ones against the connection): stop until the next login. */
  private unsupported = false;

  constructor(
    private readonly session: ServerSession,
    private readonly build: () => RequestFields<"links">,
    private readonly logger: Logger,
  ) {
    this.timer = setInterval(() => this.send(), LINK_REPORT_INTERVAL_MS);
  }

  /** The node logged in (perhaps to an upgraded server): report soon. */
  loggedIn(): void {
    this.unsupported = false;
    this.changed();
  }

  /** A link or app changed: report soon. */
  changed(): void {
    this.soon ??= setTimeout(() => {
      this.soon = undefined;
      this.send();
    }, LINK_REPORT_COALESCE_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    clearTimeout(this.soon);
  }

  private send(): void {
    if (this.session.state !== "online" || this.unsupported) return;
    this.session.request("links", this.build()).catch((err: Error) => {
      if (err instanceof RequestError && err.code === "UNKNOWN_TYPE") this.unsupported = true;
      this.logger.debug("could not report the link table", { error: err.message });
    });
  }
}
