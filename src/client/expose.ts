import { lookup as dnsLookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { normalizeHostName, parseExposeEntry, splitHostPort, type ExposeRule } from "../config/index.ts";
import type { RefusalCode } from "../protocol/index.ts";

/** Resolves a host name to one address (dns.lookup: /etc/hosts, then DNS). */
export type Lookup = (name: string) => Promise<string>;

const defaultLookup: Lookup = async (name) => (await dnsLookup(name)).address;

/** Where to connect for a target peers may reach, or why not. */
export type ExposeDecision = { ok: true; host: string; port: number } | { ok: false; code: RefusalCode; error: string };

interface CompiledRule {
  rule: ExposeRule;
  /** For address rules: the network it covers. */
  net?: BlockList;
}

/**
 * `[client] expose` on the serving node: which targets peers may reach through it. A target given by
 * host name is resolved here once, and the decision carries the address: the caller connects to what
 * was checked, so DNS cannot answer differently between the check and the connect.
 */
export class ExposePolicy {
  private rules: CompiledRule[];
  /** The entries in force, as written. */
  entries: readonly string[];

  constructor(
    entries: readonly string[],
    private readonly lookup: Lookup = defaultLookup,
  ) {
    this.rules = compile(entries);
    this.entries = [...entries];
  }

  /** Replaces the entries (a reloaded config): decisions from now on follow them. A bad entry throws and changes nothing. */
  set(entries: readonly string[]): void {
    this.rules = compile(entries);
    this.entries = [...entries];
  }

  async decide(target: string): Promise<ExposeDecision> {
    const parsed = splitHostPort(target);
    if (!parsed) return { ok: false, code: "NOT_EXPOSED", error: `${target} is not host:port` };
    const { host, port } = parsed;
    const forPort = this.rules.filter(({ rule }) => rule.ports.from <= port && port <= rule.ports.to);
    const notExposed: ExposeDecision = { ok: false, code: "NOT_EXPOSED", error: `${target} is not exposed` };
    if (isIP(host)) return forPort.some((rule) => addressMatches(rule, host)) ? { ok: true, host, port } : notExposed;
    // A host name: allowed by its own name, or by the address it resolves to. No rule that could
    // match means no lookup, so a peer cannot make this node query DNS for names it chooses.
    const byName = forPort.some(({ rule }) => rule.host.kind === "name" && rule.host.name === normalizeHostName(host));
    if (!byName && !forPort.some(({ rule }) => rule.host.kind !== "name")) return notExposed;
    let address: string;
    try {
      address = await this.lookup(host);
    } catch (err) {
      return { ok: false, code: "UNREACHABLE", error: `cannot resolve ${host}: ${(err as Error).message}` };
    }
    if (byName || forPort.some((rule) => addressMatches(rule, address))) return { ok: true, host: address, port };
    return { ok: false, code: "NOT_EXPOSED", error: `${target} (${address}) is not exposed` };
  }
}

function compile(entries: readonly string[]): CompiledRule[] {
  return entries.map((entry) => {
    const rule = parseExposeEntry(entry);
    if (typeof rule === "string") throw new Error(`expose entry "${entry}": ${rule}`);
    if (rule.host.kind !== "net") return { rule };
    const net = new BlockList();
    net.addSubnet(rule.host.address, rule.host.prefix, rule.host.family);
    return { rule, net };
  });
}

function addressMatches({ rule, net }: CompiledRule, address: string): boolean {
  if (rule.host.kind === "any") return true;
  if (!net) return false;
  const family = isIP(address) === 6 ? "ipv6" : "ipv4";
  return net.check(address, family);
}
