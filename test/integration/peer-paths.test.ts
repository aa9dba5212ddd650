// Which transports a node offers decides the path: in-process endpoints on 127.0.0.1.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { Connector, PeerEndpoint, type Link } from "../../src/transport/index.ts";

const open: { endpoints: PeerEndpoint[]; links: Link[] } = { endpoints: [], links: [] };
afterEach(() => {
  open.links.splice(0).forEach((link) => link.close("test over"));
  open.endpoints.splice(0).forEach((endpoint) => endpoint.close());
});

async function linkPair(transports: ("udp" | "tcp")[]): Promise<[Link, Link]> {
  const [ia, ib] = [generateIdentity(), generateIdentity()];
  const [ea, eb] = [new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1", transports }), new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1", transports })];
  open.endpoints.push(ea, eb);
  await Promise.all([ea.start(), eb.start()]);
  const connector = (endpoint: PeerEndpoint, identity: typeof ia) => new Connector({ endpoint, identity, logger: silentLogger, localTimeOf: (t) => t });
  const sessionId = randomBytes(16).toString("base64url");
  const startAt = Date.now() + 20;
  const links = await Promise.all([
    connector(ea, ia).run({ sessionId, startAt, role: "initiator", peer: { name: "b", publicKey: ib.publicKey, nat: null, candidates: eb.candidates() } }),
    connector(eb, ib).run({ sessionId, startAt, role: "responder", peer: { name: "a", publicKey: ia.publicKey, nat: null, candidates: ea.candidates() } }),
  ]);
  open.links.push(...links);
  return links;
}

async function roundTrip(a: Link, b: Link): Promise<string> {
  // Closing a link resets its open streams with an error, as sockets do; listen for it.
  b.mux.onStream((stream) => stream.on("error", () => {}).on("data", (d: Buffer) => stream.end(`echo:${d}`)));
  const stream = a.mux.openStream();
  stream.on("error", () => {});
  stream.write("hi");
  let reply = "";
  for await (const chunk of stream) reply += chunk;
  return reply;
}

describe("peer_paths", () => {
  it.each([
    [["udp", "tcp"], "lan"],
    [["udp"], "lan"],
    [["tcp"], "tcp-direct"],
  ] as const)("offering %j gives a %s path that carries a stream both ways", async (transports, kind) => {
    const [a, b] = await linkPair([...transports]);
    expect([a.kind, b.kind]).toEqual([kind, kind]);
    expect(await roundTrip(a, b)).toBe("echo:hi");
  });
});

describe("two links between the same two sockets", () => {
  /** A second plan between the endpoints of `first`'s pair: the race both nodes run when each asks for the other at once. */
  async function secondLink(pair: Awaited<ReturnType<typeof linkPairWithEndpoints>>): Promise<[Link, Link]> {
    const sessionId = randomBytes(16).toString("base64url");
    const startAt = Date.now() + 20;
    const links = await Promise.all([
      pair.connect(0, { sessionId, startAt, role: "initiator" }),
      pair.connect(1, { sessionId, startAt, role: "responder" }),
    ]);
    open.links.push(...links);
    return links;
  }

  it("the first still carries streams while the second is up, and after the second closes", async () => {
    const pair = await linkPairWithEndpoints();
    const [a1, b1] = pair.links;
    const [a2, b2] = await secondLink(pair);
    expect(await roundTrip(a2, b2)).toBe("echo:hi");
    expect(await withinMs(roundTrip(a1, b1), 3_000)).toBe("echo:hi");
    // One side keeps the first link, as a node does when the parallel one loses the race.
    a2.close("a parallel link to the same peer won");
    b2.close("a parallel link to the same peer won");
    expect(await withinMs(roundTrip(a1, b1), 3_000)).toBe("echo:hi");
  });
});

async function linkPairWithEndpoints() {
  const [ia, ib] = [generateIdentity(), generateIdentity()];
  const endpoints = [new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1", transports: ["udp"] }), new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1", transports: ["udp"] })] as const;
  open.endpoints.push(...endpoints);
  await Promise.all(endpoints.map((endpoint) => endpoint.start()));
  const identities = [ia, ib] as const;
  const names = ["a", "b"] as const;
  const connect = (side: 0 | 1, plan: { sessionId: string; startAt: number; role: "initiator" | "responder" }) => {
    const other = (1 - side) as 0 | 1;
    const connector = new Connector({ endpoint: endpoints[side], identity: identities[side], logger: silentLogger, localTimeOf: (t) => t });
    return connector.run({ ...plan, peer: { name: names[other], publicKey: identities[other].publicKey, nat: null, candidates: endpoints[other].candidates() } });
  };
  const sessionId = randomBytes(16).toString("base64url");
  const startAt = Date.now() + 20;
  const links = await Promise.all([connect(0, { sessionId, startAt, role: "initiator" }), connect(1, { sessionId, startAt, role: "responder" })]);
  open.links.push(...links);
  return { links, connect };
}

function withinMs<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, fail) => setTimeout(() => fail(new Error(`nothing within ${ms} ms`)), ms))]);
}
