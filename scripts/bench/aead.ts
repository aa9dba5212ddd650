#!/usr/bin/env bun
// Per-packet cost of the peer session's record layer, on one core.
//
//   node_modules/.bin/bun scripts/bench/aead.ts [--bytes 1400] [--seconds 1]
//
// Rows: bare node:crypto AES-256-GCM (Buffer key, as DESIGN.md measured it), the same with a KeyObject,
// SecureSession.seal and SecureSession.open (header, nonce, replay window, stats included), and full
// handshakes (m1 + m2 on one core, both sides' work). Each row warms up, then runs for --seconds.

import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from "node:crypto";
import { cpus } from "node:os";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { Handshake } from "../../src/crypto/handshake.ts";
import { SecureSession } from "../../src/crypto/session.ts";

const DESIGN_SEALS_PER_SECOND = 440_000; // DESIGN.md, "Bun facts"
const WARMUP_MS = 200;
const BATCH = 1000;

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
}

const PACKET_BYTES = argument("bytes", 1400);
const MEASURE_MS = argument("seconds", 1) * 1000;

/** Runs `operation` in batches: a warm-up, then MEASURE_MS; returns operations per second. */
function rate(operation: (i: number) => void): number {
  let i = 0;
  const warmUntil = performance.now() + WARMUP_MS;
  while (performance.now() < warmUntil) for (let k = 0; k < BATCH; k++) operation(i++);
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < MEASURE_MS) {
    for (let k = 0; k < BATCH; k++) operation(i++);
    count += BATCH;
    elapsed = performance.now() - start;
  }
  return count / (elapsed / 1000);
}

const plaintext = randomBytes(PACKET_BYTES);
const rawKey = randomBytes(32);
const keyObject = createSecretKey(rawKey);
const aad = randomBytes(10);
const nonce = Buffer.alloc(12);

function bareSeal(key: Buffer | ReturnType<typeof createSecretKey>) {
  return (i: number) => {
    nonce.writeUInt32BE(i >>> 0, 8);
    const cipher = createCipheriv("aes-256-gcm", key, nonce);
    cipher.setAAD(aad);
    cipher.update(plaintext);
    cipher.final();
    cipher.getAuthTag();
  };
}

const openNonce = randomBytes(12);
const sealed = (() => {
  const cipher = createCipheriv("aes-256-gcm", keyObject, openNonce);
  cipher.setAAD(aad);
  const ciphertext = cipher.update(plaintext);
  cipher.final();
  return { ciphertext, tag: cipher.getAuthTag() };
})();

function bareOpen(): void {
  const decipher = createDecipheriv("aes-256-gcm", keyObject, openNonce);
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.tag);
  decipher.update(sealed.ciphertext);
  decipher.final();
}

const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
const sender = new SecureSession({ role: "initiator", secrets });

// open refuses replays, so seal a pool of records ahead (outside the timing) and give each pass over
// the pool a fresh receiver (same keys, empty replay window). The pool stays small to spare the GC.
const POOL_SIZE = 20_000;
const pool: Uint8Array[] = Array.from({ length: POOL_SIZE }, () => sender.seal(plaintext));
let receiver = new SecureSession({ role: "responder", secrets });
let poolIndex = 0;
let opened = 0;
function sessionOpen(): void {
  if (poolIndex === POOL_SIZE) {
    opened += receiver.stats.opened;
    receiver = new SecureSession({ role: "responder", secrets });
    poolIndex = 0;
  }
  if (!receiver.open(pool[poolIndex++]!)) throw new Error("a record did not open");
}

const alice = generateIdentity();
const bob = generateIdentity();
function handshake(): void {
  const sessionId = randomBytes(16);
  const i = new Handshake({ identity: alice, peerPublicKey: bob.publicKey, sessionId, role: "initiator" });
  const r = new Handshake({ identity: bob, peerPublicKey: alice.publicKey, sessionId, role: "responder" });
  i.receive(r.receive(i.start())!);
}

interface Row {
  name: string;
  perSecond: number;
  bytes: number;
}

const rows: Row[] = [
  { name: "node:crypto seal (Buffer key)", perSecond: rate(bareSeal(rawKey)), bytes: PACKET_BYTES },
  { name: "node:crypto seal (KeyObject)", perSecond: rate(bareSeal(keyObject)), bytes: PACKET_BYTES },
  { name: "node:crypto open (KeyObject)", perSecond: rate(bareOpen), bytes: PACKET_BYTES },
  { name: "SecureSession.seal", perSecond: rate(() => sender.seal(plaintext)), bytes: PACKET_BYTES },
  { name: "SecureSession.open", perSecond: rate(sessionOpen), bytes: PACKET_BYTES },
];
const handshakeRate = (() => {
  const start = performance.now();
  let count = 0;
  while (performance.now() - start < MEASURE_MS) {
    handshake();
    count++;
  }
  return count / ((performance.now() - start) / 1000);
})();

const format = (n: number) => Math.round(n).toLocaleString("en-US");
console.log(`AES-256-GCM, ${PACKET_BYTES}-byte plaintext, one core: Bun ${Bun.version}, ${cpus()[0]?.model ?? "unknown CPU"}`);
console.log("");
console.log(`${"operation".padEnd(32)}${"per second".padStart(12)}${"MB/s".padStart(9)}${"vs DESIGN.md 440k".padStart(19)}`);
for (const row of rows) {
  const megabytes = (row.perSecond * row.bytes) / 1e6;
  const ratio = `${((row.perSecond / DESIGN_SEALS_PER_SECOND) * 100).toFixed(0)}%`;
  console.log(`${row.name.padEnd(32)}${format(row.perSecond).padStart(12)}${megabytes.toFixed(0).padStart(9)}${ratio.padStart(19)}`);
}
console.log(`${"handshake (m1+m2, both sides)".padEnd(32)}${format(handshakeRate).padStart(12)}`);
console.log("");
console.log(`records sealed ${format(sender.stats.sealed)}, opened ${format(opened + receiver.stats.opened)}`);
