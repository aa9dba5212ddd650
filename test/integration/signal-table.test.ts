// The real inp2ps's answers and pushes validate against the protocol table (src/protocol/signal.ts):
// raw clients go through login, heartbeat, peers, report, links, connect and relay, and every result and
// every push they receive is checked with the schemas inp2pc checks them with.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseResult, parseServerMessage, ProtocolError, signalRequests, type ClientRequestType } from "../../src/protocol/index.ts";
import { api, INP2PS, runToEnd, startServer, type ServerHandle } from "../helpers/processes.ts";
import { SignalClient, type Json } from "../helpers/signal-client.ts";

const NAT = { natType: "port-restricted-cone", mapping: "endpoint-independent", filtering: "address-and-port-dependent", publicAddress: "198.51.100.7:4000", portPreserved: true, tcp: true };
const CANDIDATES = { udpLan: ["192.168.1.7:4000"], tcpLan: ["192.168.1.7:4001"], udpPublic: "198.51.100.7:4000", tcpPublic: null, tcpPunch: null };
const RELAY_OFFER = { port: 40_000, super: false, bwMbps: 100, loadMbps: 0, sessions: 0 };

/** Sends a request, expects the server to accept it, and checks its result against the table. */
async function accepted<K extends ClientRequestType>(client: SignalClient, type: K, fields: Json = {}) {
  const response = await client.request(type, fields);
  expect(response, `${type} accepted`).toMatchObject({ ok: true });
  expect(() => parseServerMessage(JSON.stringify(response)), `the response envelope to ${type}`).not.toThrow();
  return parseResult(type, response.result);
}

/** Every message a client received, checked as inp2pc checks it; returns their types. */
function checkAll(client: SignalClient): string[] {
  return client.messages.map((message) => {
    try {
      return parseServerMessage(JSON.stringify(message)).type;
    } catch (err) {
      if (err instanceof ProtocolError) throw new Error(`${err.message}\nin ${JSON.stringify(message)}`);
      throw err;
    }
  });
}

describe("the server's messages against the protocol table", () => {
  let server: ServerHandle;
  const clients: SignalClient[] = [];

  beforeAll(async () => {
    server = await startServer({ heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 30_000, tail: '[server.sdwan]\nsubnet = "10.93.0.0/24"' });
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await server?.stop();
  });

  it("answers login, heartbeat, peers, watch, report, connect and relay, and pushes hello, presence, sdwan, connect and relay, all as the table says", async () => {
    const alpha = await SignalClient.online(server, "alpha");
    clients.push(alpha);
    const beta = await SignalClient.online(server, "beta");
    clients.push(beta);
    expect(await accepted(beta, "watch", { peers: ["r1"] })).toEqual({ peers: [] });
    expect((await accepted(alpha, "watch", { peers: ["beta", "r1"] })).peers.map((p) => p.name)).toEqual(["beta"]);
    const relay = await SignalClient.online(server, "r1");
    clients.push(relay);

    const beat = await accepted(alpha, "heartbeat", { clientTime: 123 });
    expect(beat.clientTime).toBe(123);
    const { peers } = await accepted(alpha, "peers");
    expect(peers.map((p) => p.name).sort()).toEqual(["beta", "r1"]);

    for (const client of [alpha, beta]) expect(await accepted(client, "report", { nat: NAT, candidates: CANDIDATES })).toEqual({});
    expect(await accepted(relay, "report", { relay: RELAY_OFFER })).toEqual({});
    const joined = await accepted(alpha, "report", { sdwan: { routes: ["192.168.50.0/24"] } });
    expect(joined.sdwan?.self).toMatchObject({ name: "alpha" });
    const betaJoined = await accepted(beta, "report", { sdwan: { routes: [] } });
    expect(betaJoined.sdwan?.nodes.map((n) => n.name)).toEqual(["alpha"]);
    // Beta's join reaches alpha as a delta from alpha's own map to the next version, not as a whole map.
    const told = await alpha.waitMessage("alpha to hear of beta's join", (m) => m.type === "sdwan-delta" && m.delta.nodes.some((n: { name: string }) => n.name === "beta"));
    expect(told.delta.from, "the delta follows on from alpha's own join answer").toBe(joined.sdwan!.version);
    expect(told.delta.version, "one change of the network, one version").toBe(betaJoined.sdwan!.version);

    const links = [{ peer: "beta", kind: "udp-punch", relay: null, rttMs: 0.4, bytesIn: 1_000, bytesOut: 2_000 }];
    const apps = [{ name: "ssh", protocol: "tcp", peer: "beta", state: "listening", connections: 1 }];
    expect(await accepted(alpha, "links", { links, apps })).toEqual({});
    // A bad table is refused, naming the field, and the good one stays.
    const bad = await alpha.request("links", { links: [{ ...links[0], kind: "telepathy" }], apps });
    expect(bad).toMatchObject({ ok: false, error: { code: "BAD_MESSAGE", message: expect.stringContaining("links.0.kind") } });
    const listed = (await api(server, "/api/v1/nodes", server.adminToken)).body.nodes.find((n: { name: string }) => n.name === "alpha");
    expect(listed.report).toMatchObject({ links: [{ peer: "beta", kind: "udp-punch", rttMs: 0.4, bytesIn: 1_000 }], apps });

    const plan = await accepted(alpha, "connect", { peer: "beta" });
    expect(plan.peer).toMatchObject({ name: "beta", nat: NAT, candidates: CANDIDATES });
    const viaNode = await accepted(alpha, "relay", { peer: "beta" });
    expect(viaNode.relay).toMatchObject({ name: "default/r1", tier: "private", host: "127.0.0.1", port: RELAY_OFFER.port });
    const viaServer = await accepted(alpha, "relay", { peer: "beta", exclude: ["default/r1"] });
    expect(viaServer.relay).toMatchObject({ name: "server", tier: "server", host: null });

    // The login answers were checked by SignalClient.online's peers; check them against the table too.
    const logins = [alpha, beta, relay].map((c) => c.messages.find((m) => m.type === "response" && m.id === 1));
    for (const login of logins) expect(() => parseResult("login", login?.result)).not.toThrow();

    await beta.waitMessage("the relay plan pushed to beta", (m) => m.type === "relay" && m.plan.relay.name === "server");
    const pushed = new Set(checkAll(beta));
    for (const type of ["hello", "presence", "connect", "relay", "response"]) expect(pushed, `beta received a "${type}"`).toContain(type);
    checkAll(relay);
    relay.close();
    await alpha.waitMessage("r1 offline", (m) => m.type === "presence" && m.offline.some((n: { name: string }) => n.name === "r1"));
    const toAlpha = checkAll(alpha);
    for (const type of ["sdwan-delta", "presence"]) expect(toAlpha, `alpha received a "${type}"`).toContain(type);
    expect(Object.keys(signalRequests).sort()).toEqual(["connect", "heartbeat", "links", "login", "peers", "relay", "report", "watch"]);
  }, 40_000);

  it("answers a login that waits for approval, and pushes admitted when the admin approves, as the table says", async ({ onTestFinished }) => {
    const approving = await startServer({ heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 30_000, extraToml: 'admission = "approve"' });
    const waiting = await SignalClient.online(approving, "newcomer");
    onTestFinished(async () => {
      waiting.close();
      await approving.stop();
    });
    const login = waiting.messages.find((m) => m.type === "response" && m.id === 1);
    expect(parseResult("login", login?.result)).toMatchObject({ node: "newcomer", pending: true, peers: [] });
    const approve = await runToEnd(INP2PS, ["pairing", "approve", "newcomer", "--config", approving.configPath]);
    expect(approve.code, approve.output).toBe(0);
    await waiting.waitMessage("admitted", (m) => m.type === "admitted");
    expect(checkAll(waiting)).toContain("admitted");
    const admitted = parseServerMessage(JSON.stringify(waiting.messages.find((m) => m.type === "admitted")));
    expect(admitted).toMatchObject({ type: "admitted", result: { node: "newcomer" } });
    expect(admitted).not.toHaveProperty("result.pending");
  }, 40_000);
});
