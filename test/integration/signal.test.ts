// The signalling protocol spoken by a raw WebSocket client against a real inp2ps process on
// 127.0.0.1: login (HMAC proof + Ed25519 signature), key pinning, heartbeats, node events, and
// how the server treats garbage, abusers and too many connections.
import { rmSync } from "node:fs";
import type WsWebSocket from "ws";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity, loginProof, loginTranscript, signWithIdentity, type Identity } from "../../src/crypto/index.ts";
import { CloseCode, MAX_MESSAGE_BYTES } from "../../src/protocol/index.ts";
import { LOGIN_TIMEOUT_MS, MAX_BAD_MESSAGES_PER_CONNECTION } from "../../src/server/constants.ts";
import { api, INP2PS, onlineNodes, runToEnd, startServer, tempDir, waitFor, type ServerHandle } from "../helpers/processes.ts";

// The real `ws` implementation, loaded by path as src/client/session.ts does (Bun would swap the
// package for its own shim otherwise).
const WebSocket = require("../../node_modules/ws/lib/websocket.js") as typeof WsWebSocket;

type Json = Record<string, any>;
type Refused = { status: number; headers: Record<string, unknown>; body: any };

const WAIT_MS = 5_000;
/** A NAT detection near its worst case (a lost first binding, then probes that time out). */
const SLOW_NAT_DETECTION_MS = 3_200;
const USER_TOKEN = "1234567890123456789";
const ALICE_TOKEN = "42";
const ALICE_USER = '[[server.users]]\nname = "alice"\ntoken = "42"';

function wsUrl(server: ServerHandle): string {
  return `${server.fingerprint ? "wss" : "ws"}://127.0.0.1:${server.port}/ws`;
}

/** Every raw client opened by a test, so afterEach can close them even when the test failed. */
const openClients = new Set<RawClient>();

/** A minimal protocol client: records every message and the close, sends whatever it is told. */
class RawClient {
  readonly messages: Json[] = [];
  closed?: { code: number; reason: string };
  private nextId = 1;
  private heartbeatTimer?: ReturnType<typeof setInterval>;

  private constructor(readonly socket: WsWebSocket) {
    openClients.add(this);
    socket.on("message", (data) => {
      const text = data.toString();
      try {
        this.messages.push(JSON.parse(text));
      } catch {
        this.messages.push({ type: "<not json>", text });
      }
    });
    socket.on("close", (code, reason) => {
      clearInterval(this.heartbeatTimer);
      this.closed = { code, reason: reason.toString() };
    });
    socket.on("error", () => {}); // the close event reports what happened
  }

  /** Opens a WebSocket; resolves with the client, or with the HTTP refusal of the upgrade. */
  static attempt(url: string, localAddress?: string): Promise<{ client: RawClient } | { refused: Refused }> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { rejectUnauthorized: false, handshakeTimeout: WAIT_MS, perMessageDeflate: false, localAddress });
      const client = new RawClient(socket);
      socket.once("open", () => resolve({ client }));
      socket.once("unexpected-response", (_request, response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {}
          socket.terminate();
          resolve({ refused: { status: response.statusCode ?? 0, headers: response.headers as Record<string, unknown>, body } });
        });
      });
      socket.once("close", (code) => reject(new Error(`WebSocket to ${url} closed (${code}) before opening`)));
    });
  }

  static async connect(url: string, localAddress?: string): Promise<RawClient> {
    const result = await RawClient.attempt(url, localAddress);
    if ("refused" in result) throw new Error(`upgrade refused: ${result.refused.status} ${JSON.stringify(result.refused.body)}`);
    return result.client;
  }

  /** Connects and logs in; fails the test unless the login succeeds. */
  static async online(url: string, node: string, token = USER_TOKEN, identity = generateIdentity()): Promise<RawClient> {
    const client = await RawClient.connect(url);
    const response = await client.login(node, token, identity);
    expect(response, `login of ${node}`).toMatchObject({ ok: true });
    return client;
  }

  waitMessage(what: string, match: (m: Json) => boolean, timeoutMs = WAIT_MS): Promise<Json> {
    return waitFor(what, () => this.messages.find(match), timeoutMs, 10);
  }

  hello(): Promise<Json> {
    return this.waitMessage("hello", (m) => m.type === "hello");
  }

  response(id: number | null, timeoutMs = WAIT_MS): Promise<Json> {
    return this.waitMessage(`response to id ${id}`, (m) => m.type === "response" && m.id === id, timeoutMs);
  }

  /** Sends raw text, a binary frame, or a JSON value as text. */
  send(data: string | Buffer | Json): void {
    if (Buffer.isBuffer(data)) this.socket.send(data, { binary: true });
    else this.socket.send(typeof data === "string" ? data : JSON.stringify(data));
  }

  async request(type: string, fields: Json = {}): Promise<Json> {
    const id = this.nextId++;
    this.send({ type, id, ...fields });
    return this.response(id);
  }

  heartbeat(): Promise<Json> {
    return this.request("heartbeat", { clientTime: Date.now() });
  }

  /** Logs in the way inp2pc does; `signer` signs the transcript (a different key forges it); `fields` go along. */
  async login(node: string, token: string, identity: Identity, signer: Identity = identity, fields: Json = {}): Promise<Json> {
    const { nonce } = await this.hello();
    return this.request("login", {
      node,
      publicKey: identity.publicKey,
      proof: loginProof(token, nonce, node, identity.publicKey),
      signature: signWithIdentity(signer, loginTranscript(nonce, node, identity.publicKey)),
      version: "test-0",
      ...fields,
    });
  }

  keepHeartbeating(intervalMs: number): void {
    this.heartbeatTimer = setInterval(() => this.send({ type: "heartbeat", id: this.nextId++, clientTime: Date.now() }), intervalMs);
  }

  stopHeartbeating(): void {
    clearInterval(this.heartbeatTimer);
  }

  closedWith(timeoutMs = WAIT_MS): Promise<{ code: number; reason: string }> {
    return waitFor("the server to close the connection", () => this.closed, timeoutMs, 10);
  }

  /** Presence changes heard, one per peer per delta, in order: { type: "node-online" | "node-offline", node }. */
  events(): Json[] {
    return this.messages
      .filter((m) => m.type === "presence")
      .flatMap((m) => [...m.offline.map((node: Json) => ({ type: "node-offline", node })), ...m.online.map((node: Json) => ({ type: "node-online", node }))]);
  }

  waitEvent(what: string, match: (event: Json) => boolean, timeoutMs = WAIT_MS): Promise<Json> {
    return waitFor(what, () => this.events().find(match), timeoutMs, 10);
  }

  /** Asks to hear of `peers`; returns the names of those online now. */
  async watch(...peers: string[]): Promise<string[]> {
    const response = await this.request("watch", { peers });
    expect(response, `watch ${peers.join(", ")}`).toMatchObject({ ok: true });
    return response.result.peers.map((p: Json) => p.name);
  }

  async close(): Promise<void> {
    this.stopHeartbeating();
    openClients.delete(this);
    if (this.closed) return;
    this.socket.close(1000, "test done");
    await waitFor("close handshake", () => this.closed, 2_000, 10).catch(() => this.socket.terminate());
  }
}

async function closeAllClients(): Promise<void> {
  await Promise.all([...openClients].map((c) => c.close()));
}

async function listed(server: ServerHandle, node: string): Promise<number> {
  return (await onlineNodes(server)).filter((n) => n === node).length;
}

describe("signalling on one server", () => {
  let server: ServerHandle;
  let url: string;

  beforeAll(async () => {
    // Long heartbeat timeout: raw clients here only heartbeat when a test asks them to.
    server = await startServer({ heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 30_000, tail: ALICE_USER });
    url = wsUrl(server);
  });
  afterEach(async () => {
    await closeAllClients();
    // Start every test from an empty registry, so peers lists and events belong to that test.
    await waitFor("the server to drop the previous test's nodes", async () => (await onlineNodes(server)).length === 0, WAIT_MS);
  });
  afterAll(async () => {
    await closeAllClients();
    await server?.stop();
  });

  it("greets with a nonce and logs in with the token proof and identity signature", async () => {
    const client = await RawClient.connect(url);
    const hello = await client.hello();
    expect(client.messages[0]).toBe(hello);
    expect(hello.nonce).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    expect(Math.abs(hello.serverTime - Date.now())).toBeLessThan(2_000);

    const first = await RawClient.online(url, "sig-peer");
    const response = await client.login("sig-login", USER_TOKEN, generateIdentity());
    expect(response.ok).toBe(true);
    expect(response.result).toMatchObject({ user: "default", node: "sig-login", heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 30_000 });
    expect(response.result.address).toMatch(/^127\.0\.0\.1:\d+$/);
    // Presence by interest (issue #17): the login answer lists no peers; the node asks for those it needs.
    expect(response.result.peers).toEqual([]);
    expect(await client.watch("sig-peer", "nobody")).toEqual(["sig-peer"]);
    expect(await onlineNodes(server)).toEqual(["sig-login", "sig-peer"]);
    await first.close();
  });

  it("refuses a wrong token with BAD_TOKEN, closes that connection, and keeps serving", async () => {
    const client = await RawClient.connect(url);
    const response = await client.login("bad-token", "999", generateIdentity());
    expect(response).toMatchObject({ ok: false, error: { code: "BAD_TOKEN" } });
    expect(response.error.message).toContain("bad token");
    expect(await client.closedWith()).toMatchObject({ code: CloseCode.loginRefused });
    expect(await listed(server, "bad-token")).toBe(0);

    const good = await RawClient.online(url, "after-bad-token");
    expect((await good.heartbeat()).ok).toBe(true);
  });

  it("refuses a signature that does not match the public key with BAD_SIGNATURE", async () => {
    const client = await RawClient.connect(url);
    const response = await client.login("forged", USER_TOKEN, generateIdentity(), generateIdentity());
    expect(response).toMatchObject({ ok: false, error: { code: "BAD_SIGNATURE" } });
    expect(response.error.message).toMatch(/signature/);
    expect(await client.closedWith()).toMatchObject({ code: CloseCode.loginRefused });
    expect(await listed(server, "forged")).toBe(0);
  });

  it("a second login of the same name and key replaces the first session", async () => {
    const identity = generateIdentity();
    const first = await RawClient.online(url, "twin", USER_TOKEN, identity);
    const second = await RawClient.online(url, "twin", USER_TOKEN, identity);
    expect(await first.closedWith()).toMatchObject({ code: CloseCode.replaced });
    expect(second.closed).toBeUndefined();
    expect((await second.heartbeat()).ok).toBe(true);
    expect(await listed(server, "twin")).toBe(1);
  });

  it("refuses the same name with a different key (KEY_MISMATCH) and keeps the original session", async () => {
    const original = await RawClient.online(url, "pinned");
    const impostor = await RawClient.connect(url);
    const response = await impostor.login("pinned", USER_TOKEN, generateIdentity());
    expect(response).toMatchObject({ ok: false, error: { code: "KEY_MISMATCH" } });
    expect(response.error.message).toContain('"pinned"');
    expect(response.error.message).toContain("inp2ps forget pinned");
    expect(await impostor.closedWith()).toMatchObject({ code: CloseCode.loginRefused });
    expect(original.closed).toBeUndefined();
    expect((await original.heartbeat()).ok).toBe(true);
    expect(await listed(server, "pinned")).toBe(1);
  });

  it("answers each kind of garbage with an error naming it, and keeps the connection", async () => {
    const client = await RawClient.online(url, "garbage");
    const other = await RawClient.online(url, "bystander");
    const cases: { send: string | Buffer; id: number | null; code: string; message: RegExp }[] = [
      { send: "this is not json", id: null, code: "BAD_JSON", message: /not valid JSON/ },
      { send: "[1,2,3]", id: null, code: "BAD_MESSAGE", message: /JSON object/ },
      { send: JSON.stringify({ type: "dance", id: 101 }), id: 101, code: "UNKNOWN_TYPE", message: /unknown message type "dance"/ },
      { send: JSON.stringify({ type: "heartbeat", id: 102 }), id: 102, code: "BAD_MESSAGE", message: /heartbeat: clientTime/ },
      {
        send: JSON.stringify({ type: "heartbeat", id: 103, clientTime: 1, colour: "red" }),
        id: 103,
        code: "BAD_MESSAGE",
        message: /unknown field "colour"/,
      },
      { send: Buffer.from('{"type":"heartbeat","id":104,"clientTime":1}'), id: null, code: "BAD_MESSAGE", message: /binary frames/ },
      {
        send: `{"pad":"${"x".repeat(100 * 1024)}"}`,
        id: null,
        code: "TOO_LARGE",
        message: new RegExp(`exceeds the limit of ${MAX_MESSAGE_BYTES}`),
      },
    ];
    for (const c of cases) {
      const before = client.messages.length;
      client.send(c.send);
      const reply = await waitFor(`a reply to ${c.code}`, () => client.messages.slice(before).find((m) => m.type === "response"), WAIT_MS, 10);
      expect(reply, `reply to ${String(c.send).slice(0, 60)}`).toMatchObject({ ok: false, id: c.id, error: { code: c.code } });
      expect(reply.error.message).toMatch(c.message);
    }
    expect(client.closed).toBeUndefined();
    const heartbeat = await client.heartbeat();
    expect(heartbeat.ok).toBe(true);
    expect((await other.heartbeat()).ok).toBe(true);
    expect(await onlineNodes(server)).toEqual(["bystander", "garbage"]);
  });

  it("echoes the id of a request that is too large", async () => {
    // signal.ts promises that every request gets one response with the same id.
    const client = await RawClient.online(url, "too-large");
    client.send(JSON.stringify({ type: "heartbeat", id: 77, clientTime: 1, pad: "x".repeat(100 * 1024) }));
    const reply = await client.waitMessage("a TOO_LARGE reply", (m) => m.type === "response" && m.error?.code === "TOO_LARGE");
    expect(reply.id).toBe(77);
  });

  it("answers requests before login with NOT_LOGGED_IN and closes a connection that never logs in", async () => {
    const beforeConnect = Date.now(); // the server's login timer starts after this
    const client = await RawClient.connect(url);
    await client.hello();
    client.send({ type: "heartbeat", id: 5, clientTime: Date.now() });
    client.send({ type: "peers", id: 6 });
    expect(await client.response(5)).toMatchObject({ ok: false, error: { code: "NOT_LOGGED_IN" } });
    expect((await client.response(6)).error.message).toMatch(/login/);
    const closed = await client.closedWith(LOGIN_TIMEOUT_MS + 3_000);
    expect(closed.code).toBe(CloseCode.loginTimeout);
    expect(Date.now() - beforeConnect).toBeGreaterThanOrEqual(LOGIN_TIMEOUT_MS);
  }, 20_000);

  it("heartbeat echoes clientTime and carries the server's time", async () => {
    const client = await RawClient.online(url, "beater");
    const clientTime = Date.now() - 12_345;
    client.send({ type: "heartbeat", id: 900, clientTime });
    const response = await client.response(900);
    expect(response.ok).toBe(true);
    expect(response.result.clientTime).toBe(clientTime);
    expect(Math.abs(response.result.serverTime - Date.now())).toBeLessThan(1_000);
  });

  it("tells a node when a peer it watches comes and goes, and nothing about other users' nodes of that name", async () => {
    const a = await RawClient.online(url, "ev-a");
    expect(await a.watch("ev-b")).toEqual([]);
    const alice = await RawClient.connect(url);
    const aliceLogin = await alice.login("alice-1", ALICE_TOKEN, generateIdentity());
    expect(aliceLogin).toMatchObject({ ok: true, result: { user: "alice", peers: [] } });
    expect(await alice.watch("ev-a", "ev-b", "alice-2")).toEqual([]);

    const b = await RawClient.online(url, "ev-b");
    const online = await a.waitEvent("node-online ev-b", (e) => e.type === "node-online");
    expect(online.node).toMatchObject({ name: "ev-b", version: "test-0" });

    await b.close();
    const offline = await a.waitEvent("node-offline ev-b", (e) => e.type === "node-offline");
    expect(offline.node).toEqual({ name: "ev-b" });

    const alicePeers = await alice.request("peers");
    expect(alicePeers.result.peers).toEqual([]);
    // A second alice node does reach alice-1, so the silence above is not just a slow server.
    const alice2 = await RawClient.online(url, "alice-2", ALICE_TOKEN);
    await alice.waitEvent("node-online alice-2", (e) => e.type === "node-online" && e.node.name === "alice-2");
    expect((await alice2.request("peers")).result.peers.map((p: Json) => p.name)).toEqual(["alice-1"]);
    expect(alice.events().map((e) => e.node.name)).toEqual(["alice-2"]);
    expect(a.events().map((e) => `${e.type} ${e.node.name}`)).toEqual(["node-online ev-b", "node-offline ev-b"]);
  });

  it("passes each node's instance id (its run of inp2pc) to its peers: presence, watch, peers, connect and relay plans", async () => {
    const instances = { a: "AAAAAAAAAAAAAAAA", b: "bbbbbbbbbbbbbbbb" };
    const a = await RawClient.connect(url);
    expect(await a.login("inst-a", USER_TOKEN, generateIdentity(), undefined, { instance: instances.a })).toMatchObject({ ok: true });
    const bIdentity = generateIdentity();
    const b = await RawClient.connect(url);
    expect(await a.watch("inst-b")).toEqual([]);
    expect(await b.login("inst-b", USER_TOKEN, bIdentity, undefined, { instance: instances.b })).toMatchObject({ ok: true });
    expect((await b.request("watch", { peers: ["inst-a"] })).result.peers.find((p: Json) => p.name === "inst-a")).toMatchObject({ instance: instances.a });
    const online = await a.waitEvent("node-online inst-b", (e) => e.type === "node-online" && e.node.name === "inst-b");
    expect(online.node.instance).toBe(instances.b);
    expect((await a.request("peers")).result.peers.find((p: Json) => p.name === "inst-b")).toMatchObject({ instance: instances.b });

    const nat = { natType: "public", mapping: "endpoint-independent", filtering: "endpoint-independent", publicAddress: "127.0.0.1", portPreserved: true, tcp: true };
    const candidates = { udpLan: ["127.0.0.1:1"], tcpLan: [], udpPublic: "127.0.0.1:1", tcpPublic: null };
    for (const client of [a, b]) expect(await client.request("report", { nat, candidates })).toMatchObject({ ok: true });
    const connect = await a.request("connect", { peer: "inst-b" });
    expect(connect.result.peer).toMatchObject({ name: "inst-b", instance: instances.b });
    expect((await b.waitMessage("connect plan", (m) => m.type === "connect")).plan.peer).toMatchObject({ name: "inst-a", instance: instances.a });
    const relay = await a.request("relay", { peer: "inst-b" });
    expect(relay.result.peer).toMatchObject({ name: "inst-b", instance: instances.b });
    expect((await b.waitMessage("relay plan", (m) => m.type === "relay")).plan.peer).toMatchObject({ name: "inst-a", instance: instances.a });

    // A new run of inst-b logs in: its peers hear the new instance.
    await RawClient.connect(url).then((c) => c.login("inst-b", USER_TOKEN, bIdentity, undefined, { instance: "cccccccccccccccc" }));
    await a.waitEvent("node-online of inst-b's new run", (e) => e.type === "node-online" && e.node.instance === "cccccccccccccccc");
  });

  it("a link plan waits for a peer that just logged in to finish its NAT detection, however slow (up to its worst case)", async () => {
    const nat = { natType: "symmetric", mapping: "address-and-port-dependent", filtering: "address-and-port-dependent", publicAddress: "127.0.0.1", portPreserved: false, tcp: true };
    const candidates = { udpLan: ["127.0.0.1:1"], tcpLan: [], udpPublic: "127.0.0.1:1", tcpPublic: null };
    const a = await RawClient.online(url, "slow-nat-a");
    expect(await a.request("report", { nat: { ...nat, natType: "port-restricted-cone", mapping: "endpoint-independent" }, candidates })).toMatchObject({ ok: true });
    const b = await RawClient.online(url, "slow-nat-b");
    const planned = a.request("connect", { peer: "slow-nat-b" });
    // A detection that lost a packet or two ends this late; the plan (roles, the birthday technique) needs it.
    await new Promise((r) => setTimeout(r, SLOW_NAT_DETECTION_MS));
    expect(await b.request("report", { nat, candidates })).toMatchObject({ ok: true });
    expect((await planned).result.peer.nat).toMatchObject({ natType: "symmetric" });
  });

  it("a link plan for a UDP-blocked node waits for its peer's TCP probe, which a TCP punch needs (the punch lab: udp-blocked -> full-cone planned without it)", async () => {
    const blocked = { natType: "udp-blocked", mapping: "unknown", filtering: "unknown", publicAddress: null, portPreserved: false, tcp: true };
    const cone = { natType: "full-cone", mapping: "endpoint-independent", filtering: "endpoint-independent", publicAddress: "127.0.0.1", portPreserved: true, tcp: true };
    const a = await RawClient.online(url, "tcp-wait-a");
    expect(await a.request("report", { nat: blocked, candidates: { udpLan: [], tcpLan: [], udpPublic: null, tcpPublic: null, tcpPunch: "127.0.0.1:2" } })).toMatchObject({ ok: true });
    const b = await RawClient.online(url, "tcp-wait-b");
    // b's UDP mapping is known, its TCP probe not yet (no tcpPunch at all: neither an address nor null).
    expect(await b.request("report", { nat: cone, candidates: { udpLan: ["127.0.0.1:1"], tcpLan: [], udpPublic: "127.0.0.1:1", tcpPublic: null } })).toMatchObject({ ok: true });
    const planned = a.request("connect", { peer: "tcp-wait-b" });
    await new Promise((r) => setTimeout(r, 500));
    expect(await b.request("report", { nat: cone, candidates: { udpLan: ["127.0.0.1:1"], tcpLan: [], udpPublic: "127.0.0.1:1", tcpPublic: null, tcpPunch: "127.0.0.1:3" } })).toMatchObject({ ok: true });
    expect((await planned).result.peer.candidates.tcpPunch).toBe("127.0.0.1:3");
  });

  it("refuses a malformed instance id, naming the field", async () => {
    const client = await RawClient.connect(url);
    const response = await client.login("inst-bad", USER_TOKEN, generateIdentity(), undefined, { instance: "short" });
    expect(response).toMatchObject({ ok: false, error: { code: "BAD_MESSAGE" } });
    expect(response.error.message).toMatch(/instance/);
  });

  it("refusals that answer a fair request (peer offline, no relay) never count as bad messages", async () => {
    const client = await RawClient.online(url, "asker");
    for (let i = 0; i < MAX_BAD_MESSAGES_PER_CONNECTION + 5; i++) {
      expect(await client.request(i % 2 ? "connect" : "relay", { peer: "nobody-here" })).toMatchObject({ ok: false, error: { code: "PEER_OFFLINE" } });
    }
    expect(client.closed).toBeUndefined();
    expect(await client.heartbeat()).toMatchObject({ ok: true });
  });

  it("peers lists the same user's online nodes only", async () => {
    const a = await RawClient.online(url, "peer-a");
    await RawClient.online(url, "peer-b");
    const c = await RawClient.online(url, "peer-c");
    await RawClient.online(url, "peer-alice", ALICE_TOKEN);
    await c.close();
    await waitFor("peer-c offline", async () => (await listed(server, "peer-c")) === 0);
    const response = await a.request("peers");
    expect(response.ok).toBe(true);
    expect(response.result.peers.map((p: Json) => p.name).sort()).toEqual(["peer-b"]);
    expect(response.result.peers[0]).toMatchObject({ name: "peer-b", version: "test-0" });
    expect(typeof response.result.peers[0].onlineSince).toBe("number");
  });
});

describe("a node key pin", () => {
  let dir: string | undefined;
  let server: ServerHandle | undefined;
  beforeAll(() => {
    dir = tempDir("inp2ps-pins-");
  });
  afterAll(async () => {
    await closeAllClients();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("survives a restart and is released by inp2ps forget", async () => {
    server = await startServer({ dir: dir!, tls: "off" });
    const port = server.port;
    const original = await RawClient.online(wsUrl(server), "reinstalled");
    await server.stop();
    expect(await original.closedWith()).toMatchObject({ code: CloseCode.shutdown });

    server = await startServer({ dir: dir!, port, tls: "off" });
    const url = wsUrl(server);
    const refused = await (await RawClient.connect(url)).login("reinstalled", USER_TOKEN, generateIdentity());
    expect(refused).toMatchObject({ ok: false, error: { code: "KEY_MISMATCH" } });

    const forget = await runToEnd(INP2PS, ["forget", "reinstalled", "--config", server.configPath]);
    expect(forget.output).toContain("forgot the identity key of node reinstalled");
    expect(forget.code).toBe(0);

    const newKey = generateIdentity();
    await RawClient.online(url, "reinstalled", USER_TOKEN, newKey);
    expect(await onlineNodes(server)).toEqual(["reinstalled"]);
  });
});

describe("heartbeat timeout", () => {
  const HEARTBEAT_INTERVAL_MS = 300;
  // Ten intervals: the steady node would have to miss ten heartbeats in a row to be dropped.
  const HEARTBEAT_TIMEOUT_MS = 3_000;
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ tls: "off", heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS });
  });
  afterAll(async () => {
    await closeAllClients();
    await server?.stop();
  });

  it("takes a silent node offline, closes it, and tells its peers", async () => {
    const url = wsUrl(server);
    const steady = await RawClient.online(url, "steady");
    steady.keepHeartbeating(HEARTBEAT_INTERVAL_MS);
    await steady.watch("silent");
    const beforeLogin = Date.now();
    const silent = await RawClient.online(url, "silent");
    // Closed for its silence, and not before the timeout ran out (a loaded machine only makes it later).
    expect(await silent.closedWith(HEARTBEAT_TIMEOUT_MS + 15_000)).toMatchObject({ code: CloseCode.heartbeatTimeout });
    expect(Date.now() - beforeLogin).toBeGreaterThan(HEARTBEAT_TIMEOUT_MS);
    const offline = await steady.waitEvent("node-offline silent", (e) => e.type === "node-offline");
    expect(offline.node).toEqual({ name: "silent" });
    expect(await onlineNodes(server)).toEqual(["steady"]);
    expect(steady.closed).toBeUndefined();
  });
});

describe("abuse", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ tls: "off" });
  });
  afterAll(async () => {
    await closeAllClients();
    await server?.stop();
  });

  it("drops a connection that keeps sending garbage and refuses its address for a while", async () => {
    const url = wsUrl(server);
    const innocent = await RawClient.online(url, "innocent");
    const abuser = await RawClient.connect(url);
    await abuser.hello();
    for (let i = 0; i < MAX_BAD_MESSAGES_PER_CONNECTION + 5 && !abuser.closed; i++) abuser.send(`garbage ${i}`);
    const closed = await abuser.closedWith();
    expect(closed.code).toBe(CloseCode.abuse);
    expect(abuser.messages.filter((m) => m.type === "response" && m.error?.code === "BAD_JSON")).toHaveLength(MAX_BAD_MESSAGES_PER_CONNECTION);

    const retry = await RawClient.attempt(url);
    expect("refused" in retry && retry.refused.status).toBe(429);
    if ("refused" in retry) {
      expect(retry.refused.body.error).toMatch(/bad messages/);
      expect(Number(retry.refused.headers["retry-after"])).toBeGreaterThan(0);
    }

    expect(innocent.closed).toBeUndefined();
    expect((await innocent.heartbeat()).ok).toBe(true);
    expect(await onlineNodes(server)).toEqual(["innocent"]);
  });
});

describe("per-address connection limit", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ tls: "off", maxConnsPerIp: 3 });
  });
  afterAll(async () => {
    await closeAllClients();
    await server?.stop();
  });

  it("refuses the 4th connection from 127.0.0.1 with 429 and admits one after another closes", async () => {
    const url = wsUrl(server);
    // Plain HTTP requests to the WebSocket path are not upgrades and must not use up a slot.
    for (let i = 0; i < 4; i++) expect((await api(server, "/ws")).status).toBeGreaterThanOrEqual(400);
    const held = await Promise.all([RawClient.connect(url), RawClient.connect(url), RawClient.connect(url)]);
    const fourth = await RawClient.attempt(url);
    expect("refused" in fourth && fourth.refused.status).toBe(429);
    if ("refused" in fourth) expect(fourth.refused.body).toEqual({ error: "too many connections from this address (limit 3)" });

    await held[0]!.close();
    const admitted = await waitFor(
      "a new connection to be admitted",
      async () => {
        const attempt = await RawClient.attempt(url);
        return "client" in attempt ? attempt.client : undefined;
      },
      WAIT_MS,
      50,
    );
    expect((await admitted.hello()).nonce).toBeTruthy();
    // The REST API is not subject to the WebSocket limit.
    expect((await api(server, "/api/v1/health")).status).toBe(200);
  });
});

describe("connections waiting to log in: a cap for all addresses together", () => {
  const CAP = 4;
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ tls: "off", extraToml: `max_conns_before_login = ${CAP}` });
  });
  afterAll(async () => {
    await closeAllClients();
    await server?.stop();
  });

  it(`closes connection ${CAP + 1} (each from its own address) at once, saying why, and admits one after another logs in`, async () => {
    const url = wsUrl(server);
    const held = await Promise.all(Array.from({ length: CAP }, (_, i) => RawClient.connect(url, `127.0.0.${i + 1}`)));
    await Promise.all(held.map((client) => client.hello()));
    const extra = await RawClient.connect(url, `127.0.0.${CAP + 1}`);
    expect(await extra.closedWith()).toEqual({ code: CloseCode.busy, reason: `${CAP} connections already wait to log in (limit ${CAP})` });

    const identity = generateIdentity();
    expect(await held[0]!.login("first", USER_TOKEN, identity)).toMatchObject({ ok: true });
    const next = await RawClient.connect(url, `127.0.0.${CAP + 2}`);
    expect(await next.login("next", USER_TOKEN, generateIdentity())).toMatchObject({ ok: true });
  });
});
