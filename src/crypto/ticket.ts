import { hmacSha256, safeEqual } from "./token.ts";

// One-time relay tickets. The server signs one per side of a relayed session; the relay checks it with
// the key it shares with the server. A relay node never receives its key: both ends derive it from the
// user token the node logs in with (the server knows every user's token), so nothing secret crosses the
// wire. The server's own relay uses a random key that never leaves the process.
//
// A ticket is `base64url(JSON payload) "." base64url(HMAC-SHA256(key, "inp2p relay ticket v2", payload))`.
// The payload is readable by the relay, which may be another user's node: it names the relay and the
// tier the session was planned in, and otherwise only an opaque session id, never the endpoints' node
// names or addresses. (v1 tickets named both endpoints "user/node"; v1 relays refuse v2 as forged.)

/**
 * Which tier the server planned the session in: "private" (the relay's own user's nodes), "super"
 * (another user's nodes, at a super relay the admin approved), "server" (the server's own relay).
 * A private relay refuses anything but "private".
 */
export type TicketTier = "private" | "super" | "server";

export interface TicketFields {
  /** The relay this ticket is for: "user/node", or "server". */
  relay: string;
  /** The relayed session (16 random bytes, base64url); both sides' tickets carry the same one. */
  session: string;
  /** Which end presents this ticket: "a" the initiator, "b" the responder. */
  side: "a" | "b";
  tier: TicketTier;
  /** Expiry in server time (ms since the epoch). */
  expiresAt: number;
}

export type TicketErrorCode = "TICKET_MALFORMED" | "TICKET_FORGED" | "TICKET_EXPIRED" | "TICKET_WRONG_RELAY" | "TICKET_REPLAYED";

export class TicketError extends Error {
  constructor(
    readonly code: TicketErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The longest ticket is under 400 characters (relay names of 63 + 1 + 63 characters): a margin, and no more. */
export const MAX_TICKET_CHARS = 512;
const MAC_CHARS = 43; // 32 bytes as base64url
const TICKET_MAC_LABEL = "inp2p relay ticket v2";

/** The key a relay node shares with the server: derived from the node's user token and its name. */
export function relayTicketKey(userToken: string, relayNode: string): Buffer {
  return hmacSha256(userToken, "inp2p relay ticket key v1", relayNode);
}

export function signTicket(key: Uint8Array, fields: TicketFields): string {
  const payload = Buffer.from(JSON.stringify(fields)).toString("base64url");
  return `${payload}.${hmacSha256(key, TICKET_MAC_LABEL, payload).toString("base64url")}`;
}

/** Checks a ticket's MAC, relay and expiry; throws TicketError naming what was wrong. */
export function verifyTicket(key: Uint8Array, ticket: string, options: { relay: string; serverNow: number }): TicketFields {
  if (typeof ticket !== "string" || ticket.length > MAX_TICKET_CHARS) throw new TicketError("TICKET_MALFORMED", "not a ticket");
  const [payload, mac, ...rest] = ticket.split(".");
  if (!payload || !mac || rest.length || mac.length !== MAC_CHARS) throw new TicketError("TICKET_MALFORMED", "not a ticket (expected payload.mac)");
  if (!safeEqual(Buffer.from(mac, "base64url"), hmacSha256(key, TICKET_MAC_LABEL, payload)))
    throw new TicketError("TICKET_FORGED", "the ticket's signature does not match (forged, or issued for another relay key)");
  let fields: TicketFields;
  try {
    fields = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as TicketFields;
  } catch {
    throw new TicketError("TICKET_MALFORMED", "the ticket's payload is not JSON");
  }
  if (fields.relay !== options.relay) throw new TicketError("TICKET_WRONG_RELAY", `the ticket is for relay "${fields.relay}", not this one ("${options.relay}")`);
  if (!(fields.expiresAt > options.serverNow))
    throw new TicketError("TICKET_EXPIRED", `the ticket expired ${Math.round((options.serverNow - fields.expiresAt) / 1000)} s ago`);
  return fields;
}
