import { HANDSHAKE_MAX_BYTES } from "../crypto/handshake.ts";

/** First byte of every peer packet (UDP datagram or TCP frame). STUN's first byte is 0x00 or 0x01. */
export const Envelope = { handshake: 0xc1, sealed: 0xc2, poke: 0xc3 } as const;
/** Record kinds inside a sealed packet (the session reserves kinds below 16 for handshake types). */
export const RecordKind = { kcp: 0x10, mux: 0x11, datagram: 0x12, ping: 0x13, pong: 0x14 } as const;

export const SESSION_ID_BYTES = 16;
/** Largest TCP frame accepted from a peer; bounds what a stranger's connection can make us buffer. */
export const MAX_TCP_FRAME_BYTES = 70 * 1024;
/**
 * Largest TCP frame accepted before the peer has authenticated: a handshake message in its envelope
 * (the initiator's first sealed record, a ping, is smaller).
 */
export const MAX_PREAUTH_TCP_FRAME_BYTES = 1 + SESSION_ID_BYTES + HANDSHAKE_MAX_BYTES;
/** A connection must finish its handshake in this time from its accept (however it trickles bytes), or it is closed. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/** Accepted peer TCP connections that have not authenticated yet, at most, and from one address. */
export const PEER_TCP_MAX_PENDING = 128;
export const PEER_TCP_MAX_PENDING_PER_ADDRESS = 16;
/** Paths start in this order, this far apart; the best that succeeds wins. */
export const PATH_STAGGER_MS = 60;
/** After the first path succeeds, how long a better-ranked one may still win. */
export const PATH_GRACE_MS = 150;
/**
 * Wide probing (port prediction, the birthday technique: hundreds to thousands of packets each, at
 * addresses the peer's plan names) one peer's plans may make this node do per window; a plan beyond
 * it punches without.
 */
export const SPRAYS_PER_PEER_PER_WINDOW = 3;
export const SPRAY_WINDOW_MS = 30_000;
/** A link attempt gives up after this. */
export const CONNECT_ATTEMPT_TIMEOUT_MS = 6_000;
/** Each side sends a keepalive when it has sent nothing for a while, jittered in this range. */
export const KEEPALIVE_MIN_MS = 15_000;
export const KEEPALIVE_MAX_MS = 25_000;
/** A path is dead when something sent has had no answer (of any kind) for this long. */
export const DEAD_AFTER_MS = 10_000;
/** While waiting for an answer, ping this often so an idle link is tested too. */
export const PROBE_INTERVAL_MS = 2_000;
/** How often the peer UDP socket re-learns its public mapping (also keeps the mapping open). */
export const MAPPING_REFRESH_MS = 20_000;
