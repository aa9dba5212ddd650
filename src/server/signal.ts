import { randomBytes } from "node:crypto";
import { loginProof, loginTranscript, safeEqual, verifyIdentitySignature } from "../crypto/index.ts";
import type { Logger } from "../log/index.ts";
import {
  CloseCode,
  parseClientMessage,
  ProtocolError,
  type ClientRequest,
  type ConnectPlan,
  type ErrorCode,
  type LoginRequest,
  type LoginResult,
  type ResponseMessage,
  type ServerMessage,
} from "../protocol/index.ts";
import { COORDINATION_LEAD_MS, LOGIN_TIMEOUT_MS, MAX_BAD_MESSAGES_PER_CONNECTION, MESSAGES_PER_SECOND_LIMIT } from "./constants.ts";
import type { RelayBroker } from "./broker.ts";
import type { SdwanHub } from "./sdwan.ts";
import type { AuditLog } from "./audit.ts";
import type { AddressGuard } from "./guard.ts";
import type { KeyPins } from "./keys.ts";
import { peerInfo, type NodeSession, type Registry } from "./registry.ts";

/**
 * Refusals that mean the client sent something it should not have; only these count towards dropping
 * it. The others (a peer offline, no relay free) are ordinary answers: during churn an app asks again
 * and again while its peer restarts.
 */
const CLIENT_FAULTS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(["BAD_JSON", "BAD_MESSAGE", "UNKNOWN_TYPE", "TOO_LARGE", "NOT_LOGGED_IN", "ALREADY_LOGGED_IN", "RATE_LIMITED"]);

/** How long a link request waits for both nodes' NAT detection and candidates, and how often it looks. */
const NAT_WAIT_MS = 2_500;
const NAT_POLL_MS = 50;
const NAT_HARDNESS = ["public", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric", "udp-blocked"];
/** Unknown NATs count as port-restricted: the most common kind. */
const natHardness = (node: NodeSession) => NAT_HARDNESS.indexOf(node.nat?.natType ?? "port-restricted-cone");

export interface User {
  name: string;
  token: string;
}

export interface SocketLike {
  send(text: string): void;
  close(code: number, reason: string): void;
}

export interface Connection {
  readonly socket: SocketLike;
  readonly address: string;
  readonly remote: string; // address:port, as shown to users
  readonly nonce: string;
  session?: NodeSession;
  badMessages: number;
  rateTokens: number;
  rateRefilledAt: number;
  loginTimer?: ReturnType<typeof setTimeout>;
  closed: boolean;
}

export interface SignalHubInit {
  users: User[];
  registry: Registry;
  broker: RelayBroker;
  /** Set when the server runs a virtual network ([server.sdwan]). */
  sdwan?: SdwanHub;
  pins: KeyPins;
  guard: AddressGuard;
  audit: AuditLog;
  logger: Logger;
  version: string;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
}

/** The signalling protocol: one Connection per WebSocket, answering every request exactly once. */
export class SignalHub {
  constructor(private readonly init: SignalHubInit) {}

  open(socket: SocketLike, address: string, port: number): Connection {
    const connection: Connection = {
      socket,
      address,
      remote: address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`,
      nonce: randomBytes(24).toString("base64url"),
      badMessages: 0,
      rateTokens: MESSAGES_PER_SECOND_LIMIT * 2,
      rateRefilledAt: Date.now(),
      closed: false,
    };
    connection.loginTimer = setTimeout(() => {
      this.init.logger.info("closing connection that did not log in", { from: connection.remote });
      socket.close(CloseCode.loginTimeout, "no login within 10 s");
    }, LOGIN_TIMEOUT_MS);
    this.send(connection, { type: "hello", nonce: connection.nonce, serverTime: Date.now(), version: this.init.version });
    return connection;
  }

  message(connection: Connection, data: string | ArrayBuffer | Uint8Array): void {
    if (connection.closed) return;
    let request: ClientRequest | undefined;
    try {
      if (!this.takeRateToken(connection)) throw new ProtocolError("RATE_LIMITED", `more than ${MESSAGES_PER_SECOND_LIMIT} messages per second`);
      if (typeof data !== "string") throw new ProtocolError("BAD_MESSAGE", "binary frames are not accepted; send JSON text");
      request = parseClientMessage(data);
      const result = this.handle(connection, request);
      if (!(result instanceof Promise)) return this.reply(connection, request.id, result);
      const id = request.id;
      result.then(
        (value) => this.reply(connection, id, value),
        (err) => (err instanceof ProtocolError ? this.refuse(connection, id, err) : this.init.logger.error("request failed", { error: err })),
      );
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.refuse(connection, request?.id ?? err.id, err);
    }
  }

  close(connection: Connection): void {
    if (connection.closed) return;
    connection.closed = true;
    clearTimeout(connection.loginTimer);
    this.init.guard.release(connection.address);
    const session = connection.session;
    if (session && this.init.registry.remove(session)) {
      this.init.logger.info("node offline", { node: session.name, user: session.user, reason: "connection closed" });
      this.init.sdwan?.leave(session);
    }
  }

  /** Marks nodes whose heartbeats stopped as offline and closes their connections. */
  sweep(now = Date.now()): void {
    for (const session of this.init.registry.all()) {
      if (now - session.lastHeartbeat <= this.init.heartbeatTimeoutMs) continue;
      this.init.registry.remove(session);
      this.init.logger.info("node offline", { node: session.name, user: session.user, reason: "heartbeat timeout" });
      this.init.sdwan?.leave(session);
      session.close(CloseCode.heartbeatTimeout, "no heartbeat within the timeout");
    }
  }

  private handle(connection: Connection, request: ClientRequest): unknown | Promise<unknown> {
    if (request.type === "login") return this.login(connection, request);
    const session = connection.session;
    if (!session) throw new ProtocolError("NOT_LOGGED_IN", `${request.type} needs a login first`);
    switch (request.type) {
      case "heartbeat":
        session.lastHeartbeat = Date.now();
        if (request.rttMs !== undefined) session.rttMs = request.rttMs;
        return { clientTime: request.clientTime, serverTime: Date.now() };
      case "peers":
        return { peers: this.init.registry.peers(session).map(peerInfo) };
      case "report":
        if (request.nat && session.nat?.natType !== request.nat.natType)
          this.init.logger.info("node reports its NAT", { node: session.name, user: session.user, nat: request.nat.natType });
        if (request.nat) session.nat = request.nat;
        if (request.candidates) session.candidates = request.candidates;
        if (request.relay) {
          if (!session.relay) this.init.logger.info("node offers to relay", { node: session.name, user: session.user, super: request.relay.super, bwMbps: request.relay.bwMbps });
          session.relay = request.relay;
          this.init.broker.noticeOffer(session);
        }
        if (request.sdwan) {
          if (!this.init.sdwan) throw new ProtocolError("SDWAN_OFF", "this server runs no virtual network (no [server.sdwan] subnet in its config)");
          const map = this.init.sdwan.join(session, request.sdwan.routes);
          this.init.logger.info("node on the virtual network", { node: session.name, user: session.user, ip: map.self.ip });
          return { sdwan: map };
        }
        return {};
      case "connect":
        return this.coordinate(session, request.peer);
      case "relay":
        return this.relay(session, request.peer, request.exclude ?? []);
    }
  }

  /** The node `peerName` of this node's user, online now (its current login). */
  private peerOf(session: NodeSession, peerName: string): NodeSession {
    const peer = this.init.registry.get(session.user, peerName);
    if (!peer || peer === session)
      throw new ProtocolError("PEER_OFFLINE", peer ? "a node cannot connect to itself" : `peer "${peerName}" is not online`);
    return peer;
  }

  /**
   * Answers at once with the peer's candidates and a start time, and sends the peer the same about
   * this node, so both begin probing together. Only nodes of the same user can reach each other.
   */
  private async coordinate(session: NodeSession, peerName: string): Promise<ConnectPlan> {
    const current = () => this.peerOf(session, peerName);
    // A node that just logged in is still detecting its NAT and learning its addresses; the plan
    // (roles, birthday, where to send) needs both sides' of each. (The peer may log in anew meanwhile.)
    const ready = (node: NodeSession) => node.nat && node.candidates;
    let peer = current();
    for (const deadline = Date.now() + NAT_WAIT_MS; !(ready(session) && ready(peer)) && Date.now() < deadline; peer = current())
      await new Promise((r) => setTimeout(r, NAT_POLL_MS));
    const sessionId = randomBytes(16).toString("base64url");
    const startAt = Date.now() + COORDINATION_LEAD_MS;
    const describe = (node: NodeSession) => ({ name: node.name, publicKey: node.publicKey, instance: node.instance, nat: node.nat ?? null, candidates: node.candidates ?? null });
    // The harder NAT initiates: its first packets open its own NAT (a symmetric one maps them anew,
    // which only the easier side, answering the source, can follow). Ties: the requester.
    const requesterInitiates = natHardness(session) >= natHardness(peer);
    const roles = requesterInitiates ? (["initiator", "responder"] as const) : (["responder", "initiator"] as const);
    peer.send(JSON.stringify({ type: "connect", plan: { sessionId, startAt, role: roles[1], peer: describe(session) } }));
    this.init.logger.debug("coordinating a peer link", { from: session.name, to: peer.name, user: session.user, initiator: requesterInitiates ? session.name : peer.name });
    return { sessionId, startAt, role: roles[0], peer: describe(peer) };
  }

  /** Picks a relay for a link to `peerName` and gives each side its ticket; the peer hears of it at once. */
  private relay(session: NodeSession, peerName: string, exclude: string[]) {
    const peer = this.peerOf(session, peerName);
    const { mine, theirs } = this.init.broker.plan(session, peer, exclude);
    peer.send(JSON.stringify({ type: "relay", plan: theirs }));
    this.init.logger.info("relaying a peer link", { from: session.name, to: peer.name, user: session.user, relay: mine.relay.name, tier: mine.relay.tier });
    return mine;
  }

  private login(connection: Connection, request: LoginRequest): LoginResult {
    if (connection.session) throw new ProtocolError("ALREADY_LOGGED_IN", `already logged in as ${connection.session.name}`);
    const { node, publicKey } = request;
    const proof = Buffer.from(request.proof, "base64url");
    const user = this.init.users.find((u) => safeEqual(Buffer.from(loginProof(u.token, connection.nonce, node, publicKey), "base64url"), proof));
    if (!user) throw this.loginRefused(connection, node, "BAD_TOKEN", "bad token");
    if (!verifyIdentitySignature(publicKey, loginTranscript(connection.nonce, node, publicKey), request.signature))
      throw this.loginRefused(connection, node, "BAD_SIGNATURE", "the signature does not match the node's identity key");
    const pinned = this.init.pins.get(user.name, node);
    if (pinned && pinned !== publicKey)
      throw this.loginRefused(
        connection,
        node,
        "KEY_MISMATCH",
        `node name "${node}" is registered to a different identity key; if that node was reinstalled, run "inp2ps forget ${node}" on the server, or pick another name`,
      );
    if (!pinned) this.init.pins.pin(user.name, node, publicKey);

    const now = Date.now();
    const session: NodeSession = {
      user: user.name,
      name: node,
      publicKey,
      instance: request.instance,
      address: connection.remote,
      host: connection.address,
      version: request.version,
      nat: request.nat,
      onlineSince: now,
      lastHeartbeat: now,
      send: (text) => {
        if (!connection.closed) connection.socket.send(text);
      },
      close: (code, reason) => connection.socket.close(code, reason),
    };
    clearTimeout(connection.loginTimer);
    connection.session = session;
    const replaced = this.init.registry.add(session);
    if (replaced) {
      this.init.logger.info("node logged in again; closing its older session", { node, user: user.name, from: connection.remote, was: replaced.address });
      replaced.close(CloseCode.replaced, "replaced by a newer login of the same node");
    } else {
      this.init.logger.info("node online", { node, user: user.name, from: connection.remote, version: request.version });
    }
    return {
      user: user.name,
      node,
      address: connection.remote,
      serverTime: now,
      heartbeatIntervalMs: this.init.heartbeatIntervalMs,
      heartbeatTimeoutMs: this.init.heartbeatTimeoutMs,
      peers: this.init.registry.peers(session).map(peerInfo),
    };
  }

  private loginRefused(connection: Connection, node: string, code: "BAD_TOKEN" | "BAD_SIGNATURE" | "KEY_MISMATCH", reason: string) {
    this.init.logger.warn(`login refused: ${reason}`, { node, from: connection.remote });
    // One attempt per connection: the nonce is spent. Close after the reply has been queued.
    queueMicrotask(() => connection.socket.close(CloseCode.loginRefused, `login refused: ${code}`));
    return new ProtocolError(code, `login refused: ${reason}`);
  }

  private refuse(connection: Connection, id: number | null, err: ProtocolError): void {
    this.reply(connection, id, undefined, err);
    if (!CLIENT_FAULTS.has(err.code)) return;
    connection.badMessages++;
    if (connection.badMessages < MAX_BAD_MESSAGES_PER_CONNECTION) return;
    this.init.logger.warn("dropping connection after repeated bad messages; slowing its address down", {
      from: connection.remote,
      bad: connection.badMessages,
    });
    this.init.guard.penalise(connection.address);
    connection.socket.close(CloseCode.abuse, "too many bad messages");
  }

  private reply(connection: Connection, id: number | null, result: unknown, err?: ProtocolError): void {
    const response: ResponseMessage = err
      ? { type: "response", id, ok: false, error: { code: err.code, message: err.message } }
      : { type: "response", id, ok: true, result };
    this.send(connection, response);
  }

  private send(connection: Connection, message: ServerMessage): void {
    if (!connection.closed) connection.socket.send(JSON.stringify(message));
  }

  private takeRateToken(connection: Connection): boolean {
    const now = Date.now();
    const capacity = MESSAGES_PER_SECOND_LIMIT * 2;
    connection.rateTokens = Math.min(capacity, connection.rateTokens + ((now - connection.rateRefilledAt) / 1000) * MESSAGES_PER_SECOND_LIMIT);
    connection.rateRefilledAt = now;
    if (connection.rateTokens < 1) return false;
    connection.rateTokens -= 1;
    return true;
  }
}
