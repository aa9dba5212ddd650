// The pool every stranger-facing listener keeps its not-yet-authenticated connections in, on real
// loopback sockets: shares per address, the global cap, the absolute deadline, and leaving on authentication.
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PreAuthPool, type PreAuthSlot } from "../../src/net/index.ts";
import { waitFor } from "../helpers/processes.ts";

const DEADLINE_MS = 400;
let server: Server;
let port: number;
let pool: PreAuthPool;
/** What the listener did with each connection, in accept order. */
let outcomes: ("admitted" | string)[];
let slots: PreAuthSlot[];
const clients: Socket[] = [];

beforeEach(async () => {
  pool = new PreAuthPool({ maxPerAddress: 2, maxTotal: 3, deadlineMs: DEADLINE_MS });
  outcomes = [];
  slots = [];
  server = createServer((socket) => {
    const slot = pool.admit(socket);
    if ("refused" in slot) {
      outcomes.push(slot.refused);
      return void socket.destroy();
    }
    outcomes.push("admitted");
    slots.push(slot);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  port = (server.address() as { port: number }).port;
});
afterEach(async () => {
  clients.forEach((s) => s.destroy());
  clients.length = 0;
  pool.destroyAll();
  await new Promise<void>((done) => server.close(() => done()));
});

/** A client from `localAddress`; resolves once the listener has decided about it. */
async function open(localAddress: string): Promise<Socket> {
  const before = outcomes.length;
  const socket = connect({ host: "127.0.0.1", port, localAddress });
  socket.on("error", () => {});
  clients.push(socket);
  await waitFor("the listener to decide", () => outcomes.length > before, 5_000, 5);
  return socket;
}

const closed = (socket: Socket) => waitFor("the connection closed", () => socket.destroyed || socket.readyState === "closed", DEADLINE_MS + 5_000, 10);

describe("PreAuthPool", () => {
  it("gives each address its share and all addresses together the cap, saying which was hit", async () => {
    await open("127.0.0.1");
    await open("127.0.0.1");
    await open("127.0.0.1");
    await open("127.0.0.2");
    await open("127.0.0.3");
    expect(outcomes).toEqual([
      "admitted",
      "admitted",
      "this address already has 2 connections waiting to authenticate (limit 2)",
      "admitted",
      "3 connections already wait to authenticate (limit 3)",
    ]);
    expect(pool.size).toBe(3);
  });

  it("closes a connection at the deadline from its accept, however it trickles bytes", async () => {
    const socket = await open("127.0.0.1");
    const opened = Date.now();
    const drip = setInterval(() => !socket.destroyed && socket.write("x"), DEADLINE_MS / 4);
    try {
      await closed(socket);
    } finally {
      clearInterval(drip);
    }
    expect(Date.now() - opened).toBeLessThan(DEADLINE_MS + 5_000);
    await waitFor("the pool to be empty", () => pool.size === 0, 5_000, 10);
  });

  it("lets an authenticated connection leave: its slot is free and the deadline is off", async () => {
    const kept = await open("127.0.0.1");
    await open("127.0.0.1");
    slots[0]!.authenticated();
    expect(pool.size).toBe(1);
    await open("127.0.0.1");
    expect(outcomes).toEqual(["admitted", "admitted", "admitted"]);
    // The others, accepted after it, are closed at their deadline; the authenticated one stays open.
    await closed(clients[1]!);
    await closed(clients[2]!);
    expect(kept.destroyed).toBe(false);
    expect(kept.readyState).toBe("open");
  });
});
