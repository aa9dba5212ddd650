export const RECONNECT_BASE_DELAY_MS = 5_000;
/** Each failed attempt multiplies the delay; gentle, so a server that restarts in a few seconds is found quickly. */
export const RECONNECT_BACKOFF_FACTOR = 1.5;
export const RECONNECT_MAX_DELAY_MS = 60_000;
/** The least wait before reconnecting over the server's reconnect window (it needs a moment to come back). */
export const RECONNECT_SPREAD_MIN_DELAY_MS = 1_000;
/** Each reconnect delay is scaled by a random factor in [1 - J, 1 + J]. */
export const RECONNECT_JITTER_FRACTION = 0.2;
export const CONNECT_TIMEOUT_MS = 10_000;
/** Requests awaiting a response at once; more are refused locally. */
export const MAX_PENDING_REQUESTS = 64;
/** Clock-offset samples kept; the one with the smallest round trip wins (NTP's choice). */
export const CLOCK_SAMPLES_KEPT = 8;
/** Largest server message accepted. */
export const MAX_SERVER_MESSAGE_BYTES = 1024 * 1024;

export const IDENTITY_FILE = "inp2pc.key";
export const KNOWN_SERVERS_FILE = "inp2pc.known_servers.json";
/** The last NAT detection result, used at once by the next run while it detects again. */
export const NAT_CACHE_FILE = "inp2pc.nat.json";
/** After a peer comes online or a link drops, wait this long before (re)connecting. */
export const LINK_RETRY_DELAY_MS = 1_000;
/**
 * Link plans a peer may have this node run (pushed by the server at the peer's request), per kind
 * (connect, relay), per window; beyond that they are refused. A peer linking asks once or a few times
 * (a relay beside a punch, a relay that failed); each connect plan pokes at most 5 of its addresses 11
 * times, so a peer can make this node send at most 8 * 55 pokes per 10 s, whatever the server lets by.
 */
export const PEER_PLANS_PER_WINDOW = 8;
export const PEER_PLAN_WINDOW_MS = 10_000;
/** The same warning about one peer (refused plans, failed links) goes out at most once in this long. */
export const PEER_WARNING_WINDOW_MS = 10_000;
