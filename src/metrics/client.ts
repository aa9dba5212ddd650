import { Counter, Gauge, Histogram } from "prom-client";
import { CLIENT_RATE_LIMITS, PUNCH_SECONDS_BUCKETS, UNKNOWN_NAT, type ClientRateLimit } from "./constants.ts";
import { ProgramMetrics, type RelayCounts } from "./registry.ts";

/** The parts of a node's status its gauges are read from (the status API's own view). */
export interface ClientMetricsView {
  server: { state: string };
  peers: Record<string, { link: string | null; rttMs: number | null; bytesIn: number; bytesOut: number }>;
  apps: readonly { name: string; peer: string; state: string; connections: number; totalConnections: number }[];
}

export interface ClientMetricsInit {
  /** Every link kind: each has a links series, zero included. */
  linkKinds: readonly string[];
  /** The node's status now, read at each scrape. */
  view(): ClientMetricsView;
  /** This node's relay's counts, while it runs one (--relay, --super). */
  relay?(): RelayCounts | undefined;
}

export type PunchOutcome = "linked" | "no_path" | "failed";

/**
 * inp2pc's metrics. Per-peer series exist only for peers with a link (bounded by the peer table),
 * per-app ones for the configured apps.
 */
export class ClientMetrics extends ProgramMetrics {
  private readonly punches: Counter<"own_nat" | "peer_nat" | "path" | "outcome">;
  private readonly punchSeconds: Histogram<"path">;
  private readonly rateLimited: Counter<"limit">;
  /** The status the gauges of one scrape share, read once per scrape. */
  private view?: ClientMetricsView;

  constructor(private readonly init: ClientMetricsInit) {
    super();
    const registers = [this.registry];
    const current = () => (this.view ??= init.view());
    new Gauge({
      name: "inp2p_server_online",
      help: "1 while this node is logged in to the server, else 0.",
      registers,
      collect() {
        this.set(current().server.state === "online" ? 1 : 0);
      },
    });
    new Gauge({
      name: "inp2p_links",
      help: "Links to peers now, by path kind.",
      labelNames: ["kind"],
      registers,
      collect() {
        const counts = new Map(init.linkKinds.map((kind) => [kind, 0]));
        for (const peer of Object.values(current().peers)) if (peer.link) counts.set(peer.link, (counts.get(peer.link) ?? 0) + 1);
        this.reset();
        for (const [kind, count] of counts) this.set({ kind }, count);
      },
    });
    const perPeer = (read: (peer: ClientMetricsView["peers"][string]) => number | null) =>
      function (this: Gauge<"peer"> | Counter<"peer">) {
        this.reset();
        for (const [name, peer] of Object.entries(current().peers)) {
          const value = peer.link ? read(peer) : null;
          if (value === null) continue;
          if (this instanceof Gauge) this.set({ peer: name }, value);
          else this.inc({ peer: name }, value);
        }
      };
    new Gauge({ name: "inp2p_peer_rtt_seconds", help: "Round-trip time over the link to each peer.", labelNames: ["peer"], registers, collect: perPeer((p) => (p.rttMs === null ? null : p.rttMs / 1000)) });
    new Counter({ name: "inp2p_peer_received_bytes_total", help: "Bytes received over the current link to each peer.", labelNames: ["peer"], registers, collect: perPeer((p) => p.bytesIn) });
    new Counter({ name: "inp2p_peer_sent_bytes_total", help: "Bytes sent over the current link to each peer.", labelNames: ["peer"], registers, collect: perPeer((p) => p.bytesOut) });
    const perApp = (read: (app: ClientMetricsView["apps"][number], linked: boolean) => number) =>
      function (this: Gauge<"app"> | Counter<"app">) {
        const { apps, peers } = current();
        this.reset();
        for (const app of apps) {
          const value = read(app, !!peers[app.peer]?.link);
          if (this instanceof Gauge) this.set({ app: app.name }, value);
          else this.inc({ app: app.name }, value);
        }
      };
    new Gauge({
      name: "inp2p_tunnel_up",
      help: "1 while the app listens and the link to its peer is up, else 0.",
      labelNames: ["app"],
      registers,
      collect: perApp((app, linked) => (app.state === "listening" && linked ? 1 : 0)),
    });
    new Gauge({ name: "inp2p_app_connections", help: "Connections (TCP) or flows (UDP) open through each app now.", labelNames: ["app"], registers, collect: perApp((app) => app.connections) });
    new Counter({ name: "inp2p_app_connections_total", help: "Connections (TCP) or flows (UDP) through each app since the start.", labelNames: ["app"], registers, collect: perApp((app) => app.totalConnections) });
    this.punches = new Counter({
      name: "inp2p_punch_attempts_total",
      help: "Direct link attempts (LAN, UDP and TCP, punched or not), by this node's and the peer's NAT type, the path made and the outcome.",
      labelNames: ["own_nat", "peer_nat", "path", "outcome"],
      registers,
    });
    this.punchSeconds = new Histogram({
      name: "inp2p_punch_duration_seconds",
      help: "From the link request to the first authenticated packet, by the path made (relays included).",
      labelNames: ["path"],
      buckets: PUNCH_SECONDS_BUCKETS,
      registers,
    });
    this.rateLimited = this.counterOver("inp2p_rate_limited_total", "Requests refused by a limit, by limit.", "limit", CLIENT_RATE_LIMITS);
    if (init.relay) this.registerRelay(init.relay);
  }

  protected override scrapeStarted(): void {
    this.view = this.init.view();
  }

  /** A direct attempt ended: `path` is the link's kind when linked, "none" otherwise. */
  punch(ownNat: string | undefined, peerNat: string | undefined, outcome: PunchOutcome, path = "none"): void {
    this.punches.inc({ own_nat: ownNat ?? UNKNOWN_NAT, peer_nat: peerNat ?? UNKNOWN_NAT, path, outcome });
  }

  /** A link was made over `path`, `ms` after it was asked for. */
  linked(path: string, ms: number): void {
    this.punchSeconds.observe({ path }, ms / 1000);
  }

  limited(limit: ClientRateLimit): void {
    this.rateLimited.inc({ limit });
  }
}
