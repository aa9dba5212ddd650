import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import { closeSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
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

const SECRET_FILE_MODE = 0o600;
const SECRET_DIR_MODE = 0o700;

/** Writes a file that holds a secret: mode 0600, atomically (temp + fsync + rename), parent created 0700. */
export function writeSecretFile(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: SECRET_DIR_MODE });
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    const fd = openSync(temporary, "wx", SECRET_FILE_MODE);
    try {
      fchmodSync(fd, SECRET_FILE_MODE); // the umask can only take bits away; be exact anyway
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}
