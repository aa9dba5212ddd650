// The relay's door: what a node says on a TCP connection to a relay (another node's, or the server's
// own) before the relay bridges it to the other side of the session. Frames are u32 big-endian
// length | bytes (transport/framing.ts).
//
//   client → relay   {"ticket": "<payload>.<mac>"}   one frame, at most RELAY_MAX_HELLO_BYTES (relay/constants.ts)
//   relay → client   {"ok": true} once both sides are there,
//                    or {"ok": false, "code": "...", "error": "..."} and the connection closes
//   then             raw bytes both ways (the peers' framed, end-to-end encrypted session)
//
// The ticket (signed and checked in crypto/ticket.ts) is base64url(JSON payload) "." base64url(MAC).
// The relay can read the payload, and the relay may be another user's node, so it holds only:
//   relay      "user/node", or "server": the relay it is for
//   session    16 random bytes, base64url, the same in both sides' tickets: opaque to the relay
//   side       "a" (the initiator) or "b" (the responder)
//   tier       "private" | "super" | "server": the tier the server planned the session in
//   expiresAt  server time, ms since the epoch
// and never the endpoints' node names, users or addresses.

export interface RelayHello {
  ticket: string;
}

export interface RelayAnswer {
  ok: boolean;
  code?: string;
  error?: string;
}

export function encodeRelayHello(ticket: string): Buffer {
  return Buffer.from(JSON.stringify({ ticket } satisfies RelayHello));
}

/** The ticket of a hello frame, or why the frame is not a hello. */
export function decodeRelayHello(frame: Buffer): { ticket: string } | { error: string } {
  let hello: unknown;
  try {
    hello = JSON.parse(frame.toString("utf8"));
  } catch {
    return { error: "the hello is not JSON" };
  }
  const ticket = (hello as Partial<RelayHello> | null)?.ticket;
  return typeof ticket === "string" ? { ticket } : { error: 'the hello has no "ticket" string' };
}

export function encodeRelayAnswer(answer: RelayAnswer): Buffer {
  return Buffer.from(JSON.stringify(answer));
}

/** The relay's answer; a frame that is not one reads as a refusal with code RELAY_BAD_ANSWER. */
export function decodeRelayAnswer(frame: Buffer): RelayAnswer {
  let answer: unknown;
  try {
    answer = JSON.parse(frame.toString("utf8"));
  } catch {
    return { ok: false, code: "RELAY_BAD_ANSWER", error: "the relay's answer is not JSON" };
  }
  const { ok, code, error } = (answer ?? {}) as Partial<RelayAnswer>;
  if (typeof ok !== "boolean") return { ok: false, code: "RELAY_BAD_ANSWER", error: 'the relay\'s answer has no "ok" boolean' };
  return { ok, ...(typeof code === "string" ? { code } : {}), ...(typeof error === "string" ? { error } : {}) };
}
