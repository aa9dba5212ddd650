import { createSocket, type Socket } from "node:dgram";
import { randomInt } from "node:crypto";
import { Envelope } from "./constants.ts";
import { endpointText, splitEndpoint, type PeerEndpoint } from "./endpoint.ts";
import { datagramPath, type Path, type PathKind } from "./path.ts";

// The birthday technique for a symmetric NAT (random ports) facing a port-restricted one. The hard
// side opens many sockets, each sending to the easy side's mapped address: each gets a fresh random
// mapping on the hard NAT, open for answers from that address. The easy side sprays packets at random
// ports of the hard side's IP: each opens its own filter for that exact address. When a spray packet
// hits one of the hard side's mappings, that socket hears it, and the handshake runs over it.
// With K sockets and N probes over P ports the chance of a hit is about 1 - exp(-K*N/P): with the
// figures below and P = 64512 (ports 1024-65535), a miss about once in 100 000 attempts (128 sockets
// and 1500 probes missed once in 20).

/** Sockets the hard side opens. */
export const BIRTHDAY_SOCKETS = 256;
/** Probes the easy side sends at most, and over how long. */
export const BIRTHDAY_PROBES = 2900;
export const BIRTHDAY_SPRAY_MS = 2000;
/** The hard side re-sends its openers this often, in case some were lost. */
const OPENER_RESEND_MS = 700;
const FIRST_DYNAMIC_PORT = 1024;
const LAST_PORT = 65535;

export function pokePacket(sessionId: Buffer): Buffer {
  return Buffer.concat([Buffer.from([Envelope.poke]), sessionId]);
}

export interface BirthdayStats {
  packetsSent: number;
}

/**
 * Hard side: opens the sockets and resolves with the first one a spray packet reaches (the others
 * are closed), or never; `stop()` closes everything.
 */
export function openHardSide(
  target: string,
  sessionId: Buffer,
  bindHost: string,
  stats: BirthdayStats,
): { punched: Promise<{ socket: Socket; remote: string }>; stop(): void } {
  const sockets: Socket[] = [];
  const opener = pokePacket(sessionId);
  const { host: targetHost, port: targetPort } = splitEndpoint(target);
  let resolveWith: (value: { socket: Socket; remote: string }) => void = () => {};
  const punched = new Promise<{ socket: Socket; remote: string }>((resolve) => (resolveWith = resolve));
  let done = false;
  const sendOpeners = () => {
    for (const socket of sockets) {
      socket.send(opener, targetPort, targetHost);
      stats.packetsSent++;
    }
  };
  for (let i = 0; i < BIRTHDAY_SOCKETS; i++) {
    const socket = createSocket("udp4");
    socket.on("error", () => {});
    socket.on("message", (packet, from) => {
      if (done || packet[0] !== Envelope.poke || !packet.subarray(1).equals(sessionId)) return;
      done = true;
      for (const other of sockets) if (other !== socket) other.close();
      clearInterval(resend);
      socket.removeAllListeners("message");
      resolveWith({ socket, remote: endpointText(from.address, from.port) });
    });
    sockets.push(socket);
  }
  let bound = 0;
  for (const socket of sockets)
    socket.bind(0, bindHost, () => {
      if (++bound === sockets.length) sendOpeners();
    });
  const resend = setInterval(sendOpeners, OPENER_RESEND_MS);
  return {
    punched,
    stop() {
      if (done) return;
      done = true;
      clearInterval(resend);
      for (const socket of sockets) socket.close();
    },
  };
}

/** Easy side: sprays packets at random ports of `hardIp` from the main socket; `stop()` ends it. */
export function sprayEasySide(endpoint: PeerEndpoint, hardIp: string, sessionId: Buffer, stats: BirthdayStats): { stop(): void } {
  const probe = pokePacket(sessionId);
  const perTick = Math.ceil(BIRTHDAY_PROBES / (BIRTHDAY_SPRAY_MS / 10));
  const timer = setInterval(() => {
    for (let i = 0; i < perTick && stats.packetsSent < BIRTHDAY_PROBES; i++) {
      endpoint.sendUdp(probe, endpointText(hardIp, randomInt(FIRST_DYNAMIC_PORT, LAST_PORT + 1)));
      stats.packetsSent++;
    }
    if (stats.packetsSent >= BIRTHDAY_PROBES) clearInterval(timer);
  }, 10);
  return { stop: () => clearInterval(timer) };
}

/** A path over a socket of its own (a punched birthday socket). */
export function ownSocketPath(socket: Socket, remote: string, kind: PathKind): Path {
  const { host, port } = splitEndpoint(remote);
  return datagramPath(
    remote,
    kind,
    (packet) => socket.send(packet, port, host),
    (deliver) => socket.on("message", (packet, from) => endpointText(from.address, from.port) === remote && deliver(packet)),
    () => socket.close(),
  );
}
