// Relayed links with real processes on 127.0.0.1: "near" may only use relays (peer_paths = ["relay"]),
// so every link it makes to "far" goes through the best relay the server offers. Tiers (with
// prefer_super_relays, and bob's super relay approved by the admin) and failover.
import { randomBytes } from "node:crypto";
import type { Server, Socket } from "node:net";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { appComesBack, echoOnce, startEcho } from "../helpers/echo.ts";
import { appToml, exposeToml, freePort, INP2PS, linkedClientStatus, onlineNodes, runToEnd, startLinkedClient, startServer, stopLinkedClient, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";

const BOB_TOKEN = "987654321987654321";
/** New connections must work through the next relay within this after the current one dies. */
const FAILOVER_LIMIT_MS = 10_000;

describe("relays (real processes)", () => {
  let server: ServerHandle;
  let echo: { server: Server; port: number; sockets: Set<Socket> };
  let near: LinkedClient | undefined;
  let far: LinkedClient;
  let appPort: number;
  let relays: LinkedClient[] = [];
  // The server pins a node name to its first identity key, so each test's nodes get names of their own.
  let round = 0;
  const named = (node: string) => `${node}${round}`;

  const relayNode = async (node: string, kind: "relay" | "super", token?: string) => {
    const client = await startLinkedClient(server, named(node), `${kind} = true\nrelay_port = ${await freePort()}`, { logLevel: "info", token });
    relays.push(client);
    await client.proc.waitForOutput(/relaying for/);
    await waitFor(`the server to hear ${client.node}'s relay offer`, () => server.proc.output.includes(`node offers to relay node=${client.node}`) || undefined, 10_000);
    // Bob's super relay serves the default user's nodes only once the admin approves it.
    if (kind === "super" && token === BOB_TOKEN) expect(await runToEnd(INP2PS, ["relays", "approve", `bob/${client.node}`, "--config", server.configPath])).toMatchObject({ code: 0 });
    return client;
  };
  /** A fresh "near", started after the relays of the test, so it links through the best one on offer. */
  const startNear = async () => {
    appPort = await freePort();
    near = await startLinkedClient(
      server,
      named("near"),
      ['peer_paths = ["relay"]', appToml({ name: "echo", listen: appPort, peer: "far", target: echo.port })].join("\n"),
      { logLevel: "info" },
    );
    return near;
  };
  const nearLink = async () => (await linkedClientStatus(near!)).peers.far;

  beforeAll(async () => {
    server = await startServer({ extraToml: "prefer_super_relays = true", tail: `[[server.users]]\nname = "bob"\ntoken = "${BOB_TOKEN}"` });
    echo = await startEcho();
    far = await startLinkedClient(server, "far", exposeToml(`127.0.0.1:${echo.port}`), { logLevel: "info" });
  }, 30_000);

  beforeEach(() => {
    round++;
  });

  // Each test starts its own relays and its own "near"; none is left for the next test, and the
  // server has seen every one of them go, so it offers no relay from an earlier test.
  afterEach(async () => {
    const gone = [near, ...relays].filter((client) => client !== undefined);
    for (const client of gone) await stopLinkedClient(client);
    near = undefined;
    relays = [];
    await waitFor("the server to see the test's nodes go", async () => {
      const online = await onlineNodes(server);
      return gone.every((client) => !online.includes(client.node)) || undefined;
    }, 15_000);
  }, 30_000);

  afterAll(async () => {
    await stopLinkedClient(far);
    echo?.server.close();
    await server?.stop();
  });

  it("without relay nodes, the server relays: 8 MiB through the app arrive intact", async () => {
    await startNear();
    const link = await waitFor("a link to far", async () => ((await nearLink())?.link ? await nearLink() : undefined), 15_000);
    expect({ link: link.link, relay: link.relay }).toEqual({ link: "relay-server", relay: "server" });
    const data = randomBytes(8 * 1024 * 1024);
    expect((await echoOnce(appPort, data, 30_000)).equals(data)).toBe(true);
    const farView = (await linkedClientStatus(far)).peers[near!.node];
    expect({ link: farView.link, relay: farView.relay }).toEqual({ link: "relay-server", relay: "server" });
  }, 40_000);

  it("a private relay of the same user is chosen over a super relay of another user", async () => {
    await relayNode("sup", "super", BOB_TOKEN);
    await relayNode("priv", "relay");
    await startNear();
    await appComesBack(appPort, 15_000);
    const link = await nearLink();
    expect({ link: link.link, relay: link.relay }).toEqual({ link: "relay-private", relay: `default/${named("priv")}` });
  }, 60_000);

  it("killing the relay moves new connections to the next tier within 10 s: super, then the server", async () => {
    const sup = await relayNode("sup", "super", BOB_TOKEN);
    const priv = await relayNode("priv", "relay");
    await startNear();
    await appComesBack(appPort, 15_000);
    expect(await nearLink()).toMatchObject({ link: "relay-private", relay: `default/${named("priv")}` });
    priv.proc.child.kill("SIGKILL");
    const toSuper = await appComesBack(appPort, FAILOVER_LIMIT_MS);
    expect(await nearLink()).toMatchObject({ link: "relay-super", relay: `bob/${named("sup")}` });
    sup.proc.child.kill("SIGKILL");
    const toServer = await appComesBack(appPort, FAILOVER_LIMIT_MS);
    expect(await nearLink()).toMatchObject({ link: "relay-server", relay: "server" });
    console.log(`failover: private -> super ${toSuper} ms, super -> server ${toServer} ms`);
  }, 60_000);
});
