// Fleet scale (issue #17) against a real inp2ps: presence by interest (a node hears only of the peers it
// watches, as coalesced deltas), a node that asks for a peer learns of it, and a login burst larger than
// the server's admission rate all gets in, in the order it arrived.
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { KnownServers, ServerSession } from "../../src/client/index.ts";
import { generateIdentity } from "../../src/crypto/index.ts";
import { createLogger, silentLogger } from "../../src/log/index.ts";
import type { LoginResult, PeerInfo } from "../../src/protocol/index.ts";
import { freePort, startServer, tempDir, waitFor, type ServerHandle } from "../helpers/processes.ts";
import { SignalClient, type Json } from "../helpers/signal-client.ts";

const WAIT_MS = 10_000;

/** The presence changes a raw client heard, in order: "online NAME" / "offline NAME". */
const presence = (client: SignalClient) =>
  client.messages
    .filter((m) => m.type === "presence")
    .flatMap((m: Json) => [...m.offline.map((n: Json) => `offline ${n.name}`), ...m.online.map((n: Json) => `online ${n.name}`)]);

async function watch(client: SignalClient, ...peers: string[]): Promise<string[]> {
  const response = await client.request("watch", { peers });
  expect(response, `watch ${peers.join(", ")}`).toMatchObject({ ok: true });
  return response.result.peers.map((p: Json) => p.name);
}

describe("presence by interest", () => {
  let server: ServerHandle;
  const clients: SignalClient[] = [];
  const sessions: ServerSession[] = [];
  const online = async (node: string) => {
    const client = await SignalClient.online(server, node);
    clients.push(client);
    return client;
  };
  beforeAll(async () => {
    server = await startServer({ tls: "off", heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 30_000 });
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
    for (const session of sessions.splice(0)) session.stop();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("sends a peer's changes to exactly the nodes that watch it, once each", async () => {
    const [w1, w2, n1, n2] = await Promise.all(["w1", "w2", "n1", "n2"].map(online));
    for (const watcher of [w1!, w2!]) expect(await watch(watcher, "subject")).toEqual([]);
    for (const bystander of [n1!, n2!]) expect(await watch(bystander, "marker")).toEqual([]);

    const subject = await online("subject");
    for (const watcher of [w1!, w2!]) await waitFor("the watchers to hear subject online", () => presence(watcher).includes("online subject"), WAIT_MS);
    subject.close();
    for (const watcher of [w1!, w2!]) await waitFor("the watchers to hear subject offline", () => presence(watcher).includes("offline subject"), WAIT_MS);
    // The bystanders hear of the marker, after anything the server might have told them about the subject.
    const marker = await online("marker");
    for (const bystander of [n1!, n2!]) await waitFor("the bystanders to hear marker online", () => presence(bystander).includes("online marker"), WAIT_MS);

    for (const watcher of [w1!, w2!]) expect(presence(watcher)).toEqual(["online subject", "offline subject"]);
    for (const bystander of [n1!, n2!]) expect(presence(bystander)).toEqual(["online marker"]);
    expect(presence(marker)).toEqual([]);
    // No login answer lists the user's other nodes.
    for (const client of [w1!, w2!, n1!, n2!, subject, marker]) {
      const login = client.messages.find((m) => m.type === "response" && m.result?.node);
      expect(login?.result.peers).toEqual([]);
    }
  });

  it("a node that asks for a peer learns of it: online now, and when it comes and goes later", async () => {
    const early = await online("early");
    const heard: string[] = [];
    let login: LoginResult | undefined;
    const session = new ServerSession(
      { host: "127.0.0.1", port: server.port, insecure: true, node: "asker", token: server.token, identity: generateIdentity(), version: "test", knownServers: new KnownServers(join(tempDir(), "known.json")), logger: silentLogger },
      {
        online: (result) => (login = result),
        peerOnline: (peer: PeerInfo) => heard.push(`online ${peer.name}`),
        peerOffline: (name) => heard.push(`offline ${name}`),
      },
    );
    sessions.push(session);
    session.start();
    await waitFor("asker to log in", () => login, WAIT_MS);
    expect(session.peers.size).toBe(0);

    expect((await session.watch(["early"])).map((p) => p.name)).toEqual(["early"]);
    expect(session.peers.get("early")).toMatchObject({ name: "early", version: "test-0" });
    expect(await session.watch(["late"])).toEqual([]);
    const late = await online("late");
    await waitFor("asker to hear late online", () => session.peers.has("late"), WAIT_MS);
    late.close();
    await waitFor("asker to hear late offline", () => heard.includes("offline late"), WAIT_MS);
    expect(heard).toEqual(["online early", "online late", "offline late"]);
    expect([...session.peers.keys()]).toEqual(["early"]);
    early.close();
  });
});

describe("login admission at a steady rate", () => {
  // Slow enough that the nodes, each started once the one before has its answer, arrive faster than turns come.
  const RATE_PER_S = 1;
  const BURST = 3;
  const NODES = 8;
  let server: ServerHandle;
  const sessions: ServerSession[] = [];
  beforeAll(async () => {
    server = await startServer({ tls: "off", heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 30_000, extraToml: `login_rate = ${RATE_PER_S}\nlogin_burst = ${BURST}` });
  });
  afterAll(async () => {
    for (const session of sessions) session.stop();
    await server?.stop();
  });

  it("lets a burst larger than the rate all in, in the order it arrived, one turn after another, telling each when to come back", async () => {
    const order: number[] = [];
    const admittedAt: number[] = [];
    const retries: string[][] = [];
    const dir = tempDir();
    for (let i = 0; i < NODES; i++) {
      const said: string[] = [];
      retries.push(said);
      const logger = createLogger({ level: "info", format: "json", write: (line) => said.push(JSON.parse(line).msg) });
      const session = new ServerSession(
        { host: "127.0.0.1", port: server.port, insecure: true, node: `burst-${i}`, token: server.token, identity: generateIdentity(), version: "test", knownServers: new KnownServers(join(dir, `known-${i}.json`)), logger },
        {
          online: (result) => {
            order.push(i);
            admittedAt[i] = result.serverTime;
          },
        },
      );
      sessions.push(session);
      session.start();
      // Each arrives after the one before has its answer (in, or a turn): the order they arrived in is known.
      await waitFor(`burst-${i}'s first answer`, () => session.state === "online" || said.some((m) => /logging in again in/.test(m)), WAIT_MS);
    }
    await waitFor("every node of the burst to be in", () => order.length === NODES && order, 30_000);

    expect(order).toEqual([...Array(NODES).keys()]);
    // The first BURST got in at once; every later one was told when to come back, in seconds.
    for (let i = 0; i < NODES; i++) expect(retries[i]!.some((m) => /^the server admits logins at a steady rate; logging in again in \d+\.\d s$/.test(m)), `burst-${i} told to come back`).toBe(i >= BURST);
    // One turn after another: the later ones came in no faster than the rate.
    const intervalMs = 1000 / RATE_PER_S;
    expect(admittedAt[NODES - 1]! - admittedAt[BURST]!).toBeGreaterThanOrEqual((NODES - 1 - BURST) * intervalMs * 0.9);
  }, 60_000);
});

describe("reconnects spread over the window the server suggests", () => {
  // Four nodes at one login a second beyond a burst of one: the server's window is 3 s.
  const ADMISSION = "login_rate = 1\nlogin_burst = 1";
  const WINDOW_MS = 3_000;
  // Far above the window: a node that did not spread would still be waiting when the test looks.
  const BASE_DELAY_MS = 30_000;
  const sessions: ServerSession[] = [];
  const servers: ServerHandle[] = [];
  afterAll(async () => {
    for (const session of sessions) session.stop();
    for (const server of servers) await server.stop();
  });

  it("a killed server gets its nodes back spread over its window, in the order of their draws, long before their usual delay", async () => {
    const dir = tempDir();
    const port = await freePort();
    const options = { tls: "off" as const, dir, port, heartbeatIntervalMs: 200, heartbeatTimeoutMs: 30_000, extraToml: ADMISSION };
    servers.push(await startServer(options));
    // The draws of each node's random source, in an order unlike the nodes' own; the earliest comes
    // back 2.5 s after the kill (1 s + 0.5 x 3 s), once the restarted server listens.
    const draws = [0.9, 0.5, 0.7, 0.6];
    const logins: number[][] = draws.map(() => []);
    draws.forEach((draw, i) => {
      const session = new ServerSession(
        { host: "127.0.0.1", port, insecure: true, node: `spread-${i}`, token: servers[0]!.token, identity: generateIdentity(), version: "test", knownServers: new KnownServers(join(dir, `known-${i}.json`)), logger: silentLogger, reconnectBaseDelayMs: BASE_DELAY_MS, random: () => draw },
        { online: () => void logins[i]!.push(Date.now()) },
      );
      sessions.push(session);
      session.start();
    });
    await waitFor("all four online", () => logins.every((l) => l.length === 1), 15_000);
    // The heartbeats bring each node the window for the fleet as it is now.
    await waitFor("each node to hear the window of four", () => sessions.every((s) => s.reconnectWindowMs === WINDOW_MS), 10_000);

    const killedAt = Date.now();
    servers[0]!.proc.child.kill("SIGKILL");
    await servers[0]!.proc.exited;
    servers.push(await startServer(options));
    await waitFor("all four online again", () => logins.every((l) => l.length === 2), 20_000);

    const back = logins.map((l) => l[1]! - killedAt);
    const byDraw = [...draws.keys()].sort((a, b) => draws[a]! - draws[b]!);
    expect([...back.keys()].sort((a, b) => back[a]! - back[b]!), `back after ${back.join(", ")} ms`).toEqual(byDraw);
    for (const ms of back) expect(ms).toBeLessThan(BASE_DELAY_MS / 2);
  }, 60_000);
});
