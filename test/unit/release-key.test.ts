// The release signing key: install.sh trusts the same public key as the binaries, and
// verifyReleaseSignature accepts exactly the signatures of that key over those bytes.

import { generateKeyPairSync, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, test } from "vitest";
import { RELEASE_PUBLIC_KEY_PEM, releaseKeyFingerprint, verifyReleaseSignature } from "../../src/crypto/index.ts";

const INSTALL_SH = resolve(import.meta.dirname, "../../install.sh");

function testKey() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { privateKey, publicPem: publicKey.export({ type: "spki", format: "pem" }).toString() };
}

describe("release key", () => {
  test("install.sh holds the public key the binaries embed", () => {
    const script = readFileSync(INSTALL_SH, "utf8");
    const match = /^RELEASE_PUBLIC_KEY='([^']+)'$/m.exec(script);
    expect(match, "RELEASE_PUBLIC_KEY='…' in install.sh").not.toBeNull();
    expect(match![1]!.trim()).toBe(RELEASE_PUBLIC_KEY_PEM.trim());
  });

  test("a signature verifies over the signed bytes only, and only with the signer's key", () => {
    const key = testKey();
    const sums = Buffer.from("aa  inp2pc\nbb  inp2ps\n");
    const signature = sign(null, sums, key.privateKey);
    expect(verifyReleaseSignature(sums, signature, key.publicPem)).toBe(true);
    expect(verifyReleaseSignature(Buffer.from("ab  inp2pc\nbb  inp2ps\n"), signature, key.publicPem)).toBe(false);
    expect(verifyReleaseSignature(sums, signature, testKey().publicPem)).toBe(false);
    expect(verifyReleaseSignature(sums, signature)).toBe(false);
  });

  const noOpenssl = Bun.which("openssl") === null ? "openssl is not installed (scripts/natlab/deps.sh installs it)" : undefined;
  if (noOpenssl) console.warn(`release key fingerprint test skipped: ${noOpenssl}`);
  test.skipIf(noOpenssl)("the fingerprint is the SHA-256 of the DER public key, as openssl and sha256sum print it", () => {
    const der = Bun.spawnSync(["openssl", "pkey", "-pubin", "-outform", "DER"], { stdin: Buffer.from(RELEASE_PUBLIC_KEY_PEM) });
    expect(der.exitCode).toBe(0);
    const sum = Bun.spawnSync(["sha256sum"], { stdin: der.stdout });
    expect(releaseKeyFingerprint()).toBe(sum.stdout.toString().split(" ")[0]);
    expect(releaseKeyFingerprint(testKey().publicPem)).not.toBe(releaseKeyFingerprint());
  });
});
