import { createHmac } from "node:crypto";
import * as z from "zod";
import { NODE_NAME_PATTERN } from "./signal.ts";

// Bonjour (DNS-SD over mDNS) records of inp2p, LAN only and never secret: anyone on the link reads them.
//
//   _inp2p._tcp        inp2ps, SRV port = its ws port. TXT:
//     role=server  version=<inp2p version>  wsPort=<port>  tls=1|0  tlsSha256=<AA:BB:...> (when tls=1)
//     stunUdp=<port>,<port>  stunTcp=<port>,<port>  relayPort=<port> (when it relays)  lanHost=<host name>
//   _inp2p-node._udp   each inp2pc, SRV port = its peer UDP port. TXT:
//     role=node  version  node=<node name>  user=<userHash>  udpPort=<port>  tcpPort=<port> (0: none)
//
// userHash is an HMAC of a fixed label keyed by the user's token: nodes of one user recognise each
// other, while neither the token nor the user name is on the wire.

/** Service types as bonjour-service names them (it adds the underscores). */
export const SERVER_SERVICE = { type: "inp2p", protocol: "tcp" } as const;
export const NODE_SERVICE = { type: "inp2p-node", protocol: "udp" } as const;
const USER_HASH_LABEL = "inp2p lan user v1";
const USER_HASH_HEX_CHARS = 32;

const port = z.coerce.number().int().min(1).max(65_535);
const portOrNone = z.coerce.number().int().min(0).max(65_535);
const portPair = z
  .string()
  .regex(/^\d{1,5},\d{1,5}$/, "two ports, comma-separated")
  .transform((text) => text.split(",").map(Number) as [number, number])
  .refine(([a, b]) => a >= 1 && a <= 65_535 && b >= 1 && b <= 65_535, "ports 1..65535");
const fingerprint = z.string().regex(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/, "a SHA-256 fingerprint, AA:BB:... (32 bytes)");

export const serverTxt = z
  .object({
    role: z.literal("server"),
    version: z.string().max(64),
    wsPort: port,
    tls: z.enum(["0", "1"]).transform((flag) => flag === "1"),
    tlsSha256: fingerprint.optional(),
    stunUdp: portPair,
    stunTcp: portPair,
    relayPort: port.optional(),
    lanHost: z.string().max(253),
  })
  .refine((txt) => !txt.tls || txt.tlsSha256 !== undefined, { message: "tls=1 without tlsSha256", path: ["tlsSha256"] });
export type ServerTxt = z.output<typeof serverTxt>;

export const nodeTxt = z.object({
  role: z.literal("node"),
  version: z.string().max(64),
  node: z.string().regex(NODE_NAME_PATTERN, "a node name"),
  user: z.string().regex(new RegExp(`^[0-9a-f]{${USER_HASH_HEX_CHARS}}$`), "a user hash"),
  udpPort: portOrNone,
  tcpPort: portOrNone,
});
export type NodeTxt = z.output<typeof nodeTxt>;

/** The TXT record of an inp2ps (strings only, as DNS carries them). */
export function encodeServerTxt(txt: ServerTxt): Record<string, string> {
  return {
    role: txt.role,
    version: txt.version,
    wsPort: String(txt.wsPort),
    tls: txt.tls ? "1" : "0",
    ...(txt.tlsSha256 ? { tlsSha256: txt.tlsSha256 } : {}),
    stunUdp: txt.stunUdp.join(","),
    stunTcp: txt.stunTcp.join(","),
    ...(txt.relayPort ? { relayPort: String(txt.relayPort) } : {}),
    lanHost: txt.lanHost,
  };
}

export function encodeNodeTxt(txt: NodeTxt): Record<string, string> {
  return { role: txt.role, version: txt.version, node: txt.node, user: txt.user, udpPort: String(txt.udpPort), tcpPort: String(txt.tcpPort) };
}

/** bonjour-service hands TXT values over as strings, or as Buffers for binary ones. */
function strings(txt: unknown): Record<string, string> {
  if (typeof txt !== "object" || txt === null) return {};
  return Object.fromEntries(Object.entries(txt).map(([key, value]) => [key, Buffer.isBuffer(value) ? value.toString("utf8") : String(value)]));
}

/** A server's TXT record, or why it is not one (naming the key). */
export function decodeServerTxt(txt: unknown): { ok: ServerTxt } | { error: string } {
  return decoded(serverTxt.safeParse(strings(txt)));
}

export function decodeNodeTxt(txt: unknown): { ok: NodeTxt } | { error: string } {
  return decoded(nodeTxt.safeParse(strings(txt)));
}

function decoded<T>(result: z.ZodSafeParseResult<T>): { ok: T } | { error: string } {
  if (result.success) return { ok: result.data };
  const issue = result.error.issues[0]!;
  return { error: `${issue.path.join(".") || "TXT"}: ${issue.message}` };
}

/** What a node advertises for its user: the same for every node holding the token, and no clue to it. */
export function userHash(token: string): string {
  return createHmac("sha256", token).update(USER_HASH_LABEL).digest("hex").slice(0, USER_HASH_HEX_CHARS);
}
