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
