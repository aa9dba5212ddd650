/** A connection must send its ticket within this, or it is closed. */
export const RELAY_HELLO_TIMEOUT_MS = 5_000;
/** The first side of a session waits this long for the second, then is told why and closed. */
export const RELAY_PAIR_WAIT_MS = 10_000;
/** Largest hello (ticket) frame accepted: bounds what a stranger can make the relay buffer. */
export const RELAY_MAX_HELLO_BYTES = 2_048;
/** Connections waiting for their ticket or their other side, at most. */
export const RELAY_MAX_PENDING = 512;
/** Bridged sessions at once, at most. */
export const RELAY_MAX_SESSIONS = 1_024;
/** The token bucket holds this much time's worth of traffic (the burst a relay lets through at once). */
export const RELAY_BURST_MS = 50;
export const RELAY_MIN_BURST_BYTES = 64 * 1024;
/** How long the server's tickets are valid: long enough to connect, short enough to be useless later. */
export const RELAY_TICKET_LIFETIME_MS = 30_000;
/** How often a relay node reports its load to the server. */
export const RELAY_REPORT_INTERVAL_MS = 5_000;
