// The Ed25519 key that signs releases: scripts/build.ts signs each SHA256SUMS into SHA256SUMS.sig (the
// raw 64-byte signature of the file's bytes), and install.sh checks it with `openssl pkeyutl -verify
// -rawin`. install.sh holds the same public key (test/unit/release-key.test.ts keeps them equal). The
// private key is never in the repository; tests sign with a key they make.

import { createHash, createPublicKey, verify } from "node:crypto";

export const RELEASE_PUBLIC_KEY_PEM = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAEzQrA3TTcV++TLcIWrkoKWv90Ampymnkg1NixGxnTsU=
-----END PUBLIC KEY-----
`;

// scripts/build.ts defines it (from $INP2P_TEST_RELEASE_PUBLIC_KEY) only for builds that tests sign with
// a key of their own; --version prints the fingerprint of the key a binary trusts.
declare const INP2P_TEST_RELEASE_PUBLIC_KEY_PEM: string;

/** The key this program checks releases against: the release key, except in a test build. */
export const TRUSTED_RELEASE_PUBLIC_KEY_PEM: string =
  typeof INP2P_TEST_RELEASE_PUBLIC_KEY_PEM === "string" ? INP2P_TEST_RELEASE_PUBLIC_KEY_PEM : RELEASE_PUBLIC_KEY_PEM;

/** Whether signature is a valid Ed25519 signature of data; publicKeyPem is a parameter for tests only. */
export function verifyReleaseSignature(data: Uint8Array, signature: Uint8Array, publicKeyPem = TRUSTED_RELEASE_PUBLIC_KEY_PEM): boolean {
  return verify(null, data, createPublicKey(publicKeyPem), signature);
}

/** SHA-256 of the DER public key, as `openssl pkey -pubin -outform DER | sha256sum` prints it. */
export function releaseKeyFingerprint(publicKeyPem = TRUSTED_RELEASE_PUBLIC_KEY_PEM): string {
  const der = createPublicKey(publicKeyPem).export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("hex");
}
