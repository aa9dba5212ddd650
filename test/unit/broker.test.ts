// The relay broker: which relay a link gets (tiers, the admin's approval of other users' super relays,
// the preference key), what its tickets reveal, and refusals that say what is true.
import { describe, expect, it } from "vitest";
import { generateIdentity, relayTicketKey, verifyTicket } from "../../src/crypto/index.ts";
import { createLogger } from "../../src/log/index.ts";
import type { RelayOffer } from "../../src/protocol/index.ts";
import { RelayBroker, type RelayBrokerInit } from "../../src/server/broker.ts";
import { Registry, type NodeSession } from "../../src/server/registry.ts";

const TOKENS: Record<string, string> = { u: "1", bob: "2" };
const HUGE_OFFER: RelayOffer = { port: 7000, super: true, bwMbps: 1_000_000, loadMbps: 0, sessions: 0 };

function node(name: string, user = "u", relay?: RelayOffer): NodeSession {
  const now = Date.now();
  return { user, name, publicKey: generateIdentity().publicKey, address: "127.0.0.1:1", host: "127.0.0.1", version: "t", relay, onlineSince: now, lastHeartbeat: now, send: () => {}, close: () => {} };
}

const serverRelay = { port: 9, key: new Uint8Array(32) };

function broker(registry: Registry, overrides: Partial<RelayBrokerInit> = {}): RelayBroker {
  return new RelayBroker({ registry, tokenOf: (user) => TOKENS[user], serverRelay, trusted: () => false, ...overrides });
}

/** a and b of user "u", plus the given relay nodes. */
function network(...relays: NodeSession[]) {
  const registry = new Registry();
  const [a, b] = [node("a"), node("b")];
  for (const session of [a, b, ...relays]) registry.add(session);
  return { registry, a, b };
}

describe("RelayBroker", () => {
  it("offers the server's relay, and the peer's instance with it", () => {
    const { registry, a, b } = network();
    const withInstance = { ...b, instance: "bbbbbbbbbbbbbbbb" };
    const { mine, theirs } = broker(registry).plan(a, withInstance);
    expect(mine.relay).toMatchObject({ name: "server", tier: "server" });
    expect(mine.peer).toMatchObject({ name: "b", instance: "bbbbbbbbbbbbbbbb" });
    expect(theirs.peer.name).toBe("a");
  });

  it("never gives a link to another user's super relay the admin has not approved, however big", () => {
    const { registry, a, b } = network(node("sup", "bob", HUGE_OFFER));
    expect(broker(registry).plan(a, b).mine.relay.name).toBe("server");
    expect(broker(registry, { preferSuperRelays: true }).plan(a, b).mine.relay.name).toBe("server");
    expect(() => broker(registry, { serverRelay: undefined }).plan(a, b)).toThrow("no relay is available for a and b, and the server does not relay");
  });

  it("puts an approved super relay of another user after the server's own relay, unless super relays are preferred", () => {
    const { registry, a, b } = network(node("sup", "bob", HUGE_OFFER));
    const trusted = (name: string) => name === "bob/sup";
    expect(broker(registry, { trusted }).plan(a, b).mine.relay).toMatchObject({ name: "server", tier: "server" });
    expect(broker(registry, { trusted }).plan(a, b, ["server"]).mine.relay).toMatchObject({ name: "bob/sup", tier: "super" });
    expect(broker(registry, { trusted, preferSuperRelays: true }).plan(a, b).mine.relay).toMatchObject({ name: "bob/sup", tier: "super", port: 7000 });
    expect(broker(registry, { trusted, preferSuperRelays: true }).plan(a, b, ["bob/sup"]).mine.relay.name).toBe("server");
  });

  it("puts a relay of the same user first in either order, approved or not", () => {
    const { registry, a, b } = network(node("sup", "bob", HUGE_OFFER), node("priv", "u", { ...HUGE_OFFER, super: false, bwMbps: 1 }));
    for (const preferSuperRelays of [false, true]) {
      const plan = broker(registry, { trusted: () => true, preferSuperRelays }).plan(a, b);
      expect(plan.mine.relay).toMatchObject({ name: "u/priv", tier: "private" });
    }
  });

  it("signs tickets that name the relay, the tier and an opaque session, and no endpoint", () => {
    const { registry, a, b } = network(node("sup", "bob", HUGE_OFFER));
    const { mine, theirs } = broker(registry, { trusted: () => true, preferSuperRelays: true }).plan(a, b);
    const key = relayTicketKey(TOKENS.bob!, "sup");
    const options = { relay: "bob/sup", serverNow: Date.now() };
    const [fieldsA, fieldsB] = [verifyTicket(key, mine.relay.ticket, options), verifyTicket(key, theirs.relay.ticket, options)];
    expect(Object.keys(fieldsA).sort()).toEqual(["expiresAt", "relay", "session", "side", "tier"]);
    expect(fieldsA).toMatchObject({ relay: "bob/sup", session: mine.sessionId, side: "a", tier: "super" });
    expect(fieldsB).toMatchObject({ relay: "bob/sup", session: mine.sessionId, side: "b", tier: "super" });
    expect(fieldsA.session).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it("tells once how to approve a super relay of another user, and not at all for an approved one", () => {
    const lines: string[] = [];
    const logger = createLogger({ write: (line) => lines.push(line) });
    const sup = node("sup", "bob", HUGE_OFFER);
    const trustedOne = node("sup2", "bob", HUGE_OFFER);
    const { registry } = network(sup, trustedOne);
    const relays = broker(registry, { logger, trusted: (name) => name === "bob/sup2" });
    for (let i = 0; i < 3; i++) for (const session of [sup, trustedOne, node("priv", "u", { ...HUGE_OFFER, super: false })]) relays.noticeOffer(session);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('serves only user bob\'s nodes until the admin approves it for other users: run "inp2ps relays approve bob/sup"');
  });

  it("when the server's relay is left out, says so instead of claiming the server does not relay", () => {
    const { registry, a, b } = network();
    expect(() => broker(registry).plan(a, b, ["server"])).toThrow("no relay is available for a and b, not counting server (it failed a just now)");
  });

  it("without a server relay, says that the server does not relay", () => {
    const { registry, a, b } = network();
    expect(() => broker(registry, { serverRelay: undefined }).plan(a, b)).toThrow("no relay is available for a and b, and the server does not relay");
  });
});
