// Prometheus metrics of both programs, on prom-client (the text exposition format, histograms, and a
// registry per program instance).
export { ClientMetrics, type ClientMetricsInit, type ClientMetricsView, type PunchOutcome } from "./client.ts";
export { AUTH_FAILURE_REASONS, CLIENT_RATE_LIMITS, METRICS_PATH, PUNCH_SECONDS_BUCKETS, SERVER_RATE_LIMITS, type AuthFailureReason, type ClientRateLimit, type ServerRateLimit } from "./constants.ts";
export { ProgramMetrics, type RelayCounts } from "./registry.ts";
export { authFailureReason, ServerMetrics, type ServerMetricsInit } from "./server.ts";
