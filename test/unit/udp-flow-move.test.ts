import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { AppService, UdpFlowIds } from "../../src/client/apps.ts";
import { ExposePolicy } from "../../src/client/expose.ts";
import { SecureSession } from "../../src/crypto/index.ts";
import { createLogger } from "../../src/log/index.ts";
import { decodeUdpAppDatagram, encodeUdpAppDatagram } from "../../src/protocol/index.ts";
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

const logger = createLogger({ level: "error", write: () => {} });

/** A requester's and a server's end of one link to each other. */
function linkPair(): { near: Link; far: Link } {
  const [nearPath, farPath] = pathPair();
  const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
  const sessionId = randomBytes(16);
  return {
    near: new Link({ peer: "far", path: nearPath, session: new SecureSession({ role: "initiator", secrets }), role: "initiator", sessionId, logger }),
    far: new Link({ peer: "near", path: farPath, session: new SecureSession({ role: "responder", secrets }), role: "responder", sessionId, logger }),
  };
}

describe("a UDP app flow whose link is replaced (relay -> direct)", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

  it("keeps its socket at the target and answers on the link its datagrams now arrive on", async () => {
    // The target answers every datagram with the source port it came from.
    const target = createSocket("udp4");
    target.on("message", (_payload, from) => target.send(String(from.port), from.port, from.address));
    target.bind(0, "127.0.0.1");
    await once(target, "listening");
    const service = new AppService({ flowIds: new UdpFlowIds(), logger, node: "far", expose: new ExposePolicy([`127.0.0.1:${(target.address() as { port: number }).port}`]) });
    cleanups.push(() => (service.stop(), target.close()));
    const relayed = linkPair();
    const direct = linkPair();
    service.attach("near", relayed.far);
    service.attach("near", direct.far);
    const ask = async (link: Link): Promise<string> => {
      const answer = new Promise<string>((resolve) =>
        link.onDatagram((datagram) => {
          const decoded = decodeUdpAppDatagram(datagram);
          if (decoded?.type === "reply") resolve(decoded.payload.toString());
        }),
      );
      link.sendDatagram(encodeUdpAppDatagram(7, `127.0.0.1:${target.address().port}`, Buffer.from("hello")));
      return answer;
    };
    const portBefore = await ask(relayed.near);
    const portAfter = await ask(direct.near);
    expect(Number(portBefore)).toBeGreaterThan(0);
    expect(portAfter).toBe(portBefore);
    // The relayed link retires: the flow, now on the direct link, stays.
    relayed.near.close("moved to a direct path");
    relayed.far.close("moved to a direct path");
    expect(await ask(direct.near)).toBe(portBefore);
    for (const link of [relayed.near, relayed.far, direct.near, direct.far]) link.close("test over");
  });
});
