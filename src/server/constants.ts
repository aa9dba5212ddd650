/** A connection must log in within this time or it is closed. */
export const LOGIN_TIMEOUT_MS = 10_000;
/** Bad messages (garbage, schema errors, failed logins) a connection may send before it is dropped. */
export const MAX_BAD_MESSAGES_PER_CONNECTION = 10;
/** How long an address that was dropped for abuse has its new connections refused. */
export const ABUSE_PENALTY_MS = 30_000;
/** Bound on the number of penalised addresses remembered at once. */
export const MAX_PENALISED_ADDRESSES = 10_000;
/** Messages per second a connection may send, with a burst of twice that. */
export const MESSAGES_PER_SECOND_LIMIT = 50;
/** Bun closes a connection whose single frame exceeds this; frames up to it get a TOO_LARGE reply. */
export const WS_HARD_MAX_FRAME_BYTES = 1024 * 1024;
/** Outgoing bytes queued for a slow reader before its connection is closed. */
export const WS_BACKPRESSURE_LIMIT_BYTES = 1024 * 1024;
/** How often the registry looks for nodes whose heartbeats stopped. */
export const HEARTBEAT_SWEEP_INTERVAL_MS = 250;
/** How far ahead a coordinated link's start time is set, so both sides hear of it before it comes. */
export const COORDINATION_LEAD_MS = 250;
/** Pairing requests of one user that may wait for the admin at once (admission = "approve"). */
export const MAX_PENDING_PER_USER = 64;
/** New pairing requests one client address may make per window. */
export const PAIRING_REQUESTS_PER_WINDOW = 10;
export const PAIRING_RATE_WINDOW_MS = 60_000;
/** Bound on the client addresses whose recent pairing requests are remembered. */
export const MAX_PAIRING_ADDRESSES_TRACKED = 10_000;
/** Wrong tokens a client address (an IPv6 /64) or a node name may send before its logins are slowed. */
export const FREE_FAILED_LOGINS = 3;
/** The first wait after the free failures; each further failure doubles it, up to the maximum. */
export const FAILED_LOGIN_FIRST_DELAY_MS = 1_000;
export const FAILED_LOGIN_MAX_DELAY_MS = 60_000;
/** A key's failures are forgotten after this long without one. */
export const FAILED_LOGIN_MEMORY_MS = 15 * 60_000;
/** Bound on the addresses and on the names whose failed logins are remembered (least recent forgotten first). */
export const MAX_FAILED_LOGIN_KEYS = 10_000;
/** Refused logins a stranger can cause (wrong token, slowed) are logged once per this window, with a count. */
export const LOGIN_REFUSAL_LOG_WINDOW_MS = 10_000;
/**
 * Link plans (connect, and relay, each counted on its own) one node may have the server make: per
 * peer a burst, then one every PAIR_PLAN_INTERVAL_MS; over all its peers a larger burst, then one
 * every REQUESTER_PLAN_INTERVAL_MS. Every plan makes the peer poke and dial the requester's
 * candidates, so these bound what one node can make another do.
 */
export const PAIR_PLAN_BURST = 6;
export const PAIR_PLAN_INTERVAL_MS = 2_000;
export const REQUESTER_PLAN_BURST = 20;
export const REQUESTER_PLAN_INTERVAL_MS = 250;
/** Bound on the plan buckets remembered at once (full ones are forgotten first). */
export const MAX_PLAN_BUCKETS = 10_000;
/** How long presence changes gather before each interested node gets them as one delta. */
export const PRESENCE_BATCH_MS = 50;
