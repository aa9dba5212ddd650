import { randomBytes } from "node:crypto";
import { relayTicketKey, signTicket, type TicketFields } from "../crypto/index.ts";
import { ProtocolError, RELAY_TIERS, type RelayPlan, type RelayTier } from "../protocol/index.ts";
import { RELAY_TICKET_LIFETIME_MS } from "../relay/index.ts";
import type { NodeSession, Registry } from "./registry.ts";

/** Load fractions closer than this count as equal, so that RTT decides between them. */
const LOAD_BUCKET = 0.1;

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
}

interface Choice {
  name: string;
  tier: RelayTier;
  host: string | null;
  port: number;
  key: Uint8Array;
}

export const relayName = (node: NodeSession) => `${node.user}/${node.name}`;

/**
 * Picks a relay for two nodes of one user and signs a one-time ticket for each side: a private relay
 * of the same user first, then a super relay (of any user), then the server; never one of the two
 * endpoints. Within a tier the least loaded wins, then the one with the lowest RTT to the server (the
 * server sees no RTT between relays and endpoints; its own is the proxy).
 */
export class RelayBroker {
  constructor(private readonly init: RelayBrokerInit) {}

  plan(from: NodeSession, to: NodeSession, exclude: readonly string[] = []): { mine: RelayPlan; theirs: RelayPlan } {
    const choice = this.choose(from, to, exclude);
    const sessionId = randomBytes(16).toString("base64url");
    const expiresAt = Date.now() + RELAY_TICKET_LIFETIME_MS;
    const ticket = (side: "a" | "b"): string => {
      const fields: TicketFields = { relay: choice.name, session: sessionId, side, a: relayName(from), b: relayName(to), expiresAt };
      return signTicket(choice.key, fields);
    };
    const relay = (side: "a" | "b") => ({ name: choice.name, tier: choice.tier, host: choice.host, port: choice.port, ticket: ticket(side) });
    return {
      mine: { sessionId, role: "initiator", peer: { name: to.name, publicKey: to.publicKey, instance: to.instance }, relay: relay("a") },
      theirs: { sessionId, role: "responder", peer: { name: from.name, publicKey: from.publicKey, instance: from.instance }, relay: relay("b") },
    };
  }

  private choose(from: NodeSession, to: NodeSession, exclude: readonly string[]): Choice {
    const offered: { node: NodeSession; tier: RelayTier; load: number }[] = [];
    for (const node of this.init.registry.all()) {
      const offer = node.relay;
      if (!offer || node === from || node === to || exclude.includes(relayName(node))) continue;
      const tier: RelayTier | undefined = node.user === from.user ? "private" : offer.super ? "super" : undefined;
      if (!tier || !this.init.tokenOf(node.user)) continue;
      offered.push({ node, tier, load: Math.floor(offer.loadMbps / offer.bwMbps / LOAD_BUCKET) });
    }
    offered.sort(
      (x, y) => RELAY_TIERS.indexOf(x.tier) - RELAY_TIERS.indexOf(y.tier) || x.load - y.load || (x.node.rttMs ?? Infinity) - (y.node.rttMs ?? Infinity),
    );
    const best = offered[0];
    if (best)
      return { name: relayName(best.node), tier: best.tier, host: best.node.host, port: best.node.relay!.port, key: relayTicketKey(this.init.tokenOf(best.node.user)!, best.node.name) };
    const server = this.init.serverRelay;
    if (server && !exclude.includes("server")) return { name: "server", tier: "server", host: null, port: server.port, key: server.key };
    const skipped = exclude.length ? `, not counting ${exclude.join(", ")} (${exclude.length === 1 ? "it" : "they"} failed ${from.name} just now)` : "";
    throw new ProtocolError("NO_RELAY", `no relay is available for ${from.name} and ${to.name}${skipped}${server ? "" : ", and the server does not relay"}`);
  }
}
