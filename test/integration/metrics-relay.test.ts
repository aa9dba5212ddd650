// Relay metrics of both kinds of relay: the server's own, and a node's private one (--relay), with the
// link kinds, plans and punch times the nodes on either side report.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { echoOnce, startEcho } from "../helpers/echo.ts";
import { parseExposition, samplesOf, type Sample } from "../helpers/exposition.ts";
import { prng, randomBytes } from "../helpers/prng.ts";
import { appToml, exposeToml, freePort, startLinkedClient, startServer, stopLinkedClient, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";

const ECHO_BYTES = 64 * 1024;
const SEED = 77;
const WAIT_MS = 15_000;

describe("relay metrics", () => {
  let server: ServerHandle;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let far: LinkedClient;
  const clients: LinkedClient[] = [];

  const scrapeServer = async (): Promise<Sample[]> => {
    const response = await fetch(`https://127.0.0.1:${server.port}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` }, tls: { rejectUnauthorized: false } } as RequestInit);
    return parseExposition(await response.text());
  };
  const scrapeClient = async (client: LinkedClient): Promise<Sample[]> => parseExposition(await (await fetch(`http://127.0.0.1:${client.statusPort}/metrics`)).text());
  const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) => samplesOf(samples, name, labels).reduce((sum, s) => sum + s.value, 0);
  /** A node that reaches far's echo only through relays, and the echo through it, once. */
  const relayedApp = async (node: string) => {
    const appPort = await freePort();
    const client = await startLinkedClient(server, node, ['peer_paths = ["relay"]', appToml({ name: "echo", listen: appPort, peer: "far", target: echo.port })].join("\n"), { logLevel: "info" });
    clients.push(client);
    const data = randomBytes(prng(SEED), ECHO_BYTES);
    const echoed = await waitFor(`an echo through ${node}'s app`, () => echoOnce(appPort, data, 5_000).catch(() => undefined), WAIT_MS, 200);
    expect(echoed.equals(data)).toBe(true);
    return client;
  };

  beforeAll(async () => {
    server = await startServer();
    echo = await startEcho();
    far = await startLinkedClient(server, "far", exposeToml(`127.0.0.1:${echo.port}`), { logLevel: "info" });
  }, 30_000);
  afterAll(async () => {
    for (const client of clients) await stopLinkedClient(client);
    await stopLinkedClient(far);
    echo?.server.close();
    await server?.stop();
  });

  it("the server's relay: one session carrying the echo both ways, planned as relay-server, the node's link and punch time by that kind", async () => {
    const near = await relayedApp("near");
    const served = await scrapeServer();
    expect(value(served, "inp2p_relay_sessions")).toBe(1);
    expect(value(served, "inp2p_relay_bytes_total")).toBeGreaterThanOrEqual(2 * ECHO_BYTES);
    expect(value(served, "inp2p_link_plans_total", { path: "relay-server" })).toBeGreaterThanOrEqual(1);
    const own = await scrapeClient(near);
    expect(value(own, "inp2p_links", { kind: "relay-server" })).toBe(1);
    expect(value(own, "inp2p_punch_duration_seconds_count", { path: "relay-server" })).toBeGreaterThanOrEqual(1);
    expect(value(own, "inp2p_tunnel_up", { app: "echo" })).toBe(1);
    expect(value(own, "inp2p_app_connections_total", { app: "echo" })).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it("a node's private relay: its own relay series count the session it bridges for two other nodes", async () => {
    const hub = await startLinkedClient(server, "hub", `relay = true\nrelay_port = ${await freePort()}`, { logLevel: "info" });
    clients.push(hub);
    expect(value(await scrapeClient(hub), "inp2p_relay_sessions")).toBe(0);
    await waitFor("hub's relay offer at the server", async () => (await (await fetch(`https://127.0.0.1:${server.port}/api/v1/relays`, { headers: { authorization: `Bearer ${server.adminToken}` }, tls: { rejectUnauthorized: false } } as RequestInit)).text()).includes("hub"), WAIT_MS);
    const near2 = await relayedApp("near2");
    expect(value(await scrapeClient(near2), "inp2p_links", { kind: "relay-private" })).toBe(1);
    const relayed = await scrapeClient(hub);
    expect(value(relayed, "inp2p_relay_sessions")).toBe(1);
    expect(value(relayed, "inp2p_relay_bytes_total")).toBeGreaterThanOrEqual(2 * ECHO_BYTES);
  }, 30_000);
});
