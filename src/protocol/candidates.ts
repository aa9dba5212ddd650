import { BlockList, isIP } from "node:net";
import type { Candidates } from "./signal.ts";

// What a node may offer its peers as candidates. A peer pokes and dials every candidate of a plan, so
// candidates are targets a node chooses for someone else's packets: they must be few, and be
// addresses a peer could really reach it at.

/** LAN candidates per kind (udpLan, tcpLan): a node's few interfaces, not a list of targets. */
export const MAX_LAN_CANDIDATES = 4;

function blockList(subnets: [string, number][]): BlockList {
  const list = new BlockList();
  for (const [network, prefix] of subnets) list.addSubnet(network, prefix, isIP(network) === 6 ? "ipv6" : "ipv4");
  return list;
}

const LOOPBACK = blockList([["127.0.0.0", 8], ["::1", 128]]);
/** Never a peer's address: "this network" and unspecified, multicast, reserved, the broadcast address. */
const UNREACHABLE = blockList([["0.0.0.0", 8], ["224.0.0.0", 4], ["240.0.0.0", 4], ["::", 128], ["ff00::", 8]]);
/** LAN ranges: RFC 1918, RFC 6598 (shared by a carrier NAT's customers), link-local, RFC 4193. */
const PRIVATE = blockList([["10.0.0.0", 8], ["172.16.0.0", 12], ["192.168.0.0", 16], ["100.64.0.0", 10], ["169.254.0.0", 16], ["fc00::", 7], ["fe80::", 10]]);

export type AddressScope = "loopback" | "unreachable" | "private" | "public";

/** Where an IP address is (an IPv4-mapped IPv6 address as its IPv4 one); undefined when it is no IP address. */
export function addressScope(ip: string): AddressScope | undefined {
  const address = ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");
  const family = isIP(address);
  if (!family) return undefined;
  const type = family === 6 ? "ipv6" : "ipv4";
  if (LOOPBACK.check(address, type)) return "loopback";
  if (UNREACHABLE.check(address, type)) return "unreachable";
  return PRIVATE.check(address, type) ? "private" : "public";
}

export const isLoopbackAddress = (ip: string) => addressScope(ip) === "loopback";

const endpointHost = (endpoint: string) => /^\[(.+)\]:\d+$/.exec(endpoint)?.[1] ?? endpoint.slice(0, endpoint.lastIndexOf(":"));
const endpointPort = (endpoint: string) => Number(endpoint.slice(endpoint.lastIndexOf(":") + 1));

/**
 * What is wrong with a node's candidates (beyond the schema, which bounds their count), naming the
 * field, or undefined. `onLoopback`: the node runs
 * on the server's own host (the server sees it from loopback), so loopback addresses can reach it from
 * nodes there too; from anywhere else they would point a peer at its own host.
 */
export function candidatesProblem(candidates: Candidates, onLoopback: boolean): string | undefined {
  const { udpLan, tcpLan, udpPublic, tcpPublic, tcpPunch } = candidates;
  const entries: [string, string | null | undefined, boolean][] = [
    ...udpLan.map((endpoint, i): [string, string, boolean] => [`udpLan[${i}]`, endpoint, true]),
    ...tcpLan.map((endpoint, i): [string, string, boolean] => [`tcpLan[${i}]`, endpoint, true]),
    ["udpPublic", udpPublic, false],
    ["tcpPublic", tcpPublic, false],
    ["tcpPunch", tcpPunch, false],
  ];
  for (const [field, endpoint, lan] of entries) {
    if (!endpoint) continue;
    const host = endpointHost(endpoint);
    const port = endpointPort(endpoint);
    const scope = addressScope(host);
    if (!scope || !(port >= 1 && port <= 65_535)) return `${field}: "${endpoint}" is not an IP address and port`;
    if (scope === "unreachable") return `${field}: ${host} is an unspecified, multicast, reserved or broadcast address`;
    if (scope === "loopback" && !onLoopback) return `${field}: ${host} is a loopback address; only a node on the server's own host may offer one`;
    if (scope === "public" && lan) return `${field}: ${host} is not in a private range (RFC 1918, RFC 6598, link-local or RFC 4193); a public address is offered as udpPublic or tcpPublic`;
  }
  return undefined;
}

/** The candidates without loopback addresses: what a node not on the same host as this one may be told. */
export function withoutLoopback(candidates: Candidates): Candidates {
  const keep = (endpoint: string | null | undefined) => (endpoint && isLoopbackAddress(endpointHost(endpoint)) ? null : endpoint);
  return {
    ...candidates,
    udpLan: candidates.udpLan.filter(keep),
    tcpLan: candidates.tcpLan.filter(keep),
    udpPublic: keep(candidates.udpPublic) ?? null,
    tcpPublic: keep(candidates.tcpPublic) ?? null,
    ...(candidates.tcpPunch !== undefined ? { tcpPunch: keep(candidates.tcpPunch) ?? null } : {}),
  };
}
