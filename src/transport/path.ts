import { LINK_KINDS, type LinkKind } from "../protocol/node-report.ts";
import { splitEndpoint, type PathRoute, type PeerEndpoint } from "./endpoint.ts";
import type { FramedSocket } from "./framing.ts";

/** How two peers are connected; the order is preference, best first. Nodes report it to the server, so it is a wire format. */
export const PATH_KINDS = LINK_KINDS;
export type PathKind = LinkKind;
export const pathRank = (kind: PathKind) => PATH_KINDS.indexOf(kind);

/**
 * Takes a path's packets. `from` is set only for a roaming trial: a sealed packet from an address
 * with no path but the same IP as this one's remote (the peer's NAT may have given its flow a new
 * port). The receiver then answers whether it was a fresh authentic record of its session, and
 * moves the path there (moveTo) if it should follow.
 */
export type PathReceiver = (packet: Buffer, from?: string) => boolean | void;

/**
 * One way of moving packets between two peers. A reliable path (TCP) delivers packets in order and
 * the mux runs on it directly; an unreliable one (UDP) gets KCP in between.
 */
export interface Path {
  readonly kind: PathKind;
  readonly remote: string;
  readonly reliable: boolean;
  /** The relay's name, on a relayed path. */
  readonly via?: string;
  /** `packet` must not change afterwards: a path may hand it to the network later (UDP: at the end of the tick, batched). */
  send(packet: Uint8Array): void;
  /**
   * Memory of `bytes` for the next packet to send(), where the path has its own (UDP: the endpoint's
   * send slab, reused once the packets of the tick left); fill it and send() it at once, keep no reference.
   */
  sendBuffer?(bytes: number): Buffer;
  /**
   * UDP paths over the shared socket: sends a large `packet` as pieces to `port` at the remote's IP
   * (the peer's pieces socket; protocol/pieces.ts); false when pieces cannot go (send() it instead).
   */
  sendPieces?(packet: Buffer, port: number): boolean;
  /** UDP paths over the shared socket: this node's pieces port, when it has one. */
  readonly piecesPort?: number;
  /** Bytes accepted by send() but not yet handed to the network. */
  bufferedBytes(): number;
  onPacket(handler: PathReceiver): void;
  /** UDP paths over the shared socket: from now on sends to, and takes packets from, `remote` (see PathReceiver). */
  moveTo?(remote: string): void;
  onDrain(handler: () => void): void;
  onClose(handler: (reason: string) => void): void;
  close(reason: string): void;
}

/**
 * A datagram path: packets from `remote` arrive through `subscribe`; `release` runs on close. With
 * `move`, the path can follow its peer to a new address.
 */
export function datagramPath(
  remote: string,
  kind: PathKind,
  send: (packet: Uint8Array, remote: string) => void,
  subscribe: (deliver: PathReceiver) => void,
  release: () => void,
  move?: (remote: string) => void,
  endpoint?: Pick<PeerEndpoint, "sendBuffer" | "sendPieces" | "piecesPort">,
): Path {
  let current = remote;
  let onPacket: PathReceiver = () => false;
  let onClose: (reason: string) => void = () => {};
  let closed = false;
  subscribe((packet, from) => onPacket(packet, from));
  return {
    kind,
    get remote() {
      return current;
    },
    reliable: false,
    send: (packet) => !closed && send(packet, current),
    ...(endpoint && {
      sendBuffer: (bytes: number) => endpoint.sendBuffer(bytes),
      sendPieces: (packet: Buffer, port: number) => closed || endpoint.sendPieces(packet, splitEndpoint(current).host, port),
      piecesPort: endpoint.piecesPort,
    }),
    bufferedBytes: () => 0,
    onPacket: (handler) => (onPacket = handler),
    onDrain: () => {},
    onClose: (handler) => (onClose = handler),
    close(reason) {
      if (closed) return;
      closed = true;
      release();
      onClose(reason);
    },
    ...(move && {
      moveTo(to: string) {
        if (closed) return;
        move(to);
        current = to;
      },
    }),
  };
}

/** A UDP path over the endpoint's shared peer socket; it follows its peer to a new port. */
export function udpPath(endpoint: PeerEndpoint, remote: string, kind: PathKind): Path {
  let route: PathRoute | undefined;
  return datagramPath(
    remote,
    kind,
    (packet, to) => endpoint.sendUdp(packet, to),
    (deliver) => (route = endpoint.routePath(remote, deliver)),
    () => route?.unroute(),
    (to) => route?.move(to),
    endpoint,
  );
}

/** A TCP connection (already framed, its handshake done) as a path. */
export function tcpPath(framed: FramedSocket, kind: PathKind, via?: string): Path {
  return new TcpPath(framed, kind, via);
}

/**
 * A class rather than an object of closures: every TCP path, the start-up warm-up's too, then sends
 * through one `send`. A closure of each path's own was, in some runs, compiled for the warm-up's paths
 * and left the optimised code on each idle datagram of a node's TCP path after it.
 */
class TcpPath implements Path {
  readonly remote: string;
  readonly reliable = true;
  private closed = false;
  private closeHandler: (reason: string) => void = () => {};

  constructor(
    private readonly framed: FramedSocket,
    readonly kind: PathKind,
    readonly via?: string,
  ) {
    const { socket } = framed;
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on("close", () => this.close("connection closed"));
    socket.on("error", (err) => this.close(err.message));
  }

  send(packet: Uint8Array): void {
    if (!this.closed) this.framed.send(packet);
  }

  bufferedBytes(): number {
    return this.framed.socket.writableLength;
  }

  onPacket(handler: PathReceiver): void {
    this.framed.onFrame = handler;
  }

  onDrain(handler: () => void): void {
    this.framed.socket.on("drain", handler);
  }

  onClose(handler: (reason: string) => void): void {
    this.closeHandler = handler;
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.framed.socket.destroy();
    this.closeHandler(reason);
  }
}
