// The relay's door: one-time tickets checked before anything is bridged. An in-process relay on
// 127.0.0.1 and raw TCP clients speaking its hello.
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { relayTicketKey, signTicket, type TicketFields } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import type { RelayAnswer } from "../../src/protocol/index.ts";
import { privateRelayRefusal, startRelay, type RunningRelay } from "../../src/relay/index.ts";
import { readFrames, writeFrame } from "../../src/transport/index.ts";

const RELAY_NAME = "alice/relay1";
const key = relayTicketKey("1234567890", "relay1");
let relay: RunningRelay;
const sockets: Socket[] = [];

beforeAll(async () => {
  relay = await startRelay({
    host: "127.0.0.1",
    port: 0,
    name: RELAY_NAME,
    key,
    serverNow: Date.now,
    bwMbps: 1000,
    refuse: privateRelayRefusal("alice"),
    logger: silentLogger,
  });
});
afterAll(async () => {
  sockets.forEach((s) => s.destroy());
  await relay.stop();
});

function ticket(overrides: Partial<TicketFields> = {}, signingKey: Uint8Array = key): string {
  const fields: TicketFields = { relay: RELAY_NAME, session: randomBytes(16).toString("base64url"), side: "a", tier: "private", expiresAt: Date.now() + 30_000, ...overrides };
  return signTicket(signingKey, fields);
}

/** Connects, sends `hello` as one frame, and resolves with the relay's answer and the socket. */
function present(hello: Buffer | string): Promise<{ answer: RelayAnswer; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port: relay.port }, () => writeFrame(socket, Buffer.isBuffer(hello) ? hello : Buffer.from(hello)));
    sockets.push(socket);
    const timer = setTimeout(() => reject(new Error("no answer from the relay within 3 s")), 3_000);
    socket.on("error", () => {});
    readFrames(socket, (frame) => {
      clearTimeout(timer);
      socket.removeAllListeners("data");
      resolve({ answer: JSON.parse(frame.toString()), socket });
    });
  });
}

const hello = (t: string) => JSON.stringify({ ticket: t });

describe("relay tickets", () => {
  it("bridges the two sides of a valid ticket, bytes both ways", async () => {
    const session = randomBytes(16).toString("base64url");
    const [a, b] = await Promise.all([present(hello(ticket({ session, side: "a" }))), present(hello(ticket({ session, side: "b" })))]);
    expect([a.answer, b.answer]).toEqual([{ ok: true }, { ok: true }]);
    const got = new Promise<string>((done) => b.socket.once("data", (d) => done(d.toString())));
    a.socket.write("through the relay");
    expect(await got).toBe("through the relay");
  });

  it.each([
    ["a forged ticket (signed with another key)", () => hello(ticket({}, randomBytes(32))), "TICKET_FORGED"],
    ["an expired ticket", () => hello(ticket({ expiresAt: Date.now() - 1_000 })), "TICKET_EXPIRED"],
    ["a ticket for another relay", () => hello(ticket({ relay: "alice/other" })), "TICKET_WRONG_RELAY"],
    ["a ticket with its payload altered", () => hello(ticket().replace(/^./, (c) => (c === "A" ? "B" : "A"))), "TICKET_FORGED"],
    ["garbage instead of a ticket", () => hello("not.a-ticket"), "TICKET_MALFORMED"],
    ["a hello that is not JSON", () => "{{{", "RELAY_BAD_HELLO"],
    ["a session of the super tier (other users' nodes) at a private relay", () => hello(ticket({ tier: "super" })), "RELAY_NOT_ALLOWED"],
  ])("refuses %s, saying why", async (_what, make, code) => {
    const { answer } = await present(make());
    expect(answer.ok).toBe(false);
    expect(answer.code).toBe(code);
    expect(answer.error).toMatch(/\w/);
  });

  it("refuses a replayed ticket", async () => {
    const session = randomBytes(16).toString("base64url");
    const t = ticket({ session, side: "a" });
    // Two copies at once: whichever the relay reads first waits for side b, the other is refused
    // at once, so the first answer to arrive is the refusal.
    const copies = [present(hello(t)), present(hello(t))];
    const { answer } = await Promise.race(copies);
    expect(answer).toMatchObject({ ok: false, code: "TICKET_REPLAYED" });
    const other = await present(hello(ticket({ session, side: "b" })));
    expect(other.answer).toEqual({ ok: true });
    const answers = (await Promise.all(copies)).map((copy) => copy.answer);
    expect(answers.filter((a) => a.ok)).toEqual([{ ok: true }]);
    expect(answers.filter((a) => !a.ok)).toEqual([answer]);
  });

  it("refuses an oversized hello", async () => {
    const { answer } = await present(Buffer.alloc(100_000, 0x41));
    expect(answer).toMatchObject({ ok: false, code: "RELAY_BAD_HELLO" });
  });

  it("keeps bridging established sessions while strangers are refused", async () => {
    const session = randomBytes(16).toString("base64url");
    const [a, b] = await Promise.all([present(hello(ticket({ session, side: "a" }))), present(hello(ticket({ session, side: "b" })))]);
    expect([a.answer, b.answer]).toEqual([{ ok: true }, { ok: true }]);
    const strangers = await Promise.all(Array.from({ length: 20 }, () => present(hello(ticket({}, randomBytes(32))))));
    expect(strangers.map(({ answer }) => answer.code)).toEqual(Array(20).fill("TICKET_FORGED"));
    for (const [from, to] of [[b, a], [a, b]] as const) {
      const got = new Promise<string>((done) => to.socket.once("data", (d) => done(d.toString())));
      from.socket.write("still here");
      expect(await got).toBe("still here");
    }
  });
});
