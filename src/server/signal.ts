import { randomBytes } from "node:crypto";
import { loginProof, loginTranscript, safeEqual, verifyIdentitySignature } from "../crypto/index.ts";
import { RepeatedWarnings, type Logger } from "../log/index.ts";
import { limitKey } from "../net/index.ts";
import {
  approveCommand,
  candidatesProblem,
  CloseCode,
  isLoopbackAddress,
  parseClientMessage,
  ProtocolError,
  type ClientRequest,
  type ConnectPlan,
  type ErrorCode,
  type LoginRequest,
  type LoginResult,
  MAX_RECONNECT_WINDOW_MS,
  type ResponseMessage,
  type ServerMessage,
  withoutLoopback,
} from "../protocol/index.ts";
import { COORDINATION_LEAD_MS, LOGIN_REFUSAL_LOG_WINDOW_MS, LOGIN_TIMEOUT_MS, MAX_BAD_MESSAGES_PER_CONNECTION, MESSAGES_PER_SECOND_LIMIT } from "./constants.ts";
import { Acl, aclDenialMessage, type AclDecision, type AclRule, type TagsOf } from "./acl.ts";
import type { RelayBroker } from "./broker.ts";
import type { SdwanHub } from "./sdwan.ts";
import type { AuditLog } from "./audit.ts";
import type { AddressGuard } from "./guard.ts";
import { waitSeconds, type FailedLogins } from "./failed-logins.ts";
import type { NodeStore } from "./nodes.ts";
import { nodeReport } from "./node-reports.ts";
import type { PairingBook, PairingRequest } from "./pairing.ts";
import { PlanLimits } from "./plan-limits.ts";
import { authFailureReason, type ServerMetrics } from "../metrics/index.ts";
import { peerInfo, type NodeSession, type Registry } from "./registry.ts";
import type { Presence } from "./presence.ts";
import type { LoginAdmission } from "./admission.ts";

/**
 * Refusals that mean the client sent something it should not have; only these count towards dropping
 * it. The others (a peer offline, no relay free) are ordinary answers: during churn an app asks again
 * and again while its peer restarts.
 */
const CLIENT_FAULTS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(["BAD_JSON", "BAD_MESSAGE", "UNKNOWN_TYPE", "TOO_LARGE", "NOT_LOGGED_IN", "ALREADY_LOGGED_IN", "RATE_LIMITED"]);

/**
 * How long a link request waits for both nodes' NAT detection and candidates, and how often it looks.
 * A detection that loses packets takes up to ~3.5 s (1.1 s to a first binding, two 0.7 s probe
 * rounds, the hairpin probe); a plan made without it picks no birthday punch, so the direct path would
 * wait for the next retry. The requester's traffic goes through a relay meanwhile.
 */
const NAT_WAIT_MS = 5_000;
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

/** How a pending node's connection is reached from its pairing request. */
interface Waiting {
  lastHeartbeat: number;
  close(code: number, reason: string): void;
  admit(): void;
}

/** What the admin's pairing and revocation commands report back. */
export class AdmissionError extends Error {
  override readonly name = "AdmissionError";
  constructor(
    readonly code: "NO_REQUEST" | "UNKNOWN_NODE",
    message: string,
  ) {
    super(message);
  }
}

export interface Connection {
  readonly socket: SocketLike;
  readonly address: string;
  readonly remote: string; // address:port, as shown to users
  readonly nonce: string;
  session?: NodeSession;
  /** Set while the node waits for the admin's approval (admission = "approve"). */
  pairing?: PairingRequest;
  waiting?: Waiting;
  badMessages: number;
  rateTokens: number;
  rateRefilledAt: number;
  loginTimer?: ReturnType<typeof setTimeout>;
  /** Set once a login was told to come back later (LOGIN_DEFERRED): its turn, and the timer that closes it if it does not. */
  turn?: { at: number; timer: ReturnType<typeof setTimeout> };
  closed: boolean;
}

export interface SignalHubInit {
  users: User[];
  registry: Registry;
  /** Who hears of which node's changes. */
  presence: Presence;
  /** The steady rate logins are admitted at. */
  loginAdmission: LoginAdmission;
  broker: RelayBroker;
  /** Set when the server runs a virtual network ([server.sdwan]). */
  sdwan?: SdwanHub;
  nodes: NodeStore;
  /** "token": any node with its user's token is in (its key pinned on first login); "approve": the admin decides. */
  admission: "token" | "approve";
  /** Whether a client address is trusted to have new nodes approved at once (auto_approve). */
  autoApprove(address: string): boolean;
  pairing: PairingBook;
  guard: AddressGuard;
  /** Connections that have not logged in yet, all addresses together (the guard bounds each address's share). */
  maxConnectionsBeforeLogin: number;
  failedLogins: FailedLogins;
  audit: AuditLog;
  /** [[server.acl]]; default none: every node of a user may link to every other. */
  acl?: readonly AclRule[];
  /** The admin-set tags of a node, for `tag:` selectors in the ACL; default: no node has tags. */
  tagsOf?: TagsOf;
  logger: Logger;
  /** Counts logins, refusals and plans; default: nothing counted. */
  metrics?: ServerMetrics;
  version: string;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
}

/** The signalling protocol: one Connection per WebSocket, answering every request exactly once. */
export class SignalHub {
  private acl: Acl;
  /** Connections whose login timer runs. */
  private waitingForLogin = 0;
  /** Refused logins any stranger can cause (a wrong token, a slowed one), logged once per window. */
  private readonly strangerRefusals: RepeatedWarnings;
  private readonly planLimits = new PlanLimits();

  constructor(private readonly init: SignalHubInit) {
    this.acl = new Acl(init.acl, init.tagsOf);
    this.strangerRefusals = new RepeatedWarnings(init.logger, LOGIN_REFUSAL_LOG_WINDOW_MS);
  }

  /** The ACL's outcome for `user`'s nodes may have changed (tags): SDWAN members get their maps anew. */
  aclChanged(user: string): void {
    this.init.sdwan?.refresh(user);
  }

  /** A reloaded config's ACL and admission: link requests and logins follow them from now on; links and sessions stay. */
  setPolicy(policy: Pick<SignalHubInit, "admission" | "autoApprove"> & { acl: readonly AclRule[] }): void {
    this.acl = new Acl(policy.acl, this.init.tagsOf);
    this.init.admission = policy.admission;
    this.init.autoApprove = policy.autoApprove;
    for (const user of this.init.users) this.aclChanged(user.name);
  }

  /**
   * Whether the ACL lets `a` and `b` link in both directions: on the virtual network a packet needs a
   * way back, so two nodes are on each other's SDWAN map only then.
   */
  linkableBothWays(a: NodeSession, b: NodeSession): boolean {
    return a.user === b.user && this.acl.check(a.user, a.name, b.name).allowed && this.acl.check(b.user, b.name, a.name).allowed;
  }

  /** A new connection from `address` (a port when it is the direct peer's, none when a proxy forwarded it). */
  open(socket: SocketLike, address: string, port?: number): Connection {
    const connection: Connection = {
      socket,
      address,
      remote: port === undefined ? address : address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`,
      nonce: randomBytes(24).toString("base64url"),
      badMessages: 0,
      rateTokens: MESSAGES_PER_SECOND_LIMIT * 2,
      rateRefilledAt: Date.now(),
      closed: false,
    };
    if (this.waitingForLogin >= this.init.maxConnectionsBeforeLogin) {
      this.init.metrics?.limited("preauth");
      socket.close(CloseCode.busy, `${this.waitingForLogin} connections already wait to log in (limit ${this.init.maxConnectionsBeforeLogin})`);
      return connection;
    }
    this.waitingForLogin++;
    connection.loginTimer = setTimeout(() => {
      this.init.logger.info("closing connection that did not log in", { from: connection.remote });
      this.init.metrics?.authFailure("login_timeout");
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

  /** The connection logged in, waits for approval, or closed: its login timer stops, and it leaves the count. */
  private endLoginWait(connection: Connection): void {
    if (connection.loginTimer === undefined) return;
    clearTimeout(connection.loginTimer);
    connection.loginTimer = undefined;
    this.waitingForLogin--;
  }

  close(connection: Connection): void {
    if (connection.closed) return;
    connection.closed = true;
    this.endLoginWait(connection);
    clearTimeout(connection.turn?.timer);
    this.init.guard.release(connection.address);
    if (connection.waiting && connection.pairing?.waiting === connection.waiting) connection.pairing.waiting = undefined;
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
    for (const request of this.init.pairing.expire(now)) {
      this.init.audit.record("expired", { user: request.user, node: request.node, from: request.address });
      request.waiting?.close(CloseCode.pairingExpired, "pairing request expired");
    }
    for (const request of this.init.pairing.list()) {
      if (request.waiting && now - request.waiting.lastHeartbeat > this.init.heartbeatTimeoutMs) {
        request.waiting.close(CloseCode.heartbeatTimeout, "no heartbeat within the timeout");
        request.waiting = undefined;
      }
    }
  }

  /** The pairing requests waiting for the admin, oldest first. */
  pendingRequests(): readonly PairingRequest[] {
    return this.init.pairing.list();
  }

  /**
   * Approves a node's pending key (replacing an older one, whose session ends), or lets a revoked node
   * in again. A node waiting on its connection comes online at once.
   */
  approve(user: string, node: string): { user: string; node: string; publicKey: string; online: boolean } {
    const request = this.init.pairing.get(user, node);
    const record = this.init.nodes.get(user, node);
    if (!request) {
      if (record?.state !== "revoked")
        throw new AdmissionError(
          record ? "NO_REQUEST" : "UNKNOWN_NODE",
          record ? `node "${node}" of user "${user}" is approved already and has no pairing request waiting` : `no pairing request from node "${node}" of user "${user}" (see: inp2ps pairing list)`,
        );
      this.init.nodes.approve(user, node, record.key);
      this.init.audit.record("approved", { user, node, by: "admin", reinstated: true });
      return { user, node, publicKey: record.key, online: false };
    }
    this.init.pairing.remove(request);
    this.init.nodes.approve(user, node, request.publicKey);
    this.init.audit.record("approved", { user, node, by: "admin", from: request.address, ...(request.replacesKey ? { replacedKey: true } : {}) });
    const old = this.init.registry.get(user, node);
    if (old && old.publicKey !== request.publicKey) this.disconnect(old, CloseCode.keyReplaced, "a new identity key was approved for this node name", "key replaced");
    const online = request.waiting !== undefined;
    request.waiting?.admit();
    return { user, node, publicKey: request.publicKey, online };
  }

  /** Refuses a pending request: its connection closes; the node's next login is a new request. */
  reject(user: string, node: string): void {
    const request = this.init.pairing.get(user, node);
    if (!request) throw new AdmissionError("NO_REQUEST", `no pairing request from node "${node}" of user "${user}" (see: inp2ps pairing list)`);
    this.init.pairing.remove(request);
    this.init.audit.record("rejected", { user, node, from: request.address });
    request.waiting?.close(CloseCode.pairingRejected, "the server's admin rejected this node");
  }

  /** Disconnects a node now, tells its peers to drop their links, and refuses it until approved again. */
  revoke(user: string, node: string): { user: string; node: string; wasOnline: boolean } {
    if (!this.init.nodes.revoke(user, node)) throw new AdmissionError("UNKNOWN_NODE", `no node "${node}" of user "${user}" is known to this server`);
    const request = this.init.pairing.get(user, node);
    if (request) {
      this.init.pairing.remove(request);
      request.waiting?.close(CloseCode.revoked, "the server's admin revoked this node");
    }
    const session = this.init.registry.get(user, node);
    if (session) this.disconnect(session, CloseCode.revoked, "the server's admin revoked this node", "revoked");
    this.init.audit.record("revoked", { user, node, wasOnline: session !== undefined });
    return { user, node, wasOnline: session !== undefined };
  }

  /** Takes a node out of the registry (its peers hear why) and closes its connection. */
  private disconnect(session: NodeSession, code: number, words: string, reason: "revoked" | "key replaced"): void {
    this.init.registry.remove(session, reason === "revoked" ? "revoked" : undefined);
    this.init.logger.info("node offline", { node: session.name, user: session.user, reason });
    this.init.sdwan?.leave(session);
    session.close(code, words);
  }

  private handle(connection: Connection, request: ClientRequest): unknown | Promise<unknown> {
    if (request.type === "login") return this.login(connection, request);
    if (connection.waiting) {
      if (request.type !== "heartbeat")
        throw new ProtocolError("NOT_APPROVED", `node "${connection.pairing?.node}" waits for the server admin's approval; until then only heartbeats are answered`);
      connection.waiting.lastHeartbeat = Date.now();
      return { clientTime: request.clientTime, serverTime: Date.now() };
    }
    const session = connection.session;
    if (!session) throw new ProtocolError("NOT_LOGGED_IN", `${request.type} needs a login first`);
    switch (request.type) {
      case "heartbeat":
        session.lastHeartbeat = Date.now();
        if (request.rttMs !== undefined) session.rttMs = request.rttMs;
        return { clientTime: request.clientTime, serverTime: Date.now(), reconnectWindowMs: this.reconnectWindowMs() };
      case "peers":
        return { peers: this.init.registry.peers(session).map(peerInfo) };
      case "watch":
        return { peers: this.init.presence.watch(session, request.peers) };
      case "report":
        if (request.nat && session.nat?.natType !== request.nat.natType)
          this.init.logger.info("node reports its NAT", { node: session.name, user: session.user, nat: request.nat.natType });
        if (request.nat) session.nat = request.nat;
        if (request.candidates) {
          const problem = candidatesProblem(request.candidates, isLoopbackAddress(session.host));
          if (problem) throw new ProtocolError("BAD_MESSAGE", `report: candidates.${problem}`);
          session.candidates = request.candidates;
        }
        if (request.relay) {
          if (!session.relay) this.init.logger.info("node offers to relay", { node: session.name, user: session.user, super: request.relay.super, bwMbps: request.relay.bwMbps });
          session.relay = request.relay;
          this.init.broker.noticeOffer(session);
        }
        if (request.refused) {
          const { peer, target, protocol } = request.refused;
          const key = JSON.stringify(["target-refused", session.user, session.name, peer, target, protocol]);
          this.init.audit.recordOnce(key, "target-refused", { user: session.user, node: session.name, peer, target, protocol });
        }
        if (request.sdwan) {
          if (!this.init.sdwan) throw new ProtocolError("SDWAN_OFF", "this server runs no virtual network (no [server.sdwan] subnet in its config)");
          const map = this.init.sdwan.join(session, request.sdwan.routes);
          this.init.logger.info("node on the virtual network", { node: session.name, user: session.user, ip: map.self.ip });
          return { sdwan: map };
        }
        return {};
      case "links":
        session.report = nodeReport(session.report, request);
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
    // A side that UDP cannot reach (UDP blocked, or no UDP address at all) is linked by TCP: then both
    // sides' TCP probes must have ended too (a node leaves tcpPunch out until then), since a TCP punch
    // needs both mapped addresses.
    const known = (node: NodeSession) => node.nat && node.candidates;
    const tcpOnly = (node: NodeSession) => node.nat!.natType === "udp-blocked" || (!node.candidates!.udpPublic && node.candidates!.udpLan.length === 0);
    const tcpKnown = (node: NodeSession) => node.candidates!.tcpPunch !== undefined;
    const ready = (peer: NodeSession) =>
      known(session) && known(peer) && (!(tcpOnly(session) || tcpOnly(peer)) || (tcpKnown(session) && tcpKnown(peer)));
    let peer = current();
    this.authorize(session, peer, "connect");
    this.limitPlans(session, peer, "connect");
    for (const deadline = Date.now() + NAT_WAIT_MS; !ready(peer) && Date.now() < deadline; peer = current())
      await new Promise((r) => setTimeout(r, NAT_POLL_MS));
    const sessionId = randomBytes(16).toString("base64url");
    const startAt = Date.now() + COORDINATION_LEAD_MS;
    // Loopback candidates reach a node only from its own host: both must be on the server's.
    const describe = (node: NodeSession, to: NodeSession) => {
      const candidates = node.candidates && !isLoopbackAddress(to.host) ? withoutLoopback(node.candidates) : node.candidates;
      return { name: node.name, publicKey: node.publicKey, instance: node.instance, nat: node.nat ?? null, candidates: candidates ?? null };
    };
    // The harder NAT initiates: its first packets open its own NAT (a symmetric one maps them anew,
    // which only the easier side, answering the source, can follow). Ties: the requester.
    const requesterInitiates = natHardness(session) >= natHardness(peer);
    const roles = requesterInitiates ? (["initiator", "responder"] as const) : (["responder", "initiator"] as const);
    peer.send(JSON.stringify({ type: "connect", plan: { sessionId, startAt, role: roles[1], peer: describe(session, peer) } }));
    this.init.metrics?.plan("direct", session.nat?.natType, peer.nat?.natType);
    this.init.logger.debug("coordinating a peer link", { from: session.name, to: peer.name, user: session.user, initiator: requesterInitiates ? session.name : peer.name });
    return { sessionId, startAt, role: roles[0], peer: describe(peer, session) };
  }

  /** Refuses, and audits, a link request the ACL denies: no plan, no relay, nothing sent to the peer. */
  private authorize(session: NodeSession, peer: NodeSession, request: "connect" | "relay"): void {
    const decision = this.acl.check(session.user, session.name, peer.name);
    if (decision.allowed) return;
    this.init.logger.debug("the ACL denies a link", { user: session.user, from: session.name, to: peer.name, request });
    this.auditDenial(decision, request);
    throw new ProtocolError("ACL_DENIED", aclDenialMessage(decision));
  }

  /** Refuses a plan beyond the requester's share (PlanLimits); an ordinary answer, not a fault. */
  private limitPlans(session: NodeSession, peer: NodeSession, request: "connect" | "relay"): void {
    const refusal = this.planLimits.take(request, session.user, session.name, peer.name);
    if (!refusal) return;
    this.init.metrics?.limited("plans");
    throw new ProtocolError("RATE_LIMITED_PLAN", `too many ${refusal.limit}; ask again in ${(refusal.retryAfterMs / 1000).toFixed(1)} s`);
  }

  private auditDenial(decision: AclDecision, request: "connect" | "relay"): void {
    const rule = decision.rule ? `server.acl[${decision.rule.index}]` : "none";
    const key = JSON.stringify(["acl-denied", decision.user, decision.from, decision.to, request]);
    this.init.audit.recordOnce(key, "acl-denied", { user: decision.user, from: decision.from, to: decision.to, request, rule });
  }

  /** Picks a relay for a link to `peerName` and gives each side its ticket; the peer hears of it at once. */
  private relay(session: NodeSession, peerName: string, exclude: string[]) {
    const peer = this.peerOf(session, peerName);
    this.authorize(session, peer, "relay");
    this.limitPlans(session, peer, "relay");
    const { mine, theirs } = this.init.broker.plan(session, peer, exclude);
    peer.send(JSON.stringify({ type: "relay", plan: theirs }));
    this.init.metrics?.plan(`relay-${mine.relay.tier}`, session.nat?.natType, peer.nat?.natType);
    this.init.logger.info("relaying a peer link", { from: session.name, to: peer.name, user: session.user, relay: mine.relay.name, tier: mine.relay.tier });
    return mine;
  }

  private login(connection: Connection, request: LoginRequest): LoginResult {
    if (connection.session || connection.waiting)
      throw new ProtocolError("ALREADY_LOGGED_IN", `already logged in as ${connection.session?.name ?? connection.pairing?.node}`);
    const { node, publicKey } = request;
    // Looked at before the proof, so that a slowed guesser learns nothing from its guess.
    const wait = this.init.failedLogins.loginWait(connection.address, node);
    if (wait) {
      this.init.metrics?.limited("logins");
      throw this.loginRefused(connection, node, "RATE_LIMITED", `${wait.reason}; retry in ${waitSeconds(wait)} s`);
    }
    const proof = Buffer.from(request.proof, "base64url");
    const user = this.init.users.find((u) => safeEqual(Buffer.from(loginProof(u.token, connection.nonce, node, publicKey), "base64url"), proof));
    if (!user) {
      this.init.failedLogins.failed(connection.address, node);
      throw this.loginRefused(connection, node, "BAD_TOKEN", "bad token");
    }
    if (!verifyIdentitySignature(publicKey, loginTranscript(connection.nonce, node, publicKey), request.signature))
      throw this.loginRefused(connection, node, "BAD_SIGNATURE", "the signature does not match the node's identity key");
    const record = this.init.nodes.get(user.name, node);
    if (record?.state === "revoked")
      throw this.loginRefused(
        connection,
        node,
        "NODE_REVOKED",
        `the server's admin revoked node "${node}"; it is refused until the admin runs "${approveCommand(node, user.name)}" on the server`,
      );
    if (record && record.key !== publicKey && this.init.admission === "token")
      throw this.loginRefused(
        connection,
        node,
        "KEY_MISMATCH",
        `node name "${node}" is registered to a different identity key; if that node was reinstalled, run "inp2ps forget ${node}" on the server, or pick another name`,
      );
    this.admit(connection);
    if (!record && this.init.admission === "token") {
      this.init.nodes.approve(user.name, node, publicKey);
      this.init.audit.record("admitted", { user: user.name, node, from: connection.remote, by: "token" });
    } else if (!record && this.init.autoApprove(connection.address)) {
      // Only a name never seen before: a new key for a known name always waits for the admin.
      this.init.nodes.approve(user.name, node, publicKey);
      this.init.audit.record("approved", { user: user.name, node, from: connection.remote, by: "auto_approve" });
    } else if (record?.key !== publicKey) return this.pend(connection, user.name, request, record?.key);
    return this.enter(connection, user.name, request);
  }

  /**
   * Lets an authenticated login in now if its turn has come (LoginAdmission), else tells it when to log
   * in again on this connection (its turn is kept for it, and the connection closes if it misses it).
   */
  private admit(connection: Connection): void {
    const now = Date.now();
    const at = connection.turn?.at ?? this.init.loginAdmission.take(now);
    if (at <= now) {
      clearTimeout(connection.turn?.timer);
      connection.turn = undefined;
      return;
    }
    // No stranger any more (the proof held): it leaves the pre-login count, with a deadline of its own.
    this.endLoginWait(connection);
    connection.turn ??= {
      at,
      timer: setTimeout(() => {
        this.init.metrics?.authFailure("login_timeout");
        connection.socket.close(CloseCode.loginTimeout, "no login at the turn the server gave");
      }, at - now + LOGIN_TIMEOUT_MS),
    };
    this.init.metrics?.limited("logins");
    const retryAfterMs = Math.ceil(at - now);
    throw new ProtocolError("LOGIN_DEFERRED", `the server admits logins at a steady rate; log in again in ${(retryAfterMs / 1000).toFixed(1)} s`, null, retryAfterMs);
  }

  /** Files (or finds again) a pairing request; the connection waits, heartbeating, for the admin. */
  private pend(connection: Connection, user: string, request: LoginRequest, replacesKey: string | undefined): LoginResult {
    const { node, publicKey } = request;
    const isNew = this.init.pairing.get(user, node)?.publicKey !== publicKey;
    const filed = this.init.pairing.file({ user, node, publicKey, replacesKey, address: connection.remote, login: request }, limitKey(connection.address));
    if ("code" in filed) throw this.loginRefused(connection, node, filed.code, filed.reason);
    filed.waiting?.close(CloseCode.replaced, "replaced by a newer login of the same node");
    const now = Date.now();
    const waiting: Waiting = {
      lastHeartbeat: now,
      close: (code, reason) => connection.socket.close(code, reason),
      admit: () => {
        connection.waiting = undefined;
        connection.pairing = undefined;
        const result = this.enter(connection, user, filed.login);
        this.send(connection, { type: "admitted", result });
      },
    };
    filed.waiting = waiting;
    connection.waiting = waiting;
    connection.pairing = filed;
    this.endLoginWait(connection);
    this.init.metrics?.authFailure("pending");
    if (isNew) this.init.audit.record("pending", { user, node, from: connection.remote, newKey: replacesKey !== undefined });
    this.init.logger.info("node waits for approval", { node, user, from: connection.remote, approve: approveCommand(node, user) });
    return { ...this.loginResult(connection, user, node, now), pending: true };
  }

  /** Puts an admitted node in the registry: its peers learn of it, and it of them. */
  private enter(connection: Connection, user: string, request: LoginRequest): LoginResult {
    const { node, publicKey } = request;
    const now = Date.now();
    const session: NodeSession = {
      user,
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
    this.endLoginWait(connection);
    this.init.metrics?.login();
    connection.session = session;
    const replaced = this.init.registry.add(session);
    if (replaced) {
      this.init.logger.info("node logged in again; closing its older session", { node, user, from: connection.remote, was: replaced.address });
      replaced.close(CloseCode.replaced, "replaced by a newer login of the same node");
    } else {
      this.init.logger.info("node online", { node, user, from: connection.remote, version: request.version });
    }
    return this.loginResult(connection, user, node, now);
  }

  /** No peer list (a node asks for the peers it needs: watch); the reconnect window grows with the fleet. */
  private loginResult(connection: Connection, user: string, node: string, now: number): LoginResult {
    const { heartbeatIntervalMs, heartbeatTimeoutMs } = this.init;
    return { user, node, address: connection.remote, serverTime: now, heartbeatIntervalMs, heartbeatTimeoutMs, peers: [], reconnectWindowMs: this.reconnectWindowMs() };
  }

  /** How long the fleet online now would take to log in again at the admission rate: the spread its nodes should reconnect over. */
  private reconnectWindowMs(): number {
    return Math.min(MAX_RECONNECT_WINDOW_MS, this.init.loginAdmission.windowMs(this.init.registry.size));
  }

  private loginRefused(connection: Connection, node: string, code: ErrorCode, reason: string) {
    this.init.metrics?.authFailure(authFailureReason(code));
    if (code === "BAD_TOKEN" || code === "RATE_LIMITED") this.strangerRefusals.warn(code, `login refused: ${reason}`, { node, from: connection.remote });
    else this.init.logger.warn(`login refused: ${reason}`, { node, from: connection.remote });
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
      ? { type: "response", id, ok: false, error: { code: err.code, message: err.message, ...(err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}) } }
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
    if (connection.rateTokens < 1) {
      this.init.metrics?.limited("messages");
      return false;
    }
    connection.rateTokens -= 1;
    return true;
  }
}
