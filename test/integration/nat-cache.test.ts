// A restarted node uses the NAT result of its last run at once, so its first link does not wait for
// NAT detection. Real processes on 127.0.0.1: one inp2ps, a "far" inp2pc next to an echo target, and a
// "near" inp2pc whose TCP app forwards to it; near is the one restarted.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { NAT_CACHE_FILE } from "../../src/client/index.ts";
import { firstEchoAt, startEcho } from "../helpers/echo.ts";
import {
  exposeToml,
  freePort,
  loginTime,
  restartLinkedClient,
  startLinkedClient,
  startServer,
  stopLinkedClient,
  waitFor,
  type LinkedClient,
  type ServerHandle,
} from "../helpers/processes.ts";

const RESTARTS = 3;
/** Each restart waits this long at most for a working request (a failure still prints the figure). */
const PROBE_WINDOW_MS = 30_000;
/** From the restarted node's login to its first request through the app, at most (without the kept result: ~1.97 s). */
const FIRST_REQUEST_WITHIN_MS = 1_200;
const CACHED_LINE = /INFO +NAT type: public \(from the last run; checking again\)/;

describe("the NAT result of the last run (real processes)", () => {
  let servers: ServerHandle[] = [];
  let echo: Awaited<ReturnType<typeof startEcho>> | undefined;
  let near: LinkedClient | undefined;
  let far: LinkedClient | undefined;
  let appPort = 0;
  let silent: { server: Server; sockets: Set<Socket> } | undefined;

  afterEach(async () => {
    await stopLinkedClient(near);
    await stopLinkedClient(far);
    for (const server of servers) await server.stop();
    for (const socket of echo?.sockets ?? []) socket.destroy();
    echo?.server.close();
    for (const socket of silent?.sockets ?? []) socket.destroy();
    silent?.server.close();
    near = far = echo = silent = undefined;
    servers = [];
  });

  /**
   * A TCP port that accepts and never answers: as near's STUN TCP port, its NAT detection takes the TCP
   * probe's whole timeout (1.5 s), like a detection behind a symmetric NAT (1.1 s in the churn soak).
   */
  async function silentTcpPort(): Promise<number> {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => socket.destroy());
    });
    silent = { server, sockets };
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    return (server.address() as { port: number }).port;
  }

  /** Starts the server, far, and near with its app toward far; resolves once a request through the app works and near kept its NAT result. */
  async function startPair(options: { slowDetection?: boolean } = {}): Promise<ServerHandle> {
    const server = await startServer();
    servers.push(server);
    echo = await startEcho();
    appPort = await freePort();
    far = await startLinkedClient(server, "far", exposeToml(`127.0.0.1:${echo.port}`), { logLevel: "info" });
    const stunPorts = options.slowDetection ? { stun_tcp1: await silentTcpPort() } : {};
    near = await startLinkedClient(server, "near", appToml(), { logLevel: "debug", stunPorts });
    await firstEchoAt(appPort, PROBE_WINDOW_MS);
    await waitFor("near to keep its NAT result", () => existsSync(cacheFile()), 10_000);
    return server;
  }

  const appToml = () => ["[[client.apps]]", 'name = "echo"', 'protocol = "tcp"', `listen = "127.0.0.1:${appPort}"`, 'peer = "far"', `target = "127.0.0.1:${echo!.port}"`].join("\n");
  const cacheFile = () => join(near!.dir, NAT_CACHE_FILE);

  /** Restarts near; returns ms from its login to the first request that came back through the app. */
  async function restartNear(): Promise<number> {
    await near!.proc.stop("SIGTERM");
    near = await restartLinkedClient(near!);
    const echoedAt = await firstEchoAt(appPort, PROBE_WINDOW_MS).catch(() => Infinity);
    return echoedAt - loginTime(near.proc.output);
  }

  it(`a slow NAT detection: after each of ${RESTARTS} restarts, the cached NAT type is used before the first link, and a request works within ${FIRST_REQUEST_WITHIN_MS} ms of the login`, async () => {
    await startPair({ slowDetection: true });
    const firstRequest: number[] = [];
    const logs: string[] = [];
    for (let i = 0; i < RESTARTS; i++) {
      firstRequest.push(await restartNear());
      logs.push(near!.proc.output);
    }
    console.log(`first request through the app after near's login (ms): ${firstRequest.join(", ")}`);
    for (const log of logs) {
      const cachedAt = log.search(CACHED_LINE);
      const linkedAt = log.search(/INFO +peer linked peer=far/);
      expect(cachedAt, log.slice(0, 3000)).toBeGreaterThanOrEqual(0);
      expect(linkedAt, log.slice(0, 3000)).toBeGreaterThan(cachedAt);
    }
    expect(firstRequest.every((ms) => ms <= FIRST_REQUEST_WITHIN_MS), firstRequest.join(", ")).toBe(true);
  }, 180_000);

  it("a result kept for another server, or for other local addresses, is not used; the detection then keeps the new one", async () => {
    await startPair();
    // Other local addresses: the kept result names addresses this host does not have.
    const saved = JSON.parse(readFileSync(cacheFile(), "utf8"));
    expect(saved.key.addresses, "the kept result names this host's addresses").toBeTypeOf("string");
    writeFileSync(cacheFile(), JSON.stringify({ ...saved, key: { ...saved.key, addresses: "192.0.2.1" } }));
    await restartNear();
    await near!.proc.waitForOutput(/INFO +NAT type: public why=start-up/, 15_000);
    expect(near!.proc.output).not.toMatch(CACHED_LINE);
    await waitFor("the kept result to be this host's again", () => JSON.parse(readFileSync(cacheFile(), "utf8")).key.addresses === saved.key.addresses, 10_000);

    // Another server (other port and STUN ports): the same data dir, a config for the second server.
    const other = await startServer();
    servers.push(other);
    await near!.proc.stop();
    near = await startLinkedClient(other, "near", "", { dir: near!.dir, logLevel: "debug" });
    await near.proc.waitForOutput(/INFO +NAT type: public why=start-up/, 15_000);
    expect(near.proc.output).not.toMatch(CACHED_LINE);
  }, 120_000);

  it("a corrupt file is ignored with a warning: the node logs in, detects its NAT type and keeps it anew", async () => {
    await startPair();
    writeFileSync(cacheFile(), "{ not json");
    await restartNear();
    expect(near!.proc.output).toMatch(/WARN +ignoring the NAT result of the last run file=\S+inp2pc\.nat\.json why="not valid JSON/);
    expect(near!.proc.output).not.toMatch(CACHED_LINE);
    await near!.proc.waitForOutput(/INFO +NAT type: public why=start-up/, 15_000);
    await waitFor("a valid file again", () => JSON.parse(readFileSync(cacheFile(), "utf8")).nat?.natType === "public", 10_000);
    expect(near!.proc.exitCode).toBeNull();
  }, 120_000);
});
