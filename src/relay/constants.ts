import { MAX_TICKET_CHARS } from "../protocol/index.ts";

/** A connection must send its ticket within this from its accept (however it trickles bytes), or it is closed. */
export const RELAY_HELLO_DEADLINE_MS = 5_000;
/** The first side of a session waits this long for the second, then is told why and closed. */
export const RELAY_PAIR_WAIT_MS = 10_000;
/** Largest hello frame accepted: `{"ticket":"…"}` around the longest ticket, and no more. */
export const RELAY_MAX_HELLO_BYTES = '{"ticket":""}'.length + MAX_TICKET_CHARS;
/** Connections waiting for their ticket, at most. */
export const RELAY_MAX_PENDING = 512;
/** Connections one address may have waiting for their ticket (a NAT's nodes share one). */
export const RELAY_MAX_PENDING_PER_ADDRESS = 32;
/** A refused connection is destroyed this long after the refusal is sent, if the client has not closed it. */
export const RELAY_REFUSAL_LINGER_MS = 1_000;
/** Bridged sessions at once, at most. */
export const RELAY_MAX_SESSIONS = 1_024;
/** The token bucket holds this much time's worth of traffic (the burst a relay lets through at once). */
export const RELAY_BURST_MS = 50;
export const RELAY_MIN_BURST_BYTES = 64 * 1024;
/** How long the server's tickets are valid: long enough to connect, short enough to be useless later. */
export const RELAY_TICKET_LIFETIME_MS = 30_000;
/** How often a relay node reports its load to the server. */
export const RELAY_REPORT_INTERVAL_MS = 5_000;
