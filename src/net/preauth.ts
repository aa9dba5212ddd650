import type { Socket } from "node:net";
import { limitKey } from "./client-address.ts";

// Strangers' connections before they prove anything (a relay hello, a peer handshake, a STUN request):
// each is held at most `deadlineMs` from its accept however it trickles bytes (an idle timer would be
// reset by every byte), one address (an IPv6 /64) holds at most `maxPerAddress` of them, and all together at most
// `maxTotal`. A connection leaves the pool when it authenticates or closes.

export interface PreAuthLimits {
  /** Connections one address may hold in the pool at once. */
  maxPerAddress: number;
  /** Connections in the pool at once, all addresses together. */
  maxTotal: number;
  /** Absolute time from accept to authentication; then the connection is closed. */
  deadlineMs: number;
}

export interface PreAuthSlot {
  /** The connection proved itself: it leaves the pool and its deadline is off. */
  authenticated(): void;
}

export class PreAuthPool {
  private readonly perAddress = new Map<string, number>();
  private readonly sockets = new Set<Socket>();

  constructor(readonly limits: PreAuthLimits) {}

  get size(): number {
    return this.sockets.size;
  }

  /**
   * Admits `socket`, or says why not (the caller closes it). An admitted socket that has not
   * authenticated by the deadline gets `onDeadline`, which must close it (default: destroy it).
   */
  admit(socket: Socket, onDeadline: () => void = () => socket.destroy()): PreAuthSlot | { refused: string } {
    const address = limitKey(socket.remoteAddress ?? ""); // an IPv6 client counts per /64
    const held = this.perAddress.get(address) ?? 0;
    if (held >= this.limits.maxPerAddress) return { refused: `this address already has ${held} connections waiting to authenticate (limit ${this.limits.maxPerAddress})` };
    if (this.sockets.size >= this.limits.maxTotal) return { refused: `${this.sockets.size} connections already wait to authenticate (limit ${this.limits.maxTotal})` };
    this.perAddress.set(address, held + 1);
    this.sockets.add(socket);
    const leave = () => {
      clearTimeout(deadline);
      if (!this.sockets.delete(socket)) return;
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    };
    const deadline = setTimeout(onDeadline, this.limits.deadlineMs);
    socket.once("close", leave);
    return { authenticated: leave };
  }

  /** Destroys every connection still waiting (the listener stops). */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }
}
