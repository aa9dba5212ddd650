import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { certificateFingerprint, createSelfSignedCertificate, writeSecretFile } from "../crypto/index.ts";

export interface TlsMaterial {
  cert: string;
  key: string;
  fingerprint256: string;
  source: "files" | "self-signed, generated now" | "self-signed";
  certPath: string;
}

export class TlsSetupError extends Error {
  readonly code = "TLS_SETUP";
}

export const SELF_SIGNED_CERT_FILE = "inp2ps.tls.crt";
export const SELF_SIGNED_KEY_FILE = "inp2ps.tls.key";

export interface TlsSettings {
  tls: "auto" | "off";
  tls_cert?: string;
  tls_key?: string;
  data_dir: string;
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new TlsSetupError(`cannot read TLS ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The certificate inp2ps serves: the configured files, else a self-signed one kept in the data dir. */
export function resolveTls(settings: TlsSettings): TlsMaterial | null {
  if (settings.tls === "off") return null;
  if (settings.tls_cert && settings.tls_key) {
    const cert = readPem(settings.tls_cert, "certificate");
    const key = readPem(settings.tls_key, "key");
    let fingerprint256: string;
    try {
      fingerprint256 = certificateFingerprint(cert);
    } catch (err) {
      throw new TlsSetupError(`TLS certificate ${settings.tls_cert} is not a PEM certificate: ${(err as Error).message}`);
    }
    return { cert, key, fingerprint256, source: "files", certPath: settings.tls_cert };
  }
  const certPath = join(settings.data_dir, SELF_SIGNED_CERT_FILE);
  const keyPath = join(settings.data_dir, SELF_SIGNED_KEY_FILE);
  if (existsSync(certPath) && existsSync(keyPath)) {
    const cert = readPem(certPath, "certificate");
    return { cert, key: readPem(keyPath, "key"), fingerprint256: certificateFingerprint(cert), source: "self-signed", certPath };
  }
  const generated = createSelfSignedCertificate("inp2ps");
  writeSecretFile(keyPath, generated.keyPem);
  writeSecretFile(certPath, generated.certPem);
  return { cert: generated.certPem, key: generated.keyPem, fingerprint256: generated.fingerprint256, source: "self-signed, generated now", certPath };
}
