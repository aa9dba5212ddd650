import type { Identity } from "../crypto/index.ts";
import { isPredictable } from "../nat/index.ts";
import { RepeatedWarnings, type Logger } from "../log/index.ts";
import type { ClientMetrics } from "../metrics/index.ts";
import type { Candidates, ConnectPlan, NatInfo, PeerInfo, RelayPlan } from "../protocol/index.ts";
import { connectViaRelay, Connector, MAPPING_REFRESH_MS, PeerEndpoint, punchIsUncertain, WindowBudget, type Link } from "../transport/index.ts";
import { PEER_PLAN_WINDOW_MS, PEER_PLANS_PER_WINDOW, PEER_WARNING_WINDOW_MS } from "./constants.ts";
import { RequestError, type ServerSession } from "./session.ts";

/** A link to a peer the server reports offline (or that cannot tell its runs apart) must answer within this, or it closes. */
export const LINK_CHECK_TIMEOUT_MS = 2_000;
/** How long a first link request waits for this node's NAT detection (it finishes in about 2 s). */
const NAT_WAIT_MS = 3_000;
/**
 * A plan that takes longer than this means the server waits for a NAT detection (a peer that just
 * started): the NATs are unknown, so a relay starts meanwhile. (Without waiting, when the peer is
 * known to have logged in just now without a NAT type.)
 */
const PLAN_PROMPT_MS = 500;
/** Relays tried in turn for one link (each failure excludes that relay from the next request). */
const MAX_RELAYS_PER_ATTEMPT = 3;
/** Relays named as failed in one relay request, at most (the newest; the server takes up to 8). */
const MAX_RELAYS_EXCLUDED = 8;
/** A relayed link retries a direct path after this, doubling up to the maximum. */
const DIRECT_RETRY_FIRST_MS = 15_000;
const DIRECT_RETRY_MAX_MS = 300_000;
/** A relay that failed us is not asked for again for this long. */
const FAILED_RELAY_MEMORY_MS = 60_000;
/**
 * After the server's ACL denied a link to a peer, new requests for it fail at once with that denial
 * for this long (or until the next login: the server may have restarted with another ACL), so that
 * apps and retries do not ask the server again and again.
 */
export const ACL_DENIAL_MEMORY_MS = 30_000;
/** A relayed link replaced by a direct one is closed once its streams are done, or after this. */
const RETIRED_LINK_MAX_MS = 600_000;
const RETIRED_LINK_POLL_MS = 1_000;

/**
 * Links to one peer made within this long of each other raced: both sides asked at once. A link made
 * later than that replaces the one held: its peer asked anew, so it had lost the older one (its side
 * died, say in a NAT flush, while ours looked alive).
 */
export const LINK_RACE_WINDOW_MS = 1_000;

const isRelayed = (link: Pick<Link, "kind">) => link.kind.startsWith("relay-");

type LinkChoice = Pick<Link, "kind" | "since" | "sessionKey"> & { plannedAt?: number };

/**
 * Whether a node keeps the link it holds to a peer over a new one; both sides decide alike. A link to
 * an earlier run of the peer (`existingStale`) never stays; a direct link beats a relayed one; a link
 * made after the race window wins; links that raced are decided by the smaller session id. When both
 * come from server plans, "made" is the plan's time, which both sides share: each side's own clock
 * reading after its handshake can straddle the window on one side and not on the other (a busy node).
 */
export function keepsExistingLink(existing: LinkChoice, candidate: LinkChoice, existingStale: boolean): boolean {
  if (existingStale) return false;
  if (isRelayed(existing) !== isRelayed(candidate)) return isRelayed(candidate);
  const planned = existing.plannedAt !== undefined && candidate.plannedAt !== undefined;
  const [held, made] = planned ? [existing.plannedAt!, candidate.plannedAt!] : [existing.since, candidate.since];
  if (Math.abs(made - held) >= LINK_RACE_WINDOW_MS) return made < held;
  return existing.sessionKey < candidate.sessionKey;
}
/** Relayed links closed on purpose (a direct path took over, or the peer restarted): their relay did not fail. */
const retiredLinks = new WeakSet<Link>();
/** The run of the peer (PeerInfo.instance) each link was made with, when the server named one. */
const linkInstances = new WeakMap<Link, string>();
/** The run of the peer each link attempt was started for, when known. */
const attemptInstances = new WeakMap<Promise<Link>, string>();

/** Where a peer stands: linking, linked, with no direct path left (a relay is needed), or refused by the server's ACL. */
export type PeerLinkState = "connecting" | "linked" | "needs-relay" | "failed" | "denied";
export interface PeerLinkInfo {
  state: PeerLinkState;
  /** Request (or the peer's plan) to the first authenticated record, for the last link made. */
  punchMs?: number;
  error?: string;
}

export class PeerError extends Error {
  constructor(
    readonly code: "PEER_OFFLINE" | "PEER_RESTARTED" | "NO_PATH" | "NOT_CONNECTED" | "ACL_DENIED",
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
  /** Direct transports offered and tried (default both). */
  transports?: readonly ("udp" | "tcp")[];
  /** Whether links may go through relays (default true). */
  relays?: boolean;
  udpPort?: number;
  tcpPort?: number;
  /** Addresses reached through this node's SDWAN overlay (EndpointInit.tunnelled). */
  tunnelled?(ip: string): boolean;
  /** Counts link attempts, their times and refused plans; default: nothing counted. */
  metrics?: ClientMetrics;
  /** The peer's UDP endpoints found on this LAN (ConnectorInit.lanEndpoints). */
  lanEndpoints?(peer: string): readonly string[];
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
  /** Peers the server's ACL refused a link to lately: why, and until when that is remembered. */
  private readonly denials = new Map<string, { message: string; until: number }>();
  private natKnown: () => void = () => {};
  /** Resolves once NAT detection has reported: the server's plan uses both sides' NAT types. */
  private readonly natReady = new Promise<void>((resolve) => (this.natKnown = resolve));
  private refreshTimer?: ReturnType<typeof setInterval>;
  /** Peers with no direct path last time: the next link goes to a relay at once. */
  private readonly needsRelay = new Set<string>();
  /** Per peer: relays that failed a link to it, and until when they are avoided. */
  private readonly failedRelays = new Map<string, Map<string, number>>();
  private readonly directRetries = new Map<string, ReturnType<typeof setTimeout>>();
  private lastReported = "";
  private stopped = false;
  /** Plans peers made us run lately (see PEER_PLANS_PER_WINDOW). */
  private readonly planBudget = new WindowBudget(PEER_PLANS_PER_WINDOW, PEER_PLAN_WINDOW_MS);
  /** A peer that asks again and again (a flood, or a link that keeps failing) gets one warning per window, with a count. */
  private readonly warnings: RepeatedWarnings;

  constructor(private readonly init: PeerManagerInit) {
    this.warnings = new RepeatedWarnings(init.logger, PEER_WARNING_WINDOW_MS);
    this.endpoint = new PeerEndpoint({ logger: init.logger, host: init.bind, transports: init.transports, udpPort: init.udpPort, tcpPort: init.tcpPort, tunnelled: init.tunnelled });
    this.connector = new Connector({
      endpoint: this.endpoint,
      identity: init.identity,
      logger: init.logger,
      localTimeOf: (serverTime) => serverTime - init.session.clockOffsetMs,
      onProbingLimited: () => init.metrics?.limited("wide_probing"),
      lanEndpoints: init.lanEndpoints,
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
    for (const timer of this.directRetries.values()) clearTimeout(timer);
    for (const link of this.links.values()) link.close("stopping");
    this.endpoint.close();
  }

  /** Call when logged in (again): the server needs our candidates before anyone can reach us. */
  onLoggedIn(): void {
    this.lastReported = "";
    this.denials.clear();
    void this.refreshCandidates();
  }

  setNat(nat: NatInfo): void {
    this.endpoint.nat = nat;
    this.natKnown();
    // At once: a link request waiting for the NAT goes out next, and the server plans with what it has.
    void this.reportCandidates();
    if (isPredictable(nat)) void this.refreshPrediction().then(() => this.reportCandidates());
  }

  /**
   * The server says `peer` logged in (or was online when we logged in). A link to an earlier run of
   * it is dead: it closes now. Returns false when that cannot be told (the peer or the link predates
   * instance ids): such a link must answer a check instead.
   */
  peerOnline(peer: PeerInfo): boolean {
    if (!peer.instance) return false;
    const link = this.link(peer.name);
    if (!link) return true;
    const instance = linkInstances.get(link);
    if (!instance) return false;
    if (instance !== peer.instance) this.closeStale(peer.name, link);
    return true;
  }

  /**
   * The server says `peer` went offline: its link must answer at once (the peer may only have lost the
   * server), or it closes. A peer the admin revoked is no member any more: its link closes now.
   */
  peerOffline(peer: string, reason?: "revoked"): void {
    // The peer going away explains why a relayed link to it closed: its relay did not fail.
    this.failedRelays.delete(peer);
    if (reason === "revoked") this.link(peer)?.close("the server's admin revoked the peer");
    else void this.link(peer)?.check(LINK_CHECK_TIMEOUT_MS);
  }

  /** Closes every link: this node is no member any more (the admin revoked it, or approved another key for its name). */
  closeAll(reason: string): void {
    for (const link of this.links.values()) link.close(reason);
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
    // An attempt started for an earlier run of the peer may wait long for a side that never comes
    // (a relay holds the pair for 10 s): a restarted peer gets an attempt of its own.
    const pending = this.connecting.get(peer);
    const current = this.init.session.peers.get(peer)?.instance;
    const pendingFor = pending && attemptInstances.get(pending);
    if (pending && !(pendingFor && current && pendingFor !== current)) return pending;
    const denial = this.denial(peer);
    if (denial) throw new PeerError("ACL_DENIED", denial);
    const startedAt = Date.now();
    const attempt = (async () => {
      await Promise.race([this.natReady, new Promise((r) => setTimeout(r, NAT_WAIT_MS))]);
      if (this.init.session.state !== "online") throw new PeerError("NOT_CONNECTED", "not connected to the server");
      const direct = this.endpoint.offers("udp") || this.endpoint.offers("tcp");
      if (this.relays && !direct) return this.viaRelay(peer, startedAt);
      // No direct path last time: a relay at once. With none to be had, the direct path is all there
      // is: try it again (what failed may have been passing: a peer's probe, a restart, a busy box).
      if (this.relays && this.needsRelay.has(peer))
        return this.viaRelay(peer, startedAt).catch(async (err: Error) => {
          if (!(err instanceof PeerError && err.code === "NO_PATH")) throw err;
          return this.runPlan(await this.requestPlan(peer), startedAt);
        });
      if (!this.relays) return this.runPlan(await this.requestPlan(peer), startedAt);
      const planned = this.requestPlan(peer);
      // A peer that logged in just now without a NAT type is still detecting it: no plan soon. (Not
      // online as far as we know: it is logging in right now, or both requests fail at once.)
      const info = this.init.session.peers.get(peer);
      const detecting = !info || (!info.natType && this.init.session.serverNow() - info.onlineSince < NAT_WAIT_MS);
      const plan = detecting ? undefined : await Promise.race([planned, new Promise<undefined>((r) => setTimeout(r, PLAN_PROMPT_MS))]);
      if (!plan || punchIsUncertain(this.endpoint.nat, plan.peer.nat)) return this.relayBeside(peer, planned, startedAt);
      try {
        return await this.runPlan(plan, startedAt);
      } catch (err) {
        if ((err as { code?: string }).code !== "NO_PATH" || this.link(peer)) throw err;
        return this.viaRelay(peer, startedAt);
      }
    })().finally(() => this.connecting.get(peer) === attempt && this.connecting.delete(peer));
    if (current) attemptInstances.set(attempt, current);
    this.states.set(peer, { ...this.states.get(peer), state: "connecting" });
    this.connecting.set(peer, attempt);
    return attempt;
  }

  /** A plan the server pushed: the peer wants a link (we may be either role). */
  acceptPlan(plan: ConnectPlan): void {
    if (this.stopped || !this.withinBudget("connect", plan.peer.name)) return;
    const attempt = this.runPlan(plan, Date.now());
    if (plan.peer.instance) attemptInstances.set(attempt, plan.peer.instance);
    if (!this.connecting.has(plan.peer.name)) {
      this.connecting.set(plan.peer.name, attempt);
      void attempt.catch(() => {}).finally(() => this.connecting.get(plan.peer.name) === attempt && this.connecting.delete(plan.peer.name));
    }
    attempt.catch((err: Error) => this.warnings.warn(`failed:${plan.peer.name}`, `could not link with ${plan.peer.name}: ${err.message}`));
  }

  /** A relay plan the server pushed: the peer asked for a relayed link (we answer it). */
  acceptRelayPlan(plan: RelayPlan): void {
    const peer = plan.peer.name;
    if (this.stopped || !this.withinBudget("relay", peer)) return;
    if (!this.relays) return this.init.logger.warn(`${peer} asked for a link through a relay, but peer_paths leaves out "relay"`);
    const startedAt = Date.now();
    const attempt = connectViaRelay(plan, this.relayInit()).then((link) => this.adopt(peer, link, startedAt, plan.peer.instance));
    if (plan.peer.instance) attemptInstances.set(attempt, plan.peer.instance);
    if (!this.connecting.has(peer)) {
      this.connecting.set(peer, attempt);
      void attempt.catch(() => {}).finally(() => this.connecting.get(peer) === attempt && this.connecting.delete(peer));
    }
    attempt.catch((err: Error) => this.warnings.warn(`relay-failed:${peer}`, `could not link with ${peer} through a relay: ${err.message}`));
  }

  /** Whether one more plan of `peer`'s fits this window; says so (once per window, counted) when not. */
  private withinBudget(kind: "connect" | "relay", peer: string): boolean {
    if (this.planBudget.take(`${kind}:${peer}`)) return true;
    this.init.metrics?.limited("peer_plans");
    this.warnings.warn(
      `refused:${kind}:${peer}`,
      `refusing ${kind} plans from ${peer}: more than ${PEER_PLANS_PER_WINDOW} in ${PEER_PLAN_WINDOW_MS / 1000} s (is it flooding the server with link requests?)`,
    );
    return false;
  }

  info(peer: string): PeerLinkInfo | undefined {
    return this.states.get(peer);
  }

  /** Why the server's ACL denied a link to `peer`, while that denial is remembered. */
  denial(peer: string): string | undefined {
    const denial = this.denials.get(peer);
    if (denial && denial.until > Date.now()) return denial.message;
    this.denials.delete(peer);
    return undefined;
  }

  /** Remembers the server's ACL refusal of a link to `peer` (see ACL_DENIAL_MEMORY_MS); returns it as a PeerError. */
  private denied(peer: string, err: RequestError): PeerError {
    this.denials.set(peer, { message: err.message, until: Date.now() + ACL_DENIAL_MEMORY_MS });
    this.states.set(peer, { state: "denied", error: err.message });
    return new PeerError("ACL_DENIED", err.message);
  }

  private get relays(): boolean {
    return this.init.relays ?? true;
  }

  private relayInit() {
    return { identity: this.init.identity, logger: this.init.logger, serverHost: this.init.stunHost };
  }

  private async requestPlan(peer: string): Promise<ConnectPlan> {
    // Behind a sequential symmetric NAT the peer predicts our next port: give it a fresh base.
    if (isPredictable(this.endpoint.nat)) await this.refreshPrediction().then(() => this.reportCandidates());
    try {
      return await this.init.session.request("connect", { peer });
    } catch (err) {
      if (err instanceof RequestError && err.code === "ACL_DENIED") throw this.denied(peer, err);
      const code = (err as { code?: string }).code === "PEER_OFFLINE" ? "PEER_OFFLINE" : "NO_PATH";
      this.states.set(peer, { state: "failed", error: (err as Error).message });
      throw new PeerError(code, (err as Error).message);
    }
  }

  /** `upgrade`: a background try for a direct path beside a relayed link (failure changes nothing). */
  private async runPlan(plan: ConnectPlan, startedAt: number, options: { upgrade?: boolean } = {}): Promise<Link> {
    const peer = plan.peer.name;
    let link: Link;
    try {
      link = await this.connector.run(plan);
    } catch (err) {
      const noPath = (err as { code?: string }).code === "NO_PATH";
      this.init.metrics?.punch(this.endpoint.nat?.natType, plan.peer.nat?.natType, noPath ? "no_path" : "failed");
      const current = this.link(peer);
      // No direct path this time: the next link goes to a relay at once (direct is retried beside it).
      if (noPath && !(current && !isRelayed(current))) this.needsRelay.add(peer);
      if (current || options.upgrade) throw err; // a parallel attempt won meanwhile, or a relayed link stays
      const bothSymmetric = plan.peer.nat?.natType === "symmetric" && this.endpoint.nat?.natType === "symmetric";
      const state: PeerLinkState = noPath ? "needs-relay" : "failed";
      this.states.set(peer, { state, error: (err as Error).message });
      if (state === "needs-relay") {
        this.warnings.warn(`no-path:${peer}`, `no direct path to ${peer}${bothSymmetric ? " (both sides are behind symmetric NATs)" : ""}: it needs a relay`, { ms: Date.now() - startedAt });
      }
      throw err;
    }
    this.needsRelay.delete(peer);
    this.init.metrics?.punch(this.endpoint.nat?.natType, plan.peer.nat?.natType, "linked", link.kind);
    return this.adopt(peer, link, startedAt, plan.peer.instance);
  }

  /**
   * A punch that may fail or take seconds: a relayed link at once, the punch beside it. The first link
   * up serves; a direct one that confirms later takes over in adopt (datagrams and new streams move at
   * once, streams already on the relay finish there).
   */
  private async relayBeside(peer: string, plan: Promise<ConnectPlan>, startedAt: number): Promise<Link> {
    this.init.logger.debug("the punch is uncertain: linking through a relay beside it", { peer });
    const relayed = this.viaRelay(peer, startedAt, { beside: true });
    const direct = plan.then((p) => this.runPlan(p, startedAt));
    direct.catch((err: Error) => this.init.logger.debug("no direct path beside the relay (yet)", { peer, error: err.message }));
    try {
      return await Promise.any([relayed, direct]);
    } catch {
      const [relayError, directError] = await Promise.all([relayed.catch((e: Error) => e), direct.catch((e: Error) => e)]);
      // The peer is gone (or we are), or the ACL denies it: say that. Otherwise the relay's error says both failed.
      if (directError instanceof PeerError && directError.code !== "NO_PATH") throw directError;
      if (relayError instanceof PeerError && relayError.code === "ACL_DENIED") throw relayError;
      this.states.set(peer, { state: "needs-relay", error: (relayError as Error).message });
      throw relayError;
    }
  }

  /**
   * Links through a relay, trying the next one the server offers when one fails. `beside`: a punch
   * runs beside it, and tells the state itself.
   */
  private async viaRelay(peer: string, startedAt: number, options: { beside?: boolean } = {}): Promise<Link> {
    const now = Date.now();
    const failed = this.failedRelays.get(peer) ?? new Map<string, number>();
    for (const [name, until] of failed) if (until <= now) failed.delete(name);
    this.failedRelays.set(peer, failed);
    const errors: string[] = [];
    for (let i = 0; i < MAX_RELAYS_PER_ATTEMPT; i++) {
      let plan: RelayPlan;
      try {
        plan = await this.init.session.request("relay", { peer, exclude: [...failed.keys()].slice(-MAX_RELAYS_EXCLUDED) });
      } catch (err) {
        if (err instanceof RequestError && err.code === "ACL_DENIED") throw this.denied(peer, err);
        // Offline: no relay and no punch until it is back (a punch planned as it returns would outlast that).
        if (err instanceof RequestError && err.code === "PEER_OFFLINE") {
          this.states.set(peer, { state: "failed", error: err.message });
          throw new PeerError("PEER_OFFLINE", err.message);
        }
        // Every relay left failed us lately: one of those may work again, which beats having none.
        if (err instanceof RequestError && err.code === "NO_RELAY" && failed.size > 0) {
          this.init.logger.debug("no relay left but ones that failed lately; trying those again", { peer, failed: [...failed.keys()].join(",") });
          failed.clear();
          continue;
        }
        errors.push((err as Error).message);
        break;
      }
      try {
        const link = await connectViaRelay(plan, this.relayInit());
        this.scheduleDirectRetry(peer, DIRECT_RETRY_FIRST_MS);
        return this.adopt(peer, link, startedAt, plan.peer.instance);
      } catch (err) {
        if (this.link(peer)) return this.link(peer)!; // the peer's own attempt got there first
        errors.push((err as Error).message);
        failed.set(plan.relay.name, Date.now() + FAILED_RELAY_MEMORY_MS);
      }
    }
    const message = `no direct path to ${peer}, and no relay worked: ${errors.join("; ")}`;
    if (!options.beside) this.states.set(peer, { state: "needs-relay", error: message });
    throw new PeerError("NO_PATH", message);
  }

  /** While the link to `peer` is relayed, try a direct one now and then; the first that works takes over. */
  private scheduleDirectRetry(peer: string, delayMs: number): void {
    if (this.directRetries.has(peer) || !(this.endpoint.offers("udp") || this.endpoint.offers("tcp"))) return;
    const timer = setTimeout(async () => {
      this.directRetries.delete(peer);
      const link = this.link(peer);
      if (this.stopped || !link || !isRelayed(link) || !this.init.session.peers.has(peer)) return;
      try {
        await this.runPlan(await this.requestPlan(peer), Date.now(), { upgrade: true });
        this.init.logger.info(`moved the link to ${peer} from a relay to a direct path`);
      } catch (err) {
        this.init.logger.debug("still no direct path; staying on the relay", { peer, error: (err as Error).message });
        this.scheduleDirectRetry(peer, Math.min(delayMs * 2, DIRECT_RETRY_MAX_MS));
      }
    }, delayMs);
    this.directRetries.set(peer, timer);
  }

  /**
   * Makes `link` the link to `peer` (or keeps the one it races with), telling the listeners.
   * `instance`: the run of the peer the plan named; a link to an earlier run never wins.
   */
  private adopt(peer: string, link: Link, startedAt: number, instance: string | undefined): Link {
    const current = this.init.session.peers.get(peer)?.instance;
    if (instance && current && instance !== current) {
      link.close("made with an earlier run of the peer");
      throw new PeerError("PEER_RESTARTED", `${peer} restarted while the link was being made`);
    }
    if (instance) linkInstances.set(link, instance);
    this.denials.delete(peer); // the peer linked to us, or the ACL changed
    const punchMs = Date.now() - startedAt;
    this.init.metrics?.linked(link.kind, punchMs);
    this.states.set(peer, { state: "linked", punchMs });
    this.init.logger.info("peer linked", { peer, path: link.kind, ...(link.via ? { relay: link.via } : {}), ms: punchMs });
    const existing = this.link(peer);
    if (existing && existing !== link) {
      const existingInstance = linkInstances.get(existing);
      const existingStale = !!current && !!existingInstance && existingInstance !== current;
      const keepExisting = keepsExistingLink(existing, link, existingStale);
      if (keepExisting) {
        if (isRelayed(link) && !isRelayed(existing)) {
          // Made beside a punch that confirmed first: the peer may open streams on it before it sees
          // the direct link too. Serve those, then let it go.
          for (const listener of this.linkListeners) listener(peer, link);
          this.retire(link);
        } else link.close("a parallel link to the same peer won");
        return existing;
      }
      if (existingStale) this.closeStale(peer, existing);
      else if (isRelayed(existing) && !isRelayed(link)) this.retire(existing);
      else existing.close("replaced by a parallel link");
    }
    this.links.set(peer, link);
    link.onClose(() => {
      if (this.links.get(peer) !== link) return; // replaced meanwhile: not a failure of its relay
      this.links.delete(peer);
      // A relayed link that closed while its peer stayed online (the same run): its relay failed.
      const stillThere = this.init.session.peers.get(peer);
      if (link.via && !retiredLinks.has(link) && stillThere && stillThere.instance === linkInstances.get(link)) {
        const failed = this.failedRelays.get(peer) ?? new Map<string, number>();
        failed.delete(link.via); // re-inserted last: the newest failures are the ones sent
        failed.set(link.via, Date.now() + FAILED_RELAY_MEMORY_MS);
        this.failedRelays.set(peer, failed);
      }
    });
    for (const listener of this.linkListeners) listener(peer, link);
    return link;
  }

  /** A link to an earlier run of the peer: dead, closed now (its relay, if any, did not fail). */
  private closeStale(peer: string, link: Link): void {
    retiredLinks.add(link);
    this.failedRelays.delete(peer);
    link.close("the peer restarted");
  }

  /** A relayed link a direct one replaced: new streams go direct; this one closes when its streams are done. */
  private retire(link: Link): void {
    retiredLinks.add(link);
    const until = Date.now() + RETIRED_LINK_MAX_MS;
    const timer = setInterval(() => {
      if (link.closed) return clearInterval(timer);
      if (link.mux.stats.streamsOpen > 0 && Date.now() < until) return;
      clearInterval(timer);
      link.close("moved to a direct path");
    }, RETIRED_LINK_POLL_MS);
  }

  private async refreshCandidates(): Promise<void> {
    if (this.stopped) return;
    try {
      // The UDP mapping is reported as soon as it is known: peers waiting to plan a link need it, not the
      // TCP probe (behind a predictable NAT the report waits for the prediction base, which plans need).
      await Promise.all([
        this.endpoint.refreshMapping(this.init.stunHost, this.init.stunPort).then(() => (isPredictable(this.endpoint.nat) ? undefined : this.reportCandidates())),
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
