import { lookup } from "node:dns/promises";
import { createServer, isIPv4, type Server, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import type { Logger } from "../log/index.ts";
import { addressScope, MAX_LAN_CANDIDATES, type Candidates, type NatInfo } from "../protocol/index.ts";
import { freshMappings, isPredictable } from "../nat/allocation.ts";
import { tcpBinding } from "../nat/detect.ts";
import { PIECE_TAG } from "../protocol/pieces.ts";
import { bindingRequest, decodeStun, looksLikeStun, mappedAddress, newTransactionId } from "../protocol/stun.ts";
import { holdTcpPort, type TcpPortHold } from "../net/index.ts";
import { loadLibc } from "../sdwan/ffi.ts";
import { Envelope, MAX_TCP_FRAME_BYTES, SESSION_ID_BYTES } from "./constants.ts";
import type { PathReceiver } from "./path.ts";
import { cutIntoPieces, PieceJoiner, piecesBytes } from "./pieces.ts";
import { GSO_MAX_BYTES, GSO_MAX_SEGMENT_BYTES, GSO_MAX_SEGMENTS, udpGsoSender, type GsoSend } from "./udp-gso.ts";

export const endpointText = (address: string, port: number) => (address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`);

/** "host:port" or "[v6]:port" into its parts. */
export function splitEndpoint(remote: string): { host: string; port: number } {
  const colon = remote.lastIndexOf(":");
  return { host: remote.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(remote.slice(colon + 1)) };
}
export const STUN_MAPPING_TIMEOUT_MS = 1_500;
/**
 * When the mapping request goes out again, unanswered: soon at first, since a restarted node's peers
 * wait for this mapping before they can plan a link (one lost packet used to cost 300 ms).
 */
const STUN_MAPPING_SEND_AT_MS = [0, 120, 300, 550, 900];
const UDP_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SOL_UDP = 17;
const UDP_GRO = 104;
/** Packets handed to the kernel in one sendMany at most (sendmmsg takes up to 1024). */
const UDP_SEND_BATCH_MAX_PACKETS = 256;
/**
 * A packet sent when nothing went out for this long leaves at once instead of at the tick's end: a lone
 * packet (an idle link's ping) need not wait for the rest of the tick; under load sends are closer
 * together than this, so they keep being batched.
 */
export const LONE_SEND_IDLE_MS = 1;
/** A packet received when none came for this long is routed at once, not queued (see enqueue). */
export const LONE_RECEIVE_IDLE_MS = 1;
/** Runs shorter than this go with sendMany: GSO pays from a few datagrams on. */
const GSO_MIN_RUN_DATAGRAMS = 4;
/** GSO sends that failed in a row before the endpoint stops trying them. */
const GSO_FAILURES_BEFORE_OFF = 16;
/**
 * Memory the records of one tick are sealed into (sendBuffer): at least a full batch of MTU-sized
 * packets, so a tick rarely needs a second one.
 */
const SEND_SLAB_BYTES = 512 * 1024;
/** Received UDP packets waiting to be handled; about a KCP window and a half. */
const UDP_QUEUE_MAX_PACKETS = 4096;
/** Longest stretch spent handling queued UDP before other I/O gets a turn. */
const UDP_SLICE_MS = 5;
/**
 * A sealed packet from an address with no path is tried against at most this many paths to the same
 * IP (one AES-GCM open each): the most a stranger's packet can cost, however many links there are.
 */
export const ROAM_TRIALS_MAX = 8;

export interface EndpointInit {
  logger: Logger;
  /** Transports offered to peers; default both. */
  transports?: readonly ("udp" | "tcp")[];
  udpPort?: number; // default: any
  tcpPort?: number; // default: any
  host?: string; // bind address, default 0.0.0.0
  /**
   * Addresses reached through this node's SDWAN overlay: never a path for a peer link (the link would
   * run over itself), so neither offered nor tried.
   */
  tunnelled?(ip: string): boolean;
}

/** Where a UDP packet came from. */
export interface UdpSource {
  address: string;
  port: number;
}

type UdpHandler = (packet: Buffer, from: UdpSource) => void;

/** Takes a packet from a remote; true when the packet was its own (it opened under its session). */
type AddressHandler = (packet: Buffer) => boolean;

interface AddressRoute {
  /** Packets from its address while it is the only route there. */
  handler: AddressHandler;
  /**
   * Whether a packet from `remote` is this route's, counting no refusal: asked in turn when several
   * routes share an address (two links, or a handshake beside a path, between the same two sockets).
   */
  claims: (packet: Buffer, remote: string) => boolean;
  /** An established path's IP: it may follow its peer to a new port of the same IP. */
  roaming?: { ip: string };
}

/** An established path's route: `move` re-keys it to the peer's new address. */
export interface PathRoute {
  move(remote: string): void;
  unroute(): void;
}

/**
 * A node's peer-facing sockets: one UDP socket (its public mapping is learned by STUN from this very
 * socket, so peers can reach it) and one TCP listener. Incoming UDP is routed by remote address to an
 * established path, else handshake packets by session id; a sealed packet from a new port of a path's
 * IP may move that path (roam()). Accepted TCP connections go to `onTcp`.
 */
export class PeerEndpoint {
  private udp: Bun.udp.Socket<"buffer"> | undefined;
  /** Takes the pieces peers on a lan link cut their large packets into (UDP_GRO on); see protocol/pieces.ts. */
  private piecesSocket: Bun.udp.Socket<"buffer"> | undefined;
  private readonly joiner = new PieceJoiner();
  private nextPacketId = 0;
  readonly tcp: Server;
  udpPublic: string | null = null;
  /**
   * Local port of the last STUN TCP probe and the public address it was seen from (TCP punch); null
   * when the probe got no answer, undefined until the first one ends.
   */
  tcpPunch: { localPort: number; mapped: string } | null | undefined = undefined;
  /** Keeps the TCP punch port ours between probes and punches (else any connect() on the host may take it). */
  private tcpPunchHold: TcpPortHold | undefined;
  private closing = false;
  /** What NAT detection found; set by the owner. */
  nat: NatInfo | undefined;
  /** Behind a sequentially allocating symmetric NAT: the public port of the latest fresh mapping. */
  predictBase: number | null = null;
  /** Routes by remote address, the newest first; almost always one. */
  private readonly byAddress = new Map<string, AddressRoute[]>();
  private readonly bySession = new Map<string, UdpHandler>();
  private readonly stunWaiters = new Map<string, (mapped: string | null) => void>();
  private tcpHandler: (socket: Socket) => void = (socket) => socket.destroy();
  /** Received packets waiting to be routed, flattened: packet, port, address, packet, port, address… */
  private queue: (Buffer | number | string | undefined)[] = [];
  /** Packets sent during this tick, flattened for sendMany: packet, port, host, packet, port, host… */
  private outbox: (Uint8Array | number | string)[] = [];
  private flushQueued = false;
  private lastSendAt = -Infinity;
  private lastRemote = { text: "", host: "", port: 0 };
  /** The remote a packet came from last, as text: most packets in a row come from one peer. */
  private lastSource = { text: "", address: "", port: 0 };
  private sendSlab = Buffer.allocUnsafe(0);
  private sendSlabUsed = 0;
  /** Sends runs of datagrams with UDP_SEGMENT; undefined without FFI. */
  private gsoSend?: GsoSend;
  private gsoFailures = 0;
  private queueHead = 0;
  private draining = false;
  private lastReceiveAt = -Infinity;
  /** Packets dropped because the receive queue was full. */
  droppedPackets = 0;

  constructor(private readonly init: EndpointInit) {
    this.tcp = createServer({ noDelay: true }, (socket) => this.tcpHandler(socket));
    this.tcp.on("error", (err) => init.logger.warn("peer TCP listener error", { error: err.message }));
  }

  async start(): Promise<void> {
    const host = this.init.host ?? "0.0.0.0";
    const logger = this.init.logger;
    this.udp = await Bun.udpSocket({
      hostname: host,
      port: this.init.udpPort ?? 0,
      binaryType: "buffer",
      socket: {
        data: (_socket, packet, port, address) => this.enqueue(packet, port, address),
        // ICMP errors (no answer at a port) land here. Bun 1.4 passes the error alone, not (socket, error) as typed.
        error: (...args: unknown[]) => logger.debug("peer UDP socket error", { error: String((args.find((arg) => arg instanceof Error) as Error | undefined)?.message) }),
      },
    });
    this.tune(this.udp, "peer UDP socket buffers left at their default", [SOL_SOCKET, SO_RCVBUF, UDP_SOCKET_BUFFER_BYTES], [SOL_SOCKET, SO_SNDBUF, UDP_SOCKET_BUFFER_BYTES]);
    const fd = (this.udp as unknown as { fd?: number }).fd;
    if (typeof fd === "number") this.gsoSend = udpGsoSender(fd);
    if (this.gsoSend) this.piecesSocket = await this.openPiecesSocket(host);
    await new Promise<void>((done, fail) => {
      this.tcp.once("error", fail);
      this.tcp.listen(this.init.tcpPort ?? 0, host, () => done());
    });
  }

  get bindHost(): string {
    return this.init.host ?? "0.0.0.0";
  }

  get udpPort(): number {
    return this.udp?.port ?? 0;
  }

  /** The port peers on a lan link may send pieces to; undefined without UDP_GRO or GSO here. */
  get piecesPort(): number | undefined {
    return this.piecesSocket?.port;
  }

  get tcpPort(): number {
    return (this.tcp.address() as { port: number }).port;
  }

  /** Whether `ip` is reached through the SDWAN overlay (EndpointInit.tunnelled). */
  tunnelled(ip: string): boolean {
    return this.init.tunnelled?.(ip) ?? false;
  }

  candidates(): Candidates {
    const bound = this.init.host ?? "0.0.0.0";
    // The server takes only a few LAN addresses, each in a private range (or loopback, from its own host).
    const lan = (
      bound !== "0.0.0.0"
        ? [bound]
        : Object.values(networkInterfaces())
            .flat()
            .filter((a) => a && a.family === "IPv4" && !a.internal && !this.tunnelled(a.address))
            .map((a) => a!.address)
    )
      .filter((ip) => addressScope(ip) === "private" || addressScope(ip) === "loopback")
      .slice(0, MAX_LAN_CANDIDATES);
    const publicIp = this.udpPublic?.split(":")[0];
    const udp = this.offers("udp");
    const tcp = this.offers("tcp");
    return {
      udpLan: udp ? lan.map((ip) => endpointText(ip, this.udpPort)) : [],
      tcpLan: tcp ? lan.map((ip) => endpointText(ip, this.tcpPort)) : [],
      udpPublic: udp ? this.udpPublic : null,
      // A listener behind a NAT is not reachable from outside; only a public host offers it.
      tcpPublic: tcp && this.nat?.natType === "public" && publicIp ? endpointText(publicIp, this.tcpPort) : null,
      tcpPunch: tcp ? this.tcpPunchCandidate() : null,
      ...(udp && this.predictBase !== null && isPredictable(this.nat) ? { udpPredict: { base: this.predictBase, delta: this.nat!.allocation!.delta! } } : {}),
    };
  }

  /**
   * The mapping offered for a TCP punch. A symmetric NAT maps each destination anew, so its probe's
   * address says nothing about the peer; a public node needs no punch (tcpPublic). Left out while the
   * first probe runs or the NAT type is not known: the server waits for it before planning a pair
   * only TCP can link.
   */
  private tcpPunchCandidate(): string | null | undefined {
    if (this.nat?.natType === "symmetric" || this.nat?.natType === "public") return null;
    if (this.tcpPunch === undefined || !this.nat) return undefined;
    return this.tcpPunch?.mapped ?? null;
  }

  offers(transport: "udp" | "tcp"): boolean {
    return (this.init.transports ?? ["udp", "tcp"]).includes(transport);
  }

  /**
   * Learns the public address of a local TCP port, keeping that port for a TCP punch: the port probed
   * before (its mapping is the one peers were told, and a plan may be under way), else a fresh one,
   * held from then on (where libc can be called) so that no other program's connection takes it.
   */
  async refreshTcpMapping(stunHost: string, stunTcpPort: number): Promise<void> {
    try {
      const server = { address: (await lookup(stunHost, { family: 4 })).address, port: stunTcpPort };
      const previousPort = this.tcpPunch?.localPort;
      let result = previousPort ? await tcpBinding(server, { localPort: previousPort }) : undefined;
      if (!result) {
        this.tcpPunchHold?.release();
        this.tcpPunchHold = holdTcpPort();
        result = await tcpBinding(server, { localPort: this.tcpPunchHold?.port });
      }
      if (this.closing) this.tcpPunchHold?.release(); // closed during the probe
      this.tcpPunch = result ? { localPort: result.localPort, mapped: endpointText(result.mapped.address, result.mapped.port) } : null;
    } catch (err) {
      this.tcpPunch ??= null; // the first probe has ended too: no plan waits for it
      throw err;
    }
  }

  /**
   * Behind a sequentially allocating symmetric NAT, learns where its allocation counter stands now
   * (a fresh socket's mapping), so peers can predict this socket's next mappings. Otherwise nothing.
   */
  async refreshPrediction(stunHost: string, stunPort: number): Promise<void> {
    if (!isPredictable(this.nat) || !this.offers("udp")) return;
    const server = (await lookup(stunHost, { family: 4 })).address;
    const [observed] = await freshMappings({ address: server, port: stunPort }, 1, this.bindHost);
    if (observed) this.predictBase = observed.mappedPort;
  }

  /** Learns (and refreshes) this socket's public mapping from the server's STUN port. */
  async refreshMapping(stunHost: string, stunPort: number): Promise<string | null> {
    const server = (await lookup(stunHost, { family: 4 })).address;
    const transactionId = newTransactionId();
    const key = transactionId.toString("hex");
    const mapped = await new Promise<string | null>((done) => {
      const timer = setTimeout(() => finish(null), STUN_MAPPING_TIMEOUT_MS);
      const finish = (value: string | null) => {
        clearTimeout(timer);
        this.stunWaiters.delete(key);
        done(value);
      };
      this.stunWaiters.set(key, finish);
      const request = bindingRequest({ transactionId });
      for (const delay of STUN_MAPPING_SEND_AT_MS) setTimeout(() => this.stunWaiters.has(key) && this.sendUdp(request, endpointText(server, stunPort)), delay);
    });
    if (mapped) this.udpPublic = mapped;
    return mapped;
  }

  onTcp(handler: (socket: Socket) => void): void {
    this.tcpHandler = handler;
  }

  /** Packets from this remote that open under its session go to `handler` (a handshake's, until the path is chosen). */
  routeAddress(remote: string, handler: AddressHandler): () => void {
    const route: AddressRoute = { handler, claims: handler };
    this.addRoute(remote, route);
    return () => this.removeRoute(remote, route);
  }

  /**
   * Packets from this remote go to an established path's `receive`, which also gets the roaming
   * trials for its IP (see roam()) and may then move the route to the address they came from.
   */
  routePath(remote: string, receive: PathReceiver): PathRoute {
    let current = remote;
    // A trial (a `from` given) counts no refusal; from the path's own address it moves nothing.
    const route: AddressRoute = { handler: (packet) => receive(packet) === true, claims: (packet, from) => receive(packet, from) === true, roaming: { ip: splitEndpoint(remote).host } };
    this.addRoute(remote, route);
    const unroute = () => this.removeRoute(current, route);
    return {
      move: (to) => {
        unroute();
        current = to;
        route.roaming!.ip = splitEndpoint(to).host;
        this.addRoute(to, route);
      },
      unroute,
    };
  }

  /** Handshake packets carrying this session id go to `handler` while it is registered. */
  routeSession(sessionId: string, handler: UdpHandler): () => void {
    this.bySession.set(sessionId, handler);
    return () => this.bySession.get(sessionId) === handler && this.bySession.delete(sessionId);
  }

  /**
   * Memory for one packet about to go to sendUdp (and nowhere else), so that a packet costs no buffer
   * of its own: a slice of the send slab, which is reused once every packet carved from it has left
   * (sendMany and sendmsg copy into the kernel before they return). A tick that outgrows the slab
   * moves on to a new one; the old one goes when its packets have left.
   */
  sendBuffer(bytes: number): Buffer {
    if (this.sendSlabUsed + bytes > this.sendSlab.length) {
      this.sendSlab = Buffer.allocUnsafe(Math.max(SEND_SLAB_BYTES, bytes));
      this.sendSlabUsed = 0;
    }
    const start = this.sendSlabUsed;
    this.sendSlabUsed += bytes;
    return this.sendSlab.subarray(start, this.sendSlabUsed);
  }

  /**
   * Sends `packet` to `remote` ("ip:port") before this tick ends: the packets of one tick (a KCP
   * flush, a burst read from the TUN) leave in one sendMany, one system call instead of one each; the
   * first after LONE_SEND_IDLE_MS without sends leaves at once. `packet` must not change until it has
   * left. Errors (an unroutable address, a closed socket) are logged, never thrown: UDP is best-effort.
   */
  sendUdp(packet: Uint8Array, remote: string): void {
    if (!this.udp || this.udp.closed) return;
    if (remote !== this.lastRemote.text) {
      const { host, port } = splitEndpoint(remote);
      this.lastRemote = { text: remote, host, port };
    }
    const now = performance.now();
    const idle = now - this.lastSendAt >= LONE_SEND_IDLE_MS && this.outbox.length === 0;
    this.lastSendAt = now;
    if (idle) {
      this.sendLone(packet, this.lastRemote.port, this.lastRemote.host);
      this.sendSlabUsed = 0;
      return;
    }
    this.outbox.push(packet, this.lastRemote.port, this.lastRemote.host);
    this.flushSoon();
  }

  /**
   * Sends `packet` (a sealed packet too large for one datagram) as pieces to host:port, a peer's pieces
   * socket, in one GSO run (at once; with the tick's other packets when the kernel would not take the
   * run). False when pieces cannot go from here (no GSO, or not IPv4): send it whole instead.
   */
  sendPieces(packet: Buffer, host: string, port: number): boolean {
    if (!this.gsoSend || !isIPv4(host)) return false;
    if (!this.udp || this.udp.closed) return true;
    this.lastSendAt = performance.now();
    this.nextPacketId = (this.nextPacketId + 1) >>> 0;
    const run = this.sendBuffer(piecesBytes(packet));
    const segmentBytes = cutIntoPieces(packet, this.nextPacketId, run);
    // The run leaves now, as one buffer the kernel cuts; one system call, as it would be at the tick's end.
    if (this.gsoResult(this.gsoSend([run], segmentBytes, host, port))) {
      if (this.outbox.length === 0) this.sendSlabUsed = 0; // no packet carved from the slab waits to leave
      return true;
    }
    // All pieces join the outbox before it may flush: a flush frees the send slab they are carved from.
    for (let at = 0; at < run.length; at += segmentBytes) this.outbox.push(run.subarray(at, at + segmentBytes), port, host);
    this.flushSoon();
    return true;
  }

  /** Flushes the outbox at the tick's end, or now when it holds a full batch. */
  private flushSoon(): void {
    if (this.outbox.length >= UDP_SEND_BATCH_MAX_PACKETS * 3) this.flushOutbox();
    else if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flushOutbox());
    }
  }

  close(): void {
    this.closing = true;
    this.flushOutbox();
    this.udp?.close();
    this.piecesSocket?.close();
    this.tcp.close();
    this.tcpPunchHold?.release();
  }

  private flushOutbox(): void {
    this.flushQueued = false;
    const batch = this.outbox;
    if (batch.length === 0) return;
    this.outbox = [];
    const udp = this.udp;
    if (udp && !udp.closed) {
      if (this.gsoSend) this.sendRuns(batch);
      else this.sendEach(batch);
    }
    this.sendSlabUsed = 0; // every packet carved from it has left
  }

  /**
   * Runs of datagrams of one size to one address (the records of a TUN super-packet) go with GSO, one
   * system call each; the rest, in their order among them, with sendMany.
   */
  private sendRuns(batch: (Uint8Array | number | string)[]): void {
    let plainFrom = 0;
    for (let i = 0; i < batch.length; ) {
      const end = this.runEnd(batch, i);
      if ((end - i) / 3 < GSO_MIN_RUN_DATAGRAMS) {
        i = end;
        continue;
      }
      if (plainFrom < i) this.sendEach(batch.slice(plainFrom, i));
      const datagrams: Uint8Array[] = [];
      for (let j = i; j < end; j += 3) datagrams.push(batch[j] as Uint8Array);
      const sent = this.gsoSend!(datagrams, datagrams[0]!.length, batch[i + 2] as string, batch[i + 1] as number);
      if (!this.gsoResult(sent)) this.sendEach(batch.slice(i, end));
      plainFrom = i = end;
    }
    if (plainFrom < batch.length) this.sendEach(plainFrom === 0 ? batch : batch.slice(plainFrom));
  }

  /** Whether a GSO send went; counts the kernel's refusals, and stops trying GSO after too many. */
  private gsoResult(sent: boolean | undefined): boolean {
    if (sent) this.gsoFailures = 0;
    // A kernel without UDP_SEGMENT, or a route whose device cannot take it (EIO): stop trying.
    else if (sent === false && ++this.gsoFailures >= GSO_FAILURES_BEFORE_OFF) {
      this.gsoSend = undefined;
      this.init.logger.debug("UDP segmentation offload is off: the kernel refused it", { failures: this.gsoFailures });
    }
    return sent === true;
  }

  /** Where the run of same-sized datagrams to the same address that starts at `start` ends (the last may be shorter). */
  private runEnd(batch: (Uint8Array | number | string)[], start: number): number {
    const size = (batch[start] as Uint8Array).length;
    if (size > GSO_MAX_SEGMENT_BYTES) return start + 3;
    let bytes = size;
    let end = start + 3;
    while (end < batch.length && (end - start) / 3 < GSO_MAX_SEGMENTS && batch[end + 1] === batch[start + 1] && batch[end + 2] === batch[start + 2]) {
      const length = (batch[end] as Uint8Array).length;
      if (length > size || bytes + length > GSO_MAX_BYTES) break;
      bytes += length;
      end += 3;
      if (length < size) break;
    }
    return end;
  }

  private sendEach(batch: (Uint8Array | number | string)[]): void {
    try {
      this.udp!.sendMany(batch);
    } catch {
      // One bad destination fails the whole batch: send the rest one by one, dropping only the bad.
      for (let i = 0; i < batch.length; i += 3) this.sendLone(batch[i] as Uint8Array, batch[i + 1] as number, batch[i + 2] as string);
    }
  }

  /** One packet on its own: send(), with no array to make (after 200 ms idle it took 48 µs against sendMany's 55 for one packet). */
  private sendLone(packet: Uint8Array, port: number, host: string): void {
    try {
      this.udp!.send(packet, port, host);
    } catch (err) {
      this.init.logger.debug("peer UDP send failed", { to: endpointText(host, port), error: (err as Error).message });
    }
  }

  /**
   * Sets socket options through libc's setsockopt on the socket's fd (Bun's UDP socket has no setters);
   * false, logged as `failure` (debug), when one fails. The larger buffers: KCP sends a window's worth
   * of segments in a burst and the TUN a burst of packets, and the default buffers drop part of it.
   */
  private tune(udp: Bun.udp.Socket<"buffer">, failure: string, ...options: [level: number, name: number, value: number][]): boolean {
    const fd = (udp as unknown as { fd?: number }).fd;
    try {
      if (typeof fd !== "number") throw new Error("Bun's UDP socket has no fd");
      const libc = loadLibc();
      for (const [level, name, value] of options) if (libc.setsockoptInt(fd, level, name, value) !== 0) throw new Error(`setsockopt(${level}, ${name}) failed`);
      return true;
    } catch (err) {
      // capped by net.core.rmem_max / wmem_max, an old kernel, or no FFI here
      this.init.logger.debug(failure, { error: (err as Error).message });
      return false;
    }
  }

  /**
   * The socket for pieces (protocol/pieces.ts), with UDP_GRO on: a run of pieces that arrives whole
   * is one buffer. None (undefined) where the kernel has no UDP_GRO: pieces would then cost more than
   * the IP fragments of a whole packet.
   */
  private async openPiecesSocket(host: string): Promise<Bun.udp.Socket<"buffer"> | undefined> {
    const socket = await Bun.udpSocket({
      hostname: host,
      port: 0,
      binaryType: "buffer",
      socket: { data: (_socket, packet, port, address) => this.enqueue(packet, port, address) },
    });
    if (this.tune(socket, "no pieces socket: UDP_GRO is not to be had", [SOL_UDP, UDP_GRO, 1], [SOL_SOCKET, SO_RCVBUF, UDP_SOCKET_BUFFER_BYTES])) return socket;
    socket.close();
    return undefined;
  }

  /**
   * Under a UDP flood Bun keeps draining the socket and TCP reads and timers starve for seconds (a
   * Bun 1.4 behaviour; Node does not). So the socket handler only queues, and the queue is worked
   * in short slices between other I/O. A full queue drops; KCP resends. The queue also makes a
   * burst one task: Bun runs microtasks after each packet's callback, so routing there would flush
   * KCP and send once per packet instead of once per burst (measured: a third less throughput).
   * Only a lone packet, the first after LONE_RECEIVE_IDLE_MS without any (an idle link's ping), is
   * routed at once: it need not wait for the next turn of the event loop.
   */
  private enqueue(packet: Buffer, port: number, address: string): void {
    const now = performance.now();
    const lone = !this.draining && now - this.lastReceiveAt >= LONE_RECEIVE_IDLE_MS;
    this.lastReceiveAt = now;
    if (lone) return this.route(packet, address, port);
    if (this.queue.length - this.queueHead >= UDP_QUEUE_MAX_PACKETS * 3) {
      this.droppedPackets++;
      return;
    }
    this.queue.push(packet, port, address);
    if (!this.draining) {
      this.draining = true;
      setImmediate(() => this.drainQueue());
    }
  }

  private drainQueue(): void {
    const sliceEnd = performance.now() + UDP_SLICE_MS;
    const queue = this.queue;
    while (this.queueHead < queue.length && performance.now() < sliceEnd) {
      const head = this.queueHead;
      const packet = queue[head] as Buffer;
      queue[head] = undefined; // the packet may go as soon as it is handled
      this.queueHead = head + 3;
      this.route(packet, queue[head + 2] as string, queue[head + 1] as number);
    }
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
      this.draining = false;
      return;
    }
    if (this.queueHead > UDP_QUEUE_MAX_PACKETS * 3) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    setImmediate(() => this.drainQueue());
  }

  private route(packet: Buffer, address: string, port: number): void {
    if (looksLikeStun(packet)) {
      try {
        const message = decodeStun(packet);
        const mapped = mappedAddress(message);
        this.stunWaiters.get(message.transactionId.toString("hex"))?.(mapped ? endpointText(mapped.address, mapped.port) : null);
      } catch {
        // malformed STUN: ignore
      }
      return;
    }
    // Handshakes go by the session they name (a new session may come from an address already in use);
    // everything else by the remote address of an established path. The rest is dropped.
    if (packet[0] === Envelope.handshake) {
      if (packet.length <= 1 + SESSION_ID_BYTES || packet.length > MAX_TCP_FRAME_BYTES) return;
      this.bySession.get(packet.subarray(1, 1 + SESSION_ID_BYTES).toString("base64url"))?.(packet, { address, port });
      return;
    }
    // A poke naming a session: a peer probing predicted (or random) ports reached this socket.
    if (packet[0] === Envelope.poke && packet.length === 1 + SESSION_ID_BYTES) {
      this.bySession.get(packet.subarray(1).toString("base64url"))?.(packet, { address, port });
      return;
    }
    const source = this.lastSource;
    if (source.port !== port || source.address !== address) this.lastSource = { text: endpointText(address, port), address, port };
    const remote = this.lastSource.text;
    const routes = this.byAddress.get(remote);
    // Pieces are joined only for a remote with a route: a stranger's cost nothing but this lookup.
    if (packet[0] === PIECE_TAG) {
      if (routes) for (const joined of this.joiner.take(packet, remote)) if (joined[0] === Envelope.sealed) this.route(joined, address, port);
      return;
    }
    if (!routes) {
      if (packet[0] === Envelope.sealed) this.roam(packet, address, remote);
    } else if (routes.length === 1) routes[0]!.handler(packet);
    else for (const route of routes) if (route.claims(packet, remote)) return;
  }

  /**
   * A sealed packet from an address with no path: perhaps a peer whose NAT gave its flow a new public
   * port (a rebinding: conntrack flushed, a home router rebooted, a CGNAT mapping timed out). Paths to
   * that same IP try to open it, at most ROAM_TRIALS_MAX of them; the one whose session it
   * authenticates under (fresh, not a replay) may move here. A packet from any other IP costs nothing
   * but this walk over the routes, and a new IP never moves a path: roaming across IPs would let any
   * host make us trial-decrypt its every packet, and a peer whose IP changed relinks anyway.
   */
  private roam(packet: Buffer, ip: string, from: string): void {
    let trials = 0;
    for (const routes of this.byAddress.values())
      for (const route of routes) {
        if (route.roaming?.ip !== ip) continue;
        if (route.claims(packet, from) || ++trials >= ROAM_TRIALS_MAX) return;
      }
  }

  private addRoute(remote: string, route: AddressRoute): void {
    const routes = this.byAddress.get(remote);
    if (routes) routes.unshift(route);
    else this.byAddress.set(remote, [route]);
  }

  private removeRoute(remote: string, route: AddressRoute): void {
    const routes = this.byAddress.get(remote);
    const index = routes?.indexOf(route) ?? -1;
    if (index < 0) return;
    routes!.splice(index, 1);
    if (routes!.length > 0) return;
    this.byAddress.delete(remote);
    this.joiner.forget(remote);
  }
}
