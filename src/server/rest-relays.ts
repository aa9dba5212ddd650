import { Hono } from "hono";
import { NODE_NAME_PATTERN } from "../protocol/index.ts";
import type { AuditLog } from "./audit.ts";
import type { Registry } from "./registry.ts";
import { UnknownRelayUserError, type RelayApprovalSource, type TrustedRelays } from "./relay-trust.ts";

export interface RelaysApiInit {
  registry: Registry;
  trustedRelays: TrustedRelays;
  audit: AuditLog;
}

/** A relay as `GET /api/v1/relays` lists it: every node offering to relay now, and every approved one. */
export interface RelayListing {
  /** "user/node" */
  name: string;
  user: string;
  node: string;
  online: boolean;
  /** Offers to serve every user (a super relay); null when offline. */
  super: boolean | null;
  /** The admin trusts it with other users' sessions; `approvedBy` says where. */
  approved: boolean;
  approvedBy: RelayApprovalSource | null;
  /** Whom the broker gives it to: its own user's nodes, or every user's. */
  serves: "own user" | "every user" | null;
  address: string | null;
  bwMbps: number | null;
  loadMbps: number | null;
  sessions: number | null;
}

/**
 * The super relays the admin trusts (admin only, as every route but health: see createApp): `GET /api/v1/relays`, and
 * `PUT` / `DELETE /api/v1/relays/:user/:node/approval` to approve or revoke one. Mounted at /api/v1/relays.
 */
export function createRelaysApi(init: RelaysApiInit): Hono {
  const api = new Hono();

  api.get("/", (c) => c.json({ relays: relayListings(init.registry, init.trustedRelays) }));

  api.put("/:user/:node/approval", (c) => {
    const name = relayParam(c.req.param("user"), c.req.param("node"));
    if (!name) return c.json({ error: `not a relay name: "${c.req.param("user")}/${c.req.param("node")}" (expected user/node, each 1-63 letters, digits, '.', '_' or '-')` }, 400);
    let approved: boolean;
    try {
      approved = init.trustedRelays.approve(name);
    } catch (err) {
      if (err instanceof UnknownRelayUserError) return c.json({ error: `cannot approve ${name}: ${err.message}` }, 404);
      throw err;
    }
    if (approved) init.audit.record("relay-approved", { relay: name });
    return c.json({ relay: name, approved: true, changed: approved, approvedBy: init.trustedRelays.source(name) });
  });

  api.delete("/:user/:node/approval", (c) => {
    const name = relayParam(c.req.param("user"), c.req.param("node"));
    if (!name) return c.json({ error: `not a relay name: "${c.req.param("user")}/${c.req.param("node")}" (expected user/node)` }, 400);
    const result = init.trustedRelays.revoke(name);
    if (result === "configured")
      return c.json({ error: `${name} is approved by trusted_relays in [server] of the config: remove it there and restart inp2ps` }, 409);
    if (result === "not-approved") return c.json({ error: `${name} is not approved` }, 404);
    init.audit.record("relay-revoked", { relay: name });
    return c.json({ relay: name, approved: false });
  });

  return api;
}

/** Every node offering to relay now, and every approved relay, by name. */
export function relayListings(registry: Registry, trustedRelays: TrustedRelays): RelayListing[] {
  const listed = new Map<string, RelayListing>();
  for (const session of registry.all()) {
    const offer = session.relay;
    if (!offer) continue;
    const name = `${session.user}/${session.name}`;
    const approvedBy = trustedRelays.source(name) ?? null;
    listed.set(name, {
      name,
      user: session.user,
      node: session.name,
      online: true,
      super: offer.super,
      approved: approvedBy !== null,
      approvedBy,
      serves: offer.super && approvedBy ? "every user" : "own user",
      address: `${session.host}:${offer.port}`,
      bwMbps: offer.bwMbps,
      loadMbps: offer.loadMbps,
      sessions: offer.sessions,
    });
  }
  for (const { relay: name, source } of trustedRelays.list()) {
    if (listed.has(name)) continue;
    const [user, node] = name.split("/") as [string, string];
    listed.set(name, { name, user, node, online: false, super: null, approved: true, approvedBy: source, serves: null, address: null, bwMbps: null, loadMbps: null, sessions: null });
  }
  return [...listed.values()].sort((x, y) => x.name.localeCompare(y.name));
}

function relayParam(user: string, node: string): string | undefined {
  return NODE_NAME_PATTERN.test(user) && NODE_NAME_PATTERN.test(node) ? `${user}/${node}` : undefined;
}
