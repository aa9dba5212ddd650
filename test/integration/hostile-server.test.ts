// The real inp2pc against a fake inp2ps that sends malformed pushes and responses: each is an error
// the client logs, naming what was wrong; the client neither crashes nor acts on it, and keeps
// working for the valid messages that follow.
import { rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import type WsWebSocket from "ws";
import type { WebSocketServer as WsServer } from "ws";
import { describe, expect, it } from "vitest";
import { MAX_NODES_LISTED } from "../../src/protocol/index.ts";
import { startClient, tempDir, waitFor } from "../helpers/processes.ts";

// The real `ws` implementation, loaded by path as src/client/session.ts does.
const { WebSocketServer } = require("../../node_modules/ws/index.js") as { WebSocketServer: typeof WsServer };

type Json = Record<string, any>;
const WAIT_MS = 15_000;
const HEARTBEAT_INTERVAL_MS = 300;
const NONCE = "A".repeat(32);
const PUBLIC_KEY = "B".repeat(43);
const SESSION_ID = "C".repeat(22);

const validPlan = {
  sessionId: SESSION_ID,
  startAt: 1,
  role: "responder",
  peer: { name: "beta", publicKey: PUBLIC_KEY, nat: null, candidates: null },
};
const validCandidates = { udpLan: [], tcpLan: [], udpPublic: null, tcpPublic: null };
const validRelayPlan = {
  sessionId: SESSION_ID,
  role: "responder",
  peer: { name: "beta", publicKey: PUBLIC_KEY },
  relay: { name: "server", tier: "server", host: null, port: 1, ticket: "x.y" },
};

/** Each malformed message the fake server sends, and what the client's error line must name. */
const MALFORMED: { what: string; text: string; logged: RegExp }[] = [
  { what: "a connect plan without a peer", text: JSON.stringify({ type: "connect", plan: { ...validPlan, peer: undefined } }), logged: /"connect".*plan\.peer/ },
  {
    what: "a connect plan with candidates of the wrong type",
    text: JSON.stringify({ type: "connect", plan: { ...validPlan, peer: { ...validPlan.peer, candidates: { ...validCandidates, udpLan: "127.0.0.1:9" } } } }),
    logged: /"connect".*plan\.peer\.candidates\.udpLan/,
  },
  {
    what: "an SDWAN map with a bad IP",
    text: JSON.stringify({ type: "sdwan", map: { version: 1, subnet: "10.9.0.0/24", self: { name: "alpha", ip: "10.9.0.300" }, nodes: [] } }),
    logged: /"sdwan".*map\.self\.ip/,
  },
  {
    what: "a relay plan with a huge port",
    text: JSON.stringify({ type: "relay", plan: { ...validRelayPlan, relay: { ...validRelayPlan.relay, port: 9_999_999 } } }),
    logged: /"relay".*plan\.relay\.port/,
  },
  { what: "a node-online without a name", text: JSON.stringify({ type: "node-online", node: { version: "1", onlineSince: 1 } }), logged: /"node-online".*node\.name/ },
  { what: "an unknown type", text: JSON.stringify({ type: "launch-missiles" }), logged: /unknown type "launch-missiles"/ },
  { what: "garbage JSON", text: "{not json", logged: /not JSON/ },
];

interface FakeServer {
  port: number;
  connections: WsWebSocket[];
  /** Every request the client sent, with the connection it came on (0-based). */
  requests: { connection: number; message: Json }[];
  close(): Promise<void>;
}

/**
 * A fake inp2ps on 127.0.0.1: hello, then answers login, heartbeat and report as the real one does,
 * unless `answer` returns a result of its own for a request (malformed on purpose).
 */
async function fakeServer(answer: (connection: number, message: Json) => unknown = () => undefined): Promise<FakeServer> {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((done) => server.once("listening", () => done()));
  const fake: FakeServer = {
    port: (server.address() as AddressInfo).port,
    connections: [],
    requests: [],
    close: () => {
      for (const socket of fake.connections) socket.terminate();
      return new Promise<void>((done) => server.close(() => done()));
    },
  };
  server.on("connection", (socket) => {
    const connection = fake.connections.push(socket) - 1;
    socket.send(JSON.stringify({ type: "hello", nonce: NONCE, serverTime: Date.now(), version: "fake-0" }));
    socket.on("message", (data) => {
      const message = JSON.parse(data.toString()) as Json;
      fake.requests.push({ connection, message });
      const own = answer(connection, message);
      const result =
        own ??
        (message.type === "login"
          ? { user: "default", node: message.node, address: "127.0.0.1:1", serverTime: Date.now(), heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS, heartbeatTimeoutMs: 10_000, peers: [] }
          : message.type === "heartbeat"
            ? { clientTime: message.clientTime, serverTime: Date.now() }
            : {});
      socket.send(JSON.stringify({ type: "response", id: message.id, ok: true, result }));
    });
  });
  return fake;
}

/** A real inp2pc logged in to `fake`; stopped, with its directory removed, when the test ends. */
async function loggedInClient(fake: FakeServer, onTestFinished: (cleanup: () => Promise<void>) => void) {
  const dir = tempDir("inp2pc-hostile-");
  const client = startClient({ node: "alpha", port: fake.port, token: "1", insecure: true, dir });
  onTestFinished(async () => {
    await client.stop("SIGKILL");
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await client.waitForOutput(/logged in/, WAIT_MS);
  return client;
}

const heartbeatsOn = (fake: FakeServer, connection: number) => fake.requests.filter((r) => r.connection === connection && r.message.type === "heartbeat").length;

describe("inp2pc against a hostile server", () => {
  it("logs each malformed push naming what was wrong, stays connected, and acts on the valid push after them", async ({ onTestFinished }) => {
    const fake = await fakeServer();
    const client = await loggedInClient(fake, onTestFinished);
    const socket = fake.connections[0]!;
    for (const bad of MALFORMED) socket.send(bad.text);
    socket.send(JSON.stringify({ type: "node-online", node: { name: "gamma", version: "1", onlineSince: 1 } }));
    await client.waitForOutput(/peer online.*peer=gamma/, WAIT_MS);
    for (const bad of MALFORMED) expect(client.output, `the client's log names what was wrong with ${bad.what}`).toMatch(bad.logged);
    // Nothing malformed was acted on: no link attempt with beta, no virtual network, no peer without a name.
    expect(client.output).not.toMatch(/link with beta|through a relay|virtual network|peer online peer=(?!gamma)/);
    const before = heartbeatsOn(fake, 0);
    await waitFor("two more heartbeats on the same connection", () => heartbeatsOn(fake, 0) >= before + 2, WAIT_MS);
    expect(client.exitCode, "inp2pc still runs").toBeNull();
    expect(fake.connections.length, "inp2pc stayed on its first connection").toBe(1);
  }, 40_000);

  it("treats a malformed response as a failed request naming the field: a bad login answer makes it log in anew, a bad heartbeat answer is skipped", async ({ onTestFinished }) => {
    let heartbeatsAnswered = 0;
    const fake = await fakeServer((connection, message) => {
      if (message.type === "login" && connection === 0) return { user: "default", node: message.node, heartbeatIntervalMs: "soon", peers: [] };
      if (message.type === "heartbeat" && heartbeatsAnswered++ === 0) return { clientTime: message.clientTime, serverTime: "noon" };
      return undefined;
    });
    const client = await loggedInClient(fake, onTestFinished);
    expect(client.output).toMatch(/answer to login.*heartbeatIntervalMs/);
    expect(fake.connections.length, "the client dropped the connection whose login answer was malformed and logged in anew").toBe(2);
    await client.waitForOutput(/answer to heartbeat.*serverTime/, WAIT_MS);
    const before = heartbeatsOn(fake, 1);
    await waitFor("two more heartbeats on the same connection", () => heartbeatsOn(fake, 1) >= before + 2, WAIT_MS);
    expect(client.exitCode, "inp2pc still runs").toBeNull();
    expect(fake.connections.length, "inp2pc stayed on its second connection").toBe(2);
  }, 40_000);

  it("keeps at most MAX_NODES_LISTED peers however many node-online pushes the server sends", async ({ onTestFinished }) => {
    const fake = await fakeServer();
    const client = await loggedInClient(fake, onTestFinished);
    const socket = fake.connections[0]!;
    for (let i = 0; i <= MAX_NODES_LISTED; i++) socket.send(JSON.stringify({ type: "node-online", node: { name: `n${i}`, version: "1", onlineSince: 1 } }));
    await client.waitForOutput(new RegExp(`ignoring peer n${MAX_NODES_LISTED}: the server already listed ${MAX_NODES_LISTED} peers`), WAIT_MS);
    // A peer it already knows is still updated: the bound refuses only new names.
    socket.send(JSON.stringify({ type: "node-online", node: { name: "n0", version: "2", onlineSince: 2 } }));
    await waitFor("n0 online again", () => client.output.match(/peer online peer=n0\b/g)?.length === 2, WAIT_MS);
    expect(client.exitCode, "inp2pc still runs").toBeNull();
  }, 60_000);
});
