// SDWAN enabled where it cannot run: inp2pc says exactly why and keeps everything else running. Root
// runs the client under setpriv with CAP_NET_ADMIN dropped from its bounding set (so it lacks the
// capability however it was started); its TCP app to a peer still works.
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import type { Server, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { echoOnce, startEcho } from "../helpers/echo.ts";
import { exposeToml, freePort, linkedClientStatus, startLinkedClient, startServer, stopLinkedClient, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";

const WITHOUT_NET_ADMIN = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"];
const reason =
  process.getuid?.() !== 0 ? "needs root (to drop CAP_NET_ADMIN with setpriv)" : spawnSync("setpriv", ["--version"]).status !== 0 ? "setpriv (util-linux) is missing" : undefined;
if (reason) console.warn(`SDWAN-without-capability test skipped: ${reason}`);

describe.skipIf(reason)("SDWAN without CAP_NET_ADMIN", () => {
  let server: ServerHandle;
  let echo: { server: Server; port: number; sockets: Set<Socket> };
  let near: LinkedClient;
  let far: LinkedClient;
  let appPort: number;

  beforeAll(async () => {
    server = await startServer({ tail: '[server.sdwan]\nsubnet = "10.77.0.0/24"' });
    echo = await startEcho();
    appPort = await freePort();
    far = await startLinkedClient(server, "far", exposeToml(`127.0.0.1:${echo.port}`));
    near = await startLinkedClient(
      server,
      "near",
      ["[[client.apps]]", 'name = "echo"', 'protocol = "tcp"', `listen = "127.0.0.1:${appPort}"`, 'peer = "far"', `target = "127.0.0.1:${echo.port}"`, "[client.sdwan]", "enabled = true", 'name = "inp2ptest9"'].join("\n"),
      { wrap: WITHOUT_NET_ADMIN },
    );
  }, 30_000);

  afterAll(async () => {
    await stopLinkedClient(near);
    await stopLinkedClient(far);
    echo?.server.close();
    await server?.stop();
  });

  it("logs that SDWAN is off and why, shows it in status, and the rest works", async () => {
    await near.proc.waitForOutput(/SDWAN is off: .*CAP_NET_ADMIN.*everything else keeps running/);
    const status = await linkedClientStatus(near);
    expect(status.sdwan).toMatchObject({ state: "off", interface: null, address: null });
    expect(status.sdwan.error).toMatch(/needs CAP_NET_ADMIN/);
    expect(status.server.state).toBe("online");
    await waitFor("the app listening", async () => (await linkedClientStatus(near)).apps[0]?.state === "listening", 10_000);
    const data = randomBytes(256 * 1024);
    expect((await echoOnce(appPort, data, 15_000)).equals(data)).toBe(true);
  }, 30_000);
});
