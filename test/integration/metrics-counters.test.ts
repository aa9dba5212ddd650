// inp2ps's counters go up where the events happen, by exactly as many as the clients were refused:
// logins, bad tokens, pending nodes, plans over the limit, messages over the rate, STUN over the rate,
// connections over the per-address share.
import { createSocket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONSOLE_PATHS } from "../../src/console/index.ts";
import { bindingRequest } from "../../src/protocol/index.ts";
import { MESSAGES_PER_SECOND_LIMIT, MAX_BAD_MESSAGES_PER_CONNECTION } from "../../src/server/constants.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { IN_PROCESS_TOKEN as TOKEN, startInProcessServer, type InProcessServer } from "../helpers/in-process-server.ts";
import { waitFor, type ServerHandle } from "../helpers/processes.ts";
import { parseExposition, samplesOf } from "../helpers/exposition.ts";
import { SignalClient, type Json } from "../helpers/signal-client.ts";

const MAX_CONNS_PER_IP = 3;
const WAIT_MS = 10_000;

describe("inp2ps counters", () => {
  let server: RunningServer;
  let handle: ServerHandle;
  let started: InProcessServer;
  let stunPort: number;
  const clients: SignalClient[] = [];

  /** One counter's value now (0 when it has no such series). */
  const counter = async (name: string, labels: Record<string, string> = {}) => {
    const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
    return samplesOf(parseExposition(text), name, labels).reduce((sum, s) => sum + s.value, 0);
  };
  const online = async (node: string, localAddress = "127.0.0.1") => {
    const opened = await SignalClient.attempt(handle, { localAddress });
    if ("refused" in opened) throw new Error(`upgrade refused: ${opened.refused.body}`);
    clients.push(opened.client);
    const response = await opened.client.login(node, TOKEN);
    return { client: opened.client, response };
  };

  beforeAll(async () => {
    started = await startInProcessServer({
      max_conns_per_ip: MAX_CONNS_PER_IP,
      // New nodes from 127.0.0.1 are in at once; from any other loopback address they wait.
      admission: "approve",
      auto_approve: ["127.0.0.1/32"],
      metrics_allow: ["127.0.0.1/32"],
    });
    server = started.server;
    stunPort = started.stunUdpPort;
    handle = { port: server.port, token: TOKEN } as ServerHandle;
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await started?.stop();
  });

  it("counts admitted logins, a bad token, and a node left pending", async () => {
    const [logins, badToken, pending] = [await counter("inp2p_logins_total"), await counter("inp2p_auth_failures_total", { reason: "bad_token" }), await counter("inp2p_auth_failures_total", { reason: "pending" })];
    expect((await online("count-a")).response.ok).toBe(true);
    const opened = await SignalClient.attempt(handle, { localAddress: "127.0.0.2" });
    if ("refused" in opened) throw new Error(opened.refused.body);
    clients.push(opened.client);
    expect((await opened.client.login("guesser", "999")).error.code).toBe("BAD_TOKEN");
    const waiting = await online("newcomer", "127.0.0.3");
    expect(waiting.response.result.pending).toBe(true);
    expect(await counter("inp2p_logins_total")).toBe(logins + 1);
    expect(await counter("inp2p_auth_failures_total", { reason: "bad_token" })).toBe(badToken + 1);
    expect(await counter("inp2p_auth_failures_total", { reason: "pending" })).toBe(pending + 1);
  });

  it("counts each wrong admin credential: on the REST API, on /metrics and at the console's login", async () => {
    const before = await counter("inp2p_auth_failures_total", { reason: "admin_credential" });
    const base = `http://127.0.0.1:${server.port}`;
    const wrong = { authorization: "Bearer not-the-admin-credential" };
    expect((await fetch(`${base}/api/v1/nodes`, { headers: wrong })).status).toBe(403);
    expect((await fetch(`${base}/metrics`, { headers: wrong })).status).toBe(403);
    const login = await fetch(`${base}${CONSOLE_PATHS.login}`, { method: "POST", headers: { origin: base, "content-type": "application/x-www-form-urlencoded" }, body: "credential=guess" });
    expect(login.status).toBe(401);
    expect(await counter("inp2p_auth_failures_total", { reason: "admin_credential" })).toBe(before + 3);
  });

  it("counts each link plan refused by the plan limit, and each plan made by path and NAT pair", async () => {
    const requester = (await online("plan-a")).client;
    await online("plan-b");
    const [refusedBefore, madeBefore] = [await counter("inp2p_rate_limited_total", { limit: "plans" }), await counter("inp2p_link_plans_total", { path: "direct", requester_nat: "unknown", peer_nat: "unknown" })];
    const ids = Array.from({ length: 30 }, () => requester.send("connect", { peer: "plan-b" }));
    // Plans that pass wait up to 2.5 s for NAT types neither node reports here, then are made without.
    const responses = await waitFor("an answer to every connect", () => {
      const answers = requester.messages.filter((m: Json) => m.type === "response" && ids.includes(m.id));
      return answers.length === ids.length ? answers : undefined;
    }, WAIT_MS);
    const refused = responses.filter((r: Json) => r.error?.code === "RATE_LIMITED_PLAN").length;
    const made = responses.filter((r: Json) => r.ok).length;
    expect(refused).toBeGreaterThan(0);
    expect(made + refused).toBe(ids.length);
    expect(await counter("inp2p_rate_limited_total", { limit: "plans" })).toBe(refusedBefore + refused);
    expect(await counter("inp2p_link_plans_total", { path: "direct", requester_nat: "unknown", peer_nat: "unknown" })).toBe(madeBefore + made);
  });

  it("counts messages over the rate, and the connection the penalised address is then refused", async () => {
    const [messagesBefore, preauthBefore] = [await counter("inp2p_rate_limited_total", { limit: "messages" }), await counter("inp2p_rate_limited_total", { limit: "preauth" })];
    const { client } = await online("chatty", "127.0.0.4");
    const burst = MESSAGES_PER_SECOND_LIMIT * 3;
    for (let i = 0; i < burst; i++) client.send("heartbeat", { clientTime: Date.now() });
    await waitFor("the chatty connection dropped", () => client.closed, WAIT_MS);
    const refusedSeen = client.messages.filter((m: Json) => m.error?.code === "RATE_LIMITED").length;
    const counted = (await counter("inp2p_rate_limited_total", { limit: "messages" })) - messagesBefore;
    // Every refusal the client heard was counted; more may have been, after the close was queued.
    expect(refusedSeen).toBeGreaterThanOrEqual(MAX_BAD_MESSAGES_PER_CONNECTION);
    expect(counted).toBeGreaterThanOrEqual(refusedSeen);
    expect(counted).toBeLessThanOrEqual(burst);
    const again = await SignalClient.attempt(handle, { localAddress: "127.0.0.4" });
    expect("refused" in again && again.refused.status).toBe(429);
    expect(await counter("inp2p_rate_limited_total", { limit: "preauth" })).toBe(preauthBefore + 1);
  });

  it("counts a connection over the per-address share as a pre-auth refusal", async () => {
    const before = await counter("inp2p_rate_limited_total", { limit: "preauth" });
    for (let i = 0; i < MAX_CONNS_PER_IP; i++) {
      const opened = await SignalClient.attempt(handle, { localAddress: "127.0.0.5" });
      if ("refused" in opened) throw new Error(opened.refused.body);
      clients.push(opened.client);
    }
    const over = await SignalClient.attempt(handle, { localAddress: "127.0.0.5" });
    expect("refused" in over && over.refused.status).toBe(429);
    expect(await counter("inp2p_rate_limited_total", { limit: "preauth" })).toBe(before + 1);
  });

  it("counts each STUN request the per-source rate leaves unanswered", async () => {
    const before = await counter("inp2p_rate_limited_total", { limit: "stun" });
    const socket = createSocket("udp4");
    let answered = 0;
    socket.on("message", () => answered++);
    await new Promise<void>((done) => socket.bind(0, "127.0.0.1", done));
    try {
      const sent = 100;
      for (let i = 0; i < sent; i++) socket.send(bindingRequest(), stunPort, "127.0.0.1");
      // Every request is either answered or counted; loopback loses none.
      await waitFor("every STUN request answered or counted", async () => answered + (await counter("inp2p_rate_limited_total", { limit: "stun" })) - before === sent, WAIT_MS);
      expect(answered).toBeGreaterThan(0);
      expect(answered).toBeLessThan(sent);
    } finally {
      socket.close();
    }
  });
});
