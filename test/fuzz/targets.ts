import { createPrivateKey, createHash } from "node:crypto";
import fc from "fast-check";
import { Handshake, HandshakeError } from "../../src/crypto/handshake.ts";
import type { Identity } from "../../src/crypto/identity.ts";
import { publicKeyText } from "../../src/crypto/identity.ts";
import { deriveSessionSecrets, RECORD_KIND_MIN, RECORD_OVERHEAD_BYTES, SecureSession, type OpenedRecord, type SessionStats } from "../../src/crypto/session.ts";
import { MuxError } from "../../src/mux/errors.ts";
import { decodeFrame, encodeFrame, Flag, FRAME_HEADER_BYTES, SESSION_STREAM_ID, type MuxFrame } from "../../src/mux/frame.ts";
import { Mux, type MuxChannel } from "../../src/mux/mux.ts";
import type { MuxStream } from "../../src/mux/stream.ts";
import {
  AppProtocolError,
  decodeStreamAnswer,
  decodeStreamHeader,
  decodeStreamOpening,
  decodeUdpAppDatagram,
  encodeStreamAnswer,
  encodeStreamHeader,
  encodeUdpAppDatagram,
  encodeUdpRefusedDatagram,
  encodeUdpReplyDatagram,
  MAX_STREAM_HEADER_BYTES,
  MAX_UDP_TARGET_BYTES,
} from "../../src/protocol/apps.ts";
import { APP_STATES, LINK_KINDS } from "../../src/protocol/node-report.ts";
import { decodeRelayAnswer, decodeRelayHello, encodeRelayAnswer, encodeRelayHello } from "../../src/protocol/relay.ts";
import { decodeSpeedtestAnswer, decodeSpeedtestResult, encodeSpeedtestAnswer, encodeSpeedtestRequest, encodeSpeedtestResult } from "../../src/protocol/speedtest.ts";
import { signalRequests, MAX_MESSAGE_BYTES, NAT_BEHAVIOURS, NAT_TYPES, parseClientMessage, ProtocolError, type ClientRequestType } from "../../src/protocol/signal.ts";
import {
  addressAttribute,
  decodeStun,
  encodeStun,
  errorCodeAttribute,
  looksLikeStun,
  mappedAddress,
  MAX_STUN_ATTRIBUTES,
  readAddress,
  readChangeRequest,
  readErrorCode,
  STUN_HEADER_BYTES,
  StunAttr,
  StunDecodeError,
  verifyFingerprint,
  verifyMessageIntegrity,
  type StunAttribute,
} from "../../src/protocol/stun.ts";
import { Kcp, KCP_CMD_ACK, KCP_CMD_PUSH, KCP_CMD_WASK, KCP_CMD_WINS, KCP_OVERHEAD_BYTES } from "../../src/transport/kcp.ts";
import { applyMutations, bytesAround, expectAtMost, expectDocumentedError, mutated, mutations, target, type FuzzTarget, type Mutation } from "./harness.ts";

// ---------- STUN ----------

const STUN_INTEGRITY_KEY = Buffer.from("fuzz integrity key");
const STUN_CLASSES = ["request", "indication", "success", "error"] as const;
const STUN_ATTRIBUTE_TYPES = Object.values(StunAttr);

const stunAddress = fc.oneof(
  fc.tuple(fc.ipV4(), fc.nat(0xffff)).map(([address, port]) => ({ family: 4 as const, address, port })),
  fc.tuple(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.nat(0xffff)).map(([raw, port]) => ({
    family: 6 as const,
    address: Array.from({ length: 8 }, (_, i) => ((raw[2 * i]! << 8) | raw[2 * i + 1]!).toString(16)).join(":"),
    port,
  })),
);

const stunMessage = fc
  .record({
    method: fc.oneof(fc.constant(1), fc.nat(0xfff)),
    cls: fc.constantFrom(...STUN_CLASSES),
    transactionId: fc.uint8Array({ minLength: 12, maxLength: 12 }).map((b) => Buffer.from(b)),
    plain: fc.array(fc.record({ type: fc.oneof(fc.constantFrom(...STUN_ATTRIBUTE_TYPES), fc.nat(0xffff)), value: fc.uint8Array({ maxLength: 48 }) }), { maxLength: 6 }),
    addresses: fc.array(fc.tuple(fc.constantFrom(StunAttr.XOR_MAPPED_ADDRESS, StunAttr.MAPPED_ADDRESS, StunAttr.OTHER_ADDRESS, StunAttr.RESPONSE_ORIGIN), stunAddress), { maxLength: 3 }),
    errorCode: fc.option(fc.tuple(fc.integer({ min: 300, max: 699 }), fc.string({ maxLength: 40 }))),
    integrity: fc.boolean(),
    fingerprint: fc.boolean(),
  })
  .map((m) => {
    const attributes: StunAttribute[] = [
      ...m.addresses.map(([type, address]) => addressAttribute(type, address, m.transactionId)),
      ...m.plain.map((a) => ({ type: a.type, value: Buffer.from(a.value) })),
      ...(m.errorCode ? [errorCodeAttribute(m.errorCode[0], m.errorCode[1])] : []),
    ];
    return encodeStun(
      { method: m.method, cls: m.cls, transactionId: m.transactionId, attributes },
      { integrityKey: m.integrity ? STUN_INTEGRITY_KEY : undefined, fingerprint: m.fingerprint },
    );
  });

const stun = target({
  name: "stun",
  shortRuns: 5000,
  inputs: bytesAround(stunMessage),
  check(packet: Buffer) {
    looksLikeStun(packet);
    verifyFingerprint(packet);
    verifyMessageIntegrity(packet, STUN_INTEGRITY_KEY);
    let message;
    try {
      message = decodeStun(packet);
    } catch (error) {
      expectDocumentedError(error, StunDecodeError);
      return false;
    }
    expectAtMost("attributes", message.attributes.length, MAX_STUN_ATTRIBUTES);
    const valueBytes = message.attributes.reduce((sum, a) => sum + a.value.length, 0);
    expectAtMost("attribute bytes", valueBytes, packet.length - STUN_HEADER_BYTES);
    expectAtMost("transaction id bytes", message.transactionId.length, 16);
    for (const type of new Set(message.attributes.map((a) => a.type))) readAddress(message, type);
    mappedAddress(message);
    readChangeRequest(message);
    const error = readErrorCode(message);
    if (error) expectAtMost("error reason bytes", Buffer.byteLength(error.reason), packet.length);
    return true;
  },
});

// ---------- mux frames ----------

const streamId = fc.integer({ min: 1, max: 0xffffffff });
const u32Payload = fc.uint8Array({ minLength: 4, maxLength: 4 });
const muxFrame: fc.Arbitrary<MuxFrame> = fc.oneof(
  fc.record({ streamId, flags: fc.constant<number>(Flag.DATA), payload: fc.uint8Array({ minLength: 1, maxLength: 128 }) }),
  fc.record({ streamId, flags: fc.constant<number>(Flag.WINDOW), payload: u32Payload }),
  fc.record({ streamId, flags: fc.constantFrom<number>(Flag.SYN, Flag.FIN, Flag.RST), payload: fc.constant(new Uint8Array(0)) }),
  fc.record({ streamId: fc.constant(SESSION_STREAM_ID), flags: fc.constantFrom<number>(Flag.PING, Flag.PONG), payload: u32Payload }),
);

const mux = target({
  name: "mux-frame",
  shortRuns: 5000,
  inputs: bytesAround(muxFrame.map(encodeFrame)),
  check(message: Buffer) {
    let frame: MuxFrame;
    try {
      frame = decodeFrame(message);
    } catch (error) {
      expectDocumentedError(error, MuxError);
      return false;
    }
    // The payload is a view into the message (no copy), and what decodes re-encodes to the same bytes.
    if (frame.payload.buffer !== message.buffer) throw new Error("the payload is a copy, not a view into the message");
    expectAtMost("payload bytes", frame.payload.length, message.length);
    if (!Buffer.from(encodeFrame(frame)).equals(message)) throw new Error("a decoded frame does not re-encode to its bytes");
    return true;
  },
});

// ---------- mux sessions: frame sequences into a live Mux ----------

const MUX_FUZZ_WINDOW_BYTES = 4096;
const MUX_FUZZ_MAX_STREAMS = 4;
const MUX_FLAGS = Object.values(Flag);

/** Frames built field by field (not through encodeFrame, which refuses bad ones): any known flag on small stream ids, credits up to 2^32-1. */
const rawMuxFrame = fc
  .record({
    streamId: fc.oneof({ arbitrary: fc.nat(6), weight: 9 }, { arbitrary: fc.nat(0xffffffff), weight: 1 }),
    flags: fc.oneof({ arbitrary: fc.constantFrom(...MUX_FLAGS), weight: 9 }, { arbitrary: fc.nat(0xff), weight: 1 }),
    payload: fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.constant(new Uint8Array(0)), fc.uint8Array({ minLength: 1, maxLength: 3000 })),
  })
  .map(({ streamId, flags, payload }) => {
    const message = Buffer.alloc(FRAME_HEADER_BYTES + payload.length);
    message.writeUInt32BE(streamId, 0);
    message[4] = flags;
    message.writeUInt16BE(payload.length, 5);
    message.set(payload, FRAME_HEADER_BYTES);
    return message;
  });

/** A peer opening a stream and sending past its window: SYN, then DATA frames of up to 3000 bytes. */
const muxFlood = fc
  .tuple(fc.integer({ min: 1, max: 6 }), fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 6 }))
  .map(([id, sizes]) => [
    encodeFrame({ streamId: id, flags: Flag.SYN, payload: new Uint8Array(0) }),
    ...sizes.map((size) => encodeFrame({ streamId: id, flags: Flag.DATA, payload: new Uint8Array(size).fill(id) })),
  ]);

const muxSession = target({
  name: "mux-session",
  shortRuns: 2000,
  inputs: fc.tuple(
    fc.constantFrom("initiator" as const, "responder" as const),
    fc.array(fc.oneof({ arbitrary: rawMuxFrame.map((f) => [f]), weight: 4 }, { arbitrary: muxFrame.map((f) => [encodeFrame(f)]), weight: 1 }, { arbitrary: muxFlood, weight: 1 }), { minLength: 1, maxLength: 16 }).map((groups) => groups.flat()),
  ),
  check([side, frames]: ["initiator" | "responder", Uint8Array[]]) {
    let deliver: (message: Uint8Array) => void = () => {};
    const channel: MuxChannel = { send: () => {}, bufferedBytes: () => 0, onMessage: (cb) => (deliver = cb), onDrain: () => {}, onClose: () => {}, close: () => {} };
    const mux = new Mux(channel, { side, streamWindowBytes: MUX_FUZZ_WINDOW_BYTES, maxStreams: MUX_FUZZ_MAX_STREAMS });
    const accepted: MuxStream[] = [];
    mux.onStream((stream) => {
      stream.on("error", () => {});
      accepted.push(stream); // never read: what the peer sends stays buffered
    });
    let closedBy: string | undefined;
    mux.onClose((reason) => (closedBy = reason));
    try {
      for (const frame of frames) deliver(frame);
      if (closedBy?.includes("internal error")) throw new Error(`the mux failed on its own input: ${closedBy}`);
      // A peer can only make a stream hold its window, however much it sends.
      for (const stream of accepted) expectAtMost(`bytes buffered on stream ${stream.id}`, stream.readableLength, MUX_FUZZ_WINDOW_BYTES);
      expectAtMost("streams accepted", accepted.length, frames.length);
      return mux.stats.protocolErrors === 0;
    } finally {
      mux.close("fuzz case over");
    }
  },
});

// ---------- KCP input ----------

const KCP_CONV = 0x1234_5678;
const KCP_FUZZ_MTU_BYTES = 200;
const KCP_STEP_MS = 10;

/**
 * Segments built field by field: any command and fragment count, len matching the data, sequence
 * numbers mostly consecutive (so fragments reach the receive queue) and sometimes anything.
 */
const kcpSegmentSpec = fc.record({
  conv: fc.oneof({ arbitrary: fc.constant(KCP_CONV), weight: 9 }, { arbitrary: fc.nat(0xffffffff), weight: 1 }),
  cmd: fc.oneof({ arbitrary: fc.constantFrom(KCP_CMD_PUSH, KCP_CMD_ACK, KCP_CMD_WASK, KCP_CMD_WINS), weight: 9 }, { arbitrary: fc.nat(0xff), weight: 1 }),
  frg: fc.oneof(fc.nat(3), fc.nat(0xff)),
  wnd: fc.nat(0xffff),
  ts: fc.nat(0xffffffff),
  sn: fc.oneof({ arbitrary: fc.constant(null), weight: 4 }, { arbitrary: fc.nat(0xffffffff), weight: 1 }),
  una: fc.oneof({ arbitrary: fc.constant(0), weight: 9 }, { arbitrary: fc.nat(0xffffffff), weight: 1 }),
  data: fc.uint8Array({ maxLength: 32 }),
  endsPacket: fc.boolean(),
});

const kcpBuiltPackets = fc.array(kcpSegmentSpec, { minLength: 1, maxLength: 12 }).map((specs) => {
  const packets: Buffer[] = [];
  let segments: Buffer[] = [];
  let nextSn = 0;
  specs.forEach((s, i) => {
    const segment = Buffer.alloc(KCP_OVERHEAD_BYTES + s.data.length);
    segment.writeUInt32LE(s.conv, 0);
    segment[4] = s.cmd;
    segment[5] = s.frg;
    segment.writeUInt16LE(s.wnd, 6);
    segment.writeUInt32LE(s.ts, 8);
    segment.writeUInt32LE(s.sn ?? nextSn++, 12);
    segment.writeUInt32LE(s.una, 16);
    segment.writeUInt32LE(s.data.length, 20);
    segment.set(s.data, KCP_OVERHEAD_BYTES);
    segments.push(segment);
    if (s.endsPacket || i === specs.length - 1) {
      packets.push(Buffer.concat(segments));
      segments = [];
    }
  });
  return packets;
});

/** Packets a real sender emitted for messages of up to a few fragments. */
const kcpSentPackets = fc.array(fc.uint8Array({ minLength: 1, maxLength: 600 }), { minLength: 1, maxLength: 3 }).map((messages) => {
  const packets: Uint8Array[] = [];
  const sender = new Kcp(KCP_CONV, (packet) => packets.push(packet.slice())); // output lends KCP's own buffer
  sender.setMtu(KCP_FUZZ_MTU_BYTES);
  for (const message of messages) sender.send(message);
  sender.update(0);
  sender.flush();
  return packets;
});

const kcpPacketSequence = fc.oneof(
  kcpBuiltPackets,
  fc.tuple(kcpSentPackets, fc.array(fc.tuple(fc.nat(), mutations), { maxLength: 3 })).map(([packets, changes]) => {
    const out: Buffer[] = packets.map((p) => Buffer.from(p));
    for (const [index, list] of changes) out[index % out.length] = applyMutations(out[index % out.length]!, list);
    return out;
  }),
  fc.array(fc.uint8Array({ maxLength: 128 }).map((b) => Buffer.from(b)), { minLength: 1, maxLength: 4 }),
);

const kcp = target({
  name: "kcp-input",
  shortRuns: 5000,
  inputs: kcpPacketSequence,
  check(packets: Buffer[]) {
    const receiver = new Kcp(KCP_CONV, () => {});
    receiver.setMtu(KCP_FUZZ_MTU_BYTES);
    let now = 0;
    let bytesIn = 0;
    let bytesOut = 0;
    let accepted = false;
    for (const packet of packets) {
      bytesIn += packet.length;
      if (receiver.input(packet)) accepted = true;
      for (let message = receiver.recv(); message; message = receiver.recv()) bytesOut += message.length;
      now += KCP_STEP_MS;
      receiver.update(now);
    }
    expectAtMost("bytes delivered", bytesOut, bytesIn);
    return accepted;
  },
});

// ---------- signalling messages ----------

const base64url = (bytes: number) => fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => Buffer.from(b).toString("base64url"));
const nodeName = fc.stringMatching(/^[A-Za-z0-9._-]{1,63}$/);
const requestId = fc.nat();
const endpoint = fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([ip, port]) => `${ip}:${port}`);
const natInfo = fc.record({
  natType: fc.constantFrom(...NAT_TYPES),
  mapping: fc.constantFrom(...NAT_BEHAVIOURS),
  filtering: fc.constantFrom(...NAT_BEHAVIOURS),
  publicAddress: fc.option(fc.ipV4()),
  portPreserved: fc.boolean(),
  tcp: fc.boolean(),
});
const validRequests: Record<ClientRequestType, fc.Arbitrary<Record<string, unknown>>> = {
  login: fc.record({
    type: fc.constant("login"),
    id: requestId,
    node: nodeName,
    publicKey: base64url(32),
    proof: base64url(32),
    signature: base64url(64),
    version: fc.string({ maxLength: 16 }),
    nat: natInfo,
    instance: base64url(12),
  }),
  heartbeat: fc.record({ type: fc.constant("heartbeat"), id: requestId, clientTime: fc.double({ noNaN: true, noDefaultInfinity: true }), rttMs: fc.nat(600_000) }),
  peers: fc.record({ type: fc.constant("peers"), id: requestId }),
  watch: fc.record({ type: fc.constant("watch"), id: requestId, peers: fc.array(nodeName, { minLength: 1, maxLength: 8 }) }),
  report: fc.record({
    type: fc.constant("report"),
    id: requestId,
    nat: natInfo,
    candidates: fc.record({ udpLan: fc.array(endpoint, { maxLength: 4 }), tcpLan: fc.array(endpoint, { maxLength: 4 }), udpPublic: fc.option(endpoint), tcpPublic: fc.option(endpoint) }),
    sdwan: fc.record({ routes: fc.array(fc.tuple(fc.ipV4(), fc.nat(32)).map(([ip, bits]) => `${ip}/${bits}`), { maxLength: 4 }) }),
  }),
  connect: fc.record({ type: fc.constant("connect"), id: requestId, peer: nodeName }),
  relay: fc.record({ type: fc.constant("relay"), id: requestId, peer: nodeName, exclude: fc.array(fc.string({ maxLength: 20 }), { maxLength: 8 }) }),
  links: fc.record({
    type: fc.constant("links"),
    id: requestId,
    links: fc.array(
      fc.record({
        peer: nodeName,
        kind: fc.constantFrom(...LINK_KINDS),
        relay: fc.option(fc.constant("server")),
        rttMs: fc.option(fc.nat(600_000)),
        bytesIn: fc.nat(),
        bytesOut: fc.nat(),
      }),
      { maxLength: 4 },
    ),
    apps: fc.array(fc.record({ name: nodeName, protocol: fc.constantFrom("tcp", "udp"), peer: nodeName, state: fc.constantFrom(...APP_STATES), connections: fc.nat(1000) }), { maxLength: 4 }),
  }),
};
const validRequest = fc.oneof(...Object.values(validRequests));

/** A valid request with fields removed, replaced by any JSON value, or added. */
const reshapedRequest = fc
  .tuple(
    validRequest,
    fc.array(
      fc.oneof(
        fc.record({ op: fc.constant("delete" as const), key: fc.nat() }),
        fc.record({ op: fc.constant("replace" as const), key: fc.nat(), value: fc.jsonValue({ maxDepth: 3 }) }),
        fc.record({ op: fc.constant("add" as const), key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom("__proto__", "constructor", "type", "id")), value: fc.jsonValue({ maxDepth: 3 }) }),
      ),
      { minLength: 1, maxLength: 3 },
    ),
  )
  .map(([request, ops]) => {
    const out: Record<string, unknown> = { ...request };
    for (const op of ops) {
      const keys = Object.keys(out);
      if (op.op === "add") Object.defineProperty(out, op.key, { value: op.value, enumerable: true, configurable: true, writable: true });
      else if (keys.length > 0 && op.op === "delete") delete out[keys[op.key % keys.length]!];
      else if (keys.length > 0 && op.op === "replace") out[keys[op.key % keys.length]!] = op.value;
    }
    return JSON.stringify(out);
  });

/** Nesting thousands of levels deep (64 KiB of brackets) and texts just over the limit are costly: fewer of them. */
const RARE = 1;
const COMMON = 8;

const signalText = fc.oneof(
  { arbitrary: validRequest.map((r) => JSON.stringify(r)), weight: COMMON },
  { arbitrary: reshapedRequest, weight: COMMON },
  { arbitrary: mutated(validRequest.map((r) => Buffer.from(JSON.stringify(r)))).map((b) => b.toString("utf8")), weight: COMMON },
  { arbitrary: fc.json({ maxDepth: 4 }), weight: COMMON },
  { arbitrary: fc.string({ maxLength: 200, unit: "binary" }), weight: COMMON },
  // Types that name Object.prototype members.
  { arbitrary: fc.tuple(fc.constantFrom("__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"), requestId).map(([type, id]) => JSON.stringify({ type, id })), weight: RARE },
  {
    arbitrary: fc.tuple(validRequest, fc.nat(), fc.integer({ min: 1, max: 30_000 })).map(([r, k, depth]) => {
      const keys = Object.keys(r);
      const deep = "[".repeat(depth) + "]".repeat(depth);
      return JSON.stringify({ ...r, [keys[k % keys.length]!]: "\u0000" }).replace('"\\u0000"', deep);
    }),
    weight: RARE,
  },
  // Just over the limit: valid requests padded with whitespace.
  {
    arbitrary: fc.tuple(validRequest, fc.integer({ min: -64, max: 64 })).map(([r, extra]) => {
      const json = JSON.stringify(r);
      return json + " ".repeat(Math.max(0, MAX_MESSAGE_BYTES - Buffer.byteLength(json) + extra));
    }),
    weight: RARE,
  },
);

const signal = target({
  name: "signal",
  shortRuns: 4000,
  inputs: signalText,
  check(text: string) {
    let request;
    try {
      request = parseClientMessage(text);
    } catch (error) {
      expectDocumentedError(error, ProtocolError);
      return false;
    }
    // What passes is exactly what the schema of its type accepts (arrays and strings within its caps),
    // from a text within the message limit.
    if (!signalRequests[request.type].request.safeParse(request).success) throw new Error(`a ${request.type} that its schema refuses was accepted`);
    expectAtMost("accepted message text bytes", Buffer.byteLength(text), MAX_MESSAGE_BYTES);
    return true;
  },
});

// ---------- relay hello and answer ----------

const relayHelloFrames = fc.oneof(fc.string({ maxLength: 200 }).map(encodeRelayHello), fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? "")));
const relayAnswerFrames = fc
  .record({ ok: fc.boolean(), code: fc.option(fc.string({ maxLength: 30 }), { nil: undefined }), error: fc.option(fc.string({ maxLength: 80 }), { nil: undefined }) })
  .map(encodeRelayAnswer);

const relayHello = target({
  name: "relay-hello",
  shortRuns: 3000,
  inputs: bytesAround(relayHelloFrames),
  check(frame: Buffer) {
    const hello = decodeRelayHello(frame);
    if ("ticket" in hello) {
      if (typeof hello.ticket !== "string") throw new Error("ticket is not a string");
      expectAtMost("ticket length", hello.ticket.length, frame.length);
      return true;
    }
    if (typeof hello.error !== "string") throw new Error("a refused hello has no error text");
    return false;
  },
});

const relayAnswer = target({
  name: "relay-answer",
  shortRuns: 3000,
  inputs: bytesAround(relayAnswerFrames),
  check(frame: Buffer) {
    const answer = decodeRelayAnswer(frame);
    if (typeof answer.ok !== "boolean") throw new Error("answer.ok is not a boolean");
    const extra = Object.keys(answer).filter((k) => k !== "ok" && k !== "code" && k !== "error");
    if (extra.length > 0) throw new Error(`answer carries unexpected fields ${extra.join(", ")}`);
    expectAtMost("answer text length", (answer.code?.length ?? 0) + (answer.error?.length ?? 0), Math.max(frame.length, 64));
    return answer.code !== "RELAY_BAD_ANSWER";
  },
});

// ---------- handshake messages ----------

const HANDSHAKE_NOW_MS = 1_800_000_000_000;
const HANDSHAKE_SESSION_ID = Buffer.alloc(16, 0x5a);
/** PKCS#8 DER prefix of a raw 32-byte Ed25519 seed: fixed identities, so only the handshake's own ephemerals vary between runs. */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

function fixedIdentity(label: string): Identity {
  const seed = createHash("sha256").update(label).digest();
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
  return { privateKey, publicKey: publicKeyText(privateKey) };
}

const initiatorIdentity = fixedIdentity("fuzz initiator");
const responderIdentity = fixedIdentity("fuzz responder");

function handshakePair(): { initiator: Handshake; responder: Handshake } {
  const common = { sessionId: HANDSHAKE_SESSION_ID, now: () => HANDSHAKE_NOW_MS };
  return {
    initiator: new Handshake({ ...common, identity: initiatorIdentity, peerPublicKey: responderIdentity.publicKey, role: "initiator" }),
    responder: new Handshake({ ...common, identity: responderIdentity, peerPublicKey: initiatorIdentity.publicKey, role: "responder" }),
  };
}

type HandshakeInput = { to: "responder" | "initiator"; base: "m1" | "m2" | "random"; mutate: boolean; random: Uint8Array; changes: Mutation[] };

const handshake = target({
  name: "handshake",
  shortRuns: 1000,
  inputs: fc.record({
    to: fc.constantFrom("responder" as const, "initiator" as const),
    base: fc.constantFrom("m1" as const, "m2" as const, "random" as const),
    mutate: fc.oneof({ arbitrary: fc.constant(true), weight: 9 }, { arbitrary: fc.constant(false), weight: 1 }),
    random: fc.uint8Array({ maxLength: 160 }),
    changes: mutations,
  }),
  check(input: HandshakeInput) {
    const { initiator, responder } = handshakePair();
    const m1 = Buffer.from(initiator.start());
    const m2 = Buffer.from(handshakePair().responder.receive(m1)!);
    const original = input.base === "m1" ? m1 : input.base === "m2" ? m2 : Buffer.from(input.random);
    const message = input.base !== "random" && input.mutate ? applyMutations(original, input.changes) : original;
    const receiver = input.to === "responder" ? responder : initiator;
    try {
      receiver.receive(message);
    } catch (error) {
      expectDocumentedError(error, HandshakeError);
      if (receiver === initiator && initiator.complete) throw new Error("a refused m2 completed the handshake");
      return false;
    }
    // Only the one valid message for this side is accepted; every changed byte is caught.
    if (!message.equals(input.to === "responder" ? m1 : m2)) throw new Error(`a changed or forged message was accepted by the ${input.to}`);
    return true;
  },
});

// ---------- sealed records ----------

const SESSION_SECRETS_INPUT = { shared: Buffer.alloc(32, 7), sessionId: Buffer.alloc(16, 9), transcript: Buffer.alloc(32, 3) };
const SESSION_NOW_MS = 1_800_000_000_000;

function sessionPair(): { sender: SecureSession; receiver: SecureSession } {
  const secrets = () => deriveSessionSecrets(SESSION_SECRETS_INPUT.shared, SESSION_SECRETS_INPUT.sessionId, SESSION_SECRETS_INPUT.transcript);
  const now = () => SESSION_NOW_MS;
  return { sender: new SecureSession({ role: "initiator", secrets: secrets(), now }), receiver: new SecureSession({ role: "responder", secrets: secrets(), now }) };
}

type Rejects = Pick<SessionStats, "rejectedAuth" | "rejectedReplay" | "rejectedMalformed">;
/** open() turns any exception into null; the fuzzer calls the parser it wraps, so that a throw is seen. */
type RecordParser = { openRecord(packet: Uint8Array, offset: number, rejects: Rejects): OpenedRecord | null };

type RecordInput = { plaintexts: Uint8Array[]; kind: number; rekeys: number; pick: number; form: "valid" | "mutated" | "random"; changes: Mutation[]; random: Uint8Array };

const sealedRecord = target({
  name: "sealed-record",
  shortRuns: 4000,
  inputs: fc.record({
    plaintexts: fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 1, maxLength: 3 }),
    kind: fc.integer({ min: RECORD_KIND_MIN, max: 0xff }),
    rekeys: fc.nat(6),
    pick: fc.nat(),
    form: fc.oneof({ arbitrary: fc.constant("mutated" as const), weight: 6 }, { arbitrary: fc.constantFrom("valid" as const, "random" as const), weight: 2 }),
    changes: mutations,
    random: fc.uint8Array({ maxLength: 120 }),
  }),
  check(input: RecordInput) {
    const { sender, receiver } = sessionPair();
    for (let i = 0; i < input.rekeys; i++) sender.rekey();
    const records = input.plaintexts.map((p) => Buffer.from(sender.seal(p, input.kind)));
    const chosen = records[input.pick % records.length]!;
    const packet = input.form === "mutated" ? applyMutations(chosen, input.changes) : input.form === "valid" ? chosen : Buffer.from(input.random);
    const rejects: Rejects = { rejectedAuth: 0, rejectedReplay: 0, rejectedMalformed: 0 };
    const opened = (receiver as unknown as RecordParser).openRecord(packet, 0, rejects);
    if (opened === null) return false;
    if (!records.some((r) => r.equals(packet))) throw new Error("a changed or forged record opened");
    expectAtMost("plaintext bytes", opened.plaintext.length, packet.length - RECORD_OVERHEAD_BYTES);
    return true;
  },
});

// ---------- app stream headers, answers and UDP app datagrams ----------

const appTarget = fc.tuple(fc.oneof(fc.domain(), fc.ipV4()), fc.integer({ min: 1, max: 65535 })).map(([host, port]) => `${host}:${port}`);

const appStreamHeader = target({
  name: "app-stream-header",
  shortRuns: 4000,
  inputs: bytesAround(fc.tuple(appTarget, fc.uint8Array({ maxLength: 64 })).map(([t, rest]) => Buffer.concat([encodeStreamHeader({ target: t }), rest])), 1200),
  check(buffer: Buffer) {
    let decoded;
    try {
      decoded = decodeStreamHeader(buffer);
    } catch (error) {
      expectDocumentedError(error, AppProtocolError);
      return false;
    }
    if (!decoded) return false;
    expectAtMost("target length", decoded.header.target.length, MAX_STREAM_HEADER_BYTES);
    if (decoded.rest.buffer !== buffer.buffer) throw new Error("the bytes after the header are a copy, not a view");
    return true;
  },
});

const appStreamAnswer = target({
  name: "app-stream-answer",
  shortRuns: 4000,
  inputs: bytesAround(
    fc
      .oneof(fc.constant({ ok: true as const }), fc.record({ ok: fc.constant(false as const), code: fc.constantFrom("NOT_EXPOSED" as const, "UNREACHABLE" as const), error: fc.string({ maxLength: 80 }) }))
      .map((answer) => encodeStreamAnswer(answer)),
    1200,
  ),
  check(buffer: Buffer) {
    let decoded;
    try {
      decoded = decodeStreamAnswer(buffer);
    } catch (error) {
      expectDocumentedError(error, AppProtocolError);
      return false;
    }
    if (!decoded) return false;
    if (!decoded.answer.ok) expectAtMost("error length", decoded.answer.error.length, MAX_STREAM_HEADER_BYTES);
    if (decoded.rest.buffer !== buffer.buffer) throw new Error("the bytes after the answer are a copy, not a view");
    return true;
  },
});

const udpAppDatagram = target({
  name: "udp-app-datagram",
  shortRuns: 4000,
  inputs: bytesAround(
    fc.oneof(
      fc.tuple(fc.nat(0xffffffff), appTarget, fc.uint8Array({ maxLength: 64 })).map(([flow, t, payload]) => encodeUdpAppDatagram(flow, t, payload)),
      fc.tuple(fc.nat(0xffffffff), fc.uint8Array({ maxLength: 64 })).map(([flow, payload]) => encodeUdpReplyDatagram(flow, payload)),
      fc.tuple(fc.nat(0xffffffff), fc.constantFrom("NOT_EXPOSED" as const, "UNREACHABLE" as const)).map(([flow, code]) => encodeUdpRefusedDatagram(flow, code)),
    ),
    400,
  ),
  check(datagram: Buffer) {
    let decoded;
    try {
      decoded = decodeUdpAppDatagram(datagram);
    } catch (error) {
      expectDocumentedError(error, AppProtocolError);
      return false;
    }
    if (!decoded) return false;
    if (decoded.type === "request") expectAtMost("target bytes", Buffer.byteLength(decoded.target), MAX_UDP_TARGET_BYTES);
    if (decoded.type !== "refused" && decoded.payload.buffer !== datagram.buffer) throw new Error("the payload is a copy, not a view");
    return true;
  },
});

// ---------- stream openings (app or speedtest) and the speedtest's replies ----------

const streamOpening = target({
  name: "stream-opening",
  shortRuns: 4000,
  inputs: bytesAround(
    fc.oneof(
      appTarget.map((t) => encodeStreamHeader({ target: t })),
      fc.tuple(fc.constantFrom("upload" as const, "download" as const), fc.integer({ min: 1, max: 1_000_000 })).map(([direction, ms]) => encodeSpeedtestRequest({ direction, ms })),
    ),
    1200,
  ),
  check(buffer: Buffer) {
    let decoded;
    try {
      decoded = decodeStreamOpening(buffer);
    } catch (error) {
      expectDocumentedError(error, AppProtocolError);
      return false;
    }
    if (!decoded) return false;
    const { opening } = decoded;
    if (opening.kind === "app") expectAtMost("target length", opening.header.target.length, MAX_STREAM_HEADER_BYTES);
    else if (!["upload", "download"].includes(opening.request.direction) || !Number.isSafeInteger(opening.request.ms) || opening.request.ms < 1)
      throw new Error(`a speedtest request outside its documented values passed: ${JSON.stringify(opening.request)}`);
    if (decoded.rest.buffer !== buffer.buffer) throw new Error("the bytes after the opening are a copy, not a view");
    return true;
  },
});

const speedtestReply = target({
  name: "speedtest-reply",
  shortRuns: 4000,
  inputs: bytesAround(
    fc.oneof(
      fc.constant(encodeSpeedtestAnswer({ ok: true })),
      fc.record({ code: fc.constantFrom("BUSY" as const, "TOO_LONG" as const), error: fc.string({ maxLength: 80 }) }).map(({ code, error }) => encodeSpeedtestAnswer({ ok: false, code, error })),
      fc.tuple(fc.nat(), fc.double({ min: 0, max: 1e6, noNaN: true })).map(([bytes, ms]) => encodeSpeedtestResult({ bytes, ms })),
    ),
    1200,
  ),
  check(buffer: Buffer) {
    let accepted = false;
    try {
      accepted = decodeSpeedtestAnswer(buffer) !== undefined;
    } catch (error) {
      expectDocumentedError(error, AppProtocolError);
    }
    let result;
    try {
      result = decodeSpeedtestResult(buffer);
    } catch (error) {
      expectDocumentedError(error, AppProtocolError);
    }
    if (!result) return accepted;
    if (!Number.isSafeInteger(result.bytes) || result.bytes < 0 || !(result.ms >= 0)) throw new Error(`a result outside its documented values passed: ${JSON.stringify(result)}`);
    return true;
  },
});

export const FUZZ_TARGETS: readonly FuzzTarget[] = [
  stun,
  mux,
  muxSession,
  kcp,
  signal,
  relayHello,
  relayAnswer,
  handshake,
  sealedRecord,
  appStreamHeader,
  appStreamAnswer,
  streamOpening,
  speedtestReply,
  udpAppDatagram,
];
