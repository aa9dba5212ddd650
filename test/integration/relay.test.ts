// Relayed links with real processes on 127.0.0.1: "near" may only use relays (peer_paths = ["relay"]),
// so every link it makes to "far" goes through the best relay the server offers. Tiers, failover and
// the relay's own refusal of other users' nodes.
import { randomBytes } from "node:crypto";
import type { Server, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appComesBack, echoOnce, startEcho } from "../helpers/echo.ts";
import {
  freePort,
  linkedClientStatus,
  restartLinkedClient,
  startLinkedClient,
  startServer,
  stopLinkedClient,
  waitFor,
  type LinkedClient,
  type ServerHandle,
} from "../helpers/processes.ts";

const BOB_TOKEN = "987654321987654321";
/** New connections must work through the next relay within this after the current one dies. */
const FAILOVER_LIMIT_MS = 10_000;

describe("relays (real processes)", () => {
  let server: ServerHandle;
  let echo: { server: Server; port: number; sockets: Set<Socket> };
  let near: LinkedClient;
  let far: LinkedClient;
  let appPort: number;
  const relays: LinkedClient[] = [];

  const relayNode = async (node: string, kind: "relay" | "super", token?: string) => {
    const client = await startLinkedClient(server, node, `${kind} = true\nrelay_port = ${await freePort()}`, { logLevel: "info", token });
    relays.push(client);
    await client.proc.waitForOutput(/relaying for/);
    await waitFor(`the server to hear ${node}'s relay offer`, () => server.proc.output.includes(`node offers to relay node=${node}`) || undefined, 10_000);
    return client;
  };
  const nearLink = async () => (await linkedClientStatus(near)).peers.far;

  beforeAll(async () => {
    server = await startServer({ tail: `[[server.users]]\nname = "bob"\ntoken = "${BOB_TOKEN}"` });
    echo = await startEcho();
    appPort = await freePort();
    far = await startLinkedClient(server, "far", "", { logLevel: "info" });
    near = await startLinkedClient(
      server,
      "near",
      [
        'peer_paths = ["relay"]',
        "[[client.apps]]",
        'name = "echo"',
        'protocol = "tcp"',
        `listen = "127.0.0.1:${appPort}"`,
        'peer = "far"',
        `target = "127.0.0.1:${echo.port}"`,
      ].join("\n"),
      { logLevel: "info" },
    );
  }, 30_000);

  afterAll(async () => {
    for (const client of [near, far, ...relays]) await stopLinkedClient(client);
    echo?.server.close();
    await server?.stop();
  });

  it("without relay nodes, the server relays: 8 MiB through the app arrive intact", async () => {
    const link = await waitFor("a link to far", async () => ((await nearLink())?.link ? await nearLink() : undefined), 15_000);
    expect({ link: link.link, relay: link.relay }).toEqual({ link: "relay-server", relay: "server" });
    const data = randomBytes(8 * 1024 * 1024);
    expect((await echoOnce(appPort, data, 30_000)).equals(data)).toBe(true);
    const farView = (await linkedClientStatus(far)).peers.near;
    expect({ link: farView.link, relay: farView.relay }).toEqual({ link: "relay-server", relay: "server" });
  }, 40_000);

  it("a private relay of the same user is chosen over a super relay of another user", async () => {
    await relayNode("sup", "super", BOB_TOKEN);
    await relayNode("priv", "relay");
    near = await restartLinkedClient(near);
    await appComesBack(appPort, 15_000);
    const link = await nearLink();
    expect({ link: link.link, relay: link.relay }).toEqual({ link: "relay-private", relay: "default/priv" });
  }, 60_000);

  it("killing the relay moves new connections to the next tier within 10 s: super, then the server", async () => {
    const [sup, priv] = relays;
    priv!.proc.child.kill("SIGKILL");
    const toSuper = await appComesBack(appPort, FAILOVER_LIMIT_MS);
    expect(await nearLink()).toMatchObject({ link: "relay-super", relay: "bob/sup" });
    sup!.proc.child.kill("SIGKILL");
    const toServer = await appComesBack(appPort, FAILOVER_LIMIT_MS);
    expect(await nearLink()).toMatchObject({ link: "relay-server", relay: "server" });
    console.log(`failover: private -> super ${toSuper} ms, super -> server ${toServer} ms`);
  }, 40_000);
});
