// In-memory peer links for tests of what runs on top of a link (apps, SDWAN), without sockets.
import { randomBytes } from "node:crypto";
import { SecureSession } from "../../src/crypto/index.ts";
import type { Logger } from "../../src/log/index.ts";
import { Link, type Path } from "../../src/transport/index.ts";

/**
 * Two in-memory, in-order path ends: what one sends, the other receives. A "udp" or "lan" pair is
 * unreliable as far as the links know, so they run KCP over it; `latencyMs` delays each packet one way.
 */
function pathPair(options: MemoryPathOptions): [Path, Path] {
  const ends = [0, 1].map(() => ({ deliver: (_packet: Buffer) => {}, closed: false }));
  const latencyMs = options.latencyMs ?? 0;
  const make = (self: number): Path => ({
    kind: options.kind === "udp" ? "udp-direct" : options.kind === "lan" ? "lan" : "tcp-direct",
    remote: `memory:${1 - self}`,
    reliable: options.kind === undefined || options.kind === "tcp",
    send: (packet) => {
      const copy = Buffer.from(packet);
      options.onSend?.(copy);
      if (options.drop?.(copy)) return;
      if (latencyMs > 0) setTimeout(() => ends[1 - self]!.deliver(copy), latencyMs);
      else queueMicrotask(() => ends[1 - self]!.deliver(copy));
    },
    bufferedBytes: () => 0,
    onPacket: (handler) => (ends[self]!.deliver = handler),
    onDrain: () => {},
    onClose: () => {},
    close: () => {},
  });
  return [make(0), make(1)];
}

export interface MemoryPathOptions {
  /** Default "tcp"; "udp" and "lan" are unreliable (KCP). */
  kind?: "tcp" | "udp" | "lan";
  latencyMs?: number;
  /** Sees every packet either end sends. */
  onSend?: (packet: Buffer) => void;
  /** Whether the path loses this packet (only for "udp" and "lan": a lossy TCP path breaks the link). */
  drop?: (packet: Buffer) => boolean;
}

/** A requester's and a server's end of one link to each other. */
export function linkPair(logger: Logger, path: MemoryPathOptions = {}): { near: Link; far: Link } {
  const [nearPath, farPath] = pathPair(path);
  const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
  const sessionId = randomBytes(16);
  return {
    near: new Link({ peer: "far", path: nearPath, session: new SecureSession({ role: "initiator", secrets }), role: "initiator", sessionId, logger }),
    far: new Link({ peer: "near", path: farPath, session: new SecureSession({ role: "responder", secrets }), role: "responder", sessionId, logger }),
  };
}
