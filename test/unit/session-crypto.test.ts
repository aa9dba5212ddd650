import { createDecipheriv, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { generateIdentity, type Identity } from "../../src/crypto/identity.ts";
import {
  Handshake,
  HANDSHAKE_INIT_BYTES,
  HANDSHAKE_RESPONSE_BYTES,
  HANDSHAKE_TYPE_INIT,
  HANDSHAKE_TYPE_RESPONSE,
  HANDSHAKE_VERSION,
  HandshakeError,
  isHandshakeMessage,
  type HandshakeErrorCode,
} from "../../src/crypto/handshake.ts";
import { REPLAY_WINDOW_PACKETS, ReplayWindow } from "../../src/crypto/replay.ts";
import {
  deriveNextPhase,
  DIRECTION_INITIATOR_TO_RESPONDER,
  MAX_PLAINTEXT_BYTES,
  REKEY_AFTER_MS,
  REKEY_GRACE_MS,
  RECORD_KIND_KEEPALIVE,
  recordNonce,
  SecureSession,
  SessionError,
  type SessionLimits,
  type SessionStats,
} from "../../src/crypto/session.ts";
import { randomBytes as seededBytes, randomInt } from "../helpers/prng.ts";
import { testRandom } from "../helpers/seed.ts";

const START_MS = 1_700_000_000_000;

interface Clock {
  t: number;
}

function nodes() {
  return { alice: generateIdentity(), bob: generateIdentity(), mallory: generateIdentity() };
}

function handshakePair(
  initiator: Identity,
  responder: Identity,
  options: { clock?: Clock; sessionId?: Buffer; limits?: Partial<SessionLimits> } = {},
) {
  const clock = options.clock ?? { t: START_MS };
  const sessionId = options.sessionId ?? randomBytes(16);
  const now = () => clock.t;
  const i = new Handshake({ identity: initiator, peerPublicKey: responder.publicKey, sessionId, role: "initiator", now, sessionLimits: options.limits });
  const r = new Handshake({ identity: responder, peerPublicKey: initiator.publicKey, sessionId, role: "responder", now, sessionLimits: options.limits });
  return { i, r, clock, sessionId };
}

function connect(options: { limits?: Partial<SessionLimits> } = {}) {
  const { alice, bob } = nodes();
  const pair = handshakePair(alice, bob, options);
  const m2 = pair.r.receive(pair.i.start());
  expect(pair.i.receive(m2!)).toBeUndefined();
  return { ...pair, a: pair.i.session(), b: pair.r.session() };
}

function expectHandshakeError(fn: () => unknown, code: HandshakeErrorCode): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(HandshakeError);
    expect((error as HandshakeError).code).toBe(code);
    return;
  }
  throw new Error(`expected HandshakeError ${code}`);
}

function rejected(stats: SessionStats): number {
  return stats.rejectedAuth + stats.rejectedReplay + stats.rejectedMalformed;
}

function text(record: { plaintext: Uint8Array } | null): string | null {
  return record ? Buffer.from(record.plaintext).toString() : null;
}

describe("handshake", () => {
  it("completes both ways round, and both sides derive the same keys", () => {
    const { alice, bob } = nodes();
    for (const [initiator, responder] of [
      [alice, bob],
      [bob, alice],
    ] as const) {
      const { i, r } = handshakePair(initiator, responder);
      const m1 = i.start();
      expect(m1.length).toBe(122);
      expect(isHandshakeMessage(m1)).toBe(true);
      const m2 = r.receive(m1)!;
      expect(m2.length).toBe(114);
      expect(isHandshakeMessage(m2)).toBe(true);
      expect(r.complete).toBe(true);
      expect(i.complete).toBe(false);
      expect(i.receive(m2)).toBeUndefined();
      expect(i.complete).toBe(true);
      expect(i.transcriptHash!.equals(r.transcriptHash!)).toBe(true);

      const a = i.session();
      const b = r.session();
      expect(a.confirmed).toBe(true);
      expect(b.confirmed).toBe(false); // until a record from the initiator authenticates
      expect(text(b.open(a.seal(Buffer.from("to responder"))))).toBe("to responder");
      expect(b.confirmed).toBe(true);
      expect(text(a.open(b.seal(Buffer.from("to initiator"))))).toBe("to initiator");
      expect(isHandshakeMessage(a.seal(Buffer.from("x")))).toBe(false);
    }
  });

  it("answers a retransmitted m1 with the same m2 and ignores a duplicate m2", () => {
    const { i, r } = handshakePair(generateIdentity(), generateIdentity());
    const m1 = i.start();
    expect(Buffer.from(i.start()).equals(Buffer.from(m1))).toBe(true);
    const m2 = r.receive(m1)!;
    expect(Buffer.from(r.receive(m1)!).equals(Buffer.from(m2))).toBe(true);
    i.receive(m2);
    expect(i.receive(m2)).toBeUndefined();
    expect(i.session()).toBe(i.session());
  });

  it("an impostor holding everything but the registered identity key fails on either side (BAD_SIGNATURE)", () => {
    const { alice, bob, mallory } = nodes();
    const sessionId = randomBytes(16);
    const now = () => START_MS;
    // Mallory as the initiator, claiming to be Alice: Bob checks m1 against Alice's registered key.
    const fakeInitiator = new Handshake({ identity: mallory, peerPublicKey: bob.publicKey, sessionId, role: "initiator", now });
    const bobAsResponder = new Handshake({ identity: bob, peerPublicKey: alice.publicKey, sessionId, role: "responder", now });
    expectHandshakeError(() => bobAsResponder.receive(fakeInitiator.start()), "BAD_SIGNATURE");
    expect(bobAsResponder.complete).toBe(false);

    // Mallory as the responder, claiming to be Bob: Alice checks m2 against Bob's registered key.
    const aliceAsInitiator = new Handshake({ identity: alice, peerPublicKey: bob.publicKey, sessionId, role: "initiator", now });
    const fakeResponder = new Handshake({ identity: mallory, peerPublicKey: alice.publicKey, sessionId, role: "responder", now });
    const m1 = aliceAsInitiator.start();
    expectHandshakeError(() => aliceAsInitiator.receive(fakeResponder.receive(m1)!), "BAD_SIGNATURE");
    expect(aliceAsInitiator.complete).toBe(false);

    // The forgery changed nothing: the real Bob still completes with Alice.
    aliceAsInitiator.receive(bobAsResponder.receive(m1)!);
    expect(aliceAsInitiator.complete).toBe(true);
  });

  it("a man in the middle who swaps either ephemeral fails", () => {
    const { i, r } = handshakePair(generateIdentity(), generateIdentity());
    const m1 = Buffer.from(i.start());
    const swappedM1 = Buffer.from(m1);
    randomBytes(32).copy(swappedM1, 18);
    expectHandshakeError(() => r.receive(swappedM1), "BAD_SIGNATURE");

    const m2 = Buffer.from(r.receive(m1)!);
    const swappedM2 = Buffer.from(m2);
    randomBytes(32).copy(swappedM2, 18);
    expectHandshakeError(() => i.receive(swappedM2), "BAD_SIGNATURE");
    // A timestamp or signature bit flipped in transit fails the same way.
    const flipped = Buffer.from(m1);
    flipped[60]! ^= 1;
    const { r: r2 } = handshakePair(generateIdentity(), generateIdentity());
    expect(() => r2.receive(flipped)).toThrow(HandshakeError);
  });

  it("rejects a wrong sessionId, a stale m1, another version, bad shapes and out-of-turn messages", () => {
    const { alice, bob } = nodes();
    const clock = { t: START_MS };
    const { i } = handshakePair(alice, bob, { clock });
    const m1 = Buffer.from(i.start());
    const other = handshakePair(alice, bob, { clock }).r; // a different sessionId
    expectHandshakeError(() => other.receive(m1), "WRONG_SESSION");

    const { i: i2, r: r2 } = handshakePair(alice, bob, { clock });
    const m1b = Buffer.from(i2.start());
    clock.t += 61_000;
    expectHandshakeError(() => r2.receive(m1b), "STALE");
    clock.t = START_MS;

    const badVersion = Buffer.from(m1b);
    badVersion[1] = 2;
    expectHandshakeError(() => r2.receive(badVersion), "BAD_VERSION");
    expectHandshakeError(() => r2.receive(m1b.subarray(0, 121)), "MALFORMED");
    expectHandshakeError(() => r2.receive(Buffer.concat([m1b, Buffer.from([0])])), "MALFORMED");
    expectHandshakeError(() => r2.receive(Buffer.from([0x01])), "MALFORMED");
    expectHandshakeError(() => r2.receive(Buffer.from([0x03, 0x01, ...randomBytes(112)])), "MALFORMED");
    expectHandshakeError(() => i2.receive(m1b), "UNEXPECTED"); // an initiator never takes an m1
    expectHandshakeError(() => r2.start(), "UNEXPECTED");
    expectHandshakeError(() => r2.session(), "UNEXPECTED");
    r2.receive(m1b); // none of the above spoiled it
    expect(r2.complete).toBe(true);
    expect(r2.peerTimestampMs).toBe(START_MS);
  });

  it("refuses bad init: a peer key of the wrong shape or a short sessionId", () => {
    const { alice, bob } = nodes();
    const base = { identity: alice, peerPublicKey: bob.publicKey, sessionId: randomBytes(16), role: "initiator" as const };
    expectHandshakeError(() => new Handshake({ ...base, peerPublicKey: "abc" }), "BAD_INIT");
    expectHandshakeError(() => new Handshake({ ...base, sessionId: randomBytes(8) }), "BAD_INIT");
  });

  it("replayed m1 or m2 never yields a session with an attacker", () => {
    const { alice, bob } = nodes();
    const sessionId = randomBytes(16);
    const first = handshakePair(alice, bob, { sessionId });
    const m1 = first.i.start();
    const m2 = first.r.receive(m1)!;
    first.i.receive(m2);

    // m1 replayed to a fresh responder: it derives keys only the real initiator could hold. Records
    // from anyone else fail, and the session stays unconfirmed, so a caller keeps its old session.
    const replayTarget = handshakePair(alice, bob, { sessionId }).r;
    replayTarget.receive(m1);
    const victim = replayTarget.session();
    expect(victim.confirmed).toBe(false);
    const forger = new SecureSession({
      role: "initiator",
      secrets: { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) },
    });
    expect(victim.open(forger.seal(Buffer.from("hi")))).toBeNull();
    expect(victim.stats.rejectedAuth).toBe(1);
    expect(victim.confirmed).toBe(false);

    // m2 replayed to a new initiator (new ephemeral): the signature covers the old one, so it fails.
    const second = handshakePair(alice, bob, { sessionId });
    second.i.start();
    expectHandshakeError(() => second.i.receive(m2), "BAD_SIGNATURE");
  });

  it("parsing garbage only ever throws HandshakeError", () => {
    const random = testRandom(1);
    const { i, r } = handshakePair(generateIdentity(), generateIdentity());
    i.start();
    const ATTEMPTS = 2000;
    const codes = new Set<string>();
    let refused = 0;
    for (let n = 0; n < ATTEMPTS; n++) {
      let garbage = seededBytes(random, randomInt(random, 200));
      if (n % 3 === 0) {
        // A valid header and length, so the parser reaches the sessionId check.
        const type = n % 2 === 0 ? HANDSHAKE_TYPE_INIT : HANDSHAKE_TYPE_RESPONSE;
        garbage = seededBytes(random, type === HANDSHAKE_TYPE_INIT ? HANDSHAKE_INIT_BYTES : HANDSHAKE_RESPONSE_BYTES);
        garbage[0] = type;
        garbage[1] = HANDSHAKE_VERSION;
      }
      isHandshakeMessage(garbage);
      for (const side of [i, r]) {
        try {
          side.receive(garbage);
        } catch (error) {
          refused++;
          codes.add(error instanceof HandshakeError ? error.code : String(error));
        }
      }
    }
    expect(refused).toBe(2 * ATTEMPTS); // every piece of garbage was refused, by both sides
    expect([...codes].sort()).toEqual(["BAD_VERSION", "MALFORMED", "WRONG_SESSION"]);
    expect(i.complete || r.complete).toBe(false);
  });
});

describe("secure session records", () => {
  it("round-trips records of every size and kind", () => {
    const { a, b } = connect();
    for (const size of [0, 1, 15, 16, 17, 1400, MAX_PLAINTEXT_BYTES]) {
      const plaintext = randomBytes(size);
      const sealed = a.seal(plaintext, RECORD_KIND_KEEPALIVE);
      expect(sealed.length).toBe(size + 26);
      expect(sealed[0]).toBe(RECORD_KIND_KEEPALIVE);
      const opened = b.open(sealed)!;
      expect(opened.kind).toBe(RECORD_KIND_KEEPALIVE);
      expect(Buffer.from(opened.plaintext).equals(plaintext)).toBe(true);
    }
    expect(text(b.open(a.seal(Buffer.from("data"))))).toBe("data");
    expect(a.stats.sealed).toBe(8);
    expect(b.stats.opened).toBe(8);
    expect(b.stats.bytesIn).toBe(a.stats.bytesOut);
    // The plaintext is not on the wire.
    const secret = Buffer.from("a very recognisable plaintext string");
    expect(Buffer.from(a.seal(secret)).includes(secret)).toBe(false);
  });

  it("seals after headroom into memory the caller gives, and opens a record that starts after a header", () => {
    const { a, b } = connect();
    const slab = Buffer.alloc(4096, 0xee);
    const plaintexts = [randomBytes(0), randomBytes(1400), randomBytes(7)];
    let used = 0;
    const records = plaintexts.map((plaintext) => {
      const into = slab.subarray(used, (used += 3 + plaintext.length + 26));
      const packet = a.seal(plaintext, RECORD_KIND_KEEPALIVE, 3, into);
      expect(packet.buffer === slab.buffer && packet.byteOffset === into.byteOffset && packet.length === into.length).toBe(true);
      return packet;
    });
    expect(slab.subarray(used).every((byte) => byte === 0xee)).toBe(true); // nothing written past the last record
    records.forEach((packet, n) => {
      expect(packet.subarray(0, 3).equals(Buffer.from([0xee, 0xee, 0xee]))).toBe(true); // the headroom left alone
      const opened = b.open(packet, false, 3)!;
      expect(opened.kind).toBe(RECORD_KIND_KEEPALIVE);
      expect(opened.plaintext.equals(plaintexts[n]!)).toBe(true);
    });
    // The same record as sealed into a new buffer: opens without the headroom too.
    expect(text(b.open(a.seal(Buffer.from("plain"), RECORD_KIND_KEEPALIVE, 3).subarray(3)))).toBe("plain");
    expect(() => a.seal(randomBytes(10), RECORD_KIND_KEEPALIVE, 1, Buffer.alloc(10 + 26))).toThrow(/does not fill 36 bytes/);
    expect(b.open(records[0]!, false, records[0]!.length - 25)).toBeNull(); // an offset leaving less than a record
  });

  it("refuses to seal a handshake kind or an oversized plaintext", () => {
    const { a } = connect();
    expect(() => a.seal(Buffer.alloc(1), 0x01)).toThrow(SessionError);
    expect(() => a.seal(Buffer.alloc(1), 256)).toThrow(SessionError);
    expect(() => a.seal(Buffer.alloc(MAX_PLAINTEXT_BYTES + 1))).toThrow(SessionError);
    a.destroy();
    expect(() => a.seal(Buffer.alloc(1))).toThrow(SessionError);
  });

  it("a flipped bit anywhere is rejected, counted, and moves nothing", () => {
    const { a, b } = connect();
    const sealed = Buffer.from(a.seal(randomBytes(40)));
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const tampered = Buffer.from(sealed);
      tampered[bit >> 3]! ^= 1 << (bit & 7);
      const before = { ...b.stats };
      expect(b.open(tampered)).toBeNull();
      expect(rejected(b.stats)).toBe(rejected(before) + 1);
      // Past the header every flip reaches the AEAD; in the header some flips already make the
      // record malformed (a kind below 0x10, a counter past the limit, an impossible phase).
      if (bit >= 80) expect(b.stats.rejectedAuth).toBe(before.rejectedAuth + 1);
    }
    expect(b.stats.rejectedAuth).toBeGreaterThan(sealed.length * 8 - 40);
    expect(b.stats.opened).toBe(0);
    expect(b.receivePhase).toBe(0); // a forged "next phase" record did not switch keys
    expect(b.open(sealed)).not.toBeNull(); // the window was not moved by the forgeries
  });

  it("rejects a replayed record and counts it", () => {
    const { a, b } = connect();
    const sealed = a.seal(Buffer.from("once"));
    expect(text(b.open(sealed))).toBe("once");
    expect(b.open(sealed)).toBeNull();
    expect(b.open(Buffer.from(sealed))).toBeNull();
    expect(b.stats.rejectedReplay).toBe(2);
    expect(b.stats.opened).toBe(1);
  });

  it("opens reordered records within the window and rejects those that are too old", () => {
    const { a, b } = connect();
    const random = testRandom(2);
    const records = Array.from({ length: 2100 }, (_, n) => a.seal(Buffer.from(String(n))));
    // Newest first, then the rest shuffled among the last 2000: all open exactly once.
    expect(text(b.open(records[2099]!))).toBe("2099");
    const recent = records.slice(100, 2099);
    for (let n = recent.length - 1; n > 0; n--) {
      const k = randomInt(random, n + 1);
      [recent[n], recent[k]] = [recent[k]!, recent[n]!];
    }
    for (const record of recent) b.open(record);
    expect(b.stats.opened).toBe(2000);
    expect(rejected(b.stats)).toBe(0);
    // 2099 - 0 > REPLAY_WINDOW_PACKETS: too old, even though never seen.
    expect(b.open(records[0]!)).toBeNull();
    expect(b.open(records[2099 - REPLAY_WINDOW_PACKETS - 1]!)).toBeNull();
    expect(b.stats.rejectedReplay).toBe(2);
    expect(text(b.open(records[2099 - REPLAY_WINDOW_PACKETS]!))).toBe(String(2099 - REPLAY_WINDOW_PACKETS));
  });

  it("garbage of random lengths never throws", () => {
    const random = testRandom(3);
    const { a, b } = connect();
    const good = Buffer.from(a.seal(randomBytes(100)));
    let count = 0;
    for (let n = 0; n < 5000; n++) {
      const garbage = seededBytes(random, randomInt(random, 1600));
      if (n % 2 === 0 && garbage.length > 10) good.copy(garbage, 0, 0, 10); // a plausible header
      if (b.open(garbage) === null) count++;
    }
    expect(count).toBe(5000);
    expect(b.open(new Uint8Array(0))).toBeNull();
    expect(b.open(new Uint8Array(70_000))).toBeNull();
    expect(rejected(b.stats)).toBe(5002);
    expect(b.open(good)).not.toBeNull();
  });
});

describe("rekeying", () => {
  it("rekeys by time: traffic flows across the switch, stragglers open during grace and not after", () => {
    const { a, b, clock } = connect();
    expect(text(b.open(a.seal(Buffer.from("phase 0"))))).toBe("phase 0");
    const late = [a.seal(Buffer.from("late 1")), a.seal(Buffer.from("late 2"))];
    clock.t += REKEY_AFTER_MS;
    const next = a.seal(Buffer.from("phase 1"));
    expect(a.sendPhase).toBe(1);
    expect(next[1]).toBe(1);
    expect(text(b.open(next))).toBe("phase 1");
    expect(b.receivePhase).toBe(1);
    expect(b.stats.rekeys).toBe(1);
    expect(text(b.open(late[0]!))).toBe("late 1"); // previous phase, within grace
    clock.t += REKEY_GRACE_MS;
    expect(b.open(late[1]!)).toBeNull(); // grace over: the previous keys are gone
    expect(b.stats.rejectedReplay).toBe(1);
    expect(text(b.open(a.seal(Buffer.from("still flowing"))))).toBe("still flowing");
    // The other direction has its own clock and chain: it rekeys when it passes its own limit.
    expect(b.sendPhase).toBe(0);
    expect(text(a.open(b.seal(Buffer.from("back"))))).toBe("back");
    expect(b.sendPhase).toBe(1); // b's phase started at START_MS, so it was due as well
    expect(a.receivePhase).toBe(1);
  });

  it("rekeys by volume in both directions while traffic keeps flowing", () => {
    const { a, b } = connect({ limits: { rekeyAfterPackets: 100, rekeyAfterBytes: 16 * 1024 } });
    let delivered = 0;
    for (let n = 0; n < 3000; n++) {
      const payload = randomBytes(n % 700);
      if (Buffer.from(b.open(a.seal(payload))?.plaintext ?? []).equals(payload)) delivered++;
      if (n % 3 === 0 && a.open(b.seal(payload))) delivered++;
    }
    expect(delivered).toBe(4000);
    // 3000 records of 350 bytes on average: the 16 KiB limit comes before the 100-record one.
    expect(a.sendPhase).toBeGreaterThan(50);
    expect(b.receivePhase).toBe(a.sendPhase);
    expect(b.sendPhase).toBeGreaterThan(15);
    expect(a.receivePhase).toBe(b.sendPhase);
    expect(rejected(a.stats) + rejected(b.stats)).toBe(0);
  });

  it("reordered records from the previous phase open during grace after a volume rekey", () => {
    const { a, b, clock } = connect({ limits: { rekeyAfterPackets: 10 } });
    const phase0 = Array.from({ length: 10 }, () => a.seal(Buffer.from("old")));
    const phase1 = Array.from({ length: 5 }, () => a.seal(Buffer.from("new")));
    expect(phase1[0]![1]).toBe(1);
    for (const record of phase1) expect(text(b.open(record))).toBe("new");
    for (const record of phase0.slice(0, 5)) expect(text(b.open(record))).toBe("old");
    clock.t += REKEY_GRACE_MS + 1;
    for (const record of phase0.slice(5)) expect(b.open(record)).toBeNull();
    expect(b.stats.rejectedReplay).toBe(5);
  });

  it("catches up when every record of a phase was lost, within the lookahead only", () => {
    const { a, b } = connect({ limits: { rekeyAfterPackets: 1 } });
    const records = Array.from({ length: 12 }, (_, n) => a.seal(Buffer.from(String(n)))); // phases 0..11
    expect(text(b.open(records[0]!))).toBe("0");
    expect(text(b.open(records[3]!))).toBe("3"); // phases 1 and 2 never arrived
    expect(b.receivePhase).toBe(3);
    expect(b.open(records[2]!)).toBeNull(); // skipped phases are behind us: too old
    expect(b.open(records[1]!)).toBeNull();
    expect(b.stats.rejectedReplay).toBe(2);
    expect(b.open(records[11]!)).toBeNull(); // 8 phases ahead: beyond the lookahead
    expect(b.stats.rejectedMalformed).toBe(1);
    expect(text(b.open(records[7]!))).toBe("7");
  });

  it("never repeats a (key, nonce) pair over a long run with many rekeys", () => {
    const clock = { t: START_MS };
    const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
    const copy = { initiatorToResponder: Buffer.from(secrets.initiatorToResponder), chain: Buffer.from(secrets.chain) };
    const limits = { rekeyAfterPackets: 97, rekeyAfterBytes: 20_000 };
    const a = new SecureSession({ role: "initiator", secrets, now: () => clock.t, limits });
    const b = new SecureSession({ role: "responder", secrets, now: () => clock.t, limits });

    // Walk the key schedule independently and check that each record decrypts under exactly the
    // (key, nonce) the schedule predicts, so the nonces collected are the ones actually used.
    let phase = 0;
    let key: Buffer = copy.initiatorToResponder;
    let chain: Buffer = copy.chain;
    const seen = new Set<string>();
    let decrypted = 0;
    let opened = 0;
    for (let n = 0; n < 20_000; n++) {
      if (n % 5000 === 4999) clock.t += REKEY_AFTER_MS;
      const plaintext = randomBytes(n % 300);
      const record = Buffer.from(a.seal(plaintext));
      if (record[1] !== (phase & 0xff)) {
        phase++;
        ({ key, chain } = deriveNextPhase(DIRECTION_INITIATOR_TO_RESPONDER, phase, chain));
      }
      const counter = record.readUInt32BE(2) * 2 ** 32 + record.readUInt32BE(6);
      const nonce = recordNonce(DIRECTION_INITIATOR_TO_RESPONDER, phase, counter);
      const decipher = createDecipheriv("aes-256-gcm", key, nonce);
      decipher.setAAD(record.subarray(0, 10));
      decipher.setAuthTag(record.subarray(record.length - 16));
      if (Buffer.concat([decipher.update(record.subarray(10, record.length - 16)), decipher.final()]).equals(plaintext)) decrypted++;
      seen.add(key.toString("hex") + nonce.toString("hex"));
      if (n % 7 !== 0 && b.open(record)) opened++; // the receiver follows, with losses
    }
    expect(decrypted).toBe(20_000);
    expect(opened).toBe(20_000 - Math.ceil(20_000 / 7));
    expect(phase).toBeGreaterThan(200); // the phase byte wrapped around, keys still distinct
    expect(a.sendPhase).toBe(phase);
    expect(seen.size).toBe(20_000);
  });
});

describe("replay window", () => {
  it("accepts each counter once, in any order within the window", () => {
    const window = new ReplayWindow();
    const accept = (counter: number) => {
      const ok = window.check(counter);
      if (ok) window.commit(counter);
      return ok;
    };
    expect(accept(0)).toBe(true);
    expect(accept(0)).toBe(false);
    expect(accept(5)).toBe(true);
    expect(accept(3)).toBe(true);
    expect(accept(3)).toBe(false);
    expect(accept(10_000)).toBe(true); // a jump clears the whole ring
    expect(accept(5)).toBe(false); // too old
    expect(accept(10_000 - REPLAY_WINDOW_PACKETS)).toBe(true);
    expect(accept(10_000 - REPLAY_WINDOW_PACKETS - 1)).toBe(false);
    expect(accept(9_999)).toBe(true);
    expect(accept(2 ** 47)).toBe(true);
    expect(accept(2 ** 47 - 1)).toBe(true);
    expect(accept(2 ** 47 - 1)).toBe(false);
  });

  it("never forgets a counter inside the window (model check)", () => {
    const random = testRandom(4);
    const window = new ReplayWindow();
    const accepted = new Set<number>();
    let highest = 0;
    let mismatches = 0;
    for (let n = 0; n < 50_000; n++) {
      const counter = Math.max(0, highest + randomInt(random, 120) - 100);
      const expected = !accepted.has(counter) && !(highest - counter > REPLAY_WINDOW_PACKETS);
      if (window.check(counter) !== expected) mismatches++;
      if (expected) {
        window.commit(counter);
        accepted.add(counter);
        highest = Math.max(highest, counter);
      }
    }
    expect(mismatches).toBe(0);
    expect(highest).toBeGreaterThan(50_000); // the window really slid
  });
});
