import * as z from "zod";
import { DEFAULT_USER_NAME } from "../config/constants.ts";
import { MAX_LAN_CANDIDATES } from "./candidates.ts";

// Signalling messages: JSON over one WebSocket per client. Requests carry a type and an id; every
// request gets exactly one `response` with the same id. Server pushes (hello, node events) carry no id.

export const MAX_MESSAGE_BYTES = 64 * 1024;
export const MAX_NODE_NAME_LENGTH = 63;
/** Node, user and app names: what may appear in logs, URLs and file names without quoting. */
export const NODE_NAME_PATTERN = new RegExp(`^[A-Za-z0-9._-]{1,${MAX_NODE_NAME_LENGTH}}$`);

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

const ipv4Cidr = z.string().max(18).regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, "an IPv4 CIDR block");
/** A node joining the virtual network, with the LAN subnets it routes for the others. */
export const sdwanJoin = z.strictObject({ routes: z.array(ipv4Cidr).max(64) });

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

export const clientRequests = {
  login: loginRequest,
  heartbeat: heartbeatRequest,
  peers: peersRequest,
  report: reportRequest,
  connect: connectRequest,
  relay: relayRequest,
} as const;
export type ClientRequestType = keyof typeof clientRequests;
export type LoginRequest = z.infer<typeof loginRequest>;
export type HeartbeatRequest = z.infer<typeof heartbeatRequest>;
export type ClientRequest = z.infer<(typeof clientRequests)[ClientRequestType]>;

export interface PeerInfo {
  name: string;
  /**
   * Which run of the peer's inp2pc this is (random per process, not secret; absent from old nodes). A
   * new one means the peer restarted: links to the old one are dead. The same one after a re-login
   * (the server restarted, or the peer's connection to it dropped) keeps its links.
   */
  instance?: string;
  version: string;
  natType?: NatType;
  onlineSince: number;
}

export interface HelloMessage {
  type: "hello";
  nonce: string;
  serverTime: number;
  version: string;
}

export interface LoginResult {
  user: string;
  node: string;
  address: string;
  serverTime: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  peers: PeerInfo[];
  /**
   * Set when the server admits nodes by approval and this name and key are not approved yet: the node
   * may only heartbeat (peers is empty) until an `admitted` event carries its real login result.
   */
  pending?: true;
}

/** What each side of a coordinated link learns about the other, and when to start, in server time. */
export interface ConnectPlan {
  sessionId: string; // 16 bytes, base64url; the same on both sides
  startAt: number;
  role: "initiator" | "responder";
  /** `instance`: the run of the peer this plan was made with (PeerInfo.instance). */
  peer: { name: string; publicKey: string; instance?: string; nat: NatInfo | null; candidates: Candidates | null };
}

/** The relay tiers. The order the broker tries them in is its own (server/broker.ts): by default the server before "super". */
export const RELAY_TIERS = ["private", "super", "server"] as const;
export type RelayTier = (typeof RELAY_TIERS)[number];

/** A relayed link: both sides connect to the relay with their own one-time ticket. */
export interface RelayPlan {
  sessionId: string;
  role: "initiator" | "responder";
  peer: { name: string; publicKey: string; instance?: string };
  relay: {
    /** "user/node", or "server". */
    name: string;
    tier: RelayTier;
    /** null: the server itself, at the host this node reaches the server by. */
    host: string | null;
    port: number;
    ticket: string;
  };
}

/** The virtual network as one node sees it: its own address, and every other member online. */
export interface SdwanMap {
  subnet: string;
  self: { name: string; ip: string };
  nodes: { name: string; ip: string; routes: string[] }[];
}

export interface HeartbeatResult {
  clientTime: number;
  serverTime: number;
}

export type ErrorCode =
  | "BAD_JSON"
  | "BAD_MESSAGE"
  | "UNKNOWN_TYPE"
  | "TOO_LARGE"
  | "NOT_LOGGED_IN"
  | "ALREADY_LOGGED_IN"
  | "BAD_TOKEN"
  | "BAD_SIGNATURE"
  | "KEY_MISMATCH"
  | "RATE_LIMITED"
  /** Too many connect or relay plans from this node (to that peer) lately; the message says when to ask again. */
  | "RATE_LIMITED_PLAN"
  | "PEER_OFFLINE"
  | "PEER_UNREACHABLE"
  /** The server's ACL ([[server.acl]]) does not let the requester link to that peer. */
  | "ACL_DENIED"
  | "NO_RELAY"
  | "SDWAN_OFF"
  | "SDWAN_FULL"
  | "NOT_APPROVED"
  | "NODE_REVOKED"
  | "TOO_MANY_PENDING"
  | "PAIRING_RATE_LIMITED";

export interface ResponseMessage {
  type: "response";
  id: number | null;
  ok: boolean;
  result?: unknown;
  error?: { code: ErrorCode; message: string };
}

export type ServerEvent =
  | { type: "connect"; plan: ConnectPlan }
  | { type: "relay"; plan: RelayPlan }
  | { type: "sdwan"; map: SdwanMap }
  | { type: "node-online"; node: PeerInfo }
  /** `revoked`: the admin revoked the node; links to it close at once instead of being checked. */
  | { type: "node-offline"; node: { name: string }; reason?: "revoked" }
  /** A pending node was approved: it is online now, as if this were its login answer. */
  | { type: "admitted"; result: LoginResult };

export type ServerMessage = HelloMessage | ResponseMessage | ServerEvent;

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
  shutdown: 1001,
} as const;

export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly id: number | null = null,
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
  const schema = clientRequests[record.type as ClientRequestType];
  if (!Object.hasOwn(clientRequests, record.type) || !schema)
    throw new ProtocolError("UNKNOWN_TYPE", `unknown message type "${record.type.slice(0, 64)}"`, id);
  const parsed = schema.safeParse(record);
  if (!parsed.success) throw new ProtocolError("BAD_MESSAGE", `${record.type}: ${describeIssues(parsed.error)}`, id);
  return parsed.data;
}
