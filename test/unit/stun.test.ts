// STUN codec: the RFC 5769 test vectors, malformed input, and encode/decode round trips.
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { randomBytes as seededBytes, randomInt } from "../helpers/prng.ts";
import { testRandom } from "../helpers/seed.ts";
import {
  addressAttribute,
  bindingRequest,
  decodeStun,
  encodeStun,
  errorCodeAttribute,
  looksLikeStun,
  mappedAddress,
  MAX_STUN_ATTRIBUTES,
  newTransactionId,
  readAddress,
  readAttribute,
  readChangeRequest,
  readErrorCode,
  StunAttr,
  StunDecodeError,
  verifyFingerprint,
  verifyMessageIntegrity,
} from "../../src/protocol/stun.ts";

/** Hex as RFC 5769 prints it (spaces and line breaks ignored). */
const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ""), "hex");

// RFC 5769 §2.1–2.4, byte for byte. The RFC text itself was not reachable from here; these are the
// bytes as two independent public STUN implementations carry them in their RFC 5769 tests, and they
// agree with each other. The MESSAGE-INTEGRITY and FINGERPRINT checks below confirm them: a wrong byte
// would break the HMAC or the CRC.
const SAMPLE_REQUEST = hex(`
  00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
  00 24 00 04 6e 00 01 ff
  80 29 00 08 93 2f f9 b1 51 26 3b 36
  00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
  00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
  80 28 00 04 e5 7a 3b cf`);
const SAMPLE_IPV4_RESPONSE = hex(`
  01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 08 00 01 a1 47 e1 12 a6 43
  00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
  80 28 00 04 c0 7d 4c 96`);
const SAMPLE_IPV6_RESPONSE = hex(`
  01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
  00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
  80 28 00 04 c8 fb 0b 4c`);
const SAMPLE_LONG_TERM_REQUEST = hex(`
  00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
  00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
  00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
  00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
  00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66`);

const SHORT_TERM_KEY = Buffer.from("VOkJxbRl1RmTxUk/WvJxBt");
const TRANSACTION_ID = hex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae");
const NONCE = 0x0015;
const REALM = 0x0014;

describe("RFC 5769 test vectors", () => {
  it("2.1 sample request: decodes; MESSAGE-INTEGRITY (short-term) and FINGERPRINT check", () => {
    const message = decodeStun(SAMPLE_REQUEST);
    expect(message).toMatchObject({ method: 1, cls: "request", rfc3489: false, transactionId: TRANSACTION_ID });
    expect(message.attributes.map((a) => a.type)).toEqual([0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]);
    expect(readAttribute(message, StunAttr.SOFTWARE)?.toString()).toBe("STUN test client");
    expect(readAttribute(message, StunAttr.USERNAME)?.toString()).toBe("evtj:h6vY");
    expect(verifyMessageIntegrity(SAMPLE_REQUEST, SHORT_TERM_KEY)).toBe(true);
    expect(verifyMessageIntegrity(SAMPLE_REQUEST, Buffer.from("not the password"))).toBe(false);
    expect(verifyFingerprint(SAMPLE_REQUEST)).toBe(true);
    expect(looksLikeStun(SAMPLE_REQUEST)).toBe(true);
  });

  it("2.2 IPv4 response: XOR-MAPPED-ADDRESS 192.0.2.1:32853, SOFTWARE, MESSAGE-INTEGRITY, FINGERPRINT", () => {
    const message = decodeStun(SAMPLE_IPV4_RESPONSE);
    expect(message).toMatchObject({ method: 1, cls: "success", transactionId: TRANSACTION_ID });
    expect(readAttribute(message, StunAttr.SOFTWARE)?.toString()).toBe("test vector");
    expect(readAddress(message, StunAttr.XOR_MAPPED_ADDRESS)).toEqual({ family: 4, address: "192.0.2.1", port: 32853 });
    expect(mappedAddress(message)).toEqual({ family: 4, address: "192.0.2.1", port: 32853 });
    expect(verifyMessageIntegrity(SAMPLE_IPV4_RESPONSE, SHORT_TERM_KEY)).toBe(true);
    expect(verifyFingerprint(SAMPLE_IPV4_RESPONSE)).toBe(true);
    // Our encoder writes the same XOR-coded bytes.
    const attr = addressAttribute(StunAttr.XOR_MAPPED_ADDRESS, { family: 4, address: "192.0.2.1", port: 32853 }, TRANSACTION_ID);
    expect(attr.value).toEqual(hex("00 01 a1 47 e1 12 a6 43"));
  });

  it("2.3 IPv6 response: XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853", () => {
    const message = decodeStun(SAMPLE_IPV6_RESPONSE);
    const expected = { family: 6, address: "2001:db8:1234:5678:11:2233:4455:6677", port: 32853 } as const;
    expect(mappedAddress(message)).toEqual(expected);
    expect(verifyMessageIntegrity(SAMPLE_IPV6_RESPONSE, SHORT_TERM_KEY)).toBe(true);
    expect(verifyFingerprint(SAMPLE_IPV6_RESPONSE)).toBe(true);
    expect(addressAttribute(StunAttr.XOR_MAPPED_ADDRESS, expected, TRANSACTION_ID).value).toEqual(
      hex("00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"),
    );
  });

  it("2.4 long-term request: MESSAGE-INTEGRITY under MD5(username:realm:SASLprep(password)); no FINGERPRINT", () => {
    const message = decodeStun(SAMPLE_LONG_TERM_REQUEST);
    const username = readAttribute(message, StunAttr.USERNAME)!.toString("utf8");
    expect(username).toBe("\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9");
    expect(readAttribute(message, REALM)?.toString()).toBe("example.org");
    expect(readAttribute(message, NONCE)?.toString()).toBe("f//499k954d6OL34oL9FSTvy64sA");
    // SASLprep of the RFC's password "The<U+00AD>M<U+00AA>tr<U+2168>": the soft hyphen maps to nothing
    // (RFC 3454 table B.1), then NFKC turns U+00AA into "a" and U+2168 into "IX".
    const password = "The\u00ADM\u00AAtr\u2168".replace(/\u00AD/g, "").normalize("NFKC");
    expect(password).toBe("TheMatrIX");
    const key = createHash("md5").update(`${username}:example.org:${password}`, "utf8").digest();
    expect(verifyMessageIntegrity(SAMPLE_LONG_TERM_REQUEST, key)).toBe(true);
    const unprepped = createHash("md5").update(`${username}:example.org:The\u00ADM\u00AAtr\u2168`, "utf8").digest();
    expect(verifyMessageIntegrity(SAMPLE_LONG_TERM_REQUEST, unprepped)).toBe(false);
    expect(verifyFingerprint(SAMPLE_LONG_TERM_REQUEST)).toBe(false);
  });

  it("a changed byte breaks FINGERPRINT and MESSAGE-INTEGRITY", () => {
    const tampered = Buffer.from(SAMPLE_IPV4_RESPONSE);
    tampered[30] ^= 0x01; // inside the XOR-MAPPED-ADDRESS
    expect(verifyFingerprint(tampered)).toBe(false);
    expect(verifyMessageIntegrity(tampered, SHORT_TERM_KEY)).toBe(false);
  });
});

function expectMalformed(packet: Uint8Array, message: RegExp): void {
  let caught: unknown;
  try {
    decodeStun(packet);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(StunDecodeError);
  expect((caught as StunDecodeError).code).toBe("STUN_MALFORMED");
  expect((caught as Error).message).toMatch(message);
}

/** A header for `attributes` bytes of body, with the magic cookie. */
function withBody(body: Buffer, type = 0x0001): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt16BE(type, 0);
  header.writeUInt16BE(body.length, 2);
  header.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(header, 8);
  return Buffer.concat([header, body]);
}

describe("malformed input", () => {
  it("a truncated header", () => {
    expectMalformed(SAMPLE_REQUEST.subarray(0, 19), /shorter than the 20-byte header/);
    expectMalformed(Buffer.alloc(0), /0 bytes/);
  });

  it("a truncated message: the length field no longer matches", () => {
    expectMalformed(SAMPLE_REQUEST.subarray(0, SAMPLE_REQUEST.length - 4), /length 88 but 84 bytes follow/);
  });

  it("an attribute whose length runs past the end", () => {
    const packet = Buffer.from(SAMPLE_REQUEST);
    packet.writeUInt16BE(0x0100, 22); // SOFTWARE claims 256 bytes
    expectMalformed(packet, /attribute 0x8022 of 256 bytes runs past the end/);
    // Only its padding past the end: 3 bytes claimed, 0 present.
    expectMalformed(withBody(hex("80 22 00 01")), /attribute 0x8022 of 1 bytes runs past the end/);
  });

  it("a length that is not a multiple of 4", () => {
    const packet = Buffer.concat([withBody(hex("80 22 00 01 41 00 00 00")), Buffer.alloc(1)]);
    packet.writeUInt16BE(9, 2);
    expectMalformed(packet, /length 9 is not a multiple of 4/);
  });

  it("the first two bits set", () => {
    const packet = Buffer.from(SAMPLE_REQUEST);
    packet[0] |= 0x80;
    expectMalformed(packet, /first two bits/);
    packet[0] = (packet[0]! & 0x3f) | 0x40;
    expectMalformed(packet, /first two bits/);
  });

  it("huge attribute counts are refused", () => {
    expectMalformed(withBody(Buffer.alloc(4 * (MAX_STUN_ATTRIBUTES + 1))), /more than 64 attributes/);
    expectMalformed(withBody(Buffer.alloc(4 * 300)), /more than 64 attributes/);
    expectMalformed(withBody(Buffer.alloc(4 * 1000)), /over the 1500-byte limit/);
    expect(decodeStun(withBody(Buffer.alloc(4 * MAX_STUN_ATTRIBUTES))).attributes).toHaveLength(MAX_STUN_ATTRIBUTES);
  });

  it("a wrong magic cookie: an RFC 5389 reader (looksLikeStun) refuses it; decodeStun reads it as RFC 3489", () => {
    const packet = Buffer.from(SAMPLE_REQUEST);
    packet[4] ^= 0x01;
    expect(looksLikeStun(packet)).toBe(false);
    expect(looksLikeStun(SAMPLE_REQUEST)).toBe(true);
    const message = decodeStun(packet);
    expect(message.rfc3489).toBe(true);
    expect(message.transactionId).toEqual(packet.subarray(4, 20));
    expect(message.transactionId).toHaveLength(16);
    // The bytes changed, so the RFC 5389 integrity and fingerprint no longer hold.
    expect(verifyFingerprint(packet)).toBe(false);
    expect(verifyMessageIntegrity(packet, SHORT_TERM_KEY)).toBe(false);
  });

  it("random garbage either decodes or throws StunDecodeError, never anything else", () => {
    const random = testRandom(1);
    let decoded = 0;
    let refused = 0;
    const attempt = (packet: Buffer) => {
      try {
        const message = decodeStun(packet);
        decoded++;
        for (const type of [StunAttr.XOR_MAPPED_ADDRESS, StunAttr.MAPPED_ADDRESS, StunAttr.OTHER_ADDRESS]) readAddress(message, type);
        readChangeRequest(message);
        readErrorCode(message);
        verifyFingerprint(packet);
        verifyMessageIntegrity(packet, SHORT_TERM_KEY);
      } catch (err) {
        if (!(err instanceof StunDecodeError)) throw err;
        refused++;
      }
      expect(typeof looksLikeStun(packet)).toBe("boolean");
    };
    for (let i = 0; i < 300; i++) attempt(seededBytes(random, randomInt(random, 200)));
    // Garbage behind a valid header, so the attribute walk itself is exercised.
    for (let i = 0; i < 300; i++) attempt(withBody(seededBytes(random, 4 * randomInt(random, 50)), 0x0101));
    // Single-byte corruptions of a real message.
    for (let i = 0; i < SAMPLE_IPV6_RESPONSE.length; i++) {
      const packet = Buffer.from(SAMPLE_IPV6_RESPONSE);
      packet[i] ^= 1 + randomInt(random, 255);
      attempt(packet);
    }
    // Both outcomes were reached, so the walk through each was exercised.
    expect(decoded).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });
});

describe("encode and decode", () => {
  it("round-trips a response with IPv4 and IPv6 addresses, integrity and fingerprint", () => {
    const transactionId = newTransactionId();
    const key = Buffer.from("secret");
    const v6 = { family: 6, address: "2001:db8::1", port: 3478 } as const;
    const v4 = { family: 4, address: "203.0.113.7", port: 65535 } as const;
    const packet = encodeStun(
      {
        method: 1,
        cls: "success",
        transactionId,
        attributes: [
          addressAttribute(StunAttr.XOR_MAPPED_ADDRESS, v6, transactionId),
          addressAttribute(StunAttr.MAPPED_ADDRESS, v6, transactionId),
          addressAttribute(StunAttr.OTHER_ADDRESS, v4, transactionId),
          { type: StunAttr.SOFTWARE, value: Buffer.from("inp2ps") },
        ],
      },
      { integrityKey: key, fingerprint: true },
    );
    const message = decodeStun(packet);
    expect(message).toMatchObject({ method: 1, cls: "success", transactionId, rfc3489: false });
    expect(readAddress(message, StunAttr.XOR_MAPPED_ADDRESS)).toEqual(v6);
    expect(readAddress(message, StunAttr.MAPPED_ADDRESS)).toEqual(v6);
    expect(readAddress(message, StunAttr.OTHER_ADDRESS)).toEqual(v4);
    expect(readAttribute(message, StunAttr.SOFTWARE)?.toString()).toBe("inp2ps");
    expect(message.attributes.map((a) => a.type).slice(-2)).toEqual([StunAttr.MESSAGE_INTEGRITY, StunAttr.FINGERPRINT]);
    expect(verifyMessageIntegrity(packet, key)).toBe(true);
    expect(verifyFingerprint(packet)).toBe(true);
    expect(looksLikeStun(packet)).toBe(true);
  });

  it("IPv6 text comes out in RFC 5952 form", () => {
    const transactionId = newTransactionId();
    for (const [given, canonical] of [
      ["::", "::"],
      ["::1", "::1"],
      ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
      ["fe80::", "fe80::"],
      ["::ffff:192.0.2.1", "::ffff:c000:201"],
    ]) {
      const packet = encodeStun({ method: 1, cls: "success", transactionId, attributes: [addressAttribute(StunAttr.XOR_MAPPED_ADDRESS, { family: 6, address: given!, port: 1 }, transactionId)] });
      expect(mappedAddress(decodeStun(packet))?.address).toBe(canonical);
    }
  });

  it("binding requests: RFC 5389 with CHANGE-REQUEST flags, or RFC 3489 with a 16-byte id", () => {
    const plain = decodeStun(bindingRequest());
    expect(plain).toMatchObject({ method: 1, cls: "request", rfc3489: false, attributes: [] });
    expect(plain.transactionId).toHaveLength(12);
    for (const flags of [{ changeIp: true, changePort: false }, { changeIp: false, changePort: true }, { changeIp: true, changePort: true }]) {
      expect(readChangeRequest(decodeStun(bindingRequest(flags)))).toEqual(flags);
    }
    expect(readChangeRequest(plain)).toEqual({ changeIp: false, changePort: false });
    const id = randomBytes(16);
    const old = bindingRequest({ transactionId: id, changePort: true });
    expect(looksLikeStun(old)).toBe(id.readUInt32BE(0) === 0x2112a442);
    expect(decodeStun(old)).toMatchObject({ rfc3489: true, transactionId: id });
  });

  it("all four classes and a 12-bit method survive the type interleaving", () => {
    for (const cls of ["request", "indication", "success", "error"] as const) {
      for (const method of [0x001, 0x003, 0x009, 0xfff]) {
        const message = decodeStun(encodeStun({ method, cls, transactionId: newTransactionId(), attributes: [] }));
        expect([message.method, message.cls]).toEqual([method, cls]);
      }
    }
    expect(encodeStun({ method: 1, cls: "success", transactionId: TRANSACTION_ID, attributes: [] }).readUInt16BE(0)).toBe(0x0101);
    expect(encodeStun({ method: 1, cls: "error", transactionId: TRANSACTION_ID, attributes: [] }).readUInt16BE(0)).toBe(0x0111);
  });

  it("ERROR-CODE round-trips", () => {
    const packet = encodeStun({ method: 1, cls: "error", transactionId: newTransactionId(), attributes: [errorCodeAttribute(420, "Unknown Attribute")] });
    expect(readErrorCode(decodeStun(packet))).toEqual({ code: 420, reason: "Unknown Attribute" });
  });
});
