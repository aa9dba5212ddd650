import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/** A node's Ed25519 identity. The public key travels as base64url of its 32 raw bytes. */
export interface Identity {
  privateKey: KeyObject;
  publicKey: string;
}

export class IdentityError extends Error {
  readonly code = "IDENTITY_UNREADABLE";
}

export function publicKeyText(key: KeyObject): string {
  return createPublicKey(key).export({ format: "jwk" }).x as string;
}

export function generateIdentity(): Identity {
  const { privateKey } = generateKeyPairSync("ed25519");
  return { privateKey, publicKey: publicKeyText(privateKey) };
}

/** Loads the identity key from `path`, creating it (mode 0600) on first run. */
export function loadOrCreateIdentity(path: string): { identity: Identity; created: boolean } {
  if (existsSync(path)) {
    try {
      const privateKey = createPrivateKey(readFileSync(path, "utf8"));
      if (privateKey.asymmetricKeyType !== "ed25519") throw new Error("not an Ed25519 key");
      return { identity: { privateKey, publicKey: publicKeyText(privateKey) }, created: false };
    } catch (err) {
      throw new IdentityError(`identity key ${path} is unreadable (${(err as Error).message}); move it away to create a new one`);
    }
  }
  const identity = generateIdentity();
  writeSecretFile(path, identity.privateKey.export({ type: "pkcs8", format: "pem" }) as string);
  return { identity, created: true };
}

export function signWithIdentity(identity: Identity, data: Uint8Array): string {
  return sign(null, data, identity.privateKey).toString("base64url");
}

export function verifyIdentitySignature(publicKey: string, data: Uint8Array, signature: string): boolean {
  try {
    const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: publicKey }, format: "jwk" });
    return verify(null, data, key, Buffer.from(signature, "base64url"));
  } catch {
    return false;
  }
}

/** Writes a file that holds a secret: mode 0600, atomically, parent created 0700 when missing. */
export function writeSecretFile(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, content, { mode: 0o600 });
  renameSync(temporary, path);
}
