import { createPublicKey, diffieHellman, generateKeyPairSync, sign, timingSafeEqual, verify, type KeyObject } from "node:crypto";
import type { Identity } from "./identity.ts";
import { deriveSessionSecrets, SecureSession, type SessionLimits } from "./session.ts";
import { hmacSha256 } from "./token.ts";

// The peer-session handshake: ephemeral X25519 on both sides for forward secrecy, each side signing
// the transcript with its Ed25519 identity key (the key the server registered), so both know who
// they talk to. Two messages, one round trip, SIGMA-style ("sign your own ephemeral, bound to both
// identities"):
//
//   m1 (initiator -> responder), 122 bytes:
//     type u8 = 1 | version u8 = 1 | sessionId 16 | ephemeral_i 32 | timestamp u64 BE ms | sig_i 64
//     h1    = HMAC-SHA256("inp2p handshake v1 m1"; sessionId, identity_i, identity_r, m1 without sig_i)
//     sig_i = Ed25519(identity_i, h1)
//   m2 (responder -> initiator), 114 bytes:
//     type u8 = 2 | version u8 = 1 | sessionId 16 | ephemeral_r 32 | sig_r 64
//     h2    = HMAC-SHA256("inp2p handshake v1 m2"; h1, sig_i, m2 without sig_r)   (the transcript hash)
//     sig_r = Ed25519(identity_r, h2)
//   keys: HKDF-SHA256(X25519(e_i, e_r), salt = sessionId, info = "inp2p session v1" | h2), session.ts
//
// Why the initiator signs m1 instead of sending a third message: the responder verifies one Ed25519
// signature before it does any X25519 work, so a stranger (even one holding the user token and the
// sessionId) costs it one verify per m1 and gets nothing back; and the initiator has proven its
// identity before the responder derives keys, so no m3 is needed. What m1's signature cannot prove is
// freshness: a replayed m1 (same session, within HANDSHAKE_MAX_CLOCK_SKEW_MS) makes a responder derive
// keys nobody else can use. Hence `session().confirmed` stays false on the responder until the first
// record from the initiator authenticates: keep the old session until the new one is confirmed, and
// (like WireGuard) refuse an m1 whose `peerTimestampMs` is not newer than the last one accepted.
// A replayed or forged m2 fails: sig_r covers h1, which covers the initiator's fresh ephemeral.
// Identities are bound in h1 (and so in h2), so neither signature can be relayed into another pairing.
// The first byte is the message type, as for records (kinds >= 0x10), so one byte demultiplexes.

export const HANDSHAKE_TYPE_INIT = 0x01;
export const HANDSHAKE_TYPE_RESPONSE = 0x02;
export const HANDSHAKE_VERSION = 1;
export const SESSION_ID_BYTES = 16;
export const HANDSHAKE_INIT_BYTES = 2 + SESSION_ID_BYTES + 32 + 8 + 64;
export const HANDSHAKE_RESPONSE_BYTES = 2 + SESSION_ID_BYTES + 32 + 64;
export const HANDSHAKE_MAX_BYTES = HANDSHAKE_INIT_BYTES;
/** How far an m1's timestamp may be from our clock (pass server-corrected time as `now`). */
export const HANDSHAKE_MAX_CLOCK_SKEW_MS = 60_000;

const KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;
const EPHEMERAL_OFFSET = 2 + SESSION_ID_BYTES;
const TIMESTAMP_OFFSET = EPHEMERAL_OFFSET + KEY_BYTES;
const INIT_SIGNED_BYTES = HANDSHAKE_INIT_BYTES - SIGNATURE_BYTES;
const RESPONSE_SIGNED_BYTES = HANDSHAKE_RESPONSE_BYTES - SIGNATURE_BYTES;
const M1_LABEL = "inp2p handshake v1 m1";
const M2_LABEL = "inp2p handshake v1 m2";

export type HandshakeErrorCode =
  | "BAD_VERSION"
  | "BAD_SIGNATURE"
  | "WRONG_SESSION"
  | "MALFORMED"
  | "STALE"
  /** A message this side does not expect now (wrong role, or a different message after completion). */
  | "UNEXPECTED"
  /** The init was unusable: a peer public key or sessionId of the wrong shape. */
  | "BAD_INIT";

export class HandshakeError extends Error {
  constructor(
    readonly code: HandshakeErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "HandshakeError";
  }
}

export interface HandshakeInit {
  identity: Identity;
  /** The peer's Ed25519 identity key as registered with the server (base64url of 32 raw bytes). */
  peerPublicKey: string;
  /** 16 random bytes from the server's coordination, the same on both sides. */
  sessionId: Uint8Array;
  role: "initiator" | "responder";
  now?: () => number;
  /** Passed to the session; tests shorten them. */
  sessionLimits?: Partial<SessionLimits>;
}

/** True when the first byte says "handshake message"; `receive` does the strict parsing. */
export function isHandshakeMessage(packet: Uint8Array): boolean {
  return (
    packet.length >= 2 &&
    packet.length <= HANDSHAKE_MAX_BYTES &&
    (packet[0] === HANDSHAKE_TYPE_INIT || packet[0] === HANDSHAKE_TYPE_RESPONSE)
  );
}

function rawIdentityKey(text: string): Buffer {
  const raw = Buffer.from(text, "base64url");
  if (raw.length !== KEY_BYTES || raw.toString("base64url") !== text) {
    throw new HandshakeError("BAD_INIT", "identity public key must be base64url of 32 bytes");
  }
  return raw;
}

function x25519PublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(raw).toString("base64url") }, format: "jwk" });
}

export class Handshake {
  private readonly identity: Identity;
  private readonly peerKey: KeyObject;
  private readonly sessionId: Buffer;
  private readonly role: "initiator" | "responder";
  private readonly now: () => number;
  private readonly sessionLimits: Partial<SessionLimits> | undefined;
  /** identity_i, identity_r as raw bytes, in that order whatever our role. */
  private readonly identities: [Buffer, Buffer];
  private ephemeral: { privateKey: KeyObject; publicKey: Buffer } | null = null;
  private m1: Buffer | null = null;
  private m2: Buffer | null = null;
  private h1: Buffer | null = null;
  private secureSession: SecureSession | null = null;
  private hash: Buffer | null = null;
  private peerTimestamp: number | null = null;

  constructor(init: HandshakeInit) {
    if (init.sessionId.length !== SESSION_ID_BYTES) {
      throw new HandshakeError("BAD_INIT", `sessionId must be ${SESSION_ID_BYTES} bytes`);
    }
    const own = rawIdentityKey(init.identity.publicKey);
    const peer = rawIdentityKey(init.peerPublicKey);
    this.identity = init.identity;
    try {
      this.peerKey = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: init.peerPublicKey }, format: "jwk" });
    } catch {
      throw new HandshakeError("BAD_INIT", "peer public key is not an Ed25519 key");
    }
    this.sessionId = Buffer.from(init.sessionId);
    this.role = init.role;
    this.now = init.now ?? Date.now;
    this.sessionLimits = init.sessionLimits;
    this.identities = init.role === "initiator" ? [own, peer] : [peer, own];
  }

  get complete(): boolean {
    return this.secureSession !== null;
  }

  /** The transcript hash h2 once complete: equal on both sides, usable for channel binding. */
  get transcriptHash(): Buffer | undefined {
    return this.hash ? Buffer.from(this.hash) : undefined;
  }

  /** The responder's view of the initiator's m1 timestamp, for a caller enforcing monotonic m1s. */
  get peerTimestampMs(): number | undefined {
    return this.peerTimestamp ?? undefined;
  }

  /** Initiator only: m1. Calling again returns the same bytes (for retransmission). */
  start(): Uint8Array {
    if (this.role !== "initiator") throw new HandshakeError("UNEXPECTED", "only the initiator starts a handshake");
    if (this.m1) return Buffer.from(this.m1);
    this.ephemeral = this.newEphemeral();
    const m1 = Buffer.alloc(HANDSHAKE_INIT_BYTES);
    m1[0] = HANDSHAKE_TYPE_INIT;
    m1[1] = HANDSHAKE_VERSION;
    this.sessionId.copy(m1, 2);
    this.ephemeral.publicKey.copy(m1, EPHEMERAL_OFFSET);
    m1.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(this.now()))), TIMESTAMP_OFFSET);
    this.h1 = this.initHash(m1);
    sign(null, this.h1, this.identity.privateKey).copy(m1, INIT_SIGNED_BYTES);
    this.m1 = m1;
    return Buffer.from(m1);
  }

  /**
   * Handles a handshake message; returns the message to send back, if any. Throws HandshakeError;
   * a failed message changes nothing, so a forged packet cannot break a handshake in progress.
   */
  receive(message: Uint8Array): Uint8Array | undefined {
    const bytes = Buffer.from(message.buffer, message.byteOffset, message.length);
    if (bytes.length < 2 || bytes.length > HANDSHAKE_MAX_BYTES) throw new HandshakeError("MALFORMED", `handshake message of ${bytes.length} bytes`);
    const type = bytes[0];
    if (type !== HANDSHAKE_TYPE_INIT && type !== HANDSHAKE_TYPE_RESPONSE) throw new HandshakeError("MALFORMED", `unknown handshake type ${type}`);
    if (bytes[1] !== HANDSHAKE_VERSION) throw new HandshakeError("BAD_VERSION", `handshake version ${bytes[1]}, expected ${HANDSHAKE_VERSION}`);
    const expectedLength = type === HANDSHAKE_TYPE_INIT ? HANDSHAKE_INIT_BYTES : HANDSHAKE_RESPONSE_BYTES;
    if (bytes.length !== expectedLength) throw new HandshakeError("MALFORMED", `handshake type ${type} must be ${expectedLength} bytes, got ${bytes.length}`);
    if (!timingSafeEqual(bytes.subarray(2, 2 + SESSION_ID_BYTES), this.sessionId)) throw new HandshakeError("WRONG_SESSION", "sessionId does not match");

    if (this.role === "responder" && type === HANDSHAKE_TYPE_INIT) return this.receiveInit(bytes);
    if (this.role === "initiator" && type === HANDSHAKE_TYPE_RESPONSE) return this.receiveResponse(bytes);
    throw new HandshakeError("UNEXPECTED", `a ${this.role} does not accept handshake type ${type}`);
  }

  session(): SecureSession {
    if (!this.secureSession) throw new HandshakeError("UNEXPECTED", "handshake is not complete");
    return this.secureSession;
  }

  private receiveInit(m1: Buffer): Uint8Array {
    if (this.m1) {
      // The initiator retransmits m1 when m2 was lost: answer the same m1 with the same m2, no new work.
      if (this.m1.equals(m1)) return Buffer.from(this.m2!);
      throw new HandshakeError("UNEXPECTED", "a different m1 after the handshake completed");
    }
    const timestamp = Number(m1.readBigUInt64BE(TIMESTAMP_OFFSET));
    if (Math.abs(this.now() - timestamp) > HANDSHAKE_MAX_CLOCK_SKEW_MS) {
      throw new HandshakeError("STALE", `m1 timestamp is ${Math.round(this.now() - timestamp)} ms away from our clock`);
    }
    const h1 = this.initHash(m1.subarray(0, INIT_SIGNED_BYTES));
    const signature = m1.subarray(INIT_SIGNED_BYTES);
    if (!verify(null, h1, this.peerKey, signature)) throw new HandshakeError("BAD_SIGNATURE", "m1 is not signed by the peer's identity key");

    const shared = this.sharedSecret(m1.subarray(EPHEMERAL_OFFSET, EPHEMERAL_OFFSET + KEY_BYTES), this.newEphemeral());
    const m2 = Buffer.alloc(HANDSHAKE_RESPONSE_BYTES);
    m2[0] = HANDSHAKE_TYPE_RESPONSE;
    m2[1] = HANDSHAKE_VERSION;
    this.sessionId.copy(m2, 2);
    this.ephemeral!.publicKey.copy(m2, EPHEMERAL_OFFSET);
    const h2 = this.responseHash(h1, signature, m2.subarray(0, RESPONSE_SIGNED_BYTES));
    sign(null, h2, this.identity.privateKey).copy(m2, RESPONSE_SIGNED_BYTES);

    this.m1 = Buffer.from(m1);
    this.m2 = m2;
    this.peerTimestamp = timestamp;
    this.finish(shared, h2);
    return Buffer.from(m2);
  }

  private receiveResponse(m2: Buffer): undefined {
    if (!this.m1) throw new HandshakeError("UNEXPECTED", "m2 before m1 was sent");
    if (this.m2) {
      if (this.m2.equals(m2)) return undefined; // a duplicate: nothing to do
      throw new HandshakeError("UNEXPECTED", "a different m2 after the handshake completed");
    }
    const h2 = this.responseHash(this.h1!, this.m1.subarray(INIT_SIGNED_BYTES), m2.subarray(0, RESPONSE_SIGNED_BYTES));
    if (!verify(null, h2, this.peerKey, m2.subarray(RESPONSE_SIGNED_BYTES))) {
      throw new HandshakeError("BAD_SIGNATURE", "m2 is not signed by the peer's identity key");
    }
    const shared = this.sharedSecret(m2.subarray(EPHEMERAL_OFFSET, EPHEMERAL_OFFSET + KEY_BYTES), this.ephemeral!);
    this.m2 = Buffer.from(m2);
    this.finish(shared, h2);
    return undefined;
  }

  private newEphemeral(): { privateKey: KeyObject; publicKey: Buffer } {
    const { privateKey, publicKey } = generateKeyPairSync("x25519");
    this.ephemeral = { privateKey, publicKey: Buffer.from(publicKey.export({ format: "jwk" }).x as string, "base64url") };
    return this.ephemeral;
  }

  private sharedSecret(peerEphemeral: Uint8Array, own: { privateKey: KeyObject }): Buffer {
    // node:crypto refuses a low-order peer point (all-zero result); the check below is belt and braces.
    let shared: Buffer;
    try {
      shared = diffieHellman({ privateKey: own.privateKey, publicKey: x25519PublicKey(peerEphemeral) });
    } catch {
      throw new HandshakeError("MALFORMED", "peer ephemeral key is not a usable X25519 point");
    }
    if (shared.every((byte) => byte === 0)) throw new HandshakeError("MALFORMED", "peer ephemeral key is of low order");
    return shared;
  }

  private initHash(signedPart: Uint8Array): Buffer {
    return hmacSha256(M1_LABEL, this.sessionId, this.identities[0], this.identities[1], signedPart.subarray(0, INIT_SIGNED_BYTES));
  }

  private responseHash(h1: Uint8Array, initSignature: Uint8Array, signedPart: Uint8Array): Buffer {
    return hmacSha256(M2_LABEL, h1, initSignature, signedPart);
  }

  private finish(shared: Buffer, h2: Buffer): void {
    const secrets = deriveSessionSecrets(shared, this.sessionId, h2);
    shared.fill(0);
    this.secureSession = new SecureSession({ role: this.role, secrets, now: this.now, limits: this.sessionLimits });
    secrets.initiatorToResponder.fill(0);
    secrets.responderToInitiator.fill(0);
    secrets.chain.fill(0);
    this.hash = h2;
    this.ephemeral = null; // forward secrecy: the ephemeral private key is not kept
  }
}
