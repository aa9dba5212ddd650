// The server's ACL as users meet it, with real inp2ps and inp2pc processes on 127.0.0.1: an app
// through an allowed pair works (directly and through a relay); through a denied pair it fails, and
// the requester's log and status name the rule, without asking the server again and again.
import type { Server, Socket } from "node:net";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appComesBack, startEcho } from "../helpers/echo.ts";
import { appToml, exposeToml, freePort, linkedClientStatus, startLinkedClient, startServer, stopLinkedClient, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";

const ACL_TOML = [
  "[[server.acl]]",
  'name = "to-far"',
  'from = ["near", "relayed"]',
  'to = ["far"]',
  'action = "allow"',
  "[[server.acl]]",
  'name = "no-cams"',
  'from = ["cam", "relay-cam"]',
  'to = ["*"]',
  'action = "deny"',
].join("\n");
/** App connections a denied requester makes in a row: each would ask the server for a plan and a relay without a memory of the denial. */
const ATTEMPTS = 5;

describe("the ACL with real processes", () => {
  let server: ServerHandle;
  let echo: { server: Server; port: number; sockets: Set<Socket> };
  let far: LinkedClient;
  const clients: LinkedClient[] = [];

  /** A node with one TCP app to far's echo; `paths`: its peer_paths. */
  const withApp = async (node: string, paths?: string) => {
    const appPort = await freePort();
    const toml = [...(paths ? [`peer_paths = ${paths}`] : []), appToml({ name: "echo", listen: appPort, peer: "far", target: echo.port })].join("\n");
    const client = await startLinkedClient(server, node, toml, { logLevel: "info" });
    clients.push(client);
    // "logged in" comes before the app's listener is bound: a connection in between is refused by the kernel, not the app.
    await waitFor("the app listening", async () => (await linkedClientStatus(client)).apps[0]?.state === "listening", 10_000);
    return { client, appPort };
  };
  /** Connects to the app and resolves once the app closes the connection (a refusal), or rejects if bytes come back or nothing listens. */
  const refused = (port: number) =>
    new Promise<void>((done, fail) => {
      let accepted = false;
      const socket = connect({ host: "127.0.0.1", port }, () => ((accepted = true), socket.write("hello")));
      const timer = setTimeout(() => (socket.destroy(), fail(new Error("the app neither refused nor answered within 15 s"))), 15_000);
      socket.on("data", () => (clearTimeout(timer), socket.destroy(), fail(new Error("an app through a denied pair answered"))));
      socket.on("close", () => (clearTimeout(timer), accepted ? done() : fail(new Error(`nothing accepted the connection to the app's port ${port}`))));
      socket.on("error", () => {});
    });
  /** Link requests of `from` the server denied (its debug log has each; the audit only one per minute). */
  const denials = (from: string) => server.proc.output.split("\n").filter((line) => line.includes("the ACL denies a link") && line.includes(`from=${from} `)).length;

  beforeAll(async () => {
    server = await startServer({ tail: ACL_TOML });
    echo = await startEcho();
    far = await startLinkedClient(server, "far", exposeToml(`127.0.0.1:${echo.port}`), { logLevel: "info" });
  }, 30_000);

  afterAll(async () => {
    for (const client of clients) await stopLinkedClient(client);
    await stopLinkedClient(far);
    echo?.server.close();
    await server?.stop();
  });

  it("an allowed pair: the app works", async () => {
    const { appPort } = await withApp("near");
    await appComesBack(appPort, 15_000);
    expect(denials("near")).toBe(0);
  }, 30_000);

  it("an allowed pair with peer_paths = [\"relay\"]: the app works through the server's relay", async () => {
    const { client, appPort } = await withApp("relayed", '["relay"]');
    await appComesBack(appPort, 15_000);
    expect((await linkedClientStatus(client)).peers.far).toMatchObject({ link: "relay-server", relay: "server" });
  }, 30_000);

  it.each([
    ["cam", undefined],
    ["relay-cam", '["relay"]'],
  ])("a denied pair (%s, peer_paths %s): the app fails, its log and status name the rule, and the server is asked once", async (node, paths) => {
    const { client, appPort } = await withApp(node, paths);
    const message = `the server's ACL denies ${node} -> far (rule server.acl[1] "no-cams")`;
    for (let i = 0; i < ATTEMPTS; i++) await refused(appPort);
    await client.proc.waitForOutput(new RegExp(`app echo: cannot reach peer far: ${message.replace(/[()[\]]/g, "\\$&")}`));
    const status = await linkedClientStatus(client);
    expect(status.peers.far).toMatchObject({ state: "denied", link: null, error: message });
    expect(status.apps[0]).toMatchObject({ name: "echo", state: "listening", error: message });
    // One connect and one relay request at most (they may go out together); not two per connection.
    await waitFor("the server's log of the denial", () => denials(node) >= 1 || undefined);
    expect(denials(node)).toBeLessThanOrEqual(2);
    expect(client.proc.output.match(/cannot reach peer far/g)?.length).toBe(1);
  }, 60_000);
});
