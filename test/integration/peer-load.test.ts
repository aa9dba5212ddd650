// Load and failure behaviour of peer links with real processes on 127.0.0.1: one inp2ps, a "far"
// inp2pc next to an echo target, and a "near" inp2pc whose TCP app forwards to it.
import { randomBytes } from "node:crypto";
import { connect, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  exposeToml,
  freePort,
  linkedClientStatus,
  restartLinkedClient,
  rssMiB,
  startLinkedClient,
  startServer,
  stopLinkedClient,
  waitFor,
  type LinkedClient,
  type ServerHandle,
} from "../helpers/processes.ts";
import { appComesBack, echoOnce, startEcho } from "../helpers/echo.ts";

const CONNECTIONS = 200;
const BYTES_PER_CONNECTION = 256 * 1024;
/** The connection that never reads keeps writing until it is held back, or this much has gone. */
const STALLED_WRITE_LIMIT_BYTES = 256 * 1024 * 1024;
const RSS_LIMIT_MIB = 400;

describe("peer links under load and failure (real processes)", () => {
  let server: ServerHandle;
  let echo: { server: Server; port: number; sockets: Set<Socket> };
  let near: LinkedClient;
  let far: LinkedClient;
  let appPort: number;

  beforeAll(async () => {
    server = await startServer();
    echo = await startEcho();
    appPort = await freePort();
    far = await startLinkedClient(server, "far", exposeToml(`127.0.0.1:${echo.port}`), { logLevel: "info" });
    near = await startLinkedClient(
      server,
      "near",
      ["[[client.apps]]", 'name = "echo"', 'protocol = "tcp"', `listen = "127.0.0.1:${appPort}"`, 'peer = "far"', `target = "127.0.0.1:${echo.port}"`].join("\n"),
      { logLevel: "info" },
    );
    await waitFor("the app listening", async () => (await linkedClientStatus(near)).apps[0]?.state === "listening", 10_000);
  }, 30_000);

  afterAll(async () => {
    await stopLinkedClient(near);
    await stopLinkedClient(far);
    await server?.stop();
    for (const socket of echo?.sockets ?? []) socket.destroy();
    echo?.server.close();
  });

  it(`${CONNECTIONS} concurrent connections through one app, one never read: the others finish intact, memory stays bounded`, async () => {
    const rss = { near: 0, far: 0 };
    const sample = () => {
      rss.near = Math.max(rss.near, rssMiB(near.proc.child.pid) ?? 0);
      rss.far = Math.max(rss.far, rssMiB(far.proc.child.pid) ?? 0);
    };
    sample();
    const baseline = { ...rss };
    const sampler = setInterval(sample, 200);
    const started = Date.now();

    // The stalled one: connects first, never reads, and writes as long as it is allowed to.
    let stalledWritten = 0;
    const stalled = connect({ host: "127.0.0.1", port: appPort });
    stalled.pause();
    stalled.on("error", () => {});
    const chunk = randomBytes(64 * 1024);
    const writeOn = () => {
      while (!stalled.destroyed && stalledWritten < STALLED_WRITE_LIMIT_BYTES) {
        stalledWritten += chunk.length;
        if (!stalled.write(chunk)) return void stalled.once("drain", writeOn);
      }
    };
    stalled.once("connect", writeOn);

    try {
      const results = await Promise.allSettled(
        Array.from({ length: CONNECTIONS - 1 }, async (_, i) => {
          const data = randomBytes(BYTES_PER_CONNECTION);
          data.writeUInt32BE(i, 0);
          const echoed = await echoOnce(appPort, data, 50_000);
          if (!echoed.equals(data)) throw new Error(`connection ${i}: ${echoed.length} bytes came back, not the ${data.length} sent`);
        }),
      );
      sample();
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
      const seconds = (Date.now() - started) / 1000;
      // With the others done, the unread connection has the link to itself: it must come to a stop
      // (flow control all the way back to its socket), not be buffered without end.
      let last = -1;
      await waitFor(
        "the unread connection to be held back",
        async () => {
          const settled = stalledWritten === last;
          last = stalledWritten;
          return settled || (await new Promise((r) => setTimeout(r, 1_500)), false);
        },
        25_000,
        0,
      ).catch((err: Error) => {
        throw new Error(`${err.message}: it wrote ${(stalledWritten / 2 ** 20).toFixed(1)} MiB and kept going`);
      });
      sample();
      console.log(
        `${CONNECTIONS - 1 - failed.length}/${CONNECTIONS - 1} echoed ${BYTES_PER_CONNECTION / 1024} KiB each in ${seconds.toFixed(1)} s; ` +
          `the unread one was held back after writing ${(stalledWritten / 2 ** 20).toFixed(1)} MiB; ` +
          `peak RSS near ${rss.near.toFixed(0)} MiB (from ${baseline.near.toFixed(0)}), far ${rss.far.toFixed(0)} MiB (from ${baseline.far.toFixed(0)})`,
      );
      expect(failed.map((f) => String(f.reason)).slice(0, 5)).toEqual([]);
      expect(stalled.destroyed).toBe(false);
      expect(stalledWritten).toBeLessThan(STALLED_WRITE_LIMIT_BYTES);
      expect(rss.near).toBeLessThan(RSS_LIMIT_MIB);
      expect(rss.far).toBeLessThan(RSS_LIMIT_MIB);
      // Both processes are still serving after it.
      const after = randomBytes(4096);
      expect((await echoOnce(appPort, after, 5_000)).equals(after)).toBe(true);
    } finally {
      clearInterval(sampler);
      stalled.destroy();
    }
  }, 60_000);

  it("killing and restarting the far peer: the app comes back by itself", async () => {
    const before = randomBytes(4096);
    expect((await echoOnce(appPort, before, 5_000)).equals(before)).toBe(true);
    far.proc.child.kill("SIGKILL");
    await far.proc.exited;
    far = await restartLinkedClient(far);
    const tookMs = await appComesBack(appPort, 15_000);
    console.log(`after the far peer's restart the app carried data again after ${(tookMs / 1000).toFixed(1)} s`);
    const status = await linkedClientStatus(near);
    expect(status.peers.far.link).toBeTruthy();
  }, 40_000);

  it("killing the server does not break an established link", async () => {
    // A direct one: a link through the server's relay ends with the server (right after far's restart,
    // with its NAT not yet known, the first link goes through the relay while the punch runs).
    const linked = await waitFor("a direct link to far", async () => {
      const status = await linkedClientStatus(near);
      return status.peers.far?.link && !status.peers.far.link.startsWith("relay-") ? status.peers.far : undefined;
    });
    server.proc.child.kill("SIGKILL");
    await server.proc.exited;
    // Long enough for both clients to notice the server is gone (heartbeat timeout 2 s).
    await waitFor("near to see the server gone", async () => (await linkedClientStatus(near)).server.state !== "online", 10_000);
    for (let i = 0; i < 3; i++) {
      const data = randomBytes(256 * 1024);
      expect((await echoOnce(appPort, data, 5_000)).equals(data)).toBe(true);
    }
    const status = await linkedClientStatus(near);
    expect(status.peers.far.link).toBe(linked.link);
    expect(status.peers.far.since).toBe(linked.since); // the same link, not a new one
  }, 30_000);
});
