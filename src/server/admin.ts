import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { safeEqualText, writeSecretFile } from "../crypto/index.ts";

/** The admin credential's file in the data dir, when [server] admin_token is not set. */
export const ADMIN_CREDENTIAL_FILE = "inp2ps.admin";
/** 32 random bytes, base64url: 43 characters that cannot be mistaken for a uint64 user token. */
export const ADMIN_CREDENTIAL_BYTES = 32;

/** Where the admin credential lives: the `admin_token` setting, or the file in the data dir. */
export interface AdminCredential {
  secret: string;
  /** The data-dir file it came from; undefined when it is [server] admin_token. */
  file?: string;
  /** True when this start generated it (so it is printed once). */
  created: boolean;
}

export class AdminCredentialError extends Error {
  readonly code = "ADMIN_CREDENTIAL";
  constructor(message: string) {
    super(message);
    this.name = "AdminCredentialError";
  }
}

export function adminCredentialFile(dataDir: string): string {
  return join(dataDir, ADMIN_CREDENTIAL_FILE);
}

/** Where to find the credential, in words for error messages. */
export function adminCredentialSource(credential: Pick<AdminCredential, "file">): string {
  return credential.file ?? "admin_token in [server] of the server's config";
}

/** The admin credential from admin_token or the data-dir file; undefined when neither exists yet. */
export function readAdminCredential(settings: { admin_token?: string; data_dir: string }): AdminCredential | undefined {
  if (settings.admin_token) return { secret: settings.admin_token, created: false };
  const file = adminCredentialFile(settings.data_dir);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new AdminCredentialError(`cannot read the admin credential ${file}: ${(err as Error).message}`);
  }
  const secret = text.trim();
  if (secret === "") throw new AdminCredentialError(`the admin credential file ${file} is empty: delete it and restart inp2ps to make a new one`);
  return { secret, file, created: false };
}

/**
 * The server's admin credential: admin_token when set, else the data-dir file, generated on the first
 * start. It is never a user token: a file holding one is refused (the config schema refuses admin_token).
 */
export function loadAdminCredential(settings: { admin_token?: string; data_dir: string }, userTokens: readonly string[]): AdminCredential {
  let credential = readAdminCredential(settings);
  if (!credential) {
    const file = adminCredentialFile(settings.data_dir);
    credential = { secret: randomBytes(ADMIN_CREDENTIAL_BYTES).toString("base64url"), file, created: true };
    writeSecretFile(file, credential.secret + "\n");
  }
  if (userTokens.some((token) => safeEqualText(token, credential.secret))) {
    const fix = credential.file ? "delete the file and restart inp2ps to make a new one" : "set admin_token to something else, or remove it to use a generated one";
    throw new AdminCredentialError(`the admin credential in ${adminCredentialSource(credential)} equals a user token, and an admin credential must never be one: ${fix}`);
  }
  return credential;
}
