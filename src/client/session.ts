import type { TLSSocket } from "node:tls";
import type WsWebSocket from "ws";
import { loginProof, loginTranscript, signWithIdentity, type Identity } from "../crypto/index.ts";
import type { Logger } from "../log/index.ts";
import {
  approveCommand,
  CloseCode,
  MAX_NODES_LISTED,
  MAX_WATCH_NAMES,
  MAX_WATCHED_PER_NODE,
  parseResult,
  parseServerMessage,
  ProtocolError,
  type ClientRequestType,
  type ConnectPlan,
  type LoginResult,
  type NatInfo,
  type PeerInfo,
  type RelayPlan,
  type RequestFields,
  type RequestResult,
  type ResponseMessage,
  type SdwanDelta,
  type SdwanMap,
  type ServerMessage,
  type PresenceDelta,
} from "../protocol/index.ts";
import {
  CLOCK_SAMPLES_KEPT,
  CONNECT_TIMEOUT_MS,
  MAX_PENDING_REQUESTS,
  MAX_SERVER_MESSAGE_BYTES,
  RECONNECT_BACKOFF_FACTOR,
  RECONNECT_BASE_DELAY_MS,
  RECONNECT_JITTER_FRACTION,
  RECONNECT_MAX_DELAY_MS,
  RECONNECT_SPREAD_MIN_DELAY_MS,
} from "./constants.ts";
import { decideTrust, type KnownServers } from "./trust.ts";

// Bun swaps the `ws` package for a built-in shim whose upgrade response carries no TLS socket, so the
// server certificate could not be checked before login. Loading ws's own module by path keeps the
// real implementation, which runs on Bun's node:tls.
const WebSocket = require("../../node_modules/ws/lib/websocket.js") as typeof WsWebSocket;

/** pending: logged in, but the server's admin has not approved this node yet (only heartbeats). */
export type SessionState = "connecting" | "pending" | "online" | "waiting" | "stopped";

export interface ServerSessionInit {
  host: string;
  port: number;
  insecure: boolean;
  node: string;
  token: string;
  identity: Identity;
  version: string;
  /** This run of inp2pc (PeerInfo.instance), sent with every login. */
  instance?: string;
  tlsFingerprint?: string;
  knownServers: KnownServers;
  logger: Logger;
  reconnectBaseDelayMs?: number;
  reconnectMaxDelayMs?: number;
  /** Spreads reconnects over the server's window (0 ≤ x < 1). @default Math.random */
  random?: () => number;
}

export interface SessionEvents {
  online?(result: LoginResult): void;
  connectPlan?(plan: ConnectPlan): void;
  relayPlan?(plan: RelayPlan): void;
  sdwanMap?(map: SdwanMap): void;
  sdwanDelta?(delta: SdwanDelta): void;
  /** The session that was online ended; `closeCode` is the server's WebSocket close code. */
  offline?(reason: string, closeCode: number): void;
  peerOnline?(peer: PeerInfo): void;
  /** `reason` "revoked": the admin revoked the peer; links to it close at once. */
  peerOffline?(name: string, reason?: "revoked"): void;
  /** The server announced the newest release it knows. */
  release?(version: string): void;
  /** The server's admin asks this node to upgrade now (to `version`, or the newest at its release_url). */
  upgrade?(version: string | undefined): void;
}

const closeReasons: Record<number, string> = {
  [CloseCode.replaced]:
    "another machine runs as this node: it logged in with this node's name and identity key, and the server dropped this session for it; " +
    "stop one of them, or give each its own `node` name and its own data_dir (identity key)",
  [CloseCode.loginTimeout]: "the server closed the connection: no login in time",
  [CloseCode.heartbeatTimeout]: "the server stopped hearing our heartbeats",
  [CloseCode.busy]: "the server has too many connections waiting to log in; trying again later",
  [CloseCode.abuse]: "the server dropped us for sending bad messages",
  [CloseCode.shutdown]: "the server is shutting down",
  [CloseCode.pairingRejected]: "the server's admin rejected this node's pairing request",
  [CloseCode.pairingExpired]: "pairing request expired: the server's admin did not approve this node in time; the next login makes a new request",
  [CloseCode.revoked]: "the server's admin revoked this node: it is refused until the admin approves it again",
  [CloseCode.keyReplaced]: "the server's admin approved a new identity key for this node's name: this machine's key is no longer accepted",
};

/** A refused login in words: what is wrong and what to do, by the server's refusal code. */
function explainRefusal(code: string, serverMessage: string, node: string): string {
  switch (code) {
    case "BAD_TOKEN":
      return (
        "login refused (BAD_TOKEN): the server does not accept this node's token; check `token` in [client] of the config " +
        '(or --token, INP2P_TOKEN): it must be the token of this node\'s user on the server ("inp2ps token --user U --password P" prints it)'
      );
    case "BAD_SIGNATURE":
      return (
        "login refused (BAD_SIGNATURE): the server could not verify this node's identity signature; the identity key file " +
        `(inp2pc.key in data_dir) may be damaged: restore it, or delete it to make a new key and run "inp2ps forget ${node}" on the server`
      );
    case "KEY_MISMATCH":
      return (
        `login refused (KEY_MISMATCH): the server knows node "${node}" by a different identity key: another machine already uses this name, ` +
        `or this node's identity key (inp2pc.key in data_dir) was made anew; give this node another \`node\` name, or, if it replaces the old machine, ` +
        `run "inp2ps forget ${node}" on the server`
      );
    default:
      return `login refused (${code}): ${serverMessage}`;
  }
}

/**
 * Ends of a session after which the reconnect backoff keeps growing: a twin that keeps replacing this
 * node, or a server that drops it for bad messages, must not bring the retries back to the fastest pace.
 * Any other end after a login that worked is a new outage (a server restart): retry from the first delay.
 */
const BACKOFF_KEEPING_CLOSES: ReadonlySet<number> = new Set([CloseCode.replaced, CloseCode.abuse, CloseCode.busy, CloseCode.revoked, CloseCode.keyReplaced]);

/** Ends the server's admin decided (closeReasons says which): the server was reachable, and the words say why. */
const ADMIN_CLOSES: ReadonlySet<number> = new Set([CloseCode.pairingRejected, CloseCode.pairingExpired, CloseCode.revoked, CloseCode.keyReplaced]);

/** Adds what to do to the errors a misconfigured TLS setting produces. */
function explainConnectError(message: string, insecure: boolean): string {
  if (/Unexpected server response: 429/.test(message))
    return `${message} (the server slows this address down after failed logins, bad messages or too many connections; check this node's token)`;
  if (/WRONG_VERSION_NUMBER|wrong version number/i.test(message))
    return `${message} (the server does not speak TLS on this port; if it runs with tls = "off", use --insecure)`;
  if (insecure && /socket hang up|ECONNRESET/i.test(message))
    return `${message} (the server hung up on plain ws://; if it speaks TLS on this port, as it does unless tls = "off", drop --insecure)`;
  if (insecure && /Unexpected server response: 400/.test(message))
    return `${message} (the server may expect TLS; drop --insecure)`;
  return message;
}

interface Pending {
  type: ClientRequestType;
  resolve(result: unknown): void;
  reject(err: Error): void;
}

export class RequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** When the server said to ask again (LOGIN_DEFERRED). */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** The client's connection to inp2ps: login, heartbeats, clock offset, reconnect with backoff. */
export class ServerSession {
  state: SessionState = "stopped";
  login?: LoginResult;
  /** While pending: the command that approves this node on the server. */
  awaitingApproval?: string;
  /** Why the last connection or login failed, in words; cleared by the next login. */
  problem?: string;
  /** serverTime - localTime, estimated from heartbeats. */
  clockOffsetMs = 0;
  rttMs?: number;
  /** The watched peers online now (presence by interest: see watch). */
  readonly peers = new Map<string, PeerInfo>();
  /** The window the server asks reconnects to spread over (its last login or heartbeat answer). */
  reconnectWindowMs = 0;
  /** What this node knows of its NAT; sent with the login and reported again when it changes. */
  nat?: NatInfo;

  private socket?: WsWebSocket;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private clockSamples: { offsetMs: number; rttMs: number }[] = [];
  private heartbeatTimer?: ReturnType<typeof setInterval>;
  private heartbeatOutstanding = false;
  private lastHeartbeatAnswerAt = 0;
  private reconnectTimer?: ReturnType<typeof setTimeout>;
  /** Failed attempts in this outage (see BACKOFF_KEEPING_CLOSES): the backoff exponent. */
  private failedAttempts = 0;
  /** Why the server refused the last login, in words; used when it closes the connection. */
  private refusal?: string;
  /** The peers this node wants to hear of; asked for again after each login. */
  private readonly interest = new Set<string>();
  /** This login's watch requests, by the names each asked for. */
  private asked = new Map<string, Promise<unknown>>();
  /** A deferred login's next attempt (LOGIN_DEFERRED), on the same connection. */
  private loginRetryTimer?: ReturnType<typeof setTimeout>;

  private readonly log: Logger;

  constructor(
    private readonly init: ServerSessionInit,
    private readonly events: SessionEvents = {},
  ) {
    this.log = init.logger;
  }

  get url(): string {
    const host = this.init.host.includes(":") ? `[${this.init.host}]` : this.init.host;
    return `${this.init.insecure ? "ws" : "wss"}://${host}:${this.init.port}/ws`;
  }

  serverNow(): number {
    return Date.now() + this.clockOffsetMs;
  }

  start(): void {
    if (this.state !== "stopped") return;
    this.connect();
  }

  stop(): void {
    this.state = "stopped";
    clearTimeout(this.reconnectTimer);
    this.teardown("stopping");
  }

  setNat(nat: NatInfo): void {
    this.nat = nat;
    if (this.state !== "online") return; // the next login carries it
    this.request("report", { nat }).catch((err: Error) => this.log.warn("could not report the NAT type to the server", { error: err.message }));
  }

  /**
   * Asks to hear of `names` (presence by interest): they join session.peers and the peerOnline and
   * peerOffline events while they are online, for this login and every later one. Resolves, once the
   * server answered, with those of them online now; at once, with none, while not logged in.
   */
  async watch(names: Iterable<string>): Promise<PeerInfo[]> {
    const wanted = [...new Set(names)].filter((name) => name !== this.init.node);
    for (const name of wanted) {
      if (this.interest.has(name)) continue;
      if (this.interest.size >= MAX_WATCHED_PER_NODE) {
        this.log.error(`not watching peer ${name}: this node watches ${MAX_WATCHED_PER_NODE} peers already, the most a server keeps`);
        continue;
      }
      this.interest.add(name);
    }
    if (this.state !== "online") return [];
    const fresh = wanted.filter((name) => this.interest.has(name) && !this.asked.has(name));
    for (let i = 0; i < fresh.length; i += MAX_WATCH_NAMES) {
      const chunk = fresh.slice(i, i + MAX_WATCH_NAMES);
      const asked = this.asked;
      const answer = this.request("watch", { peers: chunk }).then(
        ({ peers }) => this.applyPresence({ online: peers, offline: [] }),
        (err: Error) => {
          for (const name of chunk) if (asked.get(name) === answer) asked.delete(name); // asked again next time
          this.log.debug("could not watch peers", { error: err.message });
        },
      );
      for (const name of chunk) asked.set(name, answer);
    }
    await Promise.all(wanted.map((name) => this.asked.get(name)));
    return wanted.flatMap((name) => this.peers.get(name) ?? []);
  }

  request<K extends ClientRequestType>(type: K, fields: RequestFields<K>): Promise<RequestResult<K>> {
    const socket = this.socket;
    if (!socket || socket.readyState !== socket.OPEN) return Promise.reject(new RequestError("NOT_CONNECTED", "not connected to the server"));
    if (this.pending.size >= MAX_PENDING_REQUESTS)
      return Promise.reject(new RequestError("TOO_MANY_PENDING", `${MAX_PENDING_REQUESTS} requests already await a response`));
    const id = this.nextId++;
    socket.send(JSON.stringify({ type, id, ...fields }));
    return new Promise<RequestResult<K>>((resolve, reject) => this.pending.set(id, { type, resolve: resolve as (r: unknown) => void, reject }));
  }

  private connect(): void {
    this.state = "connecting";
    const hostPort = `${this.init.host}:${this.init.port}`;
    this.log.debug("connecting to server", { url: this.url });
    const socket = new WebSocket(this.url, {
      rejectUnauthorized: false, // verified below, before anything is sent: pin, system CA, or first use
      handshakeTimeout: CONNECT_TIMEOUT_MS,
      maxPayload: MAX_SERVER_MESSAGE_BYTES,
      perMessageDeflate: false,
    });
    this.socket = socket;
    let trusted = this.init.insecure;

    socket.on("upgrade", (response) => {
      if (this.init.insecure) return;
      const tlsSocket = response.socket as TLSSocket;
      const certificate = tlsSocket.getPeerCertificate();
      const decision = decideTrust(
        {
          authorized: tlsSocket.authorized,
          authorizationError: tlsSocket.authorizationError?.toString(),
          fingerprint256: certificate.fingerprint256,
        },
        hostPort,
        this.init.tlsFingerprint,
        this.init.knownServers,
      );
      if (!decision.ok) {
        this.log.error(`refusing server ${hostPort}: ${decision.reason}`);
        this.lastError = "server certificate refused";
        socket.terminate();
        return;
      }
      trusted = true;
      const level = decision.how === "first use: recorded" ? "warn" : "debug";
      this.log[level](`server certificate accepted (${decision.how})`, { server: hostPort, sha256: certificate.fingerprint256 });
    });

    socket.on("message", (data, isBinary) => {
      if (!trusted || isBinary) return;
      let message: ServerMessage;
      try {
        message = parseServerMessage(data.toString());
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.log.error(`ignoring ${err.message}`);
        // A response too malformed to read still ends its request, rather than leaving it waiting.
        if (err.id !== null) this.fail(err.id, new RequestError("BAD_RESPONSE", err.message));
        return;
      }
      this.onMessage(message);
    });

    socket.on("error", (err) => {
      this.log.debug("connection error", { error: err.message });
      if (this.state === "connecting") this.lastError = explainConnectError(err.message, this.init.insecure);
    });

    socket.on("close", (code, reasonBuffer) => {
      if (this.socket !== socket) return;
      const reason =
        (code === CloseCode.loginRefused ? this.refusal : closeReasons[code]) ??
        (reasonBuffer.length ? reasonBuffer.toString() : this.lastError ?? `connection closed (code ${code})`);
      this.lastError = undefined;
      this.refusal = undefined;
      this.onDisconnected(reason, code);
    });
  }

  private lastError?: string;

  private onMessage(message: ServerMessage): void {
    switch (message.type) {
      case "hello":
        void this.sendLogin(message.nonce);
        return;
      case "response": {
        this.settle(message);
        return;
      }
      case "connect":
        this.events.connectPlan?.(message.plan);
        return;
      case "relay":
        this.events.relayPlan?.(message.plan);
        return;
      case "sdwan":
        this.events.sdwanMap?.(message.map);
        return;
      case "sdwan-delta":
        this.events.sdwanDelta?.(message.delta);
        return;
      case "presence":
        this.applyPresence(message);
        return;
      case "node-online":
        this.applyPresence({ online: [message.node], offline: [] });
        return;
      case "node-offline":
        this.applyPresence({ online: [], offline: [{ name: message.node.name, reason: message.reason }] });
        return;
      case "admitted":
        if (this.state !== "pending") return;
        clearInterval(this.heartbeatTimer);
        this.log.info("the server's admin approved this node");
        this.onLoggedIn(message.result);
        if (this.nat) this.setNat(this.nat); // found while pending: the login that carried it is older
        return;
      case "release":
        this.events.release?.(message.version);
        return;
      case "upgrade":
        this.log.info("the server's admin asks this node to upgrade", { version: message.version ?? "newest" });
        this.events.upgrade?.(message.version);
        return;
    }
  }

  /** Peers that went offline, then peers that are online (each named once in a delta). */
  private applyPresence(delta: Pick<PresenceDelta, "online" | "offline">): void {
    for (const { name, reason } of delta.offline) {
      this.peers.delete(name);
      this.log.info("peer offline", { peer: name, ...(reason ? { reason } : {}) });
      this.events.peerOffline?.(name, reason);
    }
    for (const peer of delta.online) {
      if (!this.peers.has(peer.name) && this.peers.size >= MAX_NODES_LISTED) {
        this.log.error(`ignoring peer ${peer.name}: the server already listed ${MAX_NODES_LISTED} peers, the most a client keeps`);
        continue;
      }
      this.peers.set(peer.name, peer);
      this.log.info("peer online", { peer: peer.name });
      this.events.peerOnline?.(peer);
    }
  }

  private settle(message: ResponseMessage): void {
    const pending = message.id === null ? undefined : this.pending.get(message.id);
    if (!pending) {
      if (!message.ok) this.log.warn("server reported an error", { error: message.error?.message });
      return;
    }
    this.pending.delete(message.id!);
    if (!message.ok) return pending.reject(new RequestError(message.error?.code ?? "UNKNOWN", message.error?.message ?? "request failed", message.error?.retryAfterMs));
    try {
      pending.resolve(parseResult(pending.type, message.result));
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.log.error(err.message);
      pending.reject(new RequestError("BAD_RESPONSE", err.message));
    }
  }

  private fail(id: number, err: RequestError): void {
    const pending = this.pending.get(id);
    this.pending.delete(id);
    pending?.reject(err);
  }

  private async sendLogin(nonce: string): Promise<void> {
    const { node, token, identity, version } = this.init;
    try {
      const result = await this.request("login", {
        node,
        publicKey: identity.publicKey,
        proof: loginProof(token, nonce, node, identity.publicKey),
        signature: signWithIdentity(identity, loginTranscript(nonce, node, identity.publicKey)),
        version,
        ...(this.nat ? { nat: this.nat } : {}),
        ...(this.init.instance ? { instance: this.init.instance } : {}),
      });
      this.onLoggedIn(result);
    } catch (err) {
      if (err instanceof RequestError && err.code === "LOGIN_DEFERRED" && err.retryAfterMs !== undefined) {
        // Our turn is kept for us on this connection: no new handshake, no backoff.
        this.log.info(`the server admits logins at a steady rate; logging in again in ${(err.retryAfterMs / 1000).toFixed(1)} s`);
        this.loginRetryTimer = setTimeout(() => void this.sendLogin(nonce), err.retryAfterMs);
        return;
      }
      // A refusal is told when the server closes the connection, which follows it.
      if (err instanceof RequestError && /^login refused/.test(err.message)) this.refusal = explainRefusal(err.code, err.message, node);
      else this.log.error(`login failed: ${(err as Error).message}`);
      // An answer this client cannot use: log in anew on a new connection (with backoff) instead of waiting.
      if (err instanceof RequestError && err.code === "BAD_RESPONSE") this.socket?.terminate();
    }
  }

  private onLoggedIn(result: LoginResult): void {
    this.state = result.pending ? "pending" : "online";
    this.problem = undefined;
    this.login = result;
    this.awaitingApproval = result.pending ? approveCommand(result.node, result.user) : undefined;
    this.clockSamples = [];
    this.reconnectWindowMs = result.reconnectWindowMs ?? 0;
    // Not cleared here: a node-online that came with the login answer is already in (teardown clears).
    // (Only older servers list peers here; newer ones answer the watch below.)
    for (const peer of result.peers) this.peers.set(peer.name, peer);
    if (result.pending) this.log.warn(`waiting for approval: run "${this.awaitingApproval}" on the server`, { server: `${this.init.host}:${this.init.port}` });
    else this.log.info("logged in", { server: `${this.init.host}:${this.init.port}`, node: result.node, user: result.user, peers: result.peers.length });
    this.heartbeatOutstanding = false;
    this.lastHeartbeatAnswerAt = Date.now();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), result.heartbeatIntervalMs);
    this.heartbeat();
    if (result.pending) return;
    void this.watch(this.interest);
    this.events.online?.(result);
  }

  private heartbeat(): void {
    // Give up as late as the server does (its heartbeat timeout), so one slow interval on a busy
    // server does not make every client reconnect at once.
    const silentMs = Date.now() - this.lastHeartbeatAnswerAt;
    if (this.login && silentMs > this.login.heartbeatTimeoutMs) {
      this.log.warn("heartbeat went unanswered; reconnecting", { silentMs });
      this.socket?.terminate();
      return;
    }
    if (this.heartbeatOutstanding) return;
    this.heartbeatOutstanding = true;
    const sentAt = Date.now();
    this.request("heartbeat", { clientTime: sentAt, ...(this.rttMs !== undefined ? { rttMs: this.rttMs } : {}) })
      .then((result) => {
        this.heartbeatOutstanding = false;
        this.lastHeartbeatAnswerAt = Date.now();
        this.addClockSample(sentAt, Date.now(), result.serverTime);
        if (result.reconnectWindowMs !== undefined) this.reconnectWindowMs = result.reconnectWindowMs;
      })
      .catch((err: Error) => {
        this.heartbeatOutstanding = false; // the next interval asks again; the silence check still counts from the last answer
        this.log.debug("heartbeat failed", { error: err.message });
      });
  }

  private addClockSample(sentAt: number, receivedAt: number, serverTime: number): void {
    const rttMs = receivedAt - sentAt;
    this.clockSamples.push({ offsetMs: serverTime - (sentAt + receivedAt) / 2, rttMs });
    if (this.clockSamples.length > CLOCK_SAMPLES_KEPT) this.clockSamples.shift();
    const best = this.clockSamples.reduce((a, b) => (b.rttMs < a.rttMs ? b : a));
    this.clockOffsetMs = best.offsetMs;
    this.rttMs = rttMs;
  }

  private onDisconnected(reason: string, closeCode: number): void {
    const wasOnline = this.state === "online";
    const refused = closeCode === CloseCode.loginRefused;
    this.teardown(reason);
    if (this.state === "stopped") return;
    this.state = "waiting";
    this.problem = reason;
    if (wasOnline) this.events.offline?.(reason, closeCode);
    if (wasOnline && !BACKOFF_KEEPING_CLOSES.has(closeCode)) this.failedAttempts = 0;
    // A server that lost its whole fleet at once (a restart) gets it back spread evenly over the window it
    // asked for: about as fast as it admits logins, with no crowd at the usual first delay.
    const spread = wasOnline && this.reconnectWindowMs > 0;
    const delayMs = spread ? RECONNECT_SPREAD_MIN_DELAY_MS + (this.init.random ?? Math.random)() * this.reconnectWindowMs : this.reconnectDelayMs();
    this.failedAttempts++;
    const retry = `retrying in ${(delayMs / 1000).toFixed(1)} s`;
    if (refused || ADMIN_CLOSES.has(closeCode)) this.log.error(`${reason}; ${retry}`);
    else this.log.warn(`${wasOnline ? "lost the server" : "cannot reach the server"}: ${reason}; ${retry}`);
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
  }

  private get maxDelayMs(): number {
    return this.init.reconnectMaxDelayMs ?? RECONNECT_MAX_DELAY_MS;
  }

  private reconnectDelayMs(): number {
    const base = this.init.reconnectBaseDelayMs ?? RECONNECT_BASE_DELAY_MS;
    const jitter = 1 + (Math.random() * 2 - 1) * RECONNECT_JITTER_FRACTION;
    return Math.min(this.maxDelayMs, base * RECONNECT_BACKOFF_FACTOR ** Math.min(this.failedAttempts, 16) * jitter);
  }

  private teardown(reason: string): void {
    this.peers.clear();
    this.asked = new Map();
    clearTimeout(this.loginRetryTimer);
    this.awaitingApproval = undefined;
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    for (const pending of this.pending.values()) pending.reject(new RequestError("DISCONNECTED", reason));
    this.pending.clear();
    const socket = this.socket;
    this.socket = undefined;
    socket?.removeAllListeners("close");
    socket?.terminate();
  }
}
