import type { PeerEndpoint } from "./endpoint.ts";
import type { FramedSocket } from "./framing.ts";

/** How two peers are connected; the order is preference, best first. */
export const PATH_KINDS = ["lan", "udp-direct", "udp-punch", "tcp-direct", "tcp-punch", "relay-private", "relay-super", "relay-server"] as const;
export type PathKind = (typeof PATH_KINDS)[number];
export const pathRank = (kind: PathKind) => PATH_KINDS.indexOf(kind);

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
  send(packet: Uint8Array): void;
  /** Bytes accepted by send() but not yet handed to the network. */
  bufferedBytes(): number;
  onPacket(handler: (packet: Buffer) => void): void;
  onDrain(handler: () => void): void;
  onClose(handler: (reason: string) => void): void;
  close(reason: string): void;
}

/** A datagram path: packets from `remote` arrive through `subscribe`; `release` runs on close. */
export function datagramPath(
  remote: string,
  kind: PathKind,
  send: (packet: Uint8Array) => void,
  subscribe: (deliver: (packet: Buffer) => void) => void,
  release: () => void,
): Path {
  let onPacket: (packet: Buffer) => void = () => {};
  let onClose: (reason: string) => void = () => {};
  let closed = false;
  subscribe((packet) => onPacket(packet));
  return {
    kind,
    remote,
    reliable: false,
    send: (packet) => !closed && send(packet),
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
  };
}

/** A UDP path over the endpoint's shared peer socket. */
export function udpPath(endpoint: PeerEndpoint, remote: string, kind: PathKind): Path {
  let unroute = () => {};
  return datagramPath(
    remote,
    kind,
    (packet) => endpoint.sendUdp(packet, remote),
    (deliver) => (unroute = endpoint.routeAddress(remote, deliver)),
    () => unroute(),
  );
}

/** A TCP connection (already framed, its handshake done) as a path. */
export function tcpPath(framed: FramedSocket, kind: PathKind, via?: string): Path {
  const { socket } = framed;
  let onClose: (reason: string) => void = () => {};
  let closed = false;
  const path: Path = {
    kind,
    remote: `${socket.remoteAddress}:${socket.remotePort}`,
    reliable: true,
    via,
    send: (packet) => !closed && framed.send(packet),
    bufferedBytes: () => socket.writableLength,
    onPacket: (handler) => (framed.onFrame = handler),
    onDrain: (handler) => socket.on("drain", handler),
    onClose: (handler) => (onClose = handler),
    close(reason) {
      if (closed) return;
      closed = true;
      socket.destroy();
      onClose(reason);
    },
  };
  socket.on("close", () => path.close("connection closed"));
  socket.on("error", (err) => path.close(err.message));
  return path;
}
