// KCP tunables and wire constants. Values follow ikcp (skywind3000/kcp) unless a comment says otherwise.

/** Segment header: conv u32 | cmd u8 | frg u8 | wnd u16 | ts u32 | sn u32 | una u32 | len u32, little-endian. */
export const KCP_OVERHEAD_BYTES = 24;

export const KCP_CMD_PUSH = 81;
export const KCP_CMD_ACK = 82;
/** Window probe: "tell me your receive window". */
export const KCP_CMD_WASK = 83;
/** Window size: the answer to WASK, also sent unasked when a full receive queue drains. */
export const KCP_CMD_WINS = 84;

export const KCP_RTO_NODELAY_MIN_MS = 30;
export const KCP_RTO_MIN_MS = 100;
export const KCP_RTO_DEFAULT_MS = 200;
export const KCP_RTO_MAX_MS = 60_000;

export const KCP_DEFAULT_SEND_WINDOW_SEGMENTS = 32;
/**
 * ikcp uses 128 and refuses messages of 128 fragments or more. We allow up to KCP_MAX_FRAGMENTS, and a
 * receiver can only complete a message that fits in its receive window, so both floor and default are higher.
 */
export const KCP_DEFAULT_RECEIVE_WINDOW_SEGMENTS = 256;
/** frg is a u8 counting down to 0, so a message has at most 256 fragments; we stop at 255 (frg <= 254). */
export const KCP_MAX_FRAGMENTS = 255;
export const KCP_MIN_RECEIVE_WINDOW_SEGMENTS = KCP_MAX_FRAGMENTS;
/** The wnd field is a u16. */
export const KCP_MAX_ADVERTISED_WINDOW_SEGMENTS = 0xffff;

export const KCP_DEFAULT_MTU_BYTES = 1400;
export const KCP_MIN_MTU_BYTES = 50;

export const KCP_DEFAULT_INTERVAL_MS = 100;
export const KCP_MIN_INTERVAL_MS = 10;
export const KCP_MAX_INTERVAL_MS = 5000;

/** A segment sent this many times marks the link dead. */
export const KCP_DEAD_LINK_TRANSMISSIONS = 20;
export const KCP_SSTHRESH_INIT_SEGMENTS = 2;
export const KCP_SSTHRESH_MIN_SEGMENTS = 2;
/** While the peer advertises a zero window, ask again after this, growing by half each time up to the limit. */
export const KCP_PROBE_INITIAL_WAIT_MS = 7000;
export const KCP_PROBE_MAX_WAIT_MS = 120_000;
/** A segment already sent more often than this is left to the RTO timer rather than fast-resent again. */
export const KCP_FAST_RESEND_MAX_TRANSMISSIONS = 5;
/** update() treats a clock jump larger than this (either way) as a reset of its flush schedule. */
export const KCP_CLOCK_JUMP_LIMIT_MS = 10_000;

/**
 * Throughput preset for peer links (ikcp's "fast mode" with large windows):
 * - nodelay: minimum RTO 30 ms instead of 100, no extra rto/8 on first send, back-off x1.5 instead of x2,
 *   so one loss costs tens of milliseconds, not hundreds.
 * - intervalMs 10: ACKs and retransmissions go out within 10 ms; ACK delay also inflates the RTT estimate.
 * - fastResend 2: resend a segment once two later segments were acknowledged, without waiting for its RTO.
 * - noCongestionControl: KCP's loss-based cwnd drops to 1 on every timeout, which on a randomly lossy path
 *   (wifi, mobile) caps throughput far below capacity. Without it the sender is bounded by the windows
 *   only: it does not back off for competing traffic, which is the price of this preset.
 * - windows 1024: in flight up to 1024 x 1326 B = 1.3 MiB, about 100 Mbit/s at 100 ms RTT.
 * - mtu 1350: plus ~30 B of session encryption the UDP payload stays under ikcp's 1400, and the IP packet
 *   (1408 B over IPv4, 1428 B over IPv6) fits PPPoE (1492) and common tunnels without fragmenting.
 */
export const KCP_FAST = {
  nodelay: true,
  intervalMs: 10,
  fastResend: 2,
  noCongestionControl: true,
  sendWindow: 1024,
  receiveWindow: 1024,
  mtu: 1350,
} as const;
