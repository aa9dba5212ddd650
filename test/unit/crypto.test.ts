import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  createSelfSignedCertificate,
  crc64Iso,
  generateIdentity,
  generateToken,
  loginProof,
  loginTranscript,
  signWithIdentity,
  tokenFromCredentials,
  verifyIdentitySignature,
} from "../../src/crypto/index.ts";

// Go's hash/crc64 golden values for crc64.ISO (crc64_test.go).
const GO_CRC64_ISO_VECTORS: [string, bigint][] = [
  ["", 0n],
  ["a", 3756002089226993664n],
  ["ab", 3946314357855485952n],
  ["abc", 3996597361055891456n],
  ["abcdefgh", 1018288516945639108n],
  ["Discard medicine more than two years old.", BigInt.asUintN(64, -8160267677714113313n)],
  ["How can you write a big system without C++?  -Paul Glick", BigInt.asUintN(64, -2634887315328513722n)],
];

describe("CRC64-ISO tokens", () => {
  it.each(GO_CRC64_ISO_VECTORS)("crc64(%j) matches Go's crc64.ISO", (input, expected) => {
    expect(crc64Iso(input)).toBe(expected);
  });

  it("derives a user's token as CRC64(user + password), in decimal", () => {
    expect(tokenFromCredentials("ab", "c")).toBe("3996597361055891456");
    expect(tokenFromCredentials("Discard medicine ", "more than two years old.")).toBe("10286476395995438303");
  });

  it("generates different tokens that fit a uint64", () => {
    const a = generateToken();
    const b = generateToken();
    expect(a).not.toBe(b);
    for (const t of [a, b]) expect(BigInt(t) < 2n ** 64n && BigInt(t) > 0n).toBe(true);
  });

  it("generates long random tokens (63 random bits: nothing to guess offline from a captured login)", () => {
    const tokens = Array.from({ length: 64 }, () => BigInt(generateToken()));
    expect(new Set(tokens).size).toBe(64);
    // Each token's top bit (2^62) is set half the time: 64 tokens all without it would be 1 in 2^64.
    expect(tokens.some((t) => t >= 2n ** 62n)).toBe(true);
    expect(tokens.every((t) => t < 2n ** 63n)).toBe(true);
  });
});

describe("login proof", () => {
  it("depends on the token, the nonce, the node and the key", () => {
    const { publicKey } = generateIdentity();
    const otherKey = generateIdentity().publicKey;
    const token = tokenFromCredentials("alice", "a password"); // 20 decimal digits, as users have
    const otherToken = tokenFromCredentials("alice", "another password");
    const proof = loginProof(token, "nonce-1", "edge", publicKey);
    expect(proof).toMatch(/^[A-Za-z0-9_-]{43}$/); // an HMAC-SHA256 in base64url, whatever the token's length
    expect(loginProof(token, "nonce-1", "edge", publicKey)).toBe(proof);
    expect(loginProof(otherToken, "nonce-1", "edge", publicKey)).not.toBe(proof);
    expect(loginProof(token, "nonce-2", "edge", publicKey)).not.toBe(proof);
    expect(loginProof(token, "nonce-1", "edgf", publicKey)).not.toBe(proof);
    expect(loginProof(token, "nonce-1", "edge", otherKey)).not.toBe(proof);
    // The token is not sent: a random 43-character proof holds these 20 digits with odds below 1e-34.
    expect(token).toMatch(/^\d{20}$/);
    expect(proof).not.toContain(token);
  });

  it("identity signatures verify only with the signer's key and transcript", () => {
    const alice = generateIdentity();
    const mallory = generateIdentity();
    const transcript = loginTranscript("n", "edge", alice.publicKey);
    const signature = signWithIdentity(alice, transcript);
    expect(verifyIdentitySignature(alice.publicKey, transcript, signature)).toBe(true);
    expect(verifyIdentitySignature(mallory.publicKey, transcript, signature)).toBe(false);
    expect(verifyIdentitySignature(alice.publicKey, loginTranscript("m", "edge", alice.publicKey), signature)).toBe(false);
    expect(verifyIdentitySignature("not-a-key", transcript, signature)).toBe(false);
  });
});

describe("self-signed certificate", () => {
  it("is a valid, self-issued certificate for localhost and 127.0.0.1 with a stable fingerprint", () => {
    const generated = createSelfSignedCertificate("inp2ps");
    const cert = new X509Certificate(generated.certPem);
    expect(cert.subject).toBe("CN=inp2ps");
    expect(cert.checkIssued(cert)).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.subjectAltName).toContain("DNS:localhost");
    expect(cert.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(new Date(cert.validTo).getTime()).toBeGreaterThan(Date.now() + 365 * 86_400_000);
    expect(generated.fingerprint256).toBe(cert.fingerprint256);
    expect(createSelfSignedCertificate("inp2ps").fingerprint256).not.toBe(generated.fingerprint256);
  });
});
