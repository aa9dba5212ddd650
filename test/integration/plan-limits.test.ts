// Link plans and candidates as a raw signalling client sees them, against a real inp2ps on 127.0.0.1:
// a node's connect and relay plans beyond its share are refused (an answer, not a fault), and a
// report's candidates must be few and reachable.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MAX_LAN_CANDIDATES } from "../../src/protocol/index.ts";
import { MAX_BAD_MESSAGES_PER_CONNECTION, PAIR_PLAN_BURST } from "../../src/server/constants.ts";
import { onlineNodes, startServer, waitFor, type ServerHandle } from "../helpers/processes.ts";
import { SignalClient, type Json } from "../helpers/signal-client.ts";

const NAT = { natType: "public", mapping: "endpoint-independent", filtering: "endpoint-independent", publicAddress: "127.0.0.1", portPreserved: true, tcp: true };
const CANDIDATES = { udpLan: ["127.0.0.1:9"], tcpLan: [], udpPublic: "127.0.0.1:9", tcpPublic: null };
/** Requests sent at once to one peer: the burst, and well beyond it. */
const FLOOD = PAIR_PLAN_BURST + MAX_BAD_MESSAGES_PER_CONNECTION + 5;

describe("link plans and candidates (raw clients)", () => {
  let server: ServerHandle;
  const open: SignalClient[] = [];
  const online = async (node: string) => {
    const client = await SignalClient.online(server, node);
    open.push(client);
    expect(await client.request("report", { nat: NAT, candidates: CANDIDATES })).toMatchObject({ ok: true });
    return client;
  };
  /** Sends `count` requests at once and resolves with their responses, in order. */
  const burst = async (client: SignalClient, type: string, fields: Json, count: number) => {
    const ids = Array.from({ length: count }, () => client.send(type, fields));
    return Promise.all(ids.map((id) => client.waitMessage(`response ${id}`, (m) => m.type === "response" && m.id === id, 10_000)));
  };
  /** The plans of `type` a node has been pushed; a round trip first, so every push sent before it is in. */
  const pushed = async (client: SignalClient, type: string) => {
    expect(await client.request("heartbeat", { clientTime: Date.now() })).toMatchObject({ ok: true });
    return client.messages.filter((m) => m.type === type);
  };

  beforeAll(async () => {
    server = await startServer({ heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 30_000 });
  });
  afterEach(async () => {
    open.splice(0).forEach((client) => client.close());
    await waitFor("the server to drop the test's nodes", async () => (await onlineNodes(server)).length === 0, 5_000);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("connect plans beyond a node's share for one peer are refused with RATE_LIMITED_PLAN saying when to ask again; the peer hears only the plans made; the requester stays connected", async () => {
    const [a, b, c] = [await online("pl-a"), await online("pl-b"), await online("pl-c")];
    const responses = await burst(a, "connect", { peer: "pl-b" }, FLOOD);
    const made = responses.filter((r) => r.ok);
    const refused = responses.filter((r) => !r.ok);
    // Refills come one every 2 s: a burst sent at once gets the burst, or one more under a slow run.
    expect(made.length).toBeGreaterThanOrEqual(PAIR_PLAN_BURST);
    expect(made.length).toBeLessThanOrEqual(PAIR_PLAN_BURST + 1);
    expect(refused.length).toBe(FLOOD - made.length);
    for (const r of refused) expect(r.error).toMatchObject({ code: "RATE_LIMITED_PLAN", message: expect.stringMatching(/^too many connect plans from pl-a to pl-b: .*; ask again in \d+\.\d s$/) });
    expect((await pushed(b, "connect")).length).toBe(made.length);

    // Refusals are answers, not faults: more of them than bad messages allowed, and a is still served.
    expect(a.closed).toBe(false);
    expect(await a.request("connect", { peer: "pl-c" })).toMatchObject({ ok: true, result: { peer: { name: "pl-c" } } });
    // Relay plans have a share of their own.
    expect(await a.request("relay", { peer: "pl-b" })).toMatchObject({ ok: true, result: { peer: { name: "pl-b" } } });
    expect((await pushed(c, "connect")).length).toBe(1);
  });

  it("relay plans beyond a node's share for one peer are refused alike", async () => {
    const [a, b] = [await online("rl-a"), await online("rl-b")];
    const responses = await burst(a, "relay", { peer: "rl-b" }, FLOOD);
    const made = responses.filter((r) => r.ok).length;
    expect(made).toBeGreaterThanOrEqual(PAIR_PLAN_BURST);
    expect(made).toBeLessThanOrEqual(PAIR_PLAN_BURST + 1);
    expect(responses.filter((r) => !r.ok).map((r) => r.error.code)).toEqual(Array(FLOOD - made).fill("RATE_LIMITED_PLAN"));
    expect((await pushed(b, "relay")).length).toBe(made);
    expect(a.closed).toBe(false);
  });

  it("a report's candidates: too many LAN ones, unreachable ones and public ones among the LAN ones are refused naming the field; private and (on the server's own host) loopback ones are taken", async () => {
    const [a, b] = [await online("cd-a"), await online("cd-b")];
    const report = (candidates: Json) => a.request("report", { candidates: { udpLan: [], tcpLan: [], udpPublic: null, tcpPublic: null, ...candidates } });
    const lan = Array.from({ length: MAX_LAN_CANDIDATES + 1 }, (_, i) => `192.168.1.${i + 1}:4000`);
    expect(await report({ udpLan: lan })).toMatchObject({ ok: false, error: { code: "BAD_MESSAGE", message: expect.stringMatching(/candidates\.udpLan/) } });
    const refusals: [Json, RegExp][] = [
      [{ udpPublic: "224.0.0.251:5353" }, /candidates\.udpPublic: 224\.0\.0\.251 is an unspecified, multicast, reserved or broadcast address/],
      [{ tcpPublic: "0.0.0.0:80" }, /candidates\.tcpPublic: 0\.0\.0\.0 is an unspecified/],
      [{ udpPublic: "255.255.255.255:9" }, /candidates\.udpPublic: 255\.255\.255\.255 is an unspecified/],
      [{ tcpLan: ["[ff02::1]:9"] }, /candidates\.tcpLan\[0\]: ff02::1 is an unspecified/],
      [{ udpLan: ["10.0.0.2:4000", "8.8.8.8:53"] }, /candidates\.udpLan\[1\]: 8\.8\.8\.8 is not in a private range/],
      [{ udpLan: ["300.1.1.1:4000"] }, /candidates\.udpLan\[0\]: "300\.1\.1\.1:4000" is not an IP address and port/],
      [{ udpPublic: "198.51.100.7:0" }, /candidates\.udpPublic: "198\.51\.100\.7:0" is not an IP address and port/],
    ];
    for (const [candidates, message] of refusals) expect(await report(candidates)).toMatchObject({ ok: false, error: { code: "BAD_MESSAGE", message: expect.stringMatching(message) } });

    const good = { udpLan: ["10.1.2.3:4000", "172.16.0.9:4000", "[fe80::1]:4000", "127.0.0.1:4000"], tcpLan: ["192.168.7.7:4001"], udpPublic: "198.51.100.7:4000", tcpPublic: "127.0.0.1:4001" };
    expect(await report(good)).toMatchObject({ ok: true });
    expect(await a.request("connect", { peer: "cd-b" })).toMatchObject({ ok: true });
    // Both on the server's host: b is told a's candidates as they are, loopback ones included.
    const [plan] = await pushed(b, "connect");
    expect(plan?.plan.peer.candidates).toEqual(good);
  });
});
