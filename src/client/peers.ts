import type { Identity } from "../crypto/index.ts";
import { isPredictable } from "../nat/index.ts";
import type { Logger } from "../log/index.ts";
import type { Candidates, ConnectPlan, NatInfo } from "../protocol/index.ts";
import { Connector, MAPPING_REFRESH_MS, PeerEndpoint, type Link } from "../transport/index.ts";
import type { ServerSession } from "./session.ts";

/** A peer that logged in again must answer on its old link within this, or the link is rebuilt. */
export const LINK_CHECK_TIMEOUT_MS = 2_000;
/** How long a first link request waits for this node's NAT detection (it finishes in about 2 s). */
const NAT_WAIT_MS = 3_000;

/** Where a peer stands: linking, linked, or with no direct path left (a relay is needed). */
export type PeerLinkState = "connecting" | "linked" | "needs-relay" | "failed";
export interface PeerLinkInfo {
  state: PeerLinkState;
  /** Request (or the peer's plan) to the first authenticated record, for the last link made. */
  punchMs?: number;
  error?: string;
}

export class PeerError extends Error {
  constructor(
    readonly code: "PEER_OFFLINE" | "NO_PATH" | "NOT_CONNECTED",
    message: string,
  ) {
    super(message);
  }
}

export interface PeerManagerInit {
  session: ServerSession;
  identity: Identity;
  logger: Logger;
  stunHost: string;
  stunPort: number;
  stunTcpPort: number;
  bind?: string;
  transports?: readonly ("udp" | "tcp")[];
  udpPort?: number;
  tcpPort?: number;
}

/**
 * One link per peer: set up through the server's coordination when something needs it (or when the
 * peer asks), replaced when it dies. Publishes this node's candidates to the server as they change.
 */
export class PeerManager {
  readonly endpoint: PeerEndpoint;
  private readonly connector: Connector;
  private readonly links = new Map<string, Link>();
  private readonly connecting = new Map<string, Promise<Link>>();
  private readonly linkListeners: ((peer: string, link: Link) => void)[] = [];
  private readonly states = new Map<string, PeerLinkInfo>();
  private natKnown: () => void = () => {};
  /** Resolves once NAT detection has reported: the server's plan uses both sides' NAT types. */
  private readonly natReady = new Promise<void>((resolve) => (this.natKnown = resolve));
  private refreshTimer?: ReturnType<typeof setInterval>;
  private lastReported = "";
  private stopped = false;

  constructor(private readonly init: PeerManagerInit) {
    this.endpoint = new PeerEndpoint({ logger: init.logger, host: init.bind, transports: init.transports, udpPort: init.udpPort, tcpPort: init.tcpPort });
    this.connector = new Connector({
      endpoint: this.endpoint,
      identity: init.identity,
      logger: init.logger,
      localTimeOf: (serverTime) => serverTime - init.session.clockOffsetMs,
    });
  }

  async start(): Promise<void> {
    await this.endpoint.start();
    this.init.logger.debug("peer sockets ready", { udp: this.endpoint.udpPort, tcp: this.endpoint.tcpPort });
    void this.refreshCandidates();
    this.refreshTimer = setInterval(() => void this.refreshCandidates(), MAPPING_REFRESH_MS);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.refreshTimer);
    for (const link of this.links.values()) link.close("stopping");
    this.endpoint.close();
  }

  /** Call when logged in (again): the server needs our candidates before anyone can reach us. */
  onLoggedIn(): void {
    this.lastReported = "";
    void this.refreshCandidates();
  }

  setNat(nat: NatInfo): void {
    this.endpoint.nat = nat;
    this.natKnown();
    // At once: a link request waiting for the NAT goes out next, and the server plans with what it has.
    void this.reportCandidates();
    if (isPredictable(nat)) void this.refreshPrediction().then(() => this.reportCandidates());
  }

  onLink(listener: (peer: string, link: Link) => void): void {
    this.linkListeners.push(listener);
  }

  link(peer: string): Link | undefined {
    const link = this.links.get(peer);
    return link && !link.closed ? link : undefined;
  }

  allLinks(): [string, Link][] {
    return [...this.links].filter(([, link]) => !link.closed);
  }

  /**
   * The link to `peer`, connecting through the server's coordination when there is none. With
   * `verify`, an existing link must answer a ping first (the peer may have restarted behind it).
   */
  async connect(peer: string, options: { verify?: boolean } = {}): Promise<Link> {
    const existing = this.link(peer);
    if (existing && (!options.verify || (await existing.check(LINK_CHECK_TIMEOUT_MS)))) return existing;
    const pending = this.connecting.get(peer);
    if (pending) return pending;
    const startedAt = Date.now();
    const attempt = (async () => {
      await Promise.race([this.natReady, new Promise((r) => setTimeout(r, NAT_WAIT_MS))]);
      if (this.init.session.state !== "online") throw new PeerError("NOT_CONNECTED", "not connected to the server");
      // Behind a sequential symmetric NAT the peer predicts our next port: give it a fresh base.
      if (isPredictable(this.endpoint.nat)) await this.refreshPrediction().then(() => this.reportCandidates());
      let plan: ConnectPlan;
      try {
        plan = await this.init.session.request<ConnectPlan>("connect", { peer });
      } catch (err) {
        const code = (err as { code?: string }).code === "PEER_OFFLINE" ? "PEER_OFFLINE" : "NO_PATH";
        this.states.set(peer, { state: "failed", error: (err as Error).message });
        throw new PeerError(code, (err as Error).message);
      }
      return this.runPlan(plan, startedAt);
    })().finally(() => this.connecting.delete(peer));
    this.states.set(peer, { ...this.states.get(peer), state: "connecting" });
    this.connecting.set(peer, attempt);
    return attempt;
  }

  /** A plan the server pushed: the peer wants a link (we may be either role). */
  acceptPlan(plan: ConnectPlan): void {
    if (this.stopped) return;
    const attempt = this.runPlan(plan, Date.now());
    if (!this.connecting.has(plan.peer.name)) {
      this.connecting.set(plan.peer.name, attempt);
      void attempt.catch(() => {}).finally(() => this.connecting.get(plan.peer.name) === attempt && this.connecting.delete(plan.peer.name));
    }
    attempt.catch((err: Error) => this.init.logger.warn(`could not link with ${plan.peer.name}: ${err.message}`));
  }

  info(peer: string): PeerLinkInfo | undefined {
    return this.states.get(peer);
  }

  private async runPlan(plan: ConnectPlan, startedAt: number): Promise<Link> {
    const peer = plan.peer.name;
    let link: Link;
    try {
      link = await this.connector.run(plan);
    } catch (err) {
      if (this.link(peer)) throw err; // a parallel attempt won meanwhile
      const bothSymmetric = plan.peer.nat?.natType === "symmetric" && this.endpoint.nat?.natType === "symmetric";
      const state: PeerLinkState = (err as { code?: string }).code === "NO_PATH" ? "needs-relay" : "failed";
      this.states.set(peer, { state, error: (err as Error).message });
      if (state === "needs-relay")
        this.init.logger.warn(`no direct path to ${peer}${bothSymmetric ? " (both sides are behind symmetric NATs)" : ""}: it needs a relay`, { ms: Date.now() - startedAt });
      throw err;
    }
    const punchMs = Date.now() - startedAt;
    this.states.set(peer, { state: "linked", punchMs });
    this.init.logger.info("peer linked", { peer, path: link.kind, ms: punchMs });
    const existing = this.link(peer);
    // Both sides may have asked at once; both keep the link with the smaller session id.
    if (existing && existing !== link) {
      if (existing.sessionKey < link.sessionKey) {
        link.close("a parallel link to the same peer won");
        return existing;
      }
      existing.close("replaced by a parallel link");
    }
    this.links.set(peer, link);
    link.onClose(() => this.links.get(peer) === link && this.links.delete(peer));
    for (const listener of this.linkListeners) listener(peer, link);
    return link;
  }

  private async refreshCandidates(): Promise<void> {
    if (this.stopped) return;
    try {
      await Promise.all([
        this.endpoint.refreshMapping(this.init.stunHost, this.init.stunPort),
        this.endpoint.offers("tcp") ? this.endpoint.refreshTcpMapping(this.init.stunHost, this.init.stunTcpPort) : undefined,
      ]);
    } catch (err) {
      this.init.logger.debug("cannot learn the peer socket's public mapping", { error: (err as Error).message });
    }
    await this.refreshPrediction();
    await this.reportCandidates();
  }

  /** Where this NAT's allocation counter stands now, when peers can predict it (else nothing). */
  private async refreshPrediction(): Promise<void> {
    try {
      await this.endpoint.refreshPrediction(this.init.stunHost, this.init.stunPort);
    } catch (err) {
      this.init.logger.debug("cannot learn where the NAT's port allocation stands", { error: (err as Error).message });
    }
  }

  private async reportCandidates(): Promise<void> {
    if (this.stopped || this.init.session.state !== "online") return;
    const candidates: Candidates = this.endpoint.candidates();
    const text = JSON.stringify(candidates);
    if (text === this.lastReported) return;
    try {
      await this.init.session.request("report", { candidates });
      this.lastReported = text;
    } catch (err) {
      this.init.logger.debug("could not report candidates", { error: (err as Error).message });
    }
  }
}
