import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { crc64Iso } from "./crc64.ts";

/** A user token is a uint64, written in decimal. Users may derive it as CRC64(user + password). */
export function tokenFromCredentials(user: string, password: string): string {
  return crc64Iso(user + password).toString();
}

export function generateToken(): string {
  // 63 random bits keep the value a positive TOML integer as well as a valid uint64.
  return (randomBytes(8).readBigUInt64BE() >> 1n).toString();
}

export function hmacSha256(key: string | Uint8Array, ...parts: (string | Uint8Array)[]): Buffer {
  const mac = createHmac("sha256", key);
  // Parts are length-prefixed so that ("ab","c") and ("a","bc") never collide.
  for (const part of parts) {
    const bytes = typeof part === "string" ? Buffer.from(part, "utf8") : part;
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    mac.update(length).update(bytes);
  }
  return mac.digest();
}

export function safeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Constant-time comparison of two secrets given as text (admin tokens in HTTP headers). */
export function safeEqualText(a: string, b: string): boolean {
  return safeEqual(hmacSha256("cmp", a), hmacSha256("cmp", b));
}
