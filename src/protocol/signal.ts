import { isIP, isIPv4 } from "node:net";
import * as z from "zod";
import { DEFAULT_USER_NAME, MAX_HEARTBEAT_INTERVAL_MS, MAX_HEARTBEAT_TIMEOUT_MS, MIN_HEARTBEAT_INTERVAL_MS } from "../config/constants.ts";
import { MAX_LAN_CANDIDATES } from "./candidates.ts";
import { linksRequest } from "./node-report.ts";
import { isVersion } from "./release.ts";

// Signalling messages: JSON over one WebSocket per client. Requests carry a type and an id; every
// request gets exactly one `response` with the same id. Server pushes (hello, node events) carry no id.

export const MAX_MESSAGE_BYTES = 64 * 1024;
export const MAX_NODE_NAME_LENGTH = 63;
/** Node, user and app names: what may appear in logs, URLs and file names without quoting. */
export const NODE_NAME_PATTERN = new RegExp(`^[A-Za-z0-9._-]{1,${MAX_NODE_NAME_LENGTH}}$`);

const releaseVersion = z.string().refine(isVersion, 'a version such as "1.2.3"');
const requestId = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const nodeName = z.string().regex(NODE_NAME_PATTERN, "a node name of 1-63 letters, digits, '.', '_' or '-'");
const base64url = (bytes: number) =>
  z.string().regex(/^[A-Za-z0-9_-]+$/).length(Math.ceil((bytes * 4) / 3), `${bytes} bytes as base64url`);

export const NAT_TYPES = ["public", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric", "udp-blocked"] as const;
export const NAT_BEHAVIOURS = ["endpoint-independent", "address-dependent", "address-and-port-dependent", "unknown"] as const;
export type NatType = (typeof NAT_TYPES)[number];
export type NatBehaviour = (typeof NAT_BEHAVIOURS)[number];
export const ALLOCATION_KINDS = ["preserving", "sequential", "random", "unknown"] as const;

/** How the NAT picks the public port of a new mapping (nat/allocation.ts); delta only when sequential. */
export const natAllocation = z.strictObject({
  kind: z.enum(ALLOCATION_KINDS),
  delta: z.number().int().min(-1024).max(1024).optional(),
});
export type NatAllocation = z.infer<typeof natAllocation>;

/** What a node learned about its NAT; sent with the login and again whenever it changes. */
export const natInfo = z.strictObject({
  natType: z.enum(NAT_TYPES),
  mapping: z.enum(NAT_BEHAVIOURS),
  filtering: z.enum(NAT_BEHAVIOURS),
  publicAddress: z.string().max(64).nullable(),
  portPreserved: z.boolean(),
  tcp: z.boolean(),
  /** Optional: nodes older than port prediction do not send it. */
  allocation: natAllocation.optional(),
});
export type NatInfo = z.infer<typeof natInfo>;

/** Bytes of a node's instance id: random per run of inp2pc, so peers tell a restart from a re-login. */
export const INSTANCE_ID_BYTES = 12;
const instanceId = base64url(INSTANCE_ID_BYTES);

export const loginRequest = z.strictObject({
  type: z.literal("login"),
  id: requestId,
  node: nodeName,
  publicKey: base64url(32),
  proof: base64url(32),
  signature: base64url(64),
  version: z.string().max(64),
  nat: natInfo.optional(),
  /** Optional: nodes older than instance ids do not send it. */
  instance: instanceId.optional(),
});

const port = z.number().int().min(1).max(65535);
const endpoint = z.string().max(64).regex(/^(\[[0-9a-fA-F:.]+\]|[0-9.]+):\d{1,5}$/, "an ip:port endpoint");

/** Where a node can be reached for a peer link: its peer UDP socket and TCP listener, locally and publicly. */
export const candidates = z.strictObject({
  udpLan: z.array(endpoint).max(MAX_LAN_CANDIDATES),
  tcpLan: z.array(endpoint).max(MAX_LAN_CANDIDATES),
  udpPublic: endpoint.nullable(),
  tcpPublic: endpoint.nullable(),
  /** The public address a STUN TCP probe saw from `tcpPunchPort`, for a simultaneous-open TCP punch. */
  tcpPunch: endpoint.nullable().optional(),
  /**
   * Behind a symmetric NAT that allocates sequentially: the public port a new mapping got last (a
   * fresh STUN binding) and the step. A peer predicts this node's next mapping from it.
   */
  udpPredict: z.strictObject({ base: port, delta: z.number().int().min(-1024).max(1024).refine((d) => d !== 0, "not 0") }).optional(),
});
export type Candidates = z.infer<typeof candidates>;

/** A relay node's offer: where it listens (on the address the server sees it from), its cap and its load. */
export const relayOffer = z.strictObject({
  port: z.number().int().min(1).max(65_535),
  super: z.boolean(),
  bwMbps: z.number().positive().max(1_000_000),
  loadMbps: z.number().nonnegative().max(1_000_000),
  sessions: z.number().int().nonnegative().max(1_000_000),
});
export type RelayOffer = z.infer<typeof relayOffer>;

/** LAN subnets one node may route for the virtual network. */
export const MAX_SDWAN_ROUTES = 64;
const ipv4 = z.string().max(15).refine((text) => isIPv4(text), "an IPv4 address");
const ipv4Cidr = z
  .string()
  .max(18)
  .refine((text) => {
    const [ip = "", prefix = "", ...rest] = text.split("/");
    return isIPv4(ip) && /^\d{1,2}$/.test(prefix) && Number(prefix) <= 32 && rest.length === 0;
  }, "an IPv4 CIDR block (a.b.c.d/0-32)");
/** A node joining the virtual network, with the LAN subnets it routes for the others. */
export const sdwanJoin = z.strictObject({ routes: z.array(ipv4Cidr).max(MAX_SDWAN_ROUTES) });

/** A target this node refused a peer (not in its `expose`), for the server's audit. */
export const refusedTarget = z.strictObject({ peer: nodeName, target: z.string().min(1).max(262), protocol: z.enum(["tcp", "udp"]) });

export const reportRequest = z
  .strictObject({
    type: z.literal("report"),
    id: requestId,
    nat: natInfo.optional(),
    candidates: candidates.optional(),
    relay: relayOffer.optional(),
    sdwan: sdwanJoin.optional(),
    refused: refusedTarget.optional(),
  })
  .refine((r) => r.nat || r.candidates || r.relay || r.sdwan || r.refused, "a report needs nat, candidates, relay, sdwan or refused");

/** Ask the server to coordinate a peer link. */
export const connectRequest = z.strictObject({ type: z.literal("connect"), id: requestId, peer: nodeName });

/** Ask the server for a relay to a peer; `exclude` names relays that just failed this node. */
export const relayRequest = z.strictObject({ type: z.literal("relay"), id: requestId, peer: nodeName, exclude: z.array(z.string().max(130)).max(8).optional() });

export const heartbeatRequest = z.strictObject({
  type: z.literal("heartbeat"),
  id: requestId,
  clientTime: z.number().finite(),
  /** The round trip of the previous heartbeat: the broker prefers relays close to the server. */
  rttMs: z.number().nonnegative().max(600_000).optional(),
});

export const peersRequest = z.strictObject({ type: z.literal("peers"), id: requestId });

/** Names one watch request may add; a client with more asks in several. */
export const MAX_WATCH_NAMES = 256;
/** Peers one node may watch at once (over all its watch requests of one login). */
export const MAX_WATCHED_PER_NODE = 4096;
/**
 * Presence by interest: the node hears of these peers (their online/offline changes, as presence
 * deltas) for as long as its login lasts; the answer lists those online now. Asked again after each
 * login: the interest goes with the session.
 */
export const watchRequest = z.strictObject({ type: z.literal("watch"), id: requestId, peers: z.array(nodeName).min(1).max(MAX_WATCH_NAMES) });

/** The longest reconnect spread or login deferral a server may ask of a client. */
export const MAX_RECONNECT_WINDOW_MS = 600_000;
/** Nodes of one user a server may list to a client at once (peers, SDWAN members); more is hostile. */
export const MAX_NODES_LISTED = 4096;
/** Longest error message a client accepts from the server. */
export const MAX_ERROR_MESSAGE_LENGTH = 4096;
/** Longest relay ticket (crypto/ticket.ts makes them; a relay refuses longer ones). */
/** The longest ticket is under 400 characters (relay names of 63 + 1 + 63 characters): a margin, and no more. */
export const MAX_TICKET_CHARS = 512;

// What the server sends. Unknown fields are dropped rather than refused (z.object, not strictObject),
// so a client still understands a newer server; every field it knows is checked and bounded. (A
// peer's NAT info and candidates inside a plan are the strict request schemas: the server checked
// them on the way in and passes them on as they came.)

const serverTime = z.number().finite();
/** Where the client itself reaches the server's or a node's relay: an IP address, never a name to resolve. */
const ipAddress = z.string().max(64).refine((text) => isIP(text) !== 0, "an IP address");
const sessionId = base64url(16);
const publicKey = base64url(32);
const role = z.enum(["initiator", "responder"]);

export const peerInfo = z.object({
  name: nodeName,
  /**
   * Which run of the peer's inp2pc this is (random per process, not secret; absent from old nodes). A
   * new one means the peer restarted: links to the old one are dead. The same one after a re-login
   * (the server restarted, or the peer's connection to it dropped) keeps its links.
   */
  instance: instanceId.optional(),
  version: z.string().max(64),
  natType: z.enum(NAT_TYPES).optional(),
  onlineSince: serverTime,
});
export type PeerInfo = z.infer<typeof peerInfo>;

export const helloMessage = z.object({ type: z.literal("hello"), nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, "16-64 base64url characters"), serverTime, version: z.string().max(64) });
export type HelloMessage = z.infer<typeof helloMessage>;

export const loginResult = z.object({
  user: nodeName,
  node: nodeName,
  address: z.string().max(64),
  serverTime,
  heartbeatIntervalMs: z.number().int().min(MIN_HEARTBEAT_INTERVAL_MS).max(MAX_HEARTBEAT_INTERVAL_MS),
  heartbeatTimeoutMs: z.number().int().min(1).max(MAX_HEARTBEAT_TIMEOUT_MS),
  /** Older servers list every peer online here; newer ones send it empty (presence by interest: `watch`), which older clients still accept. */
  peers: z.array(peerInfo).max(MAX_NODES_LISTED),
  /**
   * How long a window this node should spread its reconnect over when it loses the server (the
   * server's estimate of how long its fleet takes to log in again at its admission rate).
   */
  reconnectWindowMs: z.number().int().nonnegative().max(MAX_RECONNECT_WINDOW_MS).optional(),
  /**
   * Set when the server admits nodes by approval and this name and key are not approved yet: the node
   * may only heartbeat (peers is empty) until an `admitted` event carries its real login result.
   */
  pending: z.literal(true).optional(),
});
export type LoginResult = z.infer<typeof loginResult>;

/** What each side of a coordinated link learns about the other, and when to start, in server time. */
export const connectPlan = z.object({
  /** The same on both sides. */
  sessionId,
  startAt: serverTime,
  role,
  /** `instance`: the run of the peer this plan was made with (PeerInfo.instance). */
  peer: z.object({ name: nodeName, publicKey, instance: instanceId.optional(), nat: natInfo.nullable(), candidates: candidates.nullable() }),
});
export type ConnectPlan = z.infer<typeof connectPlan>;

/** The relay tiers. The order the broker tries them in is its own (server/broker.ts): by default the server before "super". */
export const RELAY_TIERS = ["private", "super", "server"] as const;
export type RelayTier = (typeof RELAY_TIERS)[number];

/** A relayed link: both sides connect to the relay with their own one-time ticket. */
export const relayPlan = z.object({
  sessionId,
  role,
  peer: z.object({ name: nodeName, publicKey, instance: instanceId.optional() }),
  relay: z.object({
    /** "user/node", or "server". */
    name: z.string().regex(new RegExp(`^(server|[A-Za-z0-9._-]{1,${MAX_NODE_NAME_LENGTH}}/[A-Za-z0-9._-]{1,${MAX_NODE_NAME_LENGTH}})$`), '"user/node" or "server"'),
    tier: z.enum(RELAY_TIERS),
    /** null: the server itself, at the host this node reaches the server by. */
    host: ipAddress.nullable(),
    port,
    ticket: z.string().min(1).max(MAX_TICKET_CHARS),
  }),
});
export type RelayPlan = z.infer<typeof relayPlan>;

/**
 * The virtual network as one node sees it: its own address, and every other member online. `version`
 * counts the network's changes on the server since it started: a node applies a map only when it is
 * newer than the one it has (maps pushed back to back, or a join's answer after a push, can cross).
 */
export const sdwanMap = z.object({
  version: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  subnet: ipv4Cidr,
  self: z.object({ name: nodeName, ip: ipv4 }),
  nodes: z.array(z.object({ name: nodeName, ip: ipv4, routes: z.array(ipv4Cidr).max(MAX_SDWAN_ROUTES) })).max(MAX_NODES_LISTED),
});
export type SdwanMap = z.infer<typeof sdwanMap>;

/**
 * One change of the virtual network, pushed to every member instead of a full map: applies to the map
 * of version `from` only, and makes it `version`. `nodes`: members that joined or changed their
 * routes; `gone`: members that left. A member whose map is not `from` asks for a full one (it joins
 * again). Members the change is not visible to (the ACL) get it empty: their versions stay in step.
 */
export const sdwanDelta = z.object({
  from: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  version: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  nodes: sdwanMap.shape.nodes,
  gone: z.array(nodeName).max(MAX_NODES_LISTED),
});
export type SdwanDelta = z.infer<typeof sdwanDelta>;

/** The peer changes one node is interested in, gathered over PRESENCE_BATCH_MS: each peer once, its latest state. */
export const presenceDelta = z.object({
  type: z.literal("presence"),
  online: z.array(peerInfo).max(MAX_NODES_LISTED),
  /** `revoked`: the admin revoked the node; links to it close at once instead of being checked. */
  offline: z.array(z.object({ name: nodeName, reason: z.literal("revoked").optional() })).max(MAX_NODES_LISTED),
});
export type PresenceDelta = z.infer<typeof presenceDelta>;

export const heartbeatResult = z.object({
  clientTime: z.number().finite(),
  serverTime,
  /** The login answer's reconnectWindowMs, for the fleet as it is now (it grows as the fleet logs in). */
  reconnectWindowMs: z.number().int().nonnegative().max(MAX_RECONNECT_WINDOW_MS).optional(),
});
export type HeartbeatResult = z.infer<typeof heartbeatResult>;

/**
 * The signalling protocol as one table: each request the client sends, the schema the server checks
 * it against, and the schema of the result the client checks the server's answer against.
 */
export const signalRequests = {
  login: { request: loginRequest, result: loginResult },
  heartbeat: { request: heartbeatRequest, result: heartbeatResult },
  peers: { request: peersRequest, result: z.object({ peers: z.array(peerInfo).max(MAX_NODES_LISTED) }) },
  /** The watched peers online now; their changes follow as `presence` pushes. */
  watch: { request: watchRequest, result: z.object({ peers: z.array(peerInfo).max(MAX_WATCH_NAMES) }) },
  /** The virtual network's map when the report joined it (`sdwan`); otherwise nothing. */
  report: { request: reportRequest, result: z.object({ sdwan: sdwanMap.optional() }) },
  connect: { request: connectRequest, result: connectPlan },
  relay: { request: relayRequest, result: relayPlan },
  /** The node's link table, for the operator's console (node-report.ts). */
  links: { request: linksRequest, result: z.object({}) },
} as const;
export type ClientRequestType = keyof typeof signalRequests;
export type LoginRequest = z.infer<typeof loginRequest>;
export type HeartbeatRequest = z.infer<typeof heartbeatRequest>;
export type ClientRequest = z.infer<(typeof signalRequests)[ClientRequestType]["request"]>;
/** What the server answers a request of type K with, when it accepts it. */
export type RequestResult<K extends ClientRequestType> = z.infer<(typeof signalRequests)[K]["result"]>;
/** The fields a request of type K carries besides its type and id. */
export type RequestFields<K extends ClientRequestType> = Omit<z.input<(typeof signalRequests)[K]["request"]>, "type" | "id">;

/** Each message the server sends unasked, by type. */
export const serverPushes = {
  hello: helloMessage,
  connect: z.object({ type: z.literal("connect"), plan: connectPlan }),
  relay: z.object({ type: z.literal("relay"), plan: relayPlan }),
  sdwan: z.object({ type: z.literal("sdwan"), map: sdwanMap }),
  "sdwan-delta": z.object({ type: z.literal("sdwan-delta"), delta: sdwanDelta }),
  presence: presenceDelta,
  /** From servers older than presence by interest (one message per change, to every node of the user). */
  "node-online": z.object({ type: z.literal("node-online"), node: peerInfo }),
  /** `revoked`: the admin revoked the node; links to it close at once instead of being checked. */
  "node-offline": z.object({ type: z.literal("node-offline"), node: z.object({ name: nodeName }), reason: z.literal("revoked").optional() }),
  /** A pending node was approved: it is online now, as if this were its login answer. */
  admitted: z.object({ type: z.literal("admitted"), result: loginResult }),
  /** The newest inp2p release the server knows of (after login, and when it learns of a newer one): auto_upgrade nodes take it. */
  release: z.object({ type: z.literal("release"), version: releaseVersion }),
  /** The admin asks this node to upgrade now: to `version`, or without one to the newest at the node's own release_url. */
  upgrade: z.object({ type: z.literal("upgrade"), version: releaseVersion.optional() }),
} as const;
export type ServerPushType = keyof typeof serverPushes;
export type ServerPush = z.infer<(typeof serverPushes)[ServerPushType]>;

export const ERROR_CODES = [
  "BAD_JSON",
  "BAD_MESSAGE",
  "UNKNOWN_TYPE",
  "TOO_LARGE",
  "NOT_LOGGED_IN",
  "ALREADY_LOGGED_IN",
  "BAD_TOKEN",
  "BAD_SIGNATURE",
  "KEY_MISMATCH",
  "RATE_LIMITED",
  /** Too many connect or relay plans from this node (to that peer) lately; the message says when to ask again. */
  "RATE_LIMITED_PLAN",
  "PEER_OFFLINE",
  "PEER_UNREACHABLE",
  /** The server's ACL ([[server.acl]]) does not let the requester link to that peer. */
  "ACL_DENIED",
  "NO_RELAY",
  "SDWAN_OFF",
  "SDWAN_FULL",
  "NOT_APPROVED",
  "NODE_REVOKED",
  "TOO_MANY_PENDING",
  "PAIRING_RATE_LIMITED",
  /** The server admits logins at a steady rate and this one's turn comes later: log in again (same connection) in `retryAfterMs`. */
  "LOGIN_DEFERRED",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * The answer to one request. The result is checked against the request's own result schema
 * (signalRequests) by whoever knows which request it answers. An error code the client does not know
 * (a newer server's) is kept as it is.
 */
export const responseMessage = z.object({
  type: z.literal("response"),
  id: requestId.nullable(),
  ok: z.boolean(),
  result: z.unknown().optional(),
  error: z
    .object({
      code: z.string().regex(/^[A-Z_]{1,64}$/, "an error code"),
      message: z.string().max(MAX_ERROR_MESSAGE_LENGTH),
      /** When to ask again (LOGIN_DEFERRED). */
      retryAfterMs: z.number().int().nonnegative().max(MAX_RECONNECT_WINDOW_MS).optional(),
    })
    .optional(),
});
export type ResponseMessage = z.infer<typeof responseMessage>;

export type ServerMessage = ResponseMessage | ServerPush;

/** The command that approves a pending node on the server, as both sides print it. */
export function approveCommand(node: string, user: string): string {
  return `inp2ps pairing approve ${node}${user === DEFAULT_USER_NAME ? "" : ` --user ${user}`}`;
}

/** WebSocket close codes the server uses, so clients can tell the user why. */
export const CloseCode = {
  replaced: 4001,
  loginTimeout: 4002,
  heartbeatTimeout: 4003,
  abuse: 4004,
  loginRefused: 4005,
  pairingRejected: 4006,
  pairingExpired: 4007,
  revoked: 4008,
  /** The admin approved a new identity key for this node's name: sessions on the old key end. */
  keyReplaced: 4009,
  /** Too many connections wait to log in (max_conns_before_login): try again later. */
  busy: 4010,
  shutdown: 1001,
} as const;

export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly id: number | null = null,
    /** When the client may ask again (LOGIN_DEFERRED). */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const where = issue.path.length ? issue.path.join(".") : "message";
      if (issue.code === "unrecognized_keys") return `unknown field ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
      return `${where}: ${issue.message}`;
    })
    .join("; ");
}

const tooLarge = (bytes: number, id: number | null) =>
  new ProtocolError("TOO_LARGE", `message of ${bytes} bytes exceeds the limit of ${MAX_MESSAGE_BYTES}`, id);

/**
 * Parses and validates one client message. Throws ProtocolError naming what was wrong; the id is
 * kept whenever the message had a usable one, so the error reply can be matched to its request.
 */
export function parseClientMessage(text: string): ClientRequest {
  const bytes = Buffer.byteLength(text);
  let value: unknown;
  try {
    value = JSON.parse(text); // bounded: the WebSocket layer caps frames at a hard limit
  } catch (err) {
    if (bytes > MAX_MESSAGE_BYTES) throw tooLarge(bytes, null);
    throw new ProtocolError("BAD_JSON", `message is not valid JSON: ${(err as Error).message}`);
  }
  const record = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  const id = record && requestId.safeParse(record.id).success ? (record.id as number) : null;
  if (bytes > MAX_MESSAGE_BYTES) throw tooLarge(bytes, id);
  if (!record) throw new ProtocolError("BAD_MESSAGE", "message must be a JSON object with a type and an id");
  if (typeof record.type !== "string") throw new ProtocolError("BAD_MESSAGE", "type: expected a string", id);
  if (!Object.hasOwn(signalRequests, record.type)) throw new ProtocolError("UNKNOWN_TYPE", `unknown message type "${record.type.slice(0, 64)}"`, id);
  const parsed = signalRequests[record.type as ClientRequestType].request.safeParse(record);
  if (!parsed.success) throw new ProtocolError("BAD_MESSAGE", `${record.type}: ${describeIssues(parsed.error)}`, id);
  return parsed.data;
}

/**
 * Parses and validates one message from the server: a response (its result unchecked until matched to
 * its request: parseResult) or a push. Throws ProtocolError naming what was wrong.
 */
export function parseServerMessage(text: string): ServerMessage {
  let value: unknown;
  try {
    value = JSON.parse(text); // bounded: the client's WebSocket caps messages (MAX_SERVER_MESSAGE_BYTES)
  } catch (err) {
    throw new ProtocolError("BAD_JSON", `a server message that is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ProtocolError("BAD_MESSAGE", "a server message must be a JSON object with a type");
  const type = (value as Record<string, unknown>).type;
  if (typeof type !== "string") throw new ProtocolError("BAD_MESSAGE", "a server message has no type");
  const schema = type === "response" ? responseMessage : Object.hasOwn(serverPushes, type) ? serverPushes[type as ServerPushType] : undefined;
  if (!schema) throw new ProtocolError("UNKNOWN_TYPE", `a server message of unknown type "${type.slice(0, 64)}"`);
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const id = (value as Record<string, unknown>).id;
  const answers = type === "response" && requestId.safeParse(id).success ? (id as number) : null;
  throw new ProtocolError("BAD_MESSAGE", `a malformed "${type}" message from the server: ${describeIssues(parsed.error)}`, answers);
}

/** Checks the result of an accepted request against its type's result schema; throws ProtocolError naming what was wrong. */
export function parseResult<K extends ClientRequestType>(type: K, result: unknown): RequestResult<K> {
  const parsed = signalRequests[type].result.safeParse(result ?? {});
  if (!parsed.success) throw new ProtocolError("BAD_MESSAGE", `the server's answer to ${type} is malformed: ${describeIssues(parsed.error)}`);
  return parsed.data as RequestResult<K>;
}
