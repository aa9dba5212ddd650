// `import * as z`: under vitest in Bun the named export `z` of zod v4 comes out undefined.
// Leaf validators. Each one produces a complete "expected ..., got ..." message so that errors read
// the same whether the value came from TOML, a flag or the environment.
import { isIPv4, isIPv6 } from "node:net";
import * as z from "zod";
import { isVersion, MAX_NODE_NAME_LENGTH, NODE_NAME_PATTERN } from "../protocol/index.ts";
import { ACL_ANY, ACL_TAG_PREFIX, MAX_UINT64 } from "./constants";
import { parseCidr } from "../sdwan/packet.ts";
import { EXPOSE_EXAMPLES, parseExposeEntry } from "./expose";

/** How a value is shown after "got": strings quoted, TOML tables and arrays named. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint" || typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a date";
  if (typeof value === "object" && value !== null) return "a table";
  return String(value);
}

function expected(what: string, value: unknown): string {
  if (value === undefined) return `missing, expected ${what}`;
  return `expected ${what}, got ${describeValue(value)}`;
}

/** A leaf that checks and converts with a plain function; `check` returns an error message or the value. */
function leaf<T>(check: (value: unknown) => { ok: T } | { error: string }) {
  return z.unknown().transform((value, ctx) => {
    const result = check(value);
    if ("error" in result) {
      ctx.addIssue({ code: "custom", message: result.error, input: value });
      return z.NEVER;
    }
    return result.ok;
  });
}

function asInteger(value: unknown): number | bigint | undefined {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isInteger(value)) return value;
  return undefined;
}

export function intInRange(min: number, max: number) {
  return leaf<number>((value) => {
    const n = asInteger(value);
    if (n === undefined || n < min || n > max) return { error: expected(`an integer ${min}..${max}`, value) };
    return { ok: Number(n) };
  });
}

export function positiveNumber(max: number) {
  return leaf<number>((value) => {
    const n = typeof value === "bigint" ? Number(value) : value;
    if (typeof n !== "number" || !Number.isFinite(n) || n <= 0 || n > max) {
      return { error: expected(`a number > 0 and <= ${max}`, value) };
    }
    return { ok: n };
  });
}

/**
 * A uint64 token given as a TOML integer or a decimal string; normalized to a decimal string.
 * With allowEmpty, "" stays "" and means "not set". A JS number beyond 2^53 has already lost digits,
 * so it is refused.
 */
function tokenLeaf(allowEmpty: boolean) {
  return leaf<string>((value) => {
    const what = "a token: an integer 1..18446744073709551615 (a TOML integer or a decimal string)";
    if (allowEmpty && value === "") return { ok: "" };
    let n: bigint;
    if (typeof value === "bigint") n = value;
    else if (typeof value === "number" && Number.isSafeInteger(value)) n = BigInt(value);
    else if (typeof value === "string" && /^\d{1,20}$/.test(value.trim())) n = BigInt(value.trim());
    else if (typeof value === "number" && Number.isInteger(value)) {
      return { error: `${expected(what, value)} (too large for an exact number: give it as a string)` };
    } else return { error: expected(what, value) };
    if (n < 1n || n > MAX_UINT64) return { error: expected(what, value) };
    return { ok: n.toString(10) };
  });
}

export const tokenValue = tokenLeaf(false);
export const optionalTokenValue = tokenLeaf(true);

const NAME_WHAT = `a name of 1..${MAX_NODE_NAME_LENGTH} characters from A-Z a-z 0-9 . _ -`;

function checkName(value: unknown): { ok: string } | { error: string } {
  if (typeof value !== "string" || !NODE_NAME_PATTERN.test(value)) {
    return { error: expected(NAME_WHAT, value) };
  }
  return { ok: value };
}

/** Node, user and app names. */
export const nameValue = leaf<string>(checkName);

/** A [[server.acl]] selector: a node name, "tag:NAME" or "*". */
export const aclSelectorValue = leaf<string>((value) => {
  const name = typeof value === "string" && value.startsWith(ACL_TAG_PREFIX) ? value.slice(ACL_TAG_PREFIX.length) : value;
  if (value === ACL_ANY || (typeof name === "string" && NODE_NAME_PATTERN.test(name))) return { ok: value as string };
  return { error: expected(`a node name, "${ACL_TAG_PREFIX}NAME" or "${ACL_ANY}"`, value) };
});

/** A relay node by user and node name, "user/node" (e.g. "bob/relay1"). */
export const relayNameValue = leaf<string>((value) => {
  const [user, node, ...rest] = typeof value === "string" ? value.split("/") : [];
  if (user === undefined || node === undefined || rest.length || !NODE_NAME_PATTERN.test(user) || !NODE_NAME_PATTERN.test(node))
    return { error: expected('a relay as "user/node" (e.g. "bob/relay1")', value) };
  return { ok: value as string };
});

/** Like nameValue, but "" is allowed and means "not set" (a required field checked after merging). */
export const optionalNameValue = leaf<string>((value) => (value === "" ? { ok: "" } : checkName(value)));

const HOSTNAME_PATTERN = /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/;

/** A host name or an IP address; IPv6 may be written bare or in brackets (brackets are removed). */
export function parseHost(text: string): string | undefined {
  const host = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  if (host !== text) return isIPv6(host) ? host : undefined;
  if (isIPv4(host) || isIPv6(host) || HOSTNAME_PATTERN.test(host)) return host;
  return undefined;
}

export function hostValue(allowEmpty: boolean) {
  return leaf<string>((value) => {
    if (allowEmpty && value === "") return { ok: "" };
    const host = typeof value === "string" ? parseHost(value) : undefined;
    if (host === undefined) return { error: expected("a host name or IP address", value) };
    return { ok: host };
  });
}

export interface HostPort {
  host: string;
  port: number;
}

/** Splits "host:port", "[v6]:port" or "1.2.3.4:port". Returns undefined when malformed. */
export function splitHostPort(text: string): HostPort | undefined {
  const match = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const host = parseHost(match[1]!);
  const port = Number(match[2]);
  if (host === undefined || port < 1 || port > 65_535) return undefined;
  return { host, port };
}

/** "host:port" kept as written (consumers call splitHostPort). */
export const hostPortValue = leaf<string>((value) => {
  if (typeof value !== "string" || splitHostPort(value) === undefined) {
    return { error: expected('host:port (IPv4, [IPv6] or a host name; port 1..65535), e.g. "127.0.0.1:22"', value) };
  }
  return { ok: value };
});

/** An IPv4 or IPv6 CIDR; a bare address becomes /32 or /128. */
export const cidrValue = leaf<string>((value) => {
  const what = 'a CIDR like "192.168.0.0/16" or "fd00::/8"';
  if (typeof value !== "string") return { error: expected(what, value) };
  const [address = "", prefix, extra] = value.split("/");
  const bits = isIPv4(address) ? 32 : isIPv6(address) ? 128 : 0;
  if (bits === 0 || extra !== undefined) return { error: expected(what, value) };
  if (prefix === undefined) return { ok: `${address}/${bits}` };
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > bits) return { error: expected(what, value) };
  return { ok: `${address}/${Number(prefix)}` };
});

/** A `[client] expose` entry (see expose.ts), kept as written; consumers parse it with parseExposeEntry. */
export const exposeValue = leaf<string>((value) => {
  const what = `an expose entry HOST:PORTS such as ${EXPOSE_EXAMPLES}`;
  if (typeof value !== "string") return { error: expected(what, value) };
  const rule = parseExposeEntry(value);
  return typeof rule === "string" ? { error: `${expected(what, value)}: ${rule}` } : { ok: value };
});

/** SHA-256 fingerprint normalized like X509Certificate.fingerprint256 ("AB:CD:..."); "" means not set. */
export const fingerprintValue = leaf<string>((value) => {
  if (value === "") return { ok: "" };
  const hex = typeof value === "string" ? value.replace(/:/g, "") : "";
  if (!/^[0-9A-Fa-f]{64}$/.test(hex)) {
    return { error: expected("a SHA-256 fingerprint: 64 hex digits, colons optional", value) };
  }
  return { ok: hex.toUpperCase().match(/../g)!.join(":") };
});

export const pathValue = leaf<string>((value) =>
  typeof value === "string" ? { ok: value } : { error: expected("a path (string)", value) },
);

export const stringValue = leaf<string>((value) =>
  typeof value === "string" ? { ok: value } : { error: expected("a string", value) },
);

/** An http(s) URL without query or fragment (release_url). */
export const httpUrlValue = leaf<string>((value) => {
  const what = "an http:// or https:// URL";
  if (typeof value !== "string") return { error: expected(what, value) };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { error: expected(what, value) };
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search || url.hash || url.username || url.password) return { error: expected(`${what} without query, fragment or credentials`, value) };
  return { ok: value.replace(/\/+$/, "") };
});

/** A release version such as "1.2.3" (semver). */
export const versionValue = leaf<string>((value) =>
  typeof value === "string" && isVersion(value) ? { ok: value } : { error: expected('a version such as "1.2.3"', value) },
);

export const booleanValue = leaf<boolean>((value) =>
  typeof value === "boolean" ? { ok: value } : { error: expected("true or false", value) },
);

export function enumValue<const T extends readonly string[]>(values: T) {
  const last = values.length - 1;
  const list = values.map((v) => JSON.stringify(v));
  const what = last === 0 ? list[0]! : `${list.slice(0, last).join(", ")} or ${list[last]}`;
  return leaf<T[number]>((value) =>
    typeof value === "string" && values.includes(value) ? { ok: value as T[number] } : { error: expected(what, value) },
  );
}

/** An IPv4 CIDR block with its host bits clear, such as "10.10.0.0/24" (SDWAN subnets and routes). */
export const ipv4CidrValue = leaf<string>((value) => {
  if (typeof value !== "string") return { error: expected('an IPv4 CIDR block like "10.10.0.0/24"', value) };
  try {
    return { ok: parseCidr(value).text };
  } catch (err) {
    return { error: (err as Error).message };
  }
});

export const ipv4Value = leaf<string>((value) => (typeof value === "string" && isIPv4(value) ? { ok: value } : { error: expected("an IPv4 address", value) }));

/** A network interface name: 1..15 characters from A-Z a-z 0-9 . _ - */
export const interfaceNameValue = leaf<string>((value) =>
  typeof value === "string" && /^[A-Za-z0-9._-]{1,15}$/.test(value) ? { ok: value } : { error: expected("an interface name of 1..15 characters from A-Z a-z 0-9 . _ -", value) },
);
