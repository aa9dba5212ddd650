// A peer that once had no direct path, with no relay anywhere (the server relays nothing): later
// attempts must try a direct path again, not only relays that do not exist (real inp2ps and inp2pc
// processes on 127.0.0.1). Seen in the punch lab: one failed punch under load left udp-blocked unable
// to reach full-cone for good.
import { readFileSync, writeFileSync } from "node:fs";
import type { Server, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appComesBack, startEcho } from "../helpers/echo.ts";
import { appToml, exposeToml, freePort, linkedClientStatus, restartLinkedClient, startLinkedClient, startServer, stopLinkedClient, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";

const ONLY_RELAY = 'peer_paths = ["relay"]';

describe("no relay, and a peer that had no direct path", () => {
  let server: ServerHandle;
  let echo: { server: Server; port: number; sockets: Set<Socket> };
  let far: LinkedClient | undefined;
  let near: LinkedClient | undefined;

  beforeAll(async () => {
    server = await startServer({ extraToml: "relay = false" });
    echo = await startEcho();
  }, 30_000);

  afterAll(async () => {
    await stopLinkedClient(near);
    await stopLinkedClient(far);
    echo?.server.close();
    await server?.stop();
  });

  it("links directly once the peer offers a direct path again", async () => {
    // far offers no direct path at first: near's attempt ends in "needs-relay", and no relay exists.
    far = await startLinkedClient(server, "far", [ONLY_RELAY, exposeToml(`127.0.0.1:${echo.port}`)].join("\n"), { logLevel: "info" });
    const appPort = await freePort();
    near = await startLinkedClient(server, "near", appToml({ name: "echo", listen: appPort, peer: "far", target: echo.port }), { logLevel: "info" });
    await waitFor("near to find no path to far", async () => (await linkedClientStatus(near!)).peers.far?.state === "needs-relay", 15_000);

    // far runs again with direct paths: near's next attempt (its app's, once far is online) must link.
    writeFileSync(far.config, readFileSync(far.config, "utf8").replace(ONLY_RELAY, ""));
    far = await restartLinkedClient(far);
    await appComesBack(appPort, 15_000);
    expect((await linkedClientStatus(near)).peers.far).toMatchObject({ state: "linked", relay: null });
  }, 60_000);
});
