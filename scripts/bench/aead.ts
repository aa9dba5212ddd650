#!/usr/bin/env bun
// Per-packet cost of the peer session's record layer, on one core.
//
//   node_modules/.bin/bun scripts/bench/aead.ts [--bytes 1400] [--seconds 1] [--rounds 3]
//
// Rows: bare node:crypto AES-256-GCM (Buffer key, as DESIGN.md measured it), the same with a KeyObject,
// a record sealed/opened in place with a reused libcrypto context through koffi against node:crypto
// (native-aead.ts: a lever that did not pay), SecureSession.seal and SecureSession.open (header, nonce,
// replay window, stats included), and full handshakes (m1 + m2 on one core, both sides'
// work). Each row warms up, then runs for --seconds; the rows run interleaved --rounds times (A/B/A/B,
// so a neighbour's load hits all of them alike) and the median is printed.

import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from "node:crypto";
import { cpus, loadavg } from "node:os";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { Handshake } from "../../src/crypto/handshake.ts";
import { SecureSession } from "../../src/crypto/session.ts";
import { loadNativeAead, nodeAead, type Aead } from "./native-aead.ts";

const DESIGN_SEALS_PER_SECOND = 440_000; // DESIGN.md, "Bun facts"
const WARMUP_MS = 200;
const BATCH = 1000;

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
}

const PACKET_BYTES = argument("bytes", 1400);
const MEASURE_MS = argument("seconds", 1) * 1000;
const ROUNDS = argument("rounds", 3);

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
const sealedRecord = (() => {
  const cipher = createCipheriv("aes-256-gcm", keyObject, openNonce);
  cipher.setAAD(aad);
  const ciphertext = cipher.update(plaintext);
  cipher.final();
  return { ciphertext, tag: cipher.getAuthTag() };
})();

function bareOpen(): void {
  const decipher = createDecipheriv("aes-256-gcm", keyObject, openNonce);
  decipher.setAAD(aad);
  decipher.setAuthTag(sealedRecord.tag);
  decipher.update(sealedRecord.ciphertext);
  decipher.final();
}

const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };

// open refuses replays, so seal a pool of records ahead (outside the timing) and give each pass over
// the pool a fresh receiver (same keys, empty replay window). The pool stays small to spare the GC.
const POOL_SIZE = 20_000;
const sender = new SecureSession({ role: "initiator", secrets });
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

/** A 10-byte header, the plaintext and a tag in one record buffer, sealed in place, then opened. */
function recordRows(aead: Aead): Row[] {
  const key = aead.key(Buffer.from(rawKey));
  const record = Buffer.alloc(10 + PACKET_BYTES + 16);
  const header = record.subarray(0, 10);
  const body = record.subarray(10, 10 + PACKET_BYTES);
  const tag = record.subarray(10 + PACKET_BYTES);
  const sealNonce = Buffer.alloc(12);
  const recordSeal = (i: number) => {
    sealNonce.writeUInt32BE(i >>> 0, 8);
    key.seal(sealNonce, header, plaintext, body, tag);
  };
  const sealedBody = Buffer.from(body);
  const sealedTag = Buffer.from(tag);
  recordSeal(0);
  body.copy(sealedBody);
  tag.copy(sealedTag);
  const openNonce = Buffer.from(sealNonce);
  const recordOpen = () => {
    if (!key.open(openNonce, header, sealedBody, sealedTag)) throw new Error(`a ${aead.name} record did not open`);
  };
  return [
    { name: `record seal in place (${aead.name})`, run: recordSeal, bytes: PACKET_BYTES, rates: [] },
    { name: `record open (${aead.name})`, run: recordOpen, bytes: PACKET_BYTES, rates: [] },
  ];
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
  run: (i: number) => void;
  bytes: number;
  rates: number[];
}

const aeads: Aead[] = [nodeAead];
try {
  aeads.unshift(loadNativeAead());
} catch (err) {
  console.log(`native AEAD unavailable, node:crypto only: ${(err as Error).message}`);
}
const rows: Row[] = [
  { name: "node:crypto seal (Buffer key)", run: bareSeal(rawKey), bytes: PACKET_BYTES, rates: [] },
  { name: "node:crypto seal (KeyObject)", run: bareSeal(keyObject), bytes: PACKET_BYTES, rates: [] },
  { name: "node:crypto open (KeyObject)", run: bareOpen, bytes: PACKET_BYTES, rates: [] },
  ...aeads.flatMap(recordRows),
  { name: "SecureSession.seal", run: () => sender.seal(plaintext), bytes: PACKET_BYTES, rates: [] },
  { name: "SecureSession.open", run: sessionOpen, bytes: PACKET_BYTES, rates: [] },
];
for (let round = 0; round < ROUNDS; round++) for (const row of rows) row.rates.push(rate(row.run));
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
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
console.log(`median of ${ROUNDS} interleaved rounds; load average at the end ${loadavg().map((n) => n.toFixed(2)).join(" ")}`);
console.log("");
console.log(`${"operation".padEnd(34)}${"per second".padStart(12)}${"MB/s".padStart(9)}${"vs DESIGN.md 440k".padStart(19)}   rounds`);
for (const row of rows) {
  const perSecond = median(row.rates);
  const megabytes = (perSecond * row.bytes) / 1e6;
  const ratio = `${((perSecond / DESIGN_SEALS_PER_SECOND) * 100).toFixed(0)}%`;
  console.log(`${row.name.padEnd(34)}${format(perSecond).padStart(12)}${megabytes.toFixed(0).padStart(9)}${ratio.padStart(19)}   ${row.rates.map((r) => format(r)).join(" / ")}`);
}
console.log(`${"handshake (m1+m2, both sides)".padEnd(32)}${format(handshakeRate).padStart(12)}`);
console.log("");
console.log(`records sealed ${format(sender.stats.sealed)}, opened ${format(opened + receiver.stats.opened)}`);
