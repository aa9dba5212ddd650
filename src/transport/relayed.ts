import { connect as tcpConnect } from "node:net";
import { Handshake, type Identity } from "../crypto/index.ts";
import type { Logger } from "../log/index.ts";
import { decodeRelayAnswer, encodeRelayHello, type RelayPlan } from "../protocol/index.ts";
import { envelope, handshakeBody } from "./connect.ts";
import { FramedSocket } from "./framing.ts";
import { Link } from "./link.ts";
import { tcpPath, type PathKind } from "./path.ts";

/** Reaching the relay, its answer (it waits up to 10 s for the other side) and the handshake, at most. */
export const RELAY_CONNECT_TIMEOUT_MS = 14_000;

export class RelayError extends Error {
  readonly code = "RELAY_FAILED";
}

export interface RelayConnectInit {
  identity: Identity;
  logger: Logger;
  /** Where the server's own relay is reached (the host this node reaches the server by). */
  serverHost: string;
}

/**
 * A link through a relay: connect, present this side's ticket, and once the relay has paired both
 * sides run the usual handshake over the bridged connection. The relay only ever sees ciphertext.
 */
export function connectViaRelay(plan: RelayPlan, init: RelayConnectInit): Promise<Link> {
  const { relay } = plan;
  const host = relay.host ?? init.serverHost;
  const where = `relay ${relay.name} at ${host}:${relay.port}`;
  const sessionId = Buffer.from(plan.sessionId, "base64url");
  const kind = `relay-${relay.tier}` as PathKind;
  const socket = tcpConnect({ host, port: relay.port, noDelay: true });
  const framed = new FramedSocket(socket);
  const handshake = new Handshake({ identity: init.identity, peerPublicKey: plan.peer.publicKey, sessionId, role: plan.role });

  return new Promise<Link>((resolve, reject) => {
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      reject(new RelayError(`${where}: ${why}`));
    };
    socket.setTimeout(RELAY_CONNECT_TIMEOUT_MS, () => fail(`no link within ${RELAY_CONNECT_TIMEOUT_MS / 1000} s`));
    socket.on("error", (err) => fail(err.message));
    socket.on("close", () => fail("the relay closed the connection"));
    socket.on("connect", () => framed.send(encodeRelayHello(relay.ticket)));
    let paired = false;
    framed.onFrame = (frame) => {
      if (!paired) {
        const answer = decodeRelayAnswer(frame);
        if (!answer.ok) return fail(`refused: ${answer.error ?? "no reason given"} (${answer.code ?? "no code"})`);
        paired = true;
        if (plan.role === "initiator") framed.send(envelope(sessionId, handshake.start()));
        return;
      }
      const body = handshakeBody(frame);
      if (!body) return fail("the peer sent something other than a handshake");
      try {
        const reply = handshake.receive(body);
        if (reply) framed.send(envelope(sessionId, reply));
      } catch (err) {
        return fail(`handshake with ${plan.peer.name} failed: ${(err as Error).message}`);
      }
      if (!handshake.complete) return;
      settled = true;
      socket.setTimeout(0);
      socket.removeAllListeners("error").removeAllListeners("close").removeAllListeners("timeout");
      const link = new Link({ peer: plan.peer.name, path: tcpPath(framed, kind, relay.name), session: handshake.session(), role: plan.role, sessionId, logger: init.logger });
      if (plan.role === "initiator") link.probe();
      init.logger.info("peer link up", { peer: plan.peer.name, path: kind, relay: relay.name });
      resolve(link);
    };
  });
}
