import { randomInt } from "node:crypto";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { BlockList, connect as tcpConnect, createServer, isIPv6, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { AppConfig } from "../config/index.ts";
import { RepeatedWarnings, type Logger } from "../log/index.ts";
import {
  AppProtocolError,
  decodeStreamAnswer,
  decodeStreamOpening,
  decodeUdpAppDatagram,
  encodeStreamAnswer,
  encodeStreamHeader,
  encodeUdpAppDatagram,
  encodeUdpRefusedDatagram,
  encodeUdpReplyDatagram,
  MAX_UDP_TARGET_BYTES,
  type RefusalCode,
  type StreamAnswer,
  UDP_APP_DATAGRAM_TYPES,
} from "../protocol/index.ts";
import { splitEndpoint, type Link } from "../transport/index.ts";
import type { ExposeDecision, ExposePolicy } from "./expose.ts";
import { readFramed } from "./framed-read.ts";
import type { PeerManager } from "./peers.ts";
import { SpeedtestService } from "./speedtest.ts";

// Port forwarding. A TCP connection to an app's listener becomes one mux stream whose first bytes
// name the target; the peer checks it against its expose list, connects there, answers and pipes.
// UDP datagrams travel as link datagrams, each carrying its flow id and target, so a lost one costs
// nothing but itself; a target the peer refuses comes back as a refusal for the flow.

/** A UDP flow with no traffic for this long is forgotten, on both sides. */
export const UDP_FLOW_IDLE_MS = 60_000;
/** Overrides UDP_FLOW_IDLE_MS, in milliseconds (tests shorten it). */
export const ENV_UDP_FLOW_IDLE_MS = "INP2P_UDP_FLOW_IDLE_MS";
const UDP_FLOW_SWEEP_MS = 5_000;

/** The UDP flow idle time from the environment, or the default; anything but a positive integer is an error. */
export function udpFlowIdleMsFrom(env: Record<string, string | undefined>): number {
  const text = env[ENV_UDP_FLOW_IDLE_MS];
  if (text === undefined || text === "") return UDP_FLOW_IDLE_MS;
  const ms = Number(text);
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new Error(`${ENV_UDP_FLOW_IDLE_MS} must be a positive number of milliseconds, not "${text}"`);
  return ms;
}

/** Flows one app (or one link) may hold at once. */
const MAX_UDP_FLOWS = 1024;
/** Datagrams held for a UDP flow while its socket connects (resolves its target). */
const MAX_QUEUED_BEFORE_CONNECT = 64;
/** How long a new connection waits for a link to its peer. */
const LINK_WAIT_MS = 8_000;
/** The same warning about one app (its peer away, a stranger refused) goes out at most once in this long. */
const APP_WARNING_WINDOW_MS = 10_000;
/**
 * When one end of a forwarded connection fails (the target or the local client closed under our
 * writes), what it sent before still goes to the other end, and the stream is reset after this long.
 */
const STREAM_LINGER_MS = 2_000;
/** A refused UDP flow is told so at most once in this long, however much the requester sends. */
const UDP_REFUSAL_INTERVAL_MS = 1_000;

export type AppState = "starting" | "listening" | "disabled" | "failed";

export interface AppStatus {
  name: string;
  protocol: "tcp" | "udp";
  listen: string;
  peer: string;
  target: string;
  state: AppState;
  error?: string;
  connections: number;
  totalConnections: number;
  /** The last refusal or failure at the peer, saying what to change where; cleared by the next success. */
  problem: string | null;
}

/** What the requesting side says when the serving node refused or could not reach its target. */
export function describeRefusal(app: string, peer: string, target: string, code: RefusalCode, error?: string): string {
  if (code === "NOT_EXPOSED") return `app ${app}: ${peer} refused ${target} (not exposed there): add "${target}" to expose in [client] on node ${peer}`;
  return `app ${app}: ${peer} cannot reach ${target}${error ? `: ${error}` : ""}`;
}

function allowList(cidrs: string[] | undefined): BlockList | undefined {
  if (!cidrs?.length) return undefined;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [network, prefix] = cidr.split("/");
    list.addSubnet(network!, Number(prefix), isIPv6(network!) ? "ipv6" : "ipv4");
  }
  return list;
}

const allowed = (list: BlockList | undefined, address: string) =>
  !list || list.check(address.replace(/^::ffff:/, ""), isIPv6(address) && !address.startsWith("::ffff:") ? "ipv6" : "ipv4");

/**
 * This node's UDP app flows by id. Ids are unique across all apps, so a reply reaches only the flow
 * it answers, and only from the peer that flow was sent to.
 */
export class UdpFlowIds {
  private readonly flows = new Map<number, { peer: string; deliver: (payload: Buffer) => void; refused: (code: RefusalCode) => void }>();

  /** Starts at random, so a restarted node's flows do not continue its previous run's flows at a peer. */
  constructor(private nextId = randomInt(0, 2 ** 32)) {}

  open(peer: string, deliver: (payload: Buffer) => void, refused: (code: RefusalCode) => void = () => {}): number {
    // Ids wrap at 2^32; skip one still in use (at most MAX_UDP_FLOWS per app are).
    while (this.flows.has(this.nextId)) this.nextId = (this.nextId + 1) >>> 0;
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0;
    this.flows.set(id, { peer, deliver, refused });
    return id;
  }

  close(id: number): void {
    this.flows.delete(id);
  }

  deliver(peer: string, id: number, payload: Buffer): void {
    const flow = this.flows.get(id);
    if (flow?.peer === peer) flow.deliver(payload);
  }

  refused(peer: string, id: number, code: RefusalCode): void {
    const flow = this.flows.get(id);
    if (flow?.peer === peer) flow.refused(code);
  }
}

/** One [[client.apps]] entry: a local listener whose traffic goes to `target` as seen from `peer`. */
export class App {
  state: AppState = "starting";
  error?: string;
  connections = 0;
  totalConnections = 0;
  problem?: string;
  private server?: Server;
  private udp?: UdpSocket;
  private readonly allow: BlockList | undefined;
  private readonly warnings: RepeatedWarnings;
  /** Local UDP clients by "address:port". */
  private readonly flows = new Map<string, { id: number; lastUsed: number }>();
  private sweepTimer?: ReturnType<typeof setInterval>;

  constructor(
    readonly config: AppConfig,
    private readonly peers: PeerManager,
    private readonly flowIds: UdpFlowIds,
    private readonly logger: Logger,
    private readonly udpFlowIdleMs = UDP_FLOW_IDLE_MS,
  ) {
    this.allow = allowList(config.allow);
    this.warnings = new RepeatedWarnings(logger, APP_WARNING_WINDOW_MS);
  }

  async start(): Promise<void> {
    if (!this.config.enabled) {
      this.state = "disabled";
      return;
    }
    const { host, port } = splitEndpoint(this.config.listen);
    try {
      if (this.config.protocol === "tcp") await this.listenTcp(host, port);
      else await this.listenUdp(host, port);
      this.state = "listening";
      this.logger.info("app listening", { app: this.config.name, listen: this.config.listen, peer: this.config.peer, target: this.config.target });
    } catch (err) {
      this.state = "failed";
      this.error = `cannot listen on ${this.config.listen}: ${(err as Error).message}`;
      this.logger.error(`app ${this.config.name}: ${this.error}`);
    }
  }

  stop(): void {
    this.server?.close();
    this.server = undefined;
    this.udp?.close();
    this.udp = undefined;
    clearInterval(this.sweepTimer);
    for (const flow of this.flows.values()) this.flowIds.close(flow.id);
    this.flows.clear();
  }

  status(): AppStatus {
    const { name, protocol, listen, peer, target } = this.config;
    // A listener that failed says so; else a denial of the server's ACL that keeps this app from its peer.
    const error = this.error ?? this.peers.denial(peer);
    return { name, protocol, listen, peer, target, state: this.state, error, connections: this.connections, totalConnections: this.totalConnections, problem: this.problem ?? null };
  }

  private refused(code: RefusalCode, error?: string): void {
    const { name, peer, target } = this.config;
    this.problem = describeRefusal(name, peer, target, code, error);
    this.warnings.warn(`refused:${code}`, this.problem);
  }

  private listenTcp(host: string, port: number): Promise<void> {
    // allowHalfOpen: a client that half-closes must still get the answer back (as through a plain TCP relay).
    const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.acceptTcp(socket));
    this.server = server;
    return new Promise((done, fail) => {
      server.once("error", fail);
      server.listen(port, host, () => {
        server.off("error", fail);
        server.on("error", (err) => this.logger.warn(`app ${this.config.name}: listener error`, { error: err.message }));
        done();
      });
    });
  }

  private acceptTcp(socket: Socket): void {
    const from = socket.remoteAddress ?? "";
    if (!allowed(this.allow, from)) {
      this.warnings.warn(`allow:${from}`, `app ${this.config.name}: refused a connection from ${from} (not in allow)`);
      socket.destroy();
      return;
    }
    const beforeLink = () => socket.destroy();
    socket.on("error", beforeLink);
    socket.pause();
    this.connections++;
    this.totalConnections++;
    socket.once("close", () => this.connections--);
    withTimeout(this.peers.connect(this.config.peer), LINK_WAIT_MS, `no link to ${this.config.peer} within ${LINK_WAIT_MS / 1000} s`)
      .then((link) => {
        if (socket.destroyed) return;
        const stream = link.mux.openStream();
        stream.write(encodeStreamHeader({ target: this.config.target }));
        socket.off("error", beforeLink);
        // The connection's bytes go at once; the peer's answer comes before the target's first byte.
        pipeBothWays(socket, stream, (err) => this.logger.debug("app connection ended with an error", { app: this.config.name, error: err.message }), false);
        socket.resume();
        readAnswer(stream).then(
          (answered) => {
            if (!answered) {
              // The stream ended or failed before the serving node answered: nothing will come.
              socket.destroy();
              return;
            }
            const { answer, rest } = answered;
            if (!answer.ok) {
              this.refused(answer.code, answer.error);
              stream.destroy();
              socket.destroy();
              return;
            }
            this.problem = undefined;
            if (socket.destroyed) return;
            if (rest.length) socket.write(rest);
            stream.pipe(socket);
          },
          (err: Error) => {
            this.warnings.warn(`answer:${err.message}`, `app ${this.config.name}: ${this.config.peer} did not answer the connection as inp2p does (${err.message}); is it running an older inp2pc?`);
            stream.destroy();
            socket.destroy();
          },
        );
      })
      .catch((err: Error) => {
        this.cannotReachPeer(err);
        socket.destroy();
      });
  }

  private listenUdp(host: string, port: number): Promise<void> {
    if (Buffer.byteLength(this.config.target) > MAX_UDP_TARGET_BYTES) return Promise.reject(new Error(`a UDP app's target may be at most ${MAX_UDP_TARGET_BYTES} bytes long`));
    const udp = createSocket(isIPv6(host) ? "udp6" : "udp4");
    this.udp = udp;
    udp.on("message", (payload, from) => this.forwardUdp(payload, from));
    this.sweepTimer = setInterval(() => this.sweepFlows(), Math.min(UDP_FLOW_SWEEP_MS, this.udpFlowIdleMs));
    return new Promise((done, fail) => {
      udp.once("error", fail);
      udp.bind(port, host, () => {
        udp.off("error", fail);
        udp.on("error", (err) => this.logger.debug(`app ${this.config.name}: UDP error`, { error: err.message }));
        done();
      });
    });
  }

  private forwardUdp(payload: Buffer, from: { address: string; port: number }): void {
    if (!allowed(this.allow, from.address)) return;
    const key = `${from.address}:${from.port}`;
    let flow = this.flows.get(key);
    if (!flow) {
      if (this.flows.size >= MAX_UDP_FLOWS) return;
      const client = { address: from.address, port: from.port };
      const deliver = (reply: Buffer) => {
        this.problem = undefined;
        this.udp?.send(reply, client.port, client.address);
      };
      flow = { id: this.flowIds.open(this.config.peer, deliver, (code) => this.refused(code)), lastUsed: 0 };
      this.flows.set(key, flow);
      this.totalConnections++;
      this.connections = this.flows.size;
    }
    flow.lastUsed = Date.now();
    const link = this.peers.link(this.config.peer);
    if (link) link.sendDatagram(encodeUdpAppDatagram(flow.id, this.config.target, payload));
    else void this.peers.connect(this.config.peer).catch((err: Error) => this.cannotReachPeer(err));
  }

  /** Once per window and reason (an app may fail many connections for one reason). */
  private cannotReachPeer(err: Error): void {
    this.warnings.warn(`peer:${err.message}`, `app ${this.config.name}: cannot reach peer ${this.config.peer}: ${err.message}`);
  }

  private sweepFlows(): void {
    const cutoff = Date.now() - this.udpFlowIdleMs;
    for (const [key, flow] of this.flows)
      if (flow.lastUsed < cutoff) {
        this.flows.delete(key);
        this.flowIds.close(flow.id);
      }
    this.connections = this.flows.size;
  }
}

/**
 * Pipes a local TCP socket and a mux stream into each other. A clean close on either side ends the
 * other through pipe(), its queued data still going out. When the local socket fails (a target or a
 * client that closed under our writes, which is how many end a conversation), what it sent before
 * still goes out, the other end gets a FIN, and the stream is reset after STREAM_LINGER_MS in case
 * that end keeps sending. When the stream fails (reset, or its link is gone), the socket is destroyed.
 * Without streamToSocket, the caller pipes the stream to the socket later (after the peer's answer).
 */
function pipeBothWays(socket: Socket, stream: Duplex, onSocketError: (err: Error) => void, streamToSocket = true): void {
  socket.pipe(stream);
  if (streamToSocket) stream.pipe(socket);
  stream.on("error", () => socket.destroy());
  socket.on("error", (err) => {
    onSocketError(err);
    stream.unpipe(socket);
    if (stream.destroyed) return;
    stream.end();
    stream.resume(); // nowhere to deliver what still comes
    const linger = setTimeout(() => stream.destroy(), STREAM_LINGER_MS);
    stream.once("close", () => clearTimeout(linger));
  });
}

/**
 * The serving node's answer at the start of a stream, and the bytes after it (the stream is left
 * paused); undefined when the stream ends or fails first. Rejects with AppProtocolError for a malformed answer.
 */
export function readAnswer(stream: Duplex): Promise<{ answer: StreamAnswer; rest: Buffer } | undefined> {
  return readFramed(stream, decodeStreamAnswer);
}

/** `promise`, or an Error(message) after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(message)), ms);
    promise.then(
      (value) => (clearTimeout(timer), resolve(value)),
      (err) => (clearTimeout(timer), reject(err)),
    );
  });
}

/**
 * A UDP flow on the serving side: a socket connected to the target, for one flow id of one peer.
 * Replies go back on the link the flow's latest datagram came on, so a flow that moves from a relay
 * to a direct path keeps its socket (the target sees one client, not a new one at every switch).
 */
class ServedUdpFlow {
  private socket?: UdpSocket;
  lastUsed = Date.now();
  /** Set when expose refused the target (or it did not resolve): datagrams are dropped, and the requester told. */
  refusal?: RefusalCode;
  private lastRefusalSentAt = -Infinity;
  private ready = false;
  private closed = false;
  private readonly queued: Buffer[] = [];

  constructor(
    public link: Link,
    private readonly flowId: number,
    decision: Promise<ExposeDecision>,
    private readonly onError: (err: Error) => void,
    private readonly onRefused: (refusal: ExposeDecision & { ok: false }) => void,
  ) {
    decision.then((decided) => this.decided(decided)).catch(onError);
  }

  private decided(decision: ExposeDecision): void {
    if (this.closed) return;
    if (!decision.ok) {
      this.refusal = decision.code;
      this.queued.length = 0;
      this.onRefused(decision);
      this.tellRefused();
      return;
    }
    const socket = createSocket(isIPv6(decision.host) ? "udp6" : "udp4");
    this.socket = socket;
    socket.on("error", this.onError);
    socket.on("message", (reply) => this.link.sendDatagram(encodeUdpReplyDatagram(this.flowId, reply)));
    socket.connect(decision.port, decision.host, () => {
      if (this.closed) return;
      this.ready = true;
      for (const queued of this.queued.splice(0)) socket.send(queued);
    });
  }

  send(payload: Buffer): void {
    if (this.closed) return;
    this.lastUsed = Date.now();
    if (this.refusal) this.tellRefused();
    else if (this.ready) this.socket!.send(payload);
    else if (this.queued.length < MAX_QUEUED_BEFORE_CONNECT) this.queued.push(Buffer.from(payload));
  }

  /** Rate-limited per flow, so a requester cannot make this node send more than it receives. */
  private tellRefused(): void {
    const now = Date.now();
    if (!this.refusal || this.link.closed || now - this.lastRefusalSentAt < UDP_REFUSAL_INTERVAL_MS) return;
    this.lastRefusalSentAt = now;
    this.link.sendDatagram(encodeUdpRefusedDatagram(this.flowId, this.refusal));
  }

  /** Idempotent: the idle sweep, the link's close and stop() may all get here. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queued.length = 0;
    this.socket?.close();
  }
}

export interface AppServiceInit {
  flowIds: UdpFlowIds;
  logger: Logger;
  /** This node's name, for the refusal it logs. */
  node: string;
  /** What peers may reach through this node. */
  expose: ExposePolicy;
  /** Told of a target refused as not exposed, at most once per window per peer and target (for the server's audit). */
  onRefused?: (peer: string, target: string, protocol: "tcp" | "udp") => void;
  /** @default UDP_FLOW_IDLE_MS */
  udpFlowIdleMs?: number;
  /** Serves the speedtest streams peers open. @default a SpeedtestService of its own */
  speedtest?: SpeedtestService;
}

/** The receiving side: streams and datagrams a peer sends to reach targets from here, and replies to our own UDP flows. */
export class AppService {
  /** By peer, flow id and target (a requester's flow ids are unique across its apps and start at random). */
  private readonly udpFlows = new Map<string, ServedUdpFlow>();
  private readonly sweepTimer: ReturnType<typeof setInterval>;
  private readonly flowIds: UdpFlowIds;
  private readonly logger: Logger;
  private readonly node: string;
  private readonly expose: ExposePolicy;
  private readonly udpFlowIdleMs: number;
  private readonly onRefused: NonNullable<AppServiceInit["onRefused"]>;
  private readonly speedtest: SpeedtestService;
  /** Refusals and unreachable targets, once per window per peer and target. */
  private readonly warnings: RepeatedWarnings;

  constructor(init: AppServiceInit) {
    ({ flowIds: this.flowIds, logger: this.logger, node: this.node, expose: this.expose } = init);
    this.speedtest = init.speedtest ?? new SpeedtestService({ logger: init.logger, node: init.node });
    this.udpFlowIdleMs = init.udpFlowIdleMs ?? UDP_FLOW_IDLE_MS;
    this.onRefused = init.onRefused ?? (() => {});
    this.warnings = new RepeatedWarnings(this.logger, APP_WARNING_WINDOW_MS);
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(UDP_FLOW_SWEEP_MS, this.udpFlowIdleMs));
  }

  attach(peer: string, link: Link): void {
    link.mux.onStream((stream) => this.acceptStream(peer, stream));
    link.onDatagram(UDP_APP_DATAGRAM_TYPES, (datagram) => this.receiveDatagram(peer, link, datagram));
    link.onClose(() => {
      for (const [key, flow] of this.udpFlows) if (flow.link === link) this.closeFlow(key, flow);
    });
  }

  stop(): void {
    clearInterval(this.sweepTimer);
    for (const [key, flow] of this.udpFlows) this.closeFlow(key, flow);
  }

  private acceptStream(peer: string, stream: Duplex): void {
    let buffered = Buffer.alloc(0);
    stream.on("error", () => stream.destroy());
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      let decoded: ReturnType<typeof decodeStreamOpening>;
      try {
        decoded = decodeStreamOpening(buffered);
      } catch (err) {
        this.logger.warn(`peer ${peer} opened a stream with a malformed header: ${(err as Error).message}`);
        return stream.destroy();
      }
      if (!decoded) return;
      stream.off("data", onData);
      stream.pause();
      const { opening, rest } = decoded;
      if (opening.kind === "speedtest") return this.speedtest.serve(peer, stream, opening.request, rest);
      const { header } = opening;
      this.expose
        .decide(header.target)
        .then((decision) => {
          if (stream.destroyed) return;
          if (!decision.ok) return this.refuseStream(peer, stream, header.target, decision);
          const socket = tcpConnect({ host: decision.host, port: decision.port, noDelay: true, allowHalfOpen: true });
          const cannotConnect = (err: Error) => this.refuseStream(peer, stream, header.target, { ok: false, code: "UNREACHABLE", error: err.message });
          socket.once("error", cannotConnect);
          socket.once("connect", () => {
            socket.off("error", cannotConnect);
            if (stream.destroyed) return void socket.destroy();
            stream.write(encodeStreamAnswer({ ok: true }));
            if (rest.length) socket.write(rest);
            pipeBothWays(socket, stream, (err) => this.logger.debug("target connection ended with an error", { peer, target: header.target, error: err.message }));
            stream.resume();
          });
        })
        .catch((err: Error) => {
          this.logger.warn(`cannot serve peer ${peer}'s stream to ${header.target}: ${err.message}`);
          stream.destroy();
        });
    };
    stream.on("data", onData);
  }

  /** Logs why, answers the requester, and drops what it already sent. */
  private refuseStream(peer: string, stream: Duplex, target: string, refusal: ExposeDecision & { ok: false }): void {
    this.warnRefused(peer, "stream", target, refusal);
    if (stream.destroyed) return;
    stream.end(encodeStreamAnswer(refusal));
    stream.resume();
    const linger = setTimeout(() => stream.destroy(), STREAM_LINGER_MS);
    stream.once("close", () => clearTimeout(linger));
  }

  private warnRefused(peer: string, what: "stream" | "UDP datagrams", target: string, refusal: ExposeDecision & { ok: false }): void {
    const kind = `${refusal.code}:${what}:${peer}:${target}`;
    if (refusal.code === "NOT_EXPOSED") {
      const told = this.warnings.warn(
        kind,
        `refused peer ${peer}'s ${what} to ${target}: not exposed; to allow it, add "${target}" to expose in [client] of this node (${this.node})`,
      );
      if (told) this.onRefused(peer, target, what === "stream" ? "tcp" : "udp");
    } else this.warnings.warn(kind, `cannot reach ${target} for peer ${peer}: ${refusal.error}`);
  }

  private receiveDatagram(peer: string, link: Link, datagram: Buffer): void {
    let decoded: ReturnType<typeof decodeUdpAppDatagram>;
    try {
      decoded = decodeUdpAppDatagram(datagram);
    } catch (err) {
      if (!(err instanceof AppProtocolError)) throw err;
      this.logger.debug(`peer ${peer} sent a malformed UDP app datagram: ${err.message}`);
      return;
    }
    if (!decoded) return; // not an app datagram (the link hands this handler only those)
    if (decoded.type === "reply") return this.flowIds.deliver(peer, decoded.flowId, decoded.payload);
    if (decoded.type === "refused") return this.flowIds.refused(peer, decoded.flowId, decoded.code);
    const { flowId, target, payload } = decoded;
    if (link.closed) return;
    const key = `${peer}/${flowId}/${target}`;
    let flow = this.udpFlows.get(key);
    if (!flow) {
      if (this.udpFlows.size >= MAX_UDP_FLOWS) return;
      flow = new ServedUdpFlow(
        link,
        flowId,
        this.expose.decide(target),
        (err) => this.logger.debug(`UDP flow to ${target} for ${peer}`, { error: err.message }),
        (refusal) => this.warnRefused(peer, "UDP datagrams", target, refusal),
      );
      this.udpFlows.set(key, flow);
    }
    flow.link = link;
    flow.send(payload);
  }

  private closeFlow(key: string, flow: ServedUdpFlow): void {
    this.udpFlows.delete(key);
    flow.close();
  }

  private sweep(): void {
    const cutoff = Date.now() - this.udpFlowIdleMs;
    for (const [key, flow] of this.udpFlows)
      if (flow.lastUsed < cutoff) {
        this.logger.debug("UDP flow closed after idling", { flow: key });
        this.closeFlow(key, flow);
      }
  }
}
