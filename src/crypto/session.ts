import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, type KeyObject } from "node:crypto";
import { ReplayWindow } from "./replay.ts";

// The record layer of a peer session: each sealed packet stands alone (UDP may lose, reorder and
// duplicate), so every record carries its key phase and counter in clear, authenticated as AAD.
//
//   kind u8 | keyPhase u8 | counter u64 BE | ciphertext | tag 16        (AES-256-GCM)
//   nonce = salt u32 BE (direction << 24 | phase & 0xffffff) || counter u64 BE
//
// Kinds 0x10..0xff are records; 0x01..0x0f are handshake messages (handshake.ts), so the first byte
// alone tells a receiver which one it holds.
//
// Rekeying. Each direction has its own key chain and rekeys on its own: the SENDER decides (time,
// bytes or packets of the current phase over a limit), derives
//   key(n+1) | chain(n+1) = HKDF-SHA256(ikm = chain(n), info = "inp2p rekey v1" | direction | n+1)
// forgets chain(n), and seals with phase n+1 from then on. The receiver, on the first record of a
// later phase that AUTHENTICATES under the derived key, switches to it and keeps the previous phase
// (keys and replay window) for REKEY_GRACE_MS so reordered stragglers still open. Independent
// directions need no rekey messages and no agreement between the two clocks or traffic volumes; a
// lost record cannot desynchronise anything because no state moves until a record authenticates.
// The receiver looks up to REKEY_LOOKAHEAD_PHASES ahead, in case every record of a phase was lost.
// Old chain values are erased after use, so a compromise of today's state does not reveal the
// keys of earlier phases.

export const RECORD_KIND_DATA = 0x10;
export const RECORD_KIND_KEEPALIVE = 0x11;
/** Smallest record kind; smaller first bytes belong to handshake messages. */
export const RECORD_KIND_MIN = 0x10;
export const RECORD_HEADER_BYTES = 10;
export const RECORD_TAG_BYTES = 16;
export const RECORD_OVERHEAD_BYTES = RECORD_HEADER_BYTES + RECORD_TAG_BYTES;
export const MAX_RECORD_BYTES = 65_535;
export const MAX_PLAINTEXT_BYTES = MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES;

export const REKEY_AFTER_MS = 120_000;
export const REKEY_AFTER_BYTES = 1024 ** 3; // 1 GiB per key: far inside AES-GCM's limits (RFC 8446 §5.5)
export const REKEY_AFTER_PACKETS = 2 ** 32;
export const REKEY_GRACE_MS = 10_000;
export const REKEY_LOOKAHEAD_PHASES = 4;
/** Hard stop per key, never reached while rekeying works; below 2^53 so counters stay exact numbers. */
export const REJECT_AFTER_PACKETS = 2 ** 48;

export const DIRECTION_INITIATOR_TO_RESPONDER = 0;
export const DIRECTION_RESPONDER_TO_INITIATOR = 1;

const AEAD_ALGORITHM = "aes-256-gcm";
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const COUNTER_HIGH_LIMIT = REJECT_AFTER_PACKETS / 2 ** 32;
const SESSION_KEYS_LABEL = "inp2p session v1";
const REKEY_LABEL = "inp2p rekey v1";
const EMPTY = Buffer.alloc(0);

export type SessionErrorCode = "BAD_KIND" | "TOO_LARGE" | "NONCE_EXHAUSTED" | "CLOSED";

export class SessionError extends Error {
  constructor(
    readonly code: SessionErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "SessionError";
  }
}

export interface SessionLimits {
  rekeyAfterMs: number;
  rekeyAfterBytes: number;
  rekeyAfterPackets: number;
  rekeyGraceMs: number;
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = {
  rekeyAfterMs: REKEY_AFTER_MS,
  rekeyAfterBytes: REKEY_AFTER_BYTES,
  rekeyAfterPackets: REKEY_AFTER_PACKETS,
  rekeyGraceMs: REKEY_GRACE_MS,
};

/** What the handshake hands to the record layer: one key per direction and the rekey chain key. */
export interface SessionSecrets {
  initiatorToResponder: Buffer;
  responderToInitiator: Buffer;
  chain: Buffer;
}

export interface SessionStats {
  sealed: number;
  opened: number;
  rejectedAuth: number;
  rejectedReplay: number;
  rejectedMalformed: number;
  /** Phase changes in both directions: ours when sending, the peer's when first seen. */
  rekeys: number;
  /** Plaintext bytes opened / sealed. */
  bytesIn: number;
  bytesOut: number;
}

export interface SessionInit {
  role: "initiator" | "responder";
  secrets: SessionSecrets;
  now?: () => number;
  limits?: Partial<SessionLimits>;
}

export interface OpenedRecord {
  kind: number;
  plaintext: Buffer;
  /** Key phase and counter, for callers on ordered transports that must see every record in turn. */
  phase: number;
  counter: number;
}

/** HKDF-SHA256(ikm = X25519 secret, salt = sessionId, info = label | transcript hash). */
export function deriveSessionSecrets(sharedSecret: Uint8Array, sessionId: Uint8Array, transcriptHash: Uint8Array): SessionSecrets {
  const info = Buffer.concat([Buffer.from(SESSION_KEYS_LABEL), transcriptHash]);
  const okm = Buffer.from(hkdfSync("sha256", sharedSecret, sessionId, info, 3 * KEY_BYTES));
  return {
    initiatorToResponder: okm.subarray(0, KEY_BYTES),
    responderToInitiator: okm.subarray(KEY_BYTES, 2 * KEY_BYTES),
    chain: okm.subarray(2 * KEY_BYTES),
  };
}

/** The key and chain of phase `phase` of one direction, from the chain of the phase before. */
export function deriveNextPhase(direction: number, phase: number, chain: Uint8Array): { key: Buffer; chain: Buffer } {
  const info = Buffer.alloc(REKEY_LABEL.length + 5);
  info.write(REKEY_LABEL, 0, "latin1");
  info[REKEY_LABEL.length] = direction;
  info.writeUInt32BE(phase >>> 0, REKEY_LABEL.length + 1);
  const okm = Buffer.from(hkdfSync("sha256", chain, EMPTY, info, 2 * KEY_BYTES));
  return { key: okm.subarray(0, KEY_BYTES), chain: okm.subarray(KEY_BYTES) };
}

function nonceSalt(direction: number, phase: number): number {
  return ((direction << 24) | (phase & 0xffffff)) >>> 0;
}

/** The AEAD nonce of a record (exported for tests and tools; the session builds it in place). */
export function recordNonce(direction: number, phase: number, counter: number): Buffer {
  const nonce = Buffer.alloc(NONCE_BYTES);
  nonce.writeUInt32BE(nonceSalt(direction, phase), 0);
  nonce.writeUInt32BE(Math.floor(counter / 2 ** 32), 4);
  nonce.writeUInt32BE(counter >>> 0, 8);
  return nonce;
}

/** Wraps raw key bytes in a KeyObject (it copies them; faster per packet than a Buffer key) and wipes the bytes. */
function keyObject(raw: Buffer): KeyObject {
  const key = createSecretKey(raw);
  raw.fill(0);
  return key;
}

interface SendPhase {
  phase: number;
  key: KeyObject;
  chain: Buffer;
  counter: number;
  bytes: number;
  startedAt: number;
}

interface ReceivePhase {
  phase: number;
  key: KeyObject;
  /** Present only on the newest derived phase: the input to the next derivation. */
  chain: Buffer | null;
  window: ReplayWindow;
}

export class SecureSession {
  readonly stats: SessionStats = {
    sealed: 0,
    opened: 0,
    rejectedAuth: 0,
    rejectedReplay: 0,
    rejectedMalformed: 0,
    rekeys: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
  readonly role: "initiator" | "responder";
  private readonly now: () => number;
  private readonly limits: SessionLimits;
  private readonly sendDirection: number;
  private readonly receiveDirection: number;
  private sending: SendPhase;
  private receiving: ReceivePhase;
  private previous: ReceivePhase | null = null;
  private previousExpiresAt = 0;
  /** Phases after `receiving`, derived on demand when a record claims one. */
  private ahead: ReceivePhase[] = [];
  private readonly sendNonce = Buffer.alloc(NONCE_BYTES);
  private readonly receiveNonce = Buffer.alloc(NONCE_BYTES);
  private confirmedByPeer: boolean;
  private closed = false;

  constructor(init: SessionInit) {
    this.role = init.role;
    this.now = init.now ?? Date.now;
    this.limits = { ...DEFAULT_SESSION_LIMITS, ...init.limits };
    const initiator = init.role === "initiator";
    this.sendDirection = initiator ? DIRECTION_INITIATOR_TO_RESPONDER : DIRECTION_RESPONDER_TO_INITIATOR;
    this.receiveDirection = initiator ? DIRECTION_RESPONDER_TO_INITIATOR : DIRECTION_INITIATOR_TO_RESPONDER;
    const { initiatorToResponder, responderToInitiator, chain } = init.secrets;
    const sendKey = Buffer.from(initiator ? initiatorToResponder : responderToInitiator);
    const receiveKey = Buffer.from(initiator ? responderToInitiator : initiatorToResponder);
    this.sending = { phase: 0, key: keyObject(sendKey), chain: Buffer.from(chain), counter: 0, bytes: 0, startedAt: this.now() };
    this.receiving = { phase: 0, key: keyObject(receiveKey), chain: Buffer.from(chain), window: new ReplayWindow() };
    this.sendNonce.writeUInt32BE(nonceSalt(this.sendDirection, 0), 0);
    // The initiator checked the responder's signature over its own fresh ephemeral; the responder
    // knows the initiator holds the keys only once one of its records authenticates.
    this.confirmedByPeer = initiator;
  }

  /** True once the peer has shown it holds the session keys (always, for the initiator). */
  get confirmed(): boolean {
    return this.confirmedByPeer;
  }

  get sendPhase(): number {
    return this.sending.phase;
  }

  get receivePhase(): number {
    return this.receiving.phase;
  }

  /**
   * Seals one record. With `headroomBytes`, the record starts that many bytes into the returned buffer,
   * left for the caller's own header, so a transport prefix costs no second copy. With `into` (exactly
   * headroom + plaintext + RECORD_OVERHEAD_BYTES long), it seals there instead of into a new buffer.
   */
  seal(plaintext: Uint8Array, kind: number = RECORD_KIND_DATA, headroomBytes = 0, into?: Buffer): Buffer {
    if (this.closed) throw new SessionError("CLOSED", "session is closed");
    if (!Number.isInteger(kind) || kind < RECORD_KIND_MIN || kind > 0xff) {
      throw new SessionError("BAD_KIND", `record kind must be ${RECORD_KIND_MIN}..255, got ${kind}`);
    }
    if (plaintext.length > MAX_PLAINTEXT_BYTES) {
      throw new SessionError("TOO_LARGE", `plaintext of ${plaintext.length} bytes exceeds ${MAX_PLAINTEXT_BYTES}`);
    }
    const length = RECORD_OVERHEAD_BYTES + plaintext.length;
    if (into && into.length !== headroomBytes + length) {
      throw new RangeError(`a record of ${length} bytes after ${headroomBytes} of headroom does not fill ${into.length} bytes`);
    }
    const now = this.now();
    let send = this.sending;
    const { rekeyAfterMs, rekeyAfterBytes, rekeyAfterPackets } = this.limits;
    if (now - send.startedAt >= rekeyAfterMs || send.bytes >= rekeyAfterBytes || send.counter >= rekeyAfterPackets) {
      this.rekey();
      send = this.sending;
    }
    const counter = send.counter;
    if (counter >= REJECT_AFTER_PACKETS) throw new SessionError("NONCE_EXHAUSTED", "counter limit reached without a rekey");
    send.counter = counter + 1;
    send.bytes += plaintext.length;

    const packet = into ?? Buffer.allocUnsafe(headroomBytes + length);
    const at = headroomBytes;
    packet[at] = kind;
    packet[at + 1] = send.phase & 0xff;
    packet.writeUInt32BE(Math.floor(counter / 2 ** 32), at + 2);
    packet.writeUInt32BE(counter >>> 0, at + 6);
    packet.copy(this.sendNonce, 4, at + 2, at + RECORD_HEADER_BYTES);

    // No { authTagLength } option: GCM's default tag is 16 bytes, open always passes exactly 16, and
    // passing the options object measured slower per packet in Bun 1.4.
    const cipher = createCipheriv(AEAD_ALGORITHM, send.key, this.sendNonce);
    cipher.setAAD(packet.subarray(at, at + RECORD_HEADER_BYTES));
    cipher.update(plaintext).copy(packet, at + RECORD_HEADER_BYTES);
    cipher.final();
    cipher.getAuthTag().copy(packet, at + length - RECORD_TAG_BYTES);

    this.stats.sealed++;
    this.stats.bytesOut += plaintext.length;
    return packet;
  }

  /**
   * The record's kind and plaintext, or null (counted in stats) for anything that is not a fresh
   * authentic record. The record starts at `offset` in `packet` (after a transport's own header). A
   * `trial` asks whether a record from elsewhere belongs to this session at all (a peer whose address
   * changed): its refusal is not counted, as the record was never ours.
   */
  open(packet: Uint8Array, trial = false, offset = 0): OpenedRecord | null {
    const rejects = trial ? { rejectedAuth: 0, rejectedReplay: 0, rejectedMalformed: 0 } : this.stats;
    try {
      return this.openRecord(packet, offset, rejects);
    } catch {
      rejects.rejectedMalformed++; // nothing above should throw; this keeps the promise anyway
      return null;
    }
  }

  /** Moves our sending direction to the next key phase now (it also happens by itself on the limits). */
  rekey(): void {
    if (this.closed) throw new SessionError("CLOSED", "session is closed");
    const current = this.sending;
    const next = deriveNextPhase(this.sendDirection, current.phase + 1, current.chain);
    current.chain.fill(0);
    this.sending = { phase: current.phase + 1, key: keyObject(next.key), chain: next.chain, counter: 0, bytes: 0, startedAt: this.now() };
    this.sendNonce.writeUInt32BE(nonceSalt(this.sendDirection, this.sending.phase), 0);
    this.stats.rekeys++;
  }

  /** Wipes the chain keys; afterwards seal throws and open returns null. */
  destroy(): void {
    this.closed = true;
    this.sending.chain.fill(0);
    for (const phase of [this.receiving, ...this.ahead]) phase.chain?.fill(0);
    this.previous = null;
    this.ahead = [];
  }

  private openRecord(packet: Uint8Array, at: number, rejects: Pick<SessionStats, "rejectedAuth" | "rejectedReplay" | "rejectedMalformed">): OpenedRecord | null {
    const stats = this.stats;
    const end = packet.length;
    const length = end - at;
    if (this.closed || length < RECORD_OVERHEAD_BYTES || length > MAX_RECORD_BYTES || packet[at]! < RECORD_KIND_MIN) {
      rejects.rejectedMalformed++;
      return null;
    }
    const high = ((packet[at + 2]! << 24) | (packet[at + 3]! << 16) | (packet[at + 4]! << 8) | packet[at + 5]!) >>> 0;
    const low = ((packet[at + 6]! << 24) | (packet[at + 7]! << 16) | (packet[at + 8]! << 8) | packet[at + 9]!) >>> 0;
    if (high >= COUNTER_HIGH_LIMIT) {
      rejects.rejectedMalformed++;
      return null;
    }
    const counter = high * 2 ** 32 + low;

    const now = this.now();
    if (this.previous && now >= this.previousExpiresAt) this.previous = null;
    const keys = this.keysForPhase(packet[at + 1]!);
    if (keys === "old" || (keys && !keys.window.check(counter))) {
      rejects.rejectedReplay++;
      return null;
    }
    if (!keys) {
      rejects.rejectedMalformed++;
      return null;
    }

    const nonce = this.receiveNonce;
    nonce.writeUInt32BE(nonceSalt(this.receiveDirection, keys.phase), 0);
    for (let i = 0; i < 8; i++) nonce[4 + i] = packet[at + 2 + i]!;
    const decipher = createDecipheriv(AEAD_ALGORITHM, keys.key, nonce);
    decipher.setAAD(packet.subarray(at, at + RECORD_HEADER_BYTES));
    decipher.setAuthTag(packet.subarray(end - RECORD_TAG_BYTES, end));
    const plaintext = decipher.update(packet.subarray(at + RECORD_HEADER_BYTES, end - RECORD_TAG_BYTES));
    try {
      decipher.final();
    } catch {
      rejects.rejectedAuth++;
      return null;
    }

    keys.window.commit(counter);
    if (keys.phase > this.receiving.phase) this.switchTo(keys, now);
    this.confirmedByPeer = true;
    stats.opened++;
    stats.bytesIn += plaintext.length;
    return { kind: packet[at]!, plaintext, phase: keys.phase, counter };
  }

  /** Keys for a record's phase byte: current, previous (in grace), or a derived later phase. */
  private keysForPhase(phaseByte: number): ReceivePhase | "old" | undefined {
    const current = this.receiving;
    if (phaseByte === (current.phase & 0xff)) return current;
    if (this.previous && phaseByte === (this.previous.phase & 0xff)) return this.previous;
    const distance = (phaseByte - current.phase) & 0xff;
    if (distance >= 0x80) return "old"; // behind us: a phase whose grace is over
    if (distance > REKEY_LOOKAHEAD_PHASES) return undefined;
    while (this.ahead.length < distance) {
      const tail = this.ahead.at(-1) ?? current;
      const next = deriveNextPhase(this.receiveDirection, tail.phase + 1, tail.chain!);
      tail.chain!.fill(0);
      tail.chain = null;
      this.ahead.push({ phase: tail.phase + 1, key: keyObject(next.key), chain: next.chain, window: new ReplayWindow() });
    }
    return this.ahead[distance - 1];
  }

  private switchTo(keys: ReceivePhase, now: number): void {
    const index = this.ahead.indexOf(keys);
    this.previous = this.receiving;
    this.previousExpiresAt = now + this.limits.rekeyGraceMs;
    this.receiving = keys;
    this.ahead = this.ahead.slice(index + 1);
    this.stats.rekeys++;
  }
}
