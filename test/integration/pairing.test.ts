// Admission by approval ([server] admission = "approve"): pending nodes, approve, reject, expiry,
// auto-approval by address, a new key for a known name, revocation and tags, with real inp2ps and
// inp2pc processes on 127.0.0.1 and the `inp2ps pairing` / `inp2ps nodes` commands.
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { connect as tcpConnect } from "node:net";
import type WsWebSocket from "ws";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { generateIdentity, loginProof, loginTranscript, signWithIdentity } from "../../src/crypto/index.ts";
import { CloseCode } from "../../src/protocol/index.ts";
import { MAX_BAD_MESSAGES_PER_CONNECTION, MAX_PENDING_PER_USER, PAIRING_REQUESTS_PER_WINDOW } from "../../src/server/constants.ts";
import { appComesBack, startEcho } from "../helpers/echo.ts";
import { appToml, exposeToml, freePort, INP2PC, INP2PS, linkedClientStatus, onlineNodes, runToEnd, startLinkedClient, startServer, stopLinkedClient, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";

const WebSocket = require("../../node_modules/ws/lib/websocket.js") as typeof WsWebSocket;

const WAIT_MS = 15_000;
const WAITING = /waiting for approval: run "inp2ps pairing approve [^"]+" on the server/;
/** Fast retries, so tests see a node come back after a rejection or revocation. */
const FAST_RETRY = "reconnect_base_delay_ms = 200\nreconnect_max_delay_ms = 5000";

/** Runs `inp2ps ARGS --config <the server's config>` to its end. */
async function inp2ps(server: ServerHandle, ...args: string[]) {
  return runToEnd(INP2PS, [...args, "--config", server.configPath]);
}

async function pairingList(server: ServerHandle): Promise<{ node: string; user: string; newKey: boolean; waiting: boolean; publicKey: string }[]> {
  const r = await inp2ps(server, "pairing", "list", "--json");
  expect(r.code, r.output).toBe(0);
  return JSON.parse(r.output);
}

const clients: LinkedClient[] = [];
async function node(server: ServerHandle, name: string, toml = "", options: Parameters<typeof startLinkedClient>[3] = {}): Promise<LinkedClient> {
  const client = await startLinkedClient(server, name, [FAST_RETRY, toml].join("\n"), { ready: WAITING, ...options });
  clients.push(client);
  return client;
}

/** A node that waited for approval and was approved with `inp2ps pairing approve`. */
async function approvedNode(server: ServerHandle, name: string, toml = ""): Promise<LinkedClient> {
  const client = await node(server, name, toml);
  const r = await inp2ps(server, "pairing", "approve", name);
  expect(r.code, r.output).toBe(0);
  await client.proc.waitForOutput(/logged in/, WAIT_MS);
  return client;
}

/** Occurrences of `pattern` (global) in `text`. */
const count = (text: string, pattern: RegExp) => text.match(new RegExp(pattern.source, "g"))?.length ?? 0;

afterAll(async () => {
  await Promise.all(clients.map(stopLinkedClient));
});

/** A raw signalling client: logs in as inp2pc does and records what the server says. */
class Raw {
  readonly messages: any[] = [];
  closed?: { code: number; reason: string };
  private nextId = 1;

  private constructor(readonly socket: WsWebSocket) {
    socket.on("message", (data) => this.messages.push(JSON.parse(data.toString())));
    socket.on("close", (code, reason) => (this.closed = { code, reason: reason.toString() }));
    socket.on("error", () => {});
  }

  static async login(server: ServerHandle, node: string, localAddress = "127.0.0.1"): Promise<{ raw: Raw; response: any }> {
    const socket = new WebSocket(`wss://127.0.0.1:${server.port}/ws`, { rejectUnauthorized: false, localAddress, perMessageDeflate: false });
    const raw = new Raw(socket);
    const { nonce } = await waitFor("hello", () => raw.messages.find((m) => m.type === "hello"), WAIT_MS, 10);
    const identity = generateIdentity();
    const response = await raw.request("login", {
      node,
      publicKey: identity.publicKey,
      proof: loginProof(server.token, nonce, node, identity.publicKey),
      signature: signWithIdentity(identity, loginTranscript(nonce, node, identity.publicKey)),
      version: "test-0",
    });
    return { raw, response };
  }

  async request(type: string, fields: Record<string, unknown> = {}): Promise<any> {
    const id = this.nextId++;
    this.socket.send(JSON.stringify({ type, id, ...fields }));
    return waitFor(`response to ${type}`, () => this.messages.find((m) => m.type === "response" && m.id === id), WAIT_MS, 10);
  }

  close(): void {
    this.socket.terminate();
  }
}

describe('admission = "approve"', () => {
  // A server per test: pending requests, and the rate limit on new ones, are the server's state.
  let server: ServerHandle;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  beforeAll(async () => {
    echo = await startEcho();
  });
  beforeEach(async () => {
    server = await startServer({ extraToml: 'admission = "approve"' });
  });
  afterEach(async () => {
    await server?.stop();
  });
  afterAll(() => {
    echo?.server.close();
  });

  it("a new node waits unseen; approved, it comes online without a restart and its app works", async () => {
    const beta = await approvedNode(server, "ap-beta", exposeToml(`127.0.0.1:${echo.port}`));
    const appPort = await freePort();
    const alpha = await node(server, "ap-alpha", appToml({ name: "to-beta", listen: appPort, peer: "ap-beta", target: echo.port }));
    expect(alpha.proc.output).toMatch(/waiting for approval: run "inp2ps pairing approve ap-alpha" on the server/);
    // It heartbeats while it waits: the server keeps it past the 2 s heartbeat timeout.
    await server.proc.waitForOutput(/audit event=pending user=default node=ap-alpha/, WAIT_MS);
    const status = await linkedClientStatus(alpha);
    expect(status.server).toMatchObject({ state: "pending", approval: "inp2ps pairing approve ap-alpha" });
    const statusText = await runToEnd(INP2PC, ["status", "--config", alpha.config]);
    expect(statusText.output).toContain('waiting for approval: run "inp2ps pairing approve ap-alpha" on the server');
    expect(await pairingList(server)).toEqual([expect.objectContaining({ node: "ap-alpha", user: "default", newKey: false, waiting: true })]);
    await new Promise((r) => setTimeout(r, 2_500)); // longer than the heartbeat timeout: still waiting, still unseen
    expect(alpha.proc.output).not.toMatch(/heartbeat went unanswered|lost the server|cannot reach/);
    expect(await onlineNodes(server)).toEqual(["ap-beta"]);
    expect(beta.proc.output).not.toMatch(/peer online peer=ap-alpha/);
    // Its app does not listen yet: nothing is reachable through a node that is not in.
    await expect(new Promise((ok, fail) => tcpConnect(appPort, "127.0.0.1", () => ok("connected")).on("error", fail))).rejects.toThrow(/ECONNREFUSED/);

    const approve = await inp2ps(server, "pairing", "approve", "ap-alpha");
    expect(approve.code, approve.output).toBe(0);
    expect(approve.output).toContain("approved node ap-alpha (user default); it is online now");
    await alpha.proc.waitForOutput(/logged in/, WAIT_MS);
    await beta.proc.waitForOutput(/peer online peer=ap-alpha/, WAIT_MS);
    expect(await onlineNodes(server)).toEqual(["ap-alpha", "ap-beta"]);
    await appComesBack(appPort, WAIT_MS);
    expect(alpha.proc.exitCode).toBeNull();
    expect(count(alpha.proc.output, WAITING)).toBe(1); // no restart, no second login
    expect((await linkedClientStatus(alpha)).server).toMatchObject({ state: "online", approval: null });
    expect(await pairingList(server)).toEqual([]);
    await server.proc.waitForOutput(/audit event=approved user=default node=ap-alpha by=admin/, WAIT_MS);
  });

  it("a pending node may only heartbeat: other requests are refused, without counting as faults", async () => {
    const { raw: pending, response } = await Raw.login(server, "ap-raw");
    expect(response).toMatchObject({ ok: true, result: { node: "ap-raw", pending: true, peers: [] } });
    for (let i = 0; i < MAX_BAD_MESSAGES_PER_CONNECTION + 2; i++) {
      const refused = await pending.request("connect", { peer: "ap-raw-peer" });
      expect(refused).toMatchObject({ ok: false, error: { code: "NOT_APPROVED" } });
    }
    expect(await pending.request("peers")).toMatchObject({ ok: false, error: { code: "NOT_APPROVED" } });
    expect(await pending.request("heartbeat", { clientTime: 1 })).toMatchObject({ ok: true, result: { clientTime: 1 } });
    expect(pending.closed).toBeUndefined();
    // An approved peer cannot reach it either: it is not online.
    const peer = await approvedNode(server, "ap-raw-peer");
    expect(await onlineNodes(server)).not.toContain("ap-raw");
    // Approved, it is told so on the same connection, with what a login answers.
    expect((await inp2ps(server, "pairing", "approve", "ap-raw")).code).toBe(0);
    const admitted = await waitFor("admitted", () => pending.messages.find((m) => m.type === "admitted"), WAIT_MS, 10);
    expect(admitted.result).toMatchObject({ node: "ap-raw", user: "default" });
    expect(admitted.result.pending).toBeUndefined();
    // Presence by interest (issue #17): the answer lists no peers; the admitted node asks for those it needs.
    expect(admitted.result.peers).toEqual([]);
    expect((await pending.request("watch", { peers: ["ap-raw-peer"] })).result.peers.map((p: any) => p.name)).toEqual(["ap-raw-peer"]);
    expect(await onlineNodes(server)).toContain("ap-raw");
    expect(peer.proc.exitCode).toBeNull();
    pending.close();
  });

  it("reject closes the pending node with words; it asks again later, backing off more each time", async () => {
    const gamma = await node(server, "ap-gamma");
    for (let round = 1; round <= 3; round++) {
      await waitFor(`gamma's request ${round}`, async () => (await pairingList(server)).some((r) => r.node === "ap-gamma" && r.waiting), WAIT_MS);
      const r = await inp2ps(server, "pairing", "reject", "ap-gamma");
      expect(r.code, r.output).toBe(0);
      await waitFor(`rejection ${round} logged`, () => count(gamma.proc.output, /rejected this node's pairing request; retrying in/) === round, WAIT_MS);
    }
    const delays = [...gamma.proc.output.matchAll(/rejected this node's pairing request; retrying in ([\d.]+) s/g)].map((m) => Number(m[1]));
    expect(delays).toHaveLength(3);
    expect(delays[2]!).toBeGreaterThan(delays[0]!); // 1.5² × (1 ± 0.2) > 1 × (1 ± 0.2)
    expect(await onlineNodes(server)).not.toContain("ap-gamma");
    await server.proc.waitForOutput(/audit event=rejected user=default node=ap-gamma/, WAIT_MS);
    const unknown = await inp2ps(server, "pairing", "approve", "no-such-node");
    expect(unknown.code).not.toBe(0);
    expect(unknown.output).toContain('no pairing request from node "no-such-node" of user "default"');
  });

  it("a new key for a known name is a new request; the old key works until the new one is approved", async () => {
    const old = await approvedNode(server, "ap-delta");
    const fresh = await node(server, "ap-delta"); // its own directory: a new identity key
    expect(await pairingList(server)).toEqual([expect.objectContaining({ node: "ap-delta", newKey: true, waiting: true })]);
    expect(old.proc.output).not.toMatch(/lost the server/);
    expect(await onlineNodes(server)).toContain("ap-delta");
    expect((await linkedClientStatus(old)).server.state).toBe("online");

    expect((await inp2ps(server, "pairing", "approve", "ap-delta")).code).toBe(0);
    await fresh.proc.waitForOutput(/logged in/, WAIT_MS);
    await old.proc.waitForOutput(/the server's admin approved a new identity key for this node's name/, WAIT_MS);
    expect(await onlineNodes(server)).toContain("ap-delta");
    // The old machine is not let back in: its key is now a request of its own.
    await waitFor("the old key's request", async () => (await pairingList(server)).some((r) => r.node === "ap-delta" && r.newKey), WAIT_MS);
    expect((await linkedClientStatus(fresh)).server.state).toBe("online");
    expect((await inp2ps(server, "pairing", "reject", "ap-delta")).code).toBe(0);
  });

  it("revoke disconnects the node, its peers drop their links at once, and it is refused until approved again", async () => {
    const far = await approvedNode(server, "ap-far", exposeToml(`127.0.0.1:${echo.port}`));
    const appPort = await freePort();
    const near = await approvedNode(server, "ap-near", appToml({ name: "to-far", listen: appPort, peer: "ap-far", target: echo.port }));
    await appComesBack(appPort, WAIT_MS);
    // A connection held open through the link: it must end when the link goes.
    const held = tcpConnect(appPort, "127.0.0.1");
    const heldClosed = new Promise<number>((done) => held.on("close", () => done(Date.now())).on("error", () => {}));
    await new Promise((done) => held.once("connect", done));
    expect((await linkedClientStatus(near)).peers["ap-far"].link).not.toBeNull();

    const r = await inp2ps(server, "nodes", "revoke", "ap-far");
    expect(r.code, r.output).toBe(0);
    expect(r.output).toContain("revoked node ap-far (user default)");
    await near.proc.waitForOutput(/peer offline peer=ap-far reason=revoked/, WAIT_MS);
    await waitFor("near's link to far to close", async () => (await linkedClientStatus(near)).peers["ap-far"]?.link == null, 2_000, 20);
    // From the server's decision (its audit line's time), not from the CLI's start, which load slows.
    const [, revokedAt] = await server.proc.waitForOutput(/^(\S+) INFO  \[audit\] audit event=revoked user=default node=ap-far/m, WAIT_MS);
    expect((await heldClosed) - Date.parse(revokedAt!)).toBeLessThan(2_000);
    await far.proc.waitForOutput(/the server's admin revoked this node/, WAIT_MS);
    await far.proc.waitForOutput(/login refused \(NODE_REVOKED\): .*inp2ps pairing approve ap-far/, WAIT_MS);
    expect(await onlineNodes(server)).not.toContain("ap-far");
    expect(await pairingList(server)).toEqual([]);
    expect(server.proc.output).toMatch(/audit event=revoked user=default node=ap-far wasOnline=true/);

    expect((await inp2ps(server, "pairing", "approve", "ap-far")).code).toBe(0);
    await waitFor("far back online", async () => (await onlineNodes(server)).includes("ap-far"), WAIT_MS);
    await appComesBack(appPort, WAIT_MS);
    const unknown = await inp2ps(server, "nodes", "revoke", "no-such-node");
    expect(unknown.code).not.toBe(0);
    expect(unknown.output).toContain('no node "no-such-node" of user "default" is known to this server');
  });

  it("the pairing, revoke and tag routes are admin-only", async () => {
    const call = (method: string, path: string, token?: string) =>
      fetch(`https://127.0.0.1:${server.port}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {}, tls: { rejectUnauthorized: false } } as RequestInit);
    const routes: [string, string][] = [
      ["GET", "/api/v1/pairing"],
      ["POST", "/api/v1/pairing/x/approve"],
      ["POST", "/api/v1/pairing/x/reject"],
      ["POST", "/api/v1/nodes/x/revoke"],
      ["PUT", "/api/v1/nodes/x/tags?tags=a"],
    ];
    for (const [method, path] of routes) {
      expect((await call(method, path)).status, `${method} ${path} without a token`).toBe(401);
      expect((await call(method, path, "12345")).status, `${method} ${path} with a wrong token`).toBe(403);
    }
    expect((await call("GET", "/api/v1/pairing", server.token)).status, "with a user token").toBe(403);
    const listed = await call("GET", "/api/v1/pairing", server.adminToken);
    expect(listed.status).toBe(200);
    expect(await listed.json()).toEqual({ requests: [] });
    const unknown = await call("POST", "/api/v1/pairing/x/approve", server.adminToken);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: string }).error).toContain('no pairing request from node "x" of user "default"');
  });

  it("tags are set, replaced and cleared per node, and kept in the node records (0600)", async () => {
    await approvedNode(server, "ap-tagged");
    let r = await inp2ps(server, "nodes", "tag", "ap-tagged", "db", "prod");
    expect(r.code, r.output).toBe(0);
    expect(r.output).toContain("node ap-tagged (user default) has tags: db prod");
    const records = join(server.dir, "inp2ps.keys.json");
    await waitFor("the tags on disk", () => JSON.parse(readFileSync(records, "utf8")).nodes["default/ap-tagged"]?.tags.join() === "db,prod", WAIT_MS);
    expect(statSync(records).mode & 0o777).toBe(0o600);
    r = await inp2ps(server, "nodes", "tag", "ap-tagged");
    expect(r.output).toContain("node ap-tagged (user default) has no tags now");
    expect(JSON.parse(readFileSync(records, "utf8")).nodes["default/ap-tagged"].tags).toEqual([]);
    r = await inp2ps(server, "nodes", "tag", "ap-tagged", "bad/tag");
    expect(r.code).not.toBe(0);
    expect(r.output).toContain('tag "bad/tag" is not a name');
    r = await inp2ps(server, "nodes", "tag", "no-such-node", "db");
    expect(r.code).not.toBe(0);
    expect(r.output).toContain('no node "no-such-node" of user "default" is known to this server');
    await server.proc.waitForOutput(/audit event=tagged user=default node=ap-tagged tags=/, WAIT_MS);
  });
});

describe("pairing requests expire", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ extraToml: 'admission = "approve"\npairing_expiry_s = 2' });
  });
  afterAll(async () => server?.stop());

  it("closes the pending node with words; its next login is a new request", async () => {
    const late = await node(server, "ex-late");
    await late.proc.waitForOutput(/pairing request expired: .*retrying in/, WAIT_MS);
    await server.proc.waitForOutput(/audit event=expired user=default node=ex-late/, WAIT_MS);
    await waitFor("a second request", () => count(late.proc.output, WAITING) >= 2, WAIT_MS);
    expect(await pairingList(server)).toEqual([expect.objectContaining({ node: "ex-late", waiting: true })]);
    expect(await onlineNodes(server)).toEqual([]);
  });
});

describe("auto_approve", () => {
  it("approves a new node from a trusted address at once, and not from others", async () => {
    const trusted = await startServer({ extraToml: 'admission = "approve"\nauto_approve = ["192.0.2.0/24", "127.0.0.0/8", "fd00::/8"]' });
    const other = await startServer({ extraToml: 'admission = "approve"\nauto_approve = ["192.0.2.0/24"]' });
    try {
      const local = await node(trusted, "auto-local", "", { ready: /logged in/ });
      expect(local.proc.output).not.toMatch(WAITING);
      await trusted.proc.waitForOutput(/audit event=approved user=default node=auto-local from=127\.0\.0\.1:\d+ by=auto_approve/, WAIT_MS);
      expect(await onlineNodes(trusted)).toEqual(["auto-local"]);
      await node(other, "auto-other");
      expect(await onlineNodes(other)).toEqual([]);
    } finally {
      await Promise.all([trusted.stop(), other.stop()]);
    }
  });
});

describe("pending requests are bounded", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ extraToml: 'admission = "approve"' });
  });
  afterAll(async () => server?.stop());

  it(`rate-limits new requests per address (${PAIRING_REQUESTS_PER_WINDOW} a minute) and caps them per user (${MAX_PENDING_PER_USER})`, async () => {
    const raws: Raw[] = [];
    try {
      for (let i = 0; i < PAIRING_REQUESTS_PER_WINDOW; i++) {
        const { raw, response } = await Raw.login(server, `rl-${i}`);
        raws.push(raw);
        expect(response).toMatchObject({ ok: true, result: { pending: true } });
      }
      const { raw: limited, response: refused } = await Raw.login(server, "rl-over");
      expect(refused).toMatchObject({ ok: false, error: { code: "PAIRING_RATE_LIMITED" } });
      expect(refused.error.message).toContain("from 127.0.0.1");
      await waitFor("the refused connection to close", () => limited.closed, WAIT_MS, 10);
      expect(limited.closed!.code).toBe(CloseCode.loginRefused);
      // Other addresses may still ask, up to the cap of the user.
      let made = PAIRING_REQUESTS_PER_WINDOW;
      for (let host = 2; made < MAX_PENDING_PER_USER; host++) {
        for (let i = 0; i < PAIRING_REQUESTS_PER_WINDOW && made < MAX_PENDING_PER_USER; i++, made++) {
          const { raw, response } = await Raw.login(server, `cap-${host}-${i}`, `127.0.0.${host}`);
          raws.push(raw);
          expect(response, `request ${made + 1}`).toMatchObject({ ok: true, result: { pending: true } });
        }
      }
      const { raw: capped, response: full } = await Raw.login(server, "cap-over", "127.0.0.99");
      raws.push(capped);
      expect(full).toMatchObject({ ok: false, error: { code: "TOO_MANY_PENDING" } });
      expect(full.error.message).toContain(`${MAX_PENDING_PER_USER} pairing requests of user "default"`);
      expect(await pairingList(server)).toHaveLength(MAX_PENDING_PER_USER);
    } finally {
      for (const raw of raws) raw.close();
    }
  });
});

describe("a node of another user", () => {
  it("is told to be approved with --user, and is approved, listed and revoked under its user", async () => {
    const server = await startServer({ extraToml: 'admission = "approve"', tail: '[[server.users]]\nname = "alice"\ntoken = "42"' });
    try {
      const edge = await node(server, "edge-7", "", { token: "42" });
      expect(edge.proc.output).toContain('waiting for approval: run "inp2ps pairing approve edge-7 --user alice" on the server');
      expect(await pairingList(server)).toEqual([expect.objectContaining({ node: "edge-7", user: "alice" })]);
      const wrongUser = await inp2ps(server, "pairing", "approve", "edge-7");
      expect(wrongUser.code).not.toBe(0);
      expect(wrongUser.output).toContain('no pairing request from node "edge-7" of user "default"');
      expect((await inp2ps(server, "pairing", "approve", "edge-7", "--user", "alice")).code).toBe(0);
      await edge.proc.waitForOutput(/logged in/, WAIT_MS);
      const revoked = await inp2ps(server, "nodes", "revoke", "edge-7", "--user", "alice");
      expect(revoked.output).toContain('it is refused until "inp2ps pairing approve edge-7 --user alice"');
      await edge.proc.waitForOutput(/login refused \(NODE_REVOKED\): .*"inp2ps pairing approve edge-7 --user alice"/, WAIT_MS);
    } finally {
      await server.stop();
    }
  });
});
