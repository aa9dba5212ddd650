// In-memory peer links for tests of what runs on top of a link (apps, SDWAN), without sockets.
import { randomBytes } from "node:crypto";
import { SecureSession } from "../../src/crypto/index.ts";
import type { Logger } from "../../src/log/index.ts";
import { Link, type Path } from "../../src/transport/index.ts";

/** Two in-memory, in-order path ends: what one sends, the other receives. */
function pathPair(): [Path, Path] {
  const ends = [0, 1].map(() => ({ deliver: (_packet: Buffer) => {}, closed: false }));
  const make = (self: number): Path => ({
    kind: "tcp-direct",
    remote: `memory:${1 - self}`,
    reliable: true,
    send: (packet) => {
      const copy = Buffer.from(packet);
      queueMicrotask(() => ends[1 - self]!.deliver(copy));
    },
    bufferedBytes: () => 0,
    onPacket: (handler) => (ends[self]!.deliver = handler),
    onDrain: () => {},
    onClose: () => {},
    close: () => {},
  });
  return [make(0), make(1)];
}

/** A requester's and a server's end of one link to each other. */
export function linkPair(logger: Logger): { near: Link; far: Link } {
  const [nearPath, farPath] = pathPair();
  const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
  const sessionId = randomBytes(16);
  return {
    near: new Link({ peer: "far", path: nearPath, session: new SecureSession({ role: "initiator", secrets }), role: "initiator", sessionId, logger }),
    far: new Link({ peer: "near", path: farPath, session: new SecureSession({ role: "responder", secrets }), role: "responder", sessionId, logger }),
  };
}
