import { createServer, type Server, type Socket } from "node:net";
import { TicketError, verifyTicket, type TicketFields } from "../crypto/ticket.ts";
import type { Logger } from "../log/index.ts";
import { decodeRelayHello, encodeRelayAnswer, type RelayAnswer } from "../protocol/index.ts";
import { writeFrame } from "../transport/index.ts";
import { PreAuthPool } from "../net/index.ts";
import { RELAY_HELLO_DEADLINE_MS, RELAY_MAX_HELLO_BYTES, RELAY_MAX_PENDING, RELAY_MAX_PENDING_PER_ADDRESS, RELAY_MAX_SESSIONS, RELAY_PAIR_WAIT_MS, RELAY_REFUSAL_LINGER_MS } from "./constants.ts";
import { TokenBucket } from "./limiter.ts";

// A relay bridges two TCP connections that present the two halves of one server-issued ticket. It
// never holds a key of the peer session: after its one-frame answer it copies bytes, nothing more.
// The hello, the answer and what a ticket reveals: protocol/relay.ts.

export interface RelayInit {
  host: string;
  port: number;
  /** This relay's name in tickets: "user/node", or "server". */
  name: string;
  key: Uint8Array;
  /** The current time on the server's clock (tickets expire in server time). */
  serverNow(): number;
  bwMbps: number;
  /** Why this session may not use this relay, if it may not (a private relay serves only tickets of the private tier). */
  refuse?(ticket: TicketFields): string | undefined;
  /** Called for each connection a limit refuses: the pending pool's shares and deadline, or the session cap (a metric counts them). */
  onLimited?(): void;
  logger: Logger;
}

/** A private relay's rule: only sessions the server planned in the private tier, i.e. between nodes of its own user. */
export function privateRelayRefusal(user: string): (ticket: TicketFields) => string | undefined {
  return (ticket) => (ticket.tier === "private" ? undefined : `this private relay serves only user ${user}'s nodes`);
}

export interface RelayLoad {
  sessions: number;
  bwMbps: number;
  /** Relayed traffic since the previous call, both directions together. */
  loadMbps: number;
  bytesRelayed: number;
}

export interface RunningRelay {
  port: number;
  load(): RelayLoad;
  /** Sessions bridged now and bytes carried so far (unlike load(), it starts no new measuring window). */
  counts(): { sessions: number; bytesRelayed: number };
  stop(): Promise<void>;
}

interface Waiting {
  side: "a" | "b";
  socket: Socket;
  timer: ReturnType<typeof setTimeout>;
}

export async function startRelay(init: RelayInit): Promise<RunningRelay> {
  const log = init.logger;
  const bucket = TokenBucket.mbps(init.bwMbps);
  /** Tickets already presented, until they expire: a second use is a replay. */
  const used = new Map<string, number>();
  const waiting = new Map<string, Waiting>();
  const bridged = new Set<Socket>();
  const pending = new PreAuthPool({ maxPerAddress: RELAY_MAX_PENDING_PER_ADDRESS, maxTotal: RELAY_MAX_PENDING, deadlineMs: RELAY_HELLO_DEADLINE_MS });
  let bytesRelayed = 0;
  let measured = { at: performance.now(), bytes: 0 };

  const answer = (socket: Socket, reply: RelayAnswer) => {
    writeFrame(socket, encodeRelayAnswer(reply));
    if (!reply.ok) closeAfterRefusal(socket);
  };
  /** Ends the socket, and destroys it soon after: a stranger that never closes its side holds nothing. */
  const closeAfterRefusal = (socket: Socket) => {
    socket.end();
    const linger = setTimeout(() => socket.destroy(), RELAY_REFUSAL_LINGER_MS);
    socket.once("close", () => clearTimeout(linger));
  };
  const refuse = (socket: Socket, code: string, error: string) => {
    log.info("relay refused a connection", { from: `${socket.remoteAddress}:${socket.remotePort}`, code, error });
    answer(socket, { ok: false, code, error });
  };

  const accept = (socket: Socket, ticket: string) => {
    const now = init.serverNow();
    for (const [id, expiresAt] of used) if (expiresAt <= now) used.delete(id);
    let fields: TicketFields;
    try {
      fields = verifyTicket(init.key, ticket, { relay: init.name, serverNow: now });
      const id = `${fields.session}/${fields.side}`;
      if (used.has(id)) throw new TicketError("TICKET_REPLAYED", "this ticket was already used");
      used.set(id, fields.expiresAt);
    } catch (err) {
      if (!(err instanceof TicketError)) throw err;
      return refuse(socket, err.code, err.message);
    }
    const refusal = init.refuse?.(fields);
    if (refusal) return refuse(socket, "RELAY_NOT_ALLOWED", refusal);
    if (bridged.size / 2 >= RELAY_MAX_SESSIONS) {
      init.onLimited?.();
      return refuse(socket, "RELAY_FULL", `this relay already bridges ${RELAY_MAX_SESSIONS} sessions`);
    }
    const other = waiting.get(fields.session);
    if (!other) {
      const timer = setTimeout(() => {
        waiting.delete(fields.session);
        refuse(socket, "RELAY_PEER_MISSING", `the other side did not arrive within ${RELAY_PAIR_WAIT_MS / 1000} s`);
      }, RELAY_PAIR_WAIT_MS);
      waiting.set(fields.session, { side: fields.side, socket, timer });
      socket.once("close", () => {
        if (waiting.get(fields.session)?.socket !== socket) return;
        clearTimeout(timer);
        waiting.delete(fields.session);
      });
      return;
    }
    waiting.delete(fields.session);
    clearTimeout(other.timer);
    if (other.side === fields.side) return refuse(socket, "TICKET_REPLAYED", "this side of the session is already connected");
    log.debug("relaying a session", { session: fields.session, tier: fields.tier });
    bridge(other.socket, socket);
  };

  const bridge = (one: Socket, two: Socket) => {
    for (const socket of [one, two]) {
      bridged.add(socket);
      answer(socket, { ok: true });
    }
    copy(one, two);
    copy(two, one);
    one.resume();
    two.resume();
  };

  /** Copies `from` to `to` within the bandwidth cap, pausing `from` while `to` is full or the bucket is empty. */
  const copy = (from: Socket, to: Socket) => {
    let waitingForDrain = false;
    let waitingForTokens = false;
    const resumeIfFree = () => !waitingForDrain && !waitingForTokens && !from.destroyed && from.resume();
    from.on("data", (chunk: Buffer) => {
      bytesRelayed += chunk.length;
      if (!to.write(chunk)) {
        waitingForDrain = true;
        from.pause();
        to.once("drain", () => {
          waitingForDrain = false;
          resumeIfFree();
        });
      }
      const waitMs = bucket.take(chunk.length);
      if (waitMs > 0) {
        waitingForTokens = true;
        from.pause();
        setTimeout(() => {
          waitingForTokens = false;
          resumeIfFree();
        }, waitMs);
      }
    });
    from.on("end", () => to.end());
    from.on("close", () => {
      bridged.delete(from);
      to.destroy();
    });
  };

  const onConnection = (socket: Socket) => {
    socket.on("error", () => socket.destroy());
    const slot = pending.admit(socket, () => {
      init.onLimited?.();
      socket.off("data", onData);
      refuse(socket, "RELAY_HELLO_TIMEOUT", `no ticket within ${RELAY_HELLO_DEADLINE_MS / 1000} s`);
    });
    if ("refused" in slot) {
      init.onLimited?.();
      log.debug("relay refused a connection", { from: `${socket.remoteAddress}:${socket.remotePort}`, error: slot.refused });
      return socket.destroy();
    }
    socket.setNoDelay(true);
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 4) return;
      const length = buffered.readUInt32BE(0);
      if (length > RELAY_MAX_HELLO_BYTES) return badHello(`a ${length}-byte hello; the limit is ${RELAY_MAX_HELLO_BYTES}`);
      if (buffered.length < 4 + length) return;
      if (buffered.length > 4 + length) return badHello("data before the relay's answer");
      const hello = decodeRelayHello(buffered.subarray(4));
      if ("error" in hello) return badHello(hello.error);
      socket.off("data", onData);
      socket.pause();
      slot.authenticated();
      accept(socket, hello.ticket);
    };
    // A bad hello keeps its place in the pending pool until the socket closes.
    const badHello = (error: string) => {
      socket.off("data", onData);
      refuse(socket, "RELAY_BAD_HELLO", error);
    };
    socket.on("data", onData);
  };

  const server: Server = createServer({ pauseOnConnect: false }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(init.port, init.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : init.port;
  log.info("relay listening", { port, bwMbps: init.bwMbps });

  return {
    port,
    load() {
      const now = performance.now();
      const loadMbps = ((bytesRelayed - measured.bytes) * 8) / 1_000_000 / Math.max(0.001, (now - measured.at) / 1000);
      measured = { at: now, bytes: bytesRelayed };
      return { sessions: bridged.size / 2, bwMbps: init.bwMbps, loadMbps: Math.round(loadMbps * 100) / 100, bytesRelayed };
    },
    counts: () => ({ sessions: bridged.size / 2, bytesRelayed }),
    async stop() {
      for (const { socket, timer } of waiting.values()) {
        clearTimeout(timer);
        socket.destroy();
      }
      for (const socket of bridged) socket.destroy();
      pending.destroyAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
