import { randomBytes } from "node:crypto";
import { relayTicketKey, signTicket, type TicketFields } from "../crypto/index.ts";
import { silentLogger, type Logger } from "../log/index.ts";
import { ProtocolError, type RelayPlan, type RelayTier } from "../protocol/index.ts";
import { RELAY_TICKET_LIFETIME_MS } from "../relay/index.ts";
import type { NodeSession, Registry } from "./registry.ts";

/** Load fractions closer than this count as equal, so that RTT decides between them. */
const LOAD_BUCKET = 0.1;
/** Unapproved super relays told how to approve them, at most (each once per run). */
const MAX_APPROVAL_HINTS = 10_000;

/** Tiers in the order the broker tries them: by default the server's own relay before another user's. */
const TIER_ORDER: readonly RelayTier[] = ["private", "server", "super"];
/** With `prefer_super_relays`: approved super relays before the server's own. */
const TIER_ORDER_SUPER_FIRST: readonly RelayTier[] = ["private", "super", "server"];

export interface ServerRelay {
  port: number;
  key: Uint8Array;
}

export interface RelayBrokerInit {
  registry: Registry;
  /** The token of a user (relay keys derive from it). */
  tokenOf(user: string): string | undefined;
  /** The server's own relay, when it runs one. */
  serverRelay?: ServerRelay;
  /** Whether the admin approved the super relay "user/node" to serve users other than its own. */
  trusted(relay: string): boolean;
  /**
   * Approved super relays of other users before the server's own relay.
   * @default false
   */
  preferSuperRelays?: boolean;
  logger?: Logger;
}

interface Choice {
  name: string;
  tier: RelayTier;
  host: string | null;
  port: number;
  key: Uint8Array;
}

interface Candidate {
  choice: Choice;
  rank: number;
  load: number;
  rttMs: number;
}

export const relayName = (node: NodeSession) => `${node.user}/${node.name}`;

/**
 * Picks a relay for two nodes of one user and signs a one-time ticket for each side: a private relay
 * of the same user first, then the server's own relay, then a super relay of another user that the
 * admin approved (`preferSuperRelays` swaps the last two); never one of the two endpoints, never an
 * unapproved relay of another user. Within a tier the least loaded wins, then the one with the lowest
 * RTT to the server (the server sees no RTT between relays and endpoints; its own is the proxy).
 * Tickets carry an opaque session id: the relay, possibly another user's node, learns no node names.
 */
export class RelayBroker {
  private readonly hinted = new Set<string>();

  constructor(private readonly init: RelayBrokerInit) {}

  /** A reloaded config's prefer_super_relays: the next relay choice follows it. */
  setPreferSuperRelays(prefer: boolean): void {
    this.init.preferSuperRelays = prefer;
  }

  plan(from: NodeSession, to: NodeSession, exclude: readonly string[] = []): { mine: RelayPlan; theirs: RelayPlan } {
    const choice = this.choose(from, to, exclude);
    const sessionId = randomBytes(16).toString("base64url");
    const expiresAt = Date.now() + RELAY_TICKET_LIFETIME_MS;
    const ticket = (side: "a" | "b"): string => {
      const fields: TicketFields = { relay: choice.name, session: sessionId, side, tier: choice.tier, expiresAt };
      return signTicket(choice.key, fields);
    };
    const relay = (side: "a" | "b") => ({ name: choice.name, tier: choice.tier, host: choice.host, port: choice.port, ticket: ticket(side) });
    return {
      mine: { sessionId, role: "initiator", peer: { name: to.name, publicKey: to.publicKey, instance: to.instance }, relay: relay("a") },
      theirs: { sessionId, role: "responder", peer: { name: from.name, publicKey: from.publicKey, instance: from.instance }, relay: relay("b") },
    };
  }

  /** Call when a node offers to relay: an unapproved super relay gets one log line (per run) saying how to approve it. */
  noticeOffer(node: NodeSession): void {
    const name = relayName(node);
    if (!node.relay?.super || this.init.trusted(name) || this.hinted.has(name)) return;
    if (this.hinted.size >= MAX_APPROVAL_HINTS) this.hinted.clear();
    this.hinted.add(name);
    (this.init.logger ?? silentLogger).warn(
      `super relay ${name} serves only user ${node.user}'s nodes until the admin approves it for other users: ` +
        `run "inp2ps relays approve ${name}", or add "${name}" to trusted_relays in [server]`,
    );
  }

  private choose(from: NodeSession, to: NodeSession, exclude: readonly string[]): Choice {
    const order = this.init.preferSuperRelays ? TIER_ORDER_SUPER_FIRST : TIER_ORDER;
    const candidates: Candidate[] = [];
    for (const node of this.init.registry.all()) {
      const offer = node.relay;
      const name = relayName(node);
      if (!offer || node === from || node === to || exclude.includes(name)) continue;
      const tier: RelayTier | undefined = node.user === from.user ? "private" : offer.super && this.init.trusted(name) ? "super" : undefined;
      const token = this.init.tokenOf(node.user);
      if (!tier || !token) continue;
      candidates.push({
        choice: { name, tier, host: node.host, port: offer.port, key: relayTicketKey(token, node.name) },
        rank: order.indexOf(tier),
        load: Math.floor(offer.loadMbps / offer.bwMbps / LOAD_BUCKET),
        rttMs: node.rttMs ?? Infinity,
      });
    }
    const server = this.init.serverRelay;
    if (server && !exclude.includes("server"))
      candidates.push({ choice: { name: "server", tier: "server", host: null, port: server.port, key: server.key }, rank: order.indexOf("server"), load: 0, rttMs: 0 });
    candidates.sort((x, y) => x.rank - y.rank || x.load - y.load || x.rttMs - y.rttMs);
    const best = candidates[0];
    if (best) return best.choice;
    const skipped = exclude.length ? `, not counting ${exclude.join(", ")} (${exclude.length === 1 ? "it" : "they"} failed ${from.name} just now)` : "";
    throw new ProtocolError("NO_RELAY", `no relay is available for ${from.name} and ${to.name}${skipped}${server ? "" : ", and the server does not relay"}`);
  }
}
