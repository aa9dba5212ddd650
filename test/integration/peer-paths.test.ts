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

/**
 * Two endpoints on 127.0.0.1 offering `transports`, and `link()`, which runs one server plan between them
 * (both sides at once, as when a node asks for a link) and resolves to the link each side made.
 */
async function endpointPair(transports: ("udp" | "tcp")[]) {
  const identities = [generateIdentity(), generateIdentity()] as const;
  const endpoints = [new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1", transports }), new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1", transports })] as const;
  open.endpoints.push(...endpoints);
  await Promise.all(endpoints.map((endpoint) => endpoint.start()));
  const names = ["a", "b"] as const;
  const run = (side: 0 | 1, plan: { sessionId: string; startAt: number; role: "initiator" | "responder" }) => {
    const other = (1 - side) as 0 | 1;
    const connector = new Connector({ endpoint: endpoints[side], identity: identities[side], logger: silentLogger, localTimeOf: (t) => t });
    return connector.run({ ...plan, peer: { name: names[other], publicKey: identities[other].publicKey, nat: null, candidates: endpoints[other].candidates() } });
  };
  const link = async (): Promise<[Link, Link]> => {
    const sessionId = randomBytes(16).toString("base64url");
    const startAt = Date.now() + 20;
    const links = await Promise.all([run(0, { sessionId, startAt, role: "initiator" }), run(1, { sessionId, startAt, role: "responder" })]);
    open.links.push(...links);
    return links;
  };
  return { link };
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
    const [a, b] = await (await endpointPair([...transports])).link();
    expect([a.kind, b.kind]).toEqual([kind, kind]);
    expect(await roundTrip(a, b)).toBe("echo:hi");
  });
});

describe("two links between the same two sockets", () => {
  it("the first still carries streams while the second is up, and after the second closes", async () => {
    const pair = await endpointPair(["udp"]);
    const [a1, b1] = await pair.link();
    // A second plan between the same sockets: the race both nodes run when each asks for the other at once.
    const [a2, b2] = await pair.link();
    expect(await roundTrip(a2, b2)).toBe("echo:hi");
    expect(await withinMs(roundTrip(a1, b1), 3_000)).toBe("echo:hi");
    // One side keeps the first link, as a node does when the parallel one loses the race.
    a2.close("a parallel link to the same peer won");
    b2.close("a parallel link to the same peer won");
    expect(await withinMs(roundTrip(a1, b1), 3_000)).toBe("echo:hi");
  });
});

function withinMs<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, fail) => setTimeout(() => fail(new Error(`nothing within ${ms} ms`)), ms))]);
}
