// The relay's door under a slow-drip attack: one address opens hundreds of connections, announces a
// hello and drips it a byte a second. (The 2,048-byte announcement is now refused at once, being
// longer than any ticket; this one announces 256 bytes, which a ticket may be.) Valid tickets from other addresses must still be bridged, and
// the dripping connections must be closed at the hello deadline however they trickle.
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { signTicket, type TicketFields } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import type { RelayAnswer } from "../../src/protocol/index.ts";
import { RELAY_HELLO_DEADLINE_MS, RELAY_MAX_PENDING_PER_ADDRESS, startRelay, type RunningRelay } from "../../src/relay/index.ts";
import { readFrames, writeFrame } from "../../src/transport/index.ts";
import { waitFor } from "../helpers/processes.ts";

const RELAY_NAME = "server";
const key = randomBytes(32);
/** More than the whole pending pool held before the per-address share (512). */
const ATTACK_CONNECTIONS = 520;
const ATTACK_BATCH = 40;
const DRIP_INTERVAL_MS = 1_000;
/** A valid pair is bridged within this while the attack goes on (loopback takes milliseconds). */
const BRIDGE_BOUND_MS = 3_000;
const LONGER_THAN_ANY_HELLO_BYTES = 1_024;

let relay: RunningRelay;
/** Connections the relay refused by a limit, as it reports them (what its metric counts). */
let limited = 0;
const sockets: Socket[] = [];
let drip: ReturnType<typeof setInterval> | undefined;

beforeEach(async () => {
  limited = 0;
  relay = await startRelay({ host: "127.0.0.1", port: 0, name: RELAY_NAME, key, serverNow: Date.now, bwMbps: 1000, logger: silentLogger, onLimited: () => limited++ });
});
afterEach(async () => {
  clearInterval(drip);
  sockets.forEach((s) => s.destroy());
  sockets.length = 0;
  await relay.stop();
});

function ticket(fields: Partial<TicketFields>): string {
  return signTicket(key, { relay: RELAY_NAME, session: randomBytes(16).toString("base64url"), side: "a", tier: "server", expiresAt: Date.now() + 30_000, ...fields });
}

/** From `localAddress`, sends `hello` as one frame; resolves with the relay's answer, rejects if the relay closes without one. */
function present(hello: Buffer, localAddress: string, timeoutMs: number): Promise<RelayAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port: relay.port, localAddress }, () => writeFrame(socket, hello));
    sockets.push(socket);
    const timer = setTimeout(() => reject(new Error(`no answer from the relay within ${timeoutMs} ms`)), timeoutMs);
    socket.on("error", () => {});
    socket.on("close", () => reject(new Error("the relay closed the connection without an answer")));
    readFrames(socket, (frame) => {
      clearTimeout(timer);
      resolve(JSON.parse(frame.toString()));
    });
  });
}

/** One connection announcing a 256-byte hello (00 00 01 00); resolves once connected, or refused. */
function dripper(): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port: relay.port, localAddress: "127.0.0.1" }, () => {
      socket.write(Buffer.from([0x00, 0x00, 0x01, 0x00]));
      resolve(socket);
    });
    sockets.push(socket);
    socket.on("error", () => {});
    socket.on("close", () => resolve(socket));
  });
}

describe("relay under a slow-drip attack", () => {
  it("bridges a valid ticket pair from other addresses, and closes the drippers at the hello deadline", { timeout: 60_000 }, async () => {
    const attackers: Socket[] = [];
    for (let opened = 0; opened < ATTACK_CONNECTIONS; opened += ATTACK_BATCH) attackers.push(...(await Promise.all(Array.from({ length: ATTACK_BATCH }, dripper))));
    const attackStart = Date.now();
    // One address's share of the pending pool is held; every connection beyond it is refused, and reported.
    await waitFor("each refused dripper reported", () => limited === ATTACK_CONNECTIONS - RELAY_MAX_PENDING_PER_ADDRESS, 5_000);
    drip = setInterval(() => attackers.forEach((s) => !s.destroyed && s.write(Buffer.from([0x41]))), DRIP_INTERVAL_MS);

    const session = randomBytes(16).toString("base64url");
    const hello = (side: "a" | "b") => Buffer.from(JSON.stringify({ ticket: ticket({ session, side }) }));
    const started = Date.now();
    const answers = await Promise.all([present(hello("a"), "127.0.0.2", BRIDGE_BOUND_MS), present(hello("b"), "127.0.0.3", BRIDGE_BOUND_MS)]);
    expect(answers).toEqual([{ ok: true }, { ok: true }]);
    expect(Date.now() - started).toBeLessThan(BRIDGE_BOUND_MS);

    // Dripping a byte a second does not keep a connection: all are closed soon after the deadline.
    await waitFor("every dripping connection closed", () => attackers.every((s) => s.destroyed || s.readyState === "closed"), RELAY_HELLO_DEADLINE_MS + 10_000);
    expect(Date.now() - attackStart).toBeLessThan(RELAY_HELLO_DEADLINE_MS + 10_000);
    expect(limited).toBe(ATTACK_CONNECTIONS); // the ones held, at their deadline
  });

  it("refuses a hello announced longer than any ticket, at once", async () => {
    // The longest ticket (relay names of 63 + 1 + 63 characters) makes a hello under 400 bytes.
    const header = Buffer.alloc(4);
    header.writeUInt32BE(LONGER_THAN_ANY_HELLO_BYTES);
    const answer = new Promise<RelayAnswer>((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port: relay.port }, () => socket.write(header));
      sockets.push(socket);
      socket.on("error", () => {});
      socket.on("close", () => reject(new Error("closed without an answer")));
      readFrames(socket, (frame) => resolve(JSON.parse(frame.toString())));
      setTimeout(() => reject(new Error("no answer within 2 s")), 2_000);
    });
    expect(await answer).toMatchObject({ ok: false, code: "RELAY_BAD_HELLO" });
  });

  it("lets a ticket of the longest relay name through (the hello cap is what a ticket needs)", async () => {
    const name = `${"u".repeat(63)}/${"n".repeat(63)}`;
    const long = await startRelay({ host: "127.0.0.1", port: 0, name, key, serverNow: Date.now, bwMbps: 1000, logger: silentLogger });
    try {
      const session = randomBytes(16).toString("base64url");
      const hello = (side: "a" | "b") => Buffer.from(JSON.stringify({ ticket: ticket({ relay: name, session, side, tier: "super" }) }));
      const ask = (side: "a" | "b") =>
        new Promise<RelayAnswer>((resolve, reject) => {
          const socket = connect({ host: "127.0.0.1", port: long.port }, () => writeFrame(socket, hello(side)));
          sockets.push(socket);
          socket.on("error", () => {});
          socket.on("close", () => reject(new Error("closed without an answer")));
          readFrames(socket, (frame) => resolve(JSON.parse(frame.toString())));
        });
      expect(await Promise.all([ask("a"), ask("b")])).toEqual([{ ok: true }, { ok: true }]);
    } finally {
      await long.stop();
    }
  });
});
