export { crc64Iso } from "./crc64.ts";
export { generateToken, hmacSha256, safeEqual, safeEqualText, tokenFromCredentials } from "./token.ts";
export {
  generateIdentity,
  IdentityError,
  loadOrCreateIdentity,
  signWithIdentity,
  verifyIdentitySignature,
  writeSecretFile,
  type Identity,
} from "./identity.ts";
export { loginProof, loginTranscript } from "./login.ts";
export { certificateFingerprint, createSelfSignedCertificate, type SelfSignedCertificate } from "./cert.ts";
export { ReplayWindow, REPLAY_WINDOW_PACKETS } from "./replay.ts";
export {
  DEFAULT_SESSION_LIMITS,
  MAX_PLAINTEXT_BYTES,
  RECORD_KIND_DATA,
  RECORD_KIND_KEEPALIVE,
  RECORD_KIND_MIN,
  RECORD_OVERHEAD_BYTES,
  SecureSession,
  SessionError,
  type OpenedRecord,
  type SessionLimits,
  type SessionStats,
} from "./session.ts";
export { Handshake, HandshakeError, isHandshakeMessage, SESSION_ID_BYTES, type HandshakeInit } from "./handshake.ts";
export { relayTicketKey, signTicket, TicketError, verifyTicket, type TicketErrorCode, type TicketFields, type TicketTier } from "./ticket.ts";
export { RELEASE_PUBLIC_KEY_PEM, releaseKeyFingerprint, TRUSTED_RELEASE_PUBLIC_KEY_PEM, verifyReleaseSignature } from "./release-key.ts";
