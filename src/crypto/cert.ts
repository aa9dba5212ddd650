import { generateKeyPairSync, randomBytes, sign, X509Certificate } from "node:crypto";

// A self-signed ECDSA P-256 certificate, encoded by hand: node:crypto can parse certificates but
// not make them, and one certificate of fixed shape is a few lines of DER.

const CERT_VALIDITY_DAYS = 3650;
const CLOCK_SKEW_ALLOWANCE_MS = 60 * 60 * 1000;

function der(tag: number, ...content: Uint8Array[]): Buffer {
  const body = Buffer.concat(content);
  const n = body.length;
  const length =
    n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...length]), body]);
}

const sequence = (...items: Uint8Array[]) => der(0x30, ...items);
const oid = (bytes: number[]) => der(0x06, Buffer.from(bytes));
const ECDSA_WITH_SHA256 = oid([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
const COMMON_NAME = oid([0x55, 0x04, 0x03]);
const SUBJECT_ALT_NAME = oid([0x55, 0x1d, 0x11]);

function utcTime(date: Date): Buffer {
  const text = date.toISOString().replace(/[-:T]/g, "").slice(2, 14) + "Z"; // YYMMDDHHMMSSZ
  return der(0x17, Buffer.from(text, "ascii"));
}

export interface SelfSignedCertificate {
  certPem: string;
  keyPem: string;
  fingerprint256: string;
}

/** A certificate for `commonName`, valid for localhost and 127.0.0.1 besides (for local tools). */
export function createSelfSignedCertificate(commonName: string): SelfSignedCertificate {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01; // positive and without a leading zero byte
  const name = sequence(der(0x31, sequence(COMMON_NAME, der(0x0c, Buffer.from(commonName, "utf8")))));
  const now = Date.now();
  const altNames = sequence(der(0x82, Buffer.from("localhost")), der(0x87, Buffer.from([127, 0, 0, 1])));
  const tbs = sequence(
    der(0xa0, der(0x02, Buffer.from([2]))), // version 3
    der(0x02, serial),
    sequence(ECDSA_WITH_SHA256),
    name,
    sequence(utcTime(new Date(now - CLOCK_SKEW_ALLOWANCE_MS)), utcTime(new Date(now + CERT_VALIDITY_DAYS * 86_400_000))),
    name,
    publicKey.export({ type: "spki", format: "der" }),
    der(0xa3, sequence(sequence(SUBJECT_ALT_NAME, der(0x04, altNames)))),
  );
  const signature = sign("sha256", tbs, privateKey);
  const certDer = sequence(tbs, sequence(ECDSA_WITH_SHA256), der(0x03, Buffer.from([0]), signature));
  const certPem = `-----BEGIN CERTIFICATE-----\n${certDer.toString("base64").match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`;
  return {
    certPem,
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    fingerprint256: new X509Certificate(certPem).fingerprint256,
  };
}

export function certificateFingerprint(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}
