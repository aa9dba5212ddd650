// The server's ACL as a raw signalling client sees it, against a real inp2ps on 127.0.0.1: which
// connect and relay requests get a plan, which get ACL_DENIED naming the rule, and which members the
// SDWAN maps hold.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity, type Identity } from "../../src/crypto/index.ts";
import { MAX_BAD_MESSAGES_PER_CONNECTION } from "../../src/server/constants.ts";
import { api, onlineNodes, startServer, waitFor, type ServerHandle } from "../helpers/processes.ts";
import { SignalClient, type Json } from "../helpers/signal-client.ts";

const RULES = [
  // Two-way between sd-a and sd-b; one-way sd-c -> sd-a.
  ["mutual", '["sd-a", "sd-b"]', '["sd-a", "sd-b"]', "allow"],
  ["c-to-a", '["sd-c"]', '["sd-a"]', "allow"],
  ["no-x", '["x"]', '["*"]', "deny"],
  ["to-y", '["*"]', '["y"]', "allow"],
  ["pairs", '["tag:pair"]', '["tag:pair"]', "allow"],
] as const;
const ACL_TOML = RULES.map(([name, from, to, action]) => `[[server.acl]]\nname = "${name}"\nfrom = ${from}\nto = ${to}\naction = "${action}"`).join("\n");
const NAT = { natType: "full-cone", mapping: "endpoint-independent", filtering: "endpoint-independent", publicAddress: "127.0.0.1", portPreserved: true, tcp: true };
const CANDIDATES = { udpLan: ["127.0.0.1:9"], tcpLan: [], udpPublic: null, tcpPublic: null };

describe("the ACL in signalling (raw clients)", () => {
  let server: ServerHandle;
  const open: SignalClient[] = [];
  // The server pins a node name to its first key: one key per name across the tests.
  const identities = new Map<string, Identity>();
  const online = async (node: string) => {
    if (!identities.has(node)) identities.set(node, generateIdentity());
    const client = await SignalClient.online(server, node, identities.get(node));
    open.push(client);
    // NAT and candidates known: a plan needs no wait for them.
    expect(await client.request("report", { nat: NAT, candidates: CANDIDATES })).toMatchObject({ ok: true });
    return client;
  };
  const deniedLines = () => server.proc.output.split("\n").filter((line) => line.includes("event=acl-denied"));

  beforeAll(async () => {
    server = await startServer({ heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 30_000, tail: `[server.sdwan]\nsubnet = "10.91.0.0/24"\n${ACL_TOML}` });
  });
  afterEach(async () => {
    open.splice(0).forEach((client) => client.close());
    await waitFor("the server to drop the test's nodes", async () => (await onlineNodes(server)).length === 0, 5_000);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("connect: a plan where a rule allows, ACL_DENIED naming the rule where one denies or none allows; the peer hears nothing of a denied one", async () => {
    const [x, y, w] = [await online("x"), await online("y"), await online("w")];
    const allowed = await w.request("connect", { peer: "y" });
    expect(allowed).toMatchObject({ ok: true, result: { peer: { name: "y" } } });
    await y.waitMessage("y to hear of w's plan", (m) => m.type === "connect" && m.plan.peer.name === "w");

    expect(await x.request("connect", { peer: "y" })).toMatchObject({
      ok: false,
      error: { code: "ACL_DENIED", message: 'the server\'s ACL denies x -> y (rule server.acl[2] "no-x")' },
    });
    expect(await y.request("connect", { peer: "w" })).toMatchObject({
      ok: false,
      error: { code: "ACL_DENIED", message: "the server's ACL denies y -> w (no rule of user default allows it)" },
    });
    // The denials were answered after w's plan; a plan for them would have come before y's own answer.
    expect(y.messages.filter((m) => m.type === "connect").map((m) => m.plan.peer.name)).toEqual(["w"]);
    expect(w.messages.filter((m) => m.type === "connect")).toEqual([]);
    await waitFor("two acl-denied audit lines", () => deniedLines().length >= 2 || undefined);
    expect(deniedLines().join("\n")).toMatch(/from=x to=y .*rule="?server\.acl\[2\]/);
  });

  it("relay: a denied pair gets no relay and no ticket; an allowed one does", async () => {
    const [x, y, w] = [await online("x"), await online("y"), await online("w")];
    expect(await x.request("relay", { peer: "y" })).toMatchObject({
      ok: false,
      error: { code: "ACL_DENIED", message: 'the server\'s ACL denies x -> y (rule server.acl[2] "no-x")' },
    });
    expect(await w.request("relay", { peer: "y" })).toMatchObject({ ok: true, result: { peer: { name: "y" }, relay: { name: "server" } } });
    await y.waitMessage("y's ticket from w's relay request", (m) => m.type === "relay" && m.plan.peer.name === "w");
    expect(y.messages.filter((m) => m.type === "relay").map((m) => m.plan.peer.name)).toEqual(["w"]);
  });

  it("a denial is not a fault: the requester stays connected however often it asks, and the audit holds it once", async () => {
    const [x, z] = [await online("x"), await online("z")];
    for (let i = 0; i < MAX_BAD_MESSAGES_PER_CONNECTION + 2; i++) expect(await x.request("connect", { peer: "z" })).toMatchObject({ error: { code: "ACL_DENIED" } });
    expect(await x.request("peers")).toMatchObject({ ok: true });
    expect(x.closed).toBe(false);
    // A later denial of another pair: once its audit line is in the server's output, x's are too.
    expect(await z.request("connect", { peer: "x" })).toMatchObject({ error: { code: "ACL_DENIED" } });
    await waitFor("the audit line of z -> x", () => deniedLines().some((line) => line.includes("from=z to=x ")) || undefined);
    expect(deniedLines().filter((line) => line.includes("from=x to=z ")).length).toBe(1);
  });

  it("SDWAN: a node's map and the changes pushed to it hold only members the ACL lets it link with both ways", async () => {
    const join = async (client: SignalClient) => {
      const response = await client.request("report", { sdwan: { routes: [] } });
      expect(response).toMatchObject({ ok: true });
      return response.result.sdwan as Json;
    };
    const names = (map: Json) => map.nodes.map((n: Json) => n.name).sort();
    /** The SDWAN changes pushed to a member (since presence by interest: deltas, not whole maps). */
    const deltas = (client: SignalClient) => client.messages.filter((m) => m.type === "sdwan-delta").map((m) => m.delta as Json);
    const named = (client: SignalClient, name: string) => deltas(client).filter((delta) => names(delta).includes(name) || delta.gone.includes(name));
    const [a, b, c] = [await online("sd-a"), await online("sd-b"), await online("sd-c")];
    expect(names(await join(a))).toEqual([]);
    expect(names(await join(b))).toEqual(["sd-a"]);
    await waitFor("sd-a to hear of sd-b", () => named(a, "sd-b").length > 0 || undefined);
    // sd-c may link to sd-a, but not back: no reply could reach it, so neither is on the other's map.
    expect(names(await join(c))).toEqual([]);
    expect((await c.request("connect", { peer: "sd-a" })).ok).toBe(true);
    expect(await a.request("connect", { peer: "sd-c" })).toMatchObject({ error: { code: "ACL_DENIED" } });
    // sd-b joins again: the change it makes reaches sd-a after any change from sd-c's join would have.
    const before = named(a, "sd-b").length;
    await join(b);
    await waitFor("sd-a to hear of sd-b again", () => named(a, "sd-b").length > before || undefined);
    expect(named(a, "sd-c")).toEqual([]);
    expect(named(b, "sd-c")).toEqual([]);
    expect(named(c, "sd-a")).toEqual([]);
    expect(named(c, "sd-b")).toEqual([]);
    // sd-b leaves: sd-a hears it is gone, sd-c is not told (it never saw sd-b).
    b.close();
    await waitFor("sd-a to see sd-b leave", () => deltas(a).some((delta) => delta.gone.includes("sd-b")) || undefined);
    expect(named(c, "sd-b")).toEqual([]);
  });

  it("tags set by the admin take effect at once: both members get a map holding the other, and a link may be asked for", async () => {
    const join = async (client: SignalClient) => ((await client.request("report", { sdwan: { routes: [] } })).result.sdwan as Json).nodes.map((n: Json) => n.name);
    const [one, two] = [await online("tg-1"), await online("tg-2")];
    expect(await join(one)).toEqual([]);
    expect(await join(two)).toEqual([]);
    expect(await one.request("connect", { peer: "tg-2" })).toMatchObject({ error: { code: "ACL_DENIED" } });
    for (const node of ["tg-1", "tg-2"]) expect((await api(server, `/api/v1/nodes/${node}/tags?tags=pair`, server.adminToken, "PUT")).status).toBe(200);
    for (const [client, other] of [[one, "tg-2"], [two, "tg-1"]] as const)
      await client.waitMessage(`${client === one ? "tg-1" : "tg-2"} to get a map holding ${other}`, (m) => m.type === "sdwan" && m.map.nodes.some((n: Json) => n.name === other));
    expect(await one.request("connect", { peer: "tg-2" })).toMatchObject({ ok: true });
  });
});
