/** Where both programs serve the Prometheus exposition. */
export const METRICS_PATH = "/metrics";

/** NAT types as metric labels: the protocol's, and "unknown" before a node has detected its own. */
export const UNKNOWN_NAT = "unknown";

/**
 * Why the server refused (or held back) a login, as `inp2p_auth_failures_total{reason}`: a fixed list,
 * so that no client can grow the label set. A refusal code not listed here counts as "other".
 */
export const AUTH_FAILURE_REASONS = ["bad_token", "bad_signature", "key_mismatch", "revoked", "pending", "rate_limited", "login_timeout", "admin_credential", "other"] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];

/** The server's limits, as `inp2p_rate_limited_total{limit}`. */
export const SERVER_RATE_LIMITS = ["preauth", "logins", "plans", "messages", "stun", "relay"] as const;
export type ServerRateLimit = (typeof SERVER_RATE_LIMITS)[number];

/** A node's limits, as `inp2p_rate_limited_total{limit}`: plans its peers make it run, wide probing on a peer's behalf, its relay's. */
export const CLIENT_RATE_LIMITS = ["peer_plans", "wide_probing", "relay"] as const;
export type ClientRateLimit = (typeof CLIENT_RATE_LIMITS)[number];

/** Request to first authenticated packet: LAN and UDP links take milliseconds, a TCP punch or a relay seconds. */
export const PUNCH_SECONDS_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20];
