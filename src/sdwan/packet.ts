import { isIPv4 } from "node:net";

// The little of IPv4 SDWAN needs: where a packet comes from and goes to, and CIDR blocks as numbers.

/** IPv4 header's protocol numbers. */
export const PROTOCOL_ICMP = 1;
export const PROTOCOL_TCP = 6;
export const PROTOCOL_UDP = 17;

export interface Cidr {
  text: string;
  network: number;
  prefix: number;
}

export function ipToNumber(ip: string): number {
  const parts = ip.split(".").map(Number);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function numberToIp(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

const maskOf = (prefix: number) => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);

/** Parses "a.b.c.d/n" (host bits must be zero); throws naming what is wrong. */
export function parseCidr(text: string): Cidr {
  const [ip, prefixText, ...rest] = text.split("/");
  const prefix = Number(prefixText);
  if (rest.length || !ip || !isIPv4(ip) || !Number.isInteger(prefix) || prefix < 0 || prefix > 32)
    throw new Error(`"${text}" is not an IPv4 CIDR block such as 10.10.0.0/24`);
  const value = ipToNumber(ip);
  if ((value & maskOf(prefix)) >>> 0 !== value) throw new Error(`"${text}" has host bits set (did you mean ${numberToIp((value & maskOf(prefix)) >>> 0)}/${prefix}?)`);
  return { text, network: value, prefix };
}

export function cidrContains(cidr: Cidr, ip: number): boolean {
  return ((ip & maskOf(cidr.prefix)) >>> 0) === cidr.network;
}

/** Source and destination of an IPv4 packet, as numbers; undefined for anything else (IPv6, garbage). */
export function ipv4Addresses(packet: Uint8Array): { source: number; destination: number } | undefined {
  if (packet.length < 20 || packet[0]! >> 4 !== 4) return undefined;
  const view = Buffer.isBuffer(packet) ? packet : Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  return { source: view.readUInt32BE(12), destination: view.readUInt32BE(16) };
}
