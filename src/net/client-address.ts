// Which client an address stands for, as limits see it: one IPv4 address, or one IPv6 /64 (the usual
// allocation of one subscriber, who can pick any of its 2^64 addresses); behind a trusted reverse
// proxy, the client address the proxy forwards.
import { BlockList, isIP, isIPv4 } from "node:net";

/** IPv6 prefix that limits count as one client. */
export const IPV6_LIMIT_PREFIX_BITS = 64;

/** An IPv4-mapped IPv6 address ("::ffff:1.2.3.4") as the IPv4 address it is; a zone id dropped. */
export function plainAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address.replace(/%.*$/, "");
}

/** The eight 16-bit groups of an IPv6 address (an embedded IPv4 tail counts as two). */
function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1]!.split(".").map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const zeros = tail === undefined ? [] : new Array<string>(8 - left.length - right.length).fill("0");
  return [...left, ...zeros, ...right].map((group) => parseInt(group, 16));
}

/** The key limits count `address` under: an IPv4 address itself, an IPv6 address its /64 ("2001:db8:1:2::/64"). */
export function limitKey(address: string): string {
  const plain = plainAddress(address);
  if (isIP(plain) !== 6) return plain;
  const prefix = ipv6Groups(plain).slice(0, IPV6_LIMIT_PREFIX_BITS / 16);
  return `${prefix.map((group) => group.toString(16)).join(":")}::/${IPV6_LIMIT_PREFIX_BITS}`;
}

/** A test for membership in a list of CIDRs ("10.0.0.0/8", "fd00::/8"); IPv4-mapped IPv6 taken as IPv4. */
export function cidrMatcher(cidrs: readonly string[]): (address: string) => boolean {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [network, prefix] = cidr.split("/");
    list.addSubnet(network!, Number(prefix), isIPv4(network!) ? "ipv4" : "ipv6");
  }
  return (address) => {
    const plain = plainAddress(address);
    const family = isIP(plain);
    return cidrs.length > 0 && family !== 0 && list.check(plain, family === 4 ? "ipv4" : "ipv6");
  };
}

/** The client's address, and whether a trusted proxy forwarded it (then the port seen is the proxy's). */
export type ClientAddress = { address: string; forwarded: boolean } | { error: string };

/**
 * The client behind `peer`: `peer` itself unless it is a trusted proxy; then the right-most entry of
 * X-Forwarded-For that is not a trusted proxy (entries to its left are whatever the client wrote).
 * Every hop a trusted proxy appended is an IP address, so anything else there is an error.
 */
export function clientAddress(peer: string, forwardedFor: string | null | undefined, trusted: (address: string) => boolean): ClientAddress {
  let address = plainAddress(peer);
  if (!trusted(address) || !forwardedFor) return { address, forwarded: false };
  const hops = forwardedFor.split(",").map((hop) => hop.trim());
  for (let i = hops.length - 1; i >= 0 && trusted(address); i--) {
    const hop = hops[i]!;
    if (isIP(plainAddress(hop)) === 0)
      return { error: `X-Forwarded-For entry "${hop.slice(0, 64)}" (from trusted proxy ${address}) is not an IP address` };
    address = plainAddress(hop);
  }
  return { address, forwarded: true };
}
