import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { BlockList, connect as tcpConnect, createServer, isIPv6, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { AppConfig } from "../config/index.ts";
import type { Logger } from "../log/index.ts";
import { DatagramType, splitEndpoint, type Link } from "../transport/index.ts";
import type { PeerManager } from "./peers.ts";

// Port forwarding. A TCP connection to an app's listener becomes one mux stream whose first bytes
// name the target; the peer connects there and pipes. UDP datagrams travel as link datagrams, each
// carrying its flow id and target, so a lost one costs nothing but itself.

/** Longest stream header accepted from a peer. */
const MAX_STREAM_HEADER_BYTES = 1024;
/** A UDP flow with no traffic for this long is forgotten, on both sides. */
export const UDP_FLOW_IDLE_MS = 60_000;
const UDP_FLOW_SWEEP_MS = 5_000;
/** Flows one app (or one link) may hold at once. */
const MAX_UDP_FLOWS = 1024;
/** Datagrams held for a UDP flow while its socket connects (resolves its target). */
const MAX_QUEUED_BEFORE_CONNECT = 64;
/** How long a new connection waits for a link to its peer. */
const LINK_WAIT_MS = 8_000;

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

/** One [[client.apps]] entry: a local listener whose traffic goes to `target` as seen from `peer`. */
export class App {
  state: AppState = "starting";
  error?: string;
  connections = 0;
  totalConnections = 0;
  private server?: Server;
  private udp?: UdpSocket;
  private readonly allow: BlockList | undefined;
  private readonly flows = new Map<string, { id: number; lastUsed: number }>();
  private readonly flowAddresses = new Map<number, { address: string; port: number }>();
  private nextFlowId = 1;
  private sweepTimer?: ReturnType<typeof setInterval>;

  constructor(
    readonly config: AppConfig,
    private readonly peers: PeerManager,
    private readonly logger: Logger,
  ) {
    this.allow = allowList(config.allow);
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
    this.udp?.close();
    clearInterval(this.sweepTimer);
  }

  status(): AppStatus {
    const { name, protocol, listen, peer, target } = this.config;
    return { name, protocol, listen, peer, target, state: this.state, error: this.error, connections: this.connections, totalConnections: this.totalConnections };
  }

  /** Replies from the peer for this app's UDP flows. */
  deliverUdpReply(flowId: number, payload: Buffer): void {
    const client = this.flowAddresses.get(flowId);
    if (client && this.udp) this.udp.send(payload, client.port, client.address);
  }

  owns(flowId: number): boolean {
    return this.flowAddresses.has(flowId);
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
      this.logger.warn(`app ${this.config.name}: refused a connection from ${from} (not in allow)`);
      socket.destroy();
      return;
    }
    socket.on("error", () => socket.destroy());
    socket.pause();
    this.connections++;
    this.totalConnections++;
    socket.once("close", () => this.connections--);
    withTimeout(this.peers.connect(this.config.peer), LINK_WAIT_MS, `no link to ${this.config.peer} within ${LINK_WAIT_MS / 1000} s`)
      .then((link) => {
        if (socket.destroyed) return;
        const stream = link.mux.openStream();
        stream.write(encodeStreamHeader({ target: this.config.target }));
        pipeBothWays(socket, stream);
        socket.resume();
      })
      .catch((err: Error) => {
        this.logger.warn(`app ${this.config.name}: cannot reach peer ${this.config.peer}: ${err.message}`);
        socket.destroy();
      });
  }

  private listenUdp(host: string, port: number): Promise<void> {
    const udp = createSocket(isIPv6(host) ? "udp6" : "udp4");
    this.udp = udp;
    udp.on("message", (payload, from) => this.forwardUdp(payload, from));
    this.sweepTimer = setInterval(() => this.sweepFlows(), UDP_FLOW_SWEEP_MS);
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
      flow = { id: this.nextFlowId++ >>> 0, lastUsed: 0 };
      this.flows.set(key, flow);
      this.flowAddresses.set(flow.id, { address: from.address, port: from.port });
      this.totalConnections++;
      this.connections = this.flows.size;
    }
    flow.lastUsed = Date.now();
    const link = this.peers.link(this.config.peer);
    if (link) link.sendDatagram(encodeUdpApp(flow.id, this.config.target, payload));
    else void this.peers.connect(this.config.peer).catch((err: Error) => this.logger.debug(`app ${this.config.name}: no link`, { error: err.message }));
  }

  private sweepFlows(): void {
    const cutoff = Date.now() - UDP_FLOW_IDLE_MS;
    for (const [key, flow] of this.flows)
      if (flow.lastUsed < cutoff) {
        this.flows.delete(key);
        this.flowAddresses.delete(flow.id);
      }
    this.connections = this.flows.size;
  }
}

export function encodeStreamHeader(header: { target: string }): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const out = Buffer.allocUnsafe(2 + json.length);
  out.writeUInt16BE(json.length);
  json.copy(out, 2);
  return out;
}

function encodeUdpApp(flowId: number, target: string, payload: Buffer): Buffer {
  const targetBytes = Buffer.from(target);
  const out = Buffer.allocUnsafe(6 + targetBytes.length + payload.length);
  out[0] = DatagramType.udpApp;
  out.writeUInt32BE(flowId, 1);
  out[5] = targetBytes.length;
  targetBytes.copy(out, 6);
  payload.copy(out, 6 + targetBytes.length);
  return out;
}

function pipeBothWays(socket: Socket, stream: Duplex): void {
  socket.pipe(stream);
  stream.pipe(socket);
  const destroyBoth = () => {
    socket.destroy();
    stream.destroy();
  };
  socket.on("error", destroyBoth);
  stream.on("error", destroyBoth);
  // A clean close has already ended the stream through pipe(), and its queued data must still go out;
  // only an abnormal close resets it.
  socket.on("close", (hadError) => hadError && stream.destroy());
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(message)), ms);
    promise.then(
      (value) => (clearTimeout(timer), resolve(value)),
      (err) => (clearTimeout(timer), reject(err)),
    );
  });
}

/** The receiving side: streams and datagrams a peer sends to reach targets from here. */
export class AppService {
  private readonly udpFlows = new Map<string, { socket: UdpSocket; lastUsed: number; ready: boolean; queued: Buffer[] }>();
  private readonly sweepTimer = setInterval(() => this.sweep(), UDP_FLOW_SWEEP_MS);

  constructor(
    private readonly apps: App[],
    private readonly logger: Logger,
  ) {}

  attach(peer: string, link: Link): void {
    link.mux.onStream((stream) => this.acceptStream(peer, stream));
    link.onDatagram((datagram) => this.receiveDatagram(peer, link, datagram));
  }

  stop(): void {
    clearInterval(this.sweepTimer);
    for (const flow of this.udpFlows.values()) flow.socket.close();
  }

  private acceptStream(peer: string, stream: Duplex): void {
    let header = Buffer.alloc(0);
    stream.on("error", () => stream.destroy());
    const onData = (chunk: Buffer) => {
      header = Buffer.concat([header, chunk]);
      if (header.length < 2) return;
      const length = header.readUInt16BE(0);
      if (length > MAX_STREAM_HEADER_BYTES) return stream.destroy(new Error("stream header too large"));
      if (header.length < 2 + length) return;
      stream.off("data", onData);
      stream.pause();
      let target: string;
      try {
        target = (JSON.parse(header.subarray(2, 2 + length).toString()) as { target: string }).target;
        if (typeof target !== "string" || !/^.+:\d{1,5}$/.test(target)) throw new Error("bad target");
      } catch {
        this.logger.warn(`peer ${peer} opened a stream with a malformed header`);
        return stream.destroy();
      }
      const rest = header.subarray(2 + length);
      const { host, port } = splitEndpoint(target);
      const socket = tcpConnect({ host, port, noDelay: true, allowHalfOpen: true });
      socket.once("connect", () => {
        if (rest.length) socket.write(rest);
        pipeBothWays(socket, stream);
        stream.resume();
      });
      socket.once("error", (err) => {
        this.logger.warn(`cannot reach ${target} for peer ${peer}: ${err.message}`);
        stream.destroy();
      });
    };
    stream.on("data", onData);
  }

  private receiveDatagram(peer: string, link: Link, datagram: Buffer): void {
    if (datagram.length < 5) return;
    const flowId = datagram.readUInt32BE(1);
    if (datagram[0] === DatagramType.udpReply) {
      this.apps.find((app) => app.owns(flowId))?.deliverUdpReply(flowId, datagram.subarray(5));
      return;
    }
    if (datagram[0] !== DatagramType.udpApp || datagram.length < 6) return;
    const targetLength = datagram[5]!;
    if (datagram.length < 6 + targetLength) return;
    const target = datagram.subarray(6, 6 + targetLength).toString();
    const payload = datagram.subarray(6 + targetLength);
    const key = `${link.sessionKey}/${flowId}`;
    let flow = this.udpFlows.get(key);
    if (!flow) {
      if (this.udpFlows.size >= MAX_UDP_FLOWS || !/^.+:\d{1,5}$/.test(target)) return;
      const { host, port } = splitEndpoint(target);
      const socket = createSocket(isIPv6(host) ? "udp6" : "udp4");
      socket.on("error", (err) => this.logger.debug(`UDP flow to ${target} for ${peer}`, { error: err.message }));
      socket.on("message", (reply) => {
        const out = Buffer.allocUnsafe(5 + reply.length);
        out[0] = DatagramType.udpReply;
        out.writeUInt32BE(flowId, 1);
        reply.copy(out, 5);
        link.sendDatagram(out);
      });
      const created = { socket, lastUsed: 0, ready: false, queued: [] as Buffer[] };
      socket.connect(port, host, () => {
        created.ready = true;
        for (const queued of created.queued.splice(0)) socket.send(queued);
      });
      flow = created;
      this.udpFlows.set(key, flow);
      link.onClose(() => {
        this.udpFlows.delete(key);
        socket.close();
      });
    }
    flow.lastUsed = Date.now();
    if (flow.ready) flow.socket.send(payload);
    else if (flow.queued.length < MAX_QUEUED_BEFORE_CONNECT) flow.queued.push(Buffer.from(payload));
  }

  private sweep(): void {
    const cutoff = Date.now() - UDP_FLOW_IDLE_MS;
    for (const [key, flow] of this.udpFlows)
      if (flow.lastUsed < cutoff) {
        this.udpFlows.delete(key);
        flow.socket.close();
      }
  }
}
