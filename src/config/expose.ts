// `[client] expose` entries: what peers may reach through this node. HOST:PORTS, where HOST is "*",
// an IPv4 address or CIDR, an IPv6 address or CIDR in brackets, or a host name; PORTS is "*", a port
// or a range "from-to".
import { isIPv4, isIPv6 } from "node:net";
import { parseHost } from "./values";

export type ExposeHost =
  | { kind: "any" }
  | { kind: "net"; address: string; prefix: number; family: "ipv4" | "ipv6" }
  /** Matches a target given by this name (lower case, no trailing dot). */
  | { kind: "name"; name: string };

export interface ExposeRule {
  /** The entry as written. */
  text: string;
  host: ExposeHost;
  ports: { from: number; to: number };
}

export const EXPOSE_EXAMPLES = '"127.0.0.1:22", "192.168.1.0/24:80-443", "[::1]:53", "db.lan:5432" or "*:*"';

/** A host name as expose compares it: lower case, without a trailing dot. */
export const normalizeHostName = (name: string) => name.toLowerCase().replace(/\.$/, "");

function parsePorts(text: string): ExposeRule["ports"] | string {
  if (text === "*") return { from: 1, to: 65_535 };
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!match) return `"${text}" is not a port, a range "from-to" or "*"`;
  const from = Number(match[1]);
  const to = match[2] === undefined ? from : Number(match[2]);
  if (from < 1 || to > 65_535) return `ports are 1..65535, not ${text}`;
  if (from > to) return `the range ${text} runs backwards`;
  return { from, to };
}

function parseNet(text: string, bracketed: boolean): ExposeHost | string {
  const [address = "", prefix, extra] = text.split("/");
  const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
  if (family === "ipv6" && !bracketed) return `an IPv6 address goes in brackets, as in "[${text}]:53"`;
  if (family === "ipv4" && bracketed) return `only an IPv6 address goes in brackets, not ${address}`;
  if (!family || extra !== undefined) return `"${text}" is not an IP address or CIDR`;
  const bits = family === "ipv4" ? 32 : 128;
  if (prefix !== undefined && (!/^\d{1,3}$/.test(prefix) || Number(prefix) > bits)) return `"/${prefix}" is not a prefix length 0..${bits}`;
  return { kind: "net", address, prefix: prefix === undefined ? bits : Number(prefix), family };
}

/** One expose entry, or a message saying what is wrong with it. */
export function parseExposeEntry(text: string): ExposeRule | string {
  const bracketed = text.startsWith("[");
  const colon = bracketed ? text.indexOf("]") + 1 : text.lastIndexOf(":");
  if (colon <= 0 || text[colon] !== ":") return bracketed ? 'no ":PORTS" after "[IPv6]"' : 'no ":PORTS" after the host';
  const hostText = bracketed ? text.slice(1, colon - 1) : text.slice(0, colon);
  const ports = parsePorts(text.slice(colon + 1));
  if (typeof ports === "string") return ports;
  let host: ExposeHost | string;
  if (hostText === "*" && !bracketed) host = { kind: "any" };
  else if (bracketed || hostText.includes(":") || hostText.includes("/") || /^[\d.]+$/.test(hostText)) host = parseNet(hostText, bracketed);
  else if (parseHost(hostText) !== undefined) host = { kind: "name", name: normalizeHostName(hostText) };
  else host = `"${hostText}" is not "*", an IP address, a CIDR or a host name`;
  if (typeof host === "string") return host;
  return { text, host, ports };
}
