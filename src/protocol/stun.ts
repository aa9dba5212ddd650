import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

// STUN message codec (RFC 5389), pure: bytes in, objects out, and back. RFC 3489 messages are the
// ones without the magic cookie; their transaction id is the whole 16 bytes after the length.

export const STUN_MAGIC_COOKIE = 0x2112a442;
export const STUN_HEADER_BYTES = 20;
/**
 * Largest message decoded or buffered. RFC 5389 §7.1 keeps UDP messages under the path MTU (576 bytes
 * for IPv4 and 1280 for IPv6 when it is unknown), and a Binding request or response is far smaller;
 * 1500 leaves room for ICE-style requests with USERNAME, MESSAGE-INTEGRITY and FINGERPRINT while
 * bounding what one TCP connection can make the server hold.
 */
export const MAX_STUN_MESSAGE_BYTES = 1500;
/** More attributes than this in one message is refused as malformed. */
export const MAX_STUN_ATTRIBUTES = 64;
export const STUN_BINDING_METHOD = 0x001;
export const FINGERPRINT_XOR = 0x5354554e;
export const CHANGE_IP_FLAG = 0x04;
export const CHANGE_PORT_FLAG = 0x02;

export const StunAttr = {
  MAPPED_ADDRESS: 0x0001,
  RESPONSE_ADDRESS: 0x0002,
  CHANGE_REQUEST: 0x0003,
  SOURCE_ADDRESS: 0x0004,
  CHANGED_ADDRESS: 0x0005,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  XOR_MAPPED_ADDRESS: 0x0020,
  SOFTWARE: 0x8022,
  FINGERPRINT: 0x8028,
  RESPONSE_ORIGIN: 0x802b,
  OTHER_ADDRESS: 0x802c,
} as const;

/** Address attributes whose value is XOR-coded: XOR-MAPPED-ADDRESS, XOR-PEER/RELAYED-ADDRESS (TURN), and the pre-5389 0x8020. */
const XOR_ADDRESS_TYPES = new Set([0x0020, 0x0012, 0x0016, 0x8020]);
const CLASSES = ["request", "indication", "success", "error"] as const;

export type StunClass = (typeof CLASSES)[number];
export interface StunAddress { family: 4 | 6; address: string; port: number }
export interface StunAttribute { type: number; value: Buffer }
export interface StunMessage {
  method: number;
  cls: StunClass;
  /** 12 bytes (RFC 5389) or 16 (RFC 3489). */
  transactionId: Buffer;
  rfc3489: boolean;
  attributes: StunAttribute[];
}
export type StunMessageInit = Omit<StunMessage, "rfc3489"> & { rfc3489?: boolean };

export class StunDecodeError extends Error {
  readonly code = "STUN_MALFORMED";
}
export class StunEncodeError extends Error {
  readonly code = "STUN_ENCODE";
}

const pad4 = (n: number) => (n + 3) & ~3;

export function decodeStun(packet: Uint8Array): StunMessage {
  const bytes = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  const fail = (what: string): never => {
    throw new StunDecodeError(`not a STUN message: ${what}`);
  };
  if (bytes.length < STUN_HEADER_BYTES) fail(`${bytes.length} bytes, shorter than the 20-byte header`);
  if (bytes.length > MAX_STUN_MESSAGE_BYTES) fail(`${bytes.length} bytes, over the ${MAX_STUN_MESSAGE_BYTES}-byte limit`);
  const type = bytes.readUInt16BE(0);
  if (type & 0xc000) fail("the first two bits are not zero");
  const length = bytes.readUInt16BE(2);
  if (length % 4 !== 0) fail(`length ${length} is not a multiple of 4`);
  if (length !== bytes.length - STUN_HEADER_BYTES) fail(`length ${length} but ${bytes.length - STUN_HEADER_BYTES} bytes follow the header`);
  const rfc3489 = bytes.readUInt32BE(4) !== STUN_MAGIC_COOKIE;
  const attributes: StunAttribute[] = [];
  let offset = STUN_HEADER_BYTES;
  while (offset < bytes.length) {
    if (attributes.length === MAX_STUN_ATTRIBUTES) fail(`more than ${MAX_STUN_ATTRIBUTES} attributes`);
    const attrType = bytes.readUInt16BE(offset);
    const attrLength = bytes.readUInt16BE(offset + 2);
    if (offset + 4 + pad4(attrLength) > bytes.length) {
      fail(`attribute 0x${attrType.toString(16).padStart(4, "0")} of ${attrLength} bytes runs past the end`);
    }
    attributes.push({ type: attrType, value: Buffer.from(bytes.subarray(offset + 4, offset + 4 + attrLength)) });
    offset += 4 + pad4(attrLength);
  }
  return {
    method: ((type & 0x3e00) >> 2) | ((type & 0x00e0) >> 1) | (type & 0x000f),
    cls: CLASSES[((type >> 7) & 0b10) | ((type >> 4) & 0b01)]!,
    transactionId: Buffer.from(bytes.subarray(rfc3489 ? 4 : 8, STUN_HEADER_BYTES)),
    rfc3489,
    attributes,
  };
}

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

export function encodeStun(message: StunMessageInit, options: { integrityKey?: Buffer; fingerprint?: boolean } = {}): Buffer {
  const rfc3489 = message.rfc3489 ?? message.transactionId.length === 16;
  if (message.transactionId.length !== (rfc3489 ? 16 : 12)) {
    throw new StunEncodeError(`transaction id must be ${rfc3489 ? 16 : 12} bytes, got ${message.transactionId.length}`);
  }
  if (message.method > 0xfff) throw new StunEncodeError(`method 0x${message.method.toString(16)} does not fit in 12 bits`);
  const c = CLASSES.indexOf(message.cls);
  const m = message.method;
  const type = ((m & 0xf80) << 2) | ((m & 0x070) << 1) | (m & 0x00f) | ((c & 0b10) << 7) | ((c & 0b01) << 4);
  const parts: Buffer[] = [Buffer.alloc(STUN_HEADER_BYTES)];
  for (const attribute of message.attributes) parts.push(attributeBytes(attribute.type, attribute.value));
  const header = parts[0]!;
  header.writeUInt16BE(type, 0);
  if (!rfc3489) header.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  message.transactionId.copy(header, rfc3489 ? 4 : 8);
  const sealed = () => {
    const bytes = Buffer.concat(parts);
    bytes.writeUInt16BE(bytes.length - STUN_HEADER_BYTES, 2);
    return bytes;
  };
  // Each of the two trailers is computed with the length field already counting it (RFC 5389 §15.4, §15.5).
  if (options.integrityKey) {
    parts.push(attributeBytes(StunAttr.MESSAGE_INTEGRITY, Buffer.alloc(20)));
    const bytes = sealed();
    const mac = createHmac("sha1", options.integrityKey).update(bytes.subarray(0, bytes.length - 24)).digest();
    parts[parts.length - 1] = attributeBytes(StunAttr.MESSAGE_INTEGRITY, mac);
  }
  if (options.fingerprint) {
    parts.push(attributeBytes(StunAttr.FINGERPRINT, Buffer.alloc(4)));
    const bytes = sealed();
    const value = Buffer.alloc(4);
    value.writeUInt32BE((crc32(bytes.subarray(0, bytes.length - 8)) ^ FINGERPRINT_XOR) >>> 0);
    parts[parts.length - 1] = attributeBytes(StunAttr.FINGERPRINT, value);
  }
  const bytes = sealed();
  if (bytes.length - STUN_HEADER_BYTES > 0xffff) throw new StunEncodeError(`message of ${bytes.length} bytes is too long`);
  return bytes;
}

function attributeBytes(type: number, value: Buffer): Buffer {
  if (value.length > 0xffff) throw new StunEncodeError(`attribute 0x${type.toString(16)} of ${value.length} bytes is too long`);
  const bytes = Buffer.alloc(4 + pad4(value.length));
  bytes.writeUInt16BE(type, 0);
  bytes.writeUInt16BE(value.length, 2);
  value.copy(bytes, 4);
  return bytes;
}

export function newTransactionId(): Buffer {
  return randomBytes(12);
}

/** A Binding request; a 16-byte transactionId makes it an RFC 3489 one (no magic cookie). */
export function bindingRequest(options: { changeIp?: boolean; changePort?: boolean; transactionId?: Buffer } = {}): Buffer {
  const attributes: StunAttribute[] = [];
  if (options.changeIp || options.changePort) {
    const value = Buffer.alloc(4);
    value.writeUInt32BE((options.changeIp ? CHANGE_IP_FLAG : 0) | (options.changePort ? CHANGE_PORT_FLAG : 0));
    attributes.push({ type: StunAttr.CHANGE_REQUEST, value });
  }
  return encodeStun({ method: STUN_BINDING_METHOD, cls: "request", transactionId: options.transactionId ?? newTransactionId(), attributes });
}

/** The 16 bytes XOR-coded addresses are masked with: magic cookie + 12-byte id, or a 16-byte RFC 3489 id. */
function xorMask(transactionId: Buffer): Buffer {
  if (transactionId.length === 16) return transactionId;
  const mask = Buffer.alloc(16);
  mask.writeUInt32BE(STUN_MAGIC_COOKIE, 0);
  transactionId.copy(mask, 4);
  return mask;
}

/** An address attribute of `type` (XOR-coded when the type is), for a message with this transaction id. */
export function addressAttribute(type: number, address: StunAddress, transactionId: Buffer): StunAttribute {
  const ip = address.family === 4 ? Buffer.from(address.address.split(".").map(Number)) : ipv6Bytes(address.address);
  const value = Buffer.alloc(4 + ip.length);
  value[1] = address.family === 4 ? 1 : 2;
  value.writeUInt16BE(address.port, 2);
  ip.copy(value, 4);
  if (XOR_ADDRESS_TYPES.has(type)) xorInPlace(value, xorMask(transactionId));
  return { type, value };
}

function xorInPlace(value: Buffer, mask: Buffer): void {
  value[2]! ^= mask[0]!;
  value[3]! ^= mask[1]!;
  for (let i = 4; i < value.length; i++) value[i]! ^= mask[i - 4]!;
}

export function readAttribute(message: StunMessage, type: number): Buffer | undefined {
  return message.attributes.find((a) => a.type === type)?.value;
}

/** The first attribute of `type` as an address; undefined when absent or malformed. */
export function readAddress(message: StunMessage, type: number): StunAddress | undefined {
  const raw = readAttribute(message, type);
  if (!raw || raw.length < 4) return undefined;
  const family = raw[1] === 1 ? 4 : raw[1] === 2 ? 6 : undefined;
  if (family === undefined || raw.length !== (family === 4 ? 8 : 20)) return undefined;
  const value = Buffer.from(raw);
  if (XOR_ADDRESS_TYPES.has(type)) xorInPlace(value, xorMask(message.transactionId));
  const ip = value.subarray(4);
  const address = family === 4 ? [...ip].join(".") : ipv6Text(ip);
  return { family, address, port: value.readUInt16BE(2) };
}

export function mappedAddress(message: StunMessage): StunAddress | undefined {
  return readAddress(message, StunAttr.XOR_MAPPED_ADDRESS) ?? readAddress(message, StunAttr.MAPPED_ADDRESS);
}

export function readChangeRequest(message: StunMessage): { changeIp: boolean; changePort: boolean } {
  const raw = readAttribute(message, StunAttr.CHANGE_REQUEST);
  const flags = raw?.length === 4 ? raw.readUInt32BE(0) : 0;
  return { changeIp: (flags & CHANGE_IP_FLAG) !== 0, changePort: (flags & CHANGE_PORT_FLAG) !== 0 };
}

/** ERROR-CODE value (RFC 5389 §15.6): class and number, then a UTF-8 reason padded by the encoder. */
export function errorCodeAttribute(code: number, reason: string): StunAttribute {
  const value = Buffer.concat([Buffer.from([0, 0, Math.floor(code / 100), code % 100]), Buffer.from(reason, "utf8")]);
  return { type: StunAttr.ERROR_CODE, value };
}

export function readErrorCode(message: StunMessage): { code: number; reason: string } | undefined {
  const raw = readAttribute(message, StunAttr.ERROR_CODE);
  if (!raw || raw.length < 4) return undefined;
  return { code: (raw[2]! & 0x7) * 100 + raw[3]!, reason: raw.subarray(4).toString("utf8") };
}

/** Byte offsets of each attribute of a well-formed message (the packet was decoded first). */
function attributeOffsets(bytes: Buffer): { type: number; offset: number; length: number }[] {
  const out: { type: number; offset: number; length: number }[] = [];
  for (let offset = STUN_HEADER_BYTES; offset < bytes.length; ) {
    const length = bytes.readUInt16BE(offset + 2);
    out.push({ type: bytes.readUInt16BE(offset), offset, length });
    offset += 4 + pad4(length);
  }
  return out;
}

/** True when the last attribute is a FINGERPRINT that matches (RFC 5389 §15.5). */
export function verifyFingerprint(packet: Uint8Array): boolean {
  if (!isDecodable(packet)) return false;
  const bytes = Buffer.from(packet);
  const last = attributeOffsets(bytes).at(-1);
  if (!last || last.type !== StunAttr.FINGERPRINT || last.length !== 4) return false;
  return bytes.readUInt32BE(last.offset + 4) === (crc32(bytes.subarray(0, last.offset)) ^ FINGERPRINT_XOR) >>> 0;
}

/** True when MESSAGE-INTEGRITY matches under `key` (RFC 5389 §15.4: the length field ends after it). */
export function verifyMessageIntegrity(packet: Uint8Array, key: Buffer): boolean {
  if (!isDecodable(packet)) return false;
  const bytes = Buffer.from(packet);
  const mi = attributeOffsets(bytes).find((a) => a.type === StunAttr.MESSAGE_INTEGRITY);
  if (!mi || mi.length !== 20) return false;
  const covered = Buffer.from(bytes.subarray(0, mi.offset));
  covered.writeUInt16BE(mi.offset + 24 - STUN_HEADER_BYTES, 2);
  const expected = createHmac("sha1", key).update(covered).digest();
  return timingSafeEqual(expected, bytes.subarray(mi.offset + 4, mi.offset + 24));
}

function isDecodable(packet: Uint8Array): boolean {
  try {
    decodeStun(packet);
    return true;
  } catch {
    return false;
  }
}

/** Cheap demultiplexing check: an RFC 5389 header whose length matches the packet. */
export function looksLikeStun(packet: Uint8Array): boolean {
  if (packet.length < STUN_HEADER_BYTES || (packet[0]! & 0xc0) !== 0) return false;
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  const length = view.readUInt16BE(2);
  return length % 4 === 0 && length === packet.length - STUN_HEADER_BYTES && view.readUInt32BE(4) === STUN_MAGIC_COOKIE;
}

function ipv6Bytes(text: string): Buffer {
  let groups: string[];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  const head = v4 ? text.slice(0, v4.index) + (((+v4[1]! << 8) | +v4[2]!).toString(16) + ":" + ((+v4[3]! << 8) | +v4[4]!).toString(16)) : text;
  const [left = "", right] = head.split("::");
  if (right === undefined) groups = left.split(":");
  else {
    const l = left ? left.split(":") : [];
    const r = right ? right.split(":") : [];
    groups = [...l, ...Array(8 - l.length - r.length).fill("0"), ...r];
  }
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) throw new StunEncodeError(`not an IPv6 address: ${text}`);
  const bytes = Buffer.alloc(16);
  groups.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2));
  return bytes;
}

/** RFC 5952 text: lower case, no leading zeros, the longest run (2+) of zero groups as "::". */
function ipv6Text(bytes: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
  let best = { start: -1, length: 1 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.start < 0) return hex.join(":");
  return `${hex.slice(0, best.start).join(":")}::${hex.slice(best.start + best.length).join(":")}`;
}
