// A node's peer TCP port under strangers' connections: each announces a frame (of ~70 KB, or one small
// enough to be a handshake), sends most of it, then drips a byte a second. The node's memory and descriptors stay bounded, and a real peer still
// links to it over TCP and carries an app meanwhile. Real inp2ps and inp2pc processes on loopback.
import { readdirSync } from "node:fs";
import { connect, type Server, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { HANDSHAKE_TIMEOUT_MS } from "../../src/transport/constants.ts";
import { appComesBack, startEcho } from "../helpers/echo.ts";
import {
  appToml,
  exposeToml,
  freePort,
  rssMiB,
  startLinkedClient,
  startServer,
  stopLinkedClient,
  waitFor,
  type LinkedClient,
  type ServerHandle,
} from "../helpers/processes.ts";

const ATTACK_CONNECTIONS = 300;
const ATTACK_BATCH = 50;
const DRIP_INTERVAL_MS = 1_000;
/** Growth of the attacked node's resident memory over its idle figure that the test tolerates. */
const RSS_GROWTH_LIMIT_MIB = 60;
/** Descriptors the attacked node may hold beyond its idle count: its cap on strangers, and room for its own links. */
const FD_GROWTH_LIMIT = 150;
const ATTACK_MS = 8_000;
const APP_BOUND_MS = 20_000;
/** The attackers' address; the real peers use 127.0.0.1, so a per-address share does not shut them out. */
const ATTACKER_ADDRESS = "127.0.0.2";

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

describe("a node's peer TCP port under a slow-drip attack", () => {
  let server: ServerHandle;
  let echo: { server: Server; port: number; sockets: Set<Socket> };
  let near: LinkedClient | undefined;
  let far: LinkedClient;
  let farTcpPort: number;
  const attackers: Socket[] = [];
  let drip: ReturnType<typeof setInterval> | undefined;

  beforeAll(async () => {
    server = await startServer();
    echo = await startEcho();
    farTcpPort = await freePort();
    far = await startLinkedClient(server, "far", [exposeToml(`127.0.0.1:${echo.port}`), 'peer_paths = ["tcp"]', `peer_tcp_port = ${farTcpPort}`].join("\n"), { logLevel: "info" });
  }, 30_000);

  afterAll(async () => {
    await stopLinkedClient(far);
    await server?.stop();
    for (const socket of echo?.sockets ?? []) socket.destroy();
    echo?.server.close();
  });

  afterEach(async () => {
    clearInterval(drip);
    attackers.forEach((s) => s.destroy());
    attackers.length = 0;
    await stopLinkedClient(near);
    near = undefined;
  });

  /** One stranger: a frame header announcing `announced` bytes and `sent` of them, then a byte a second. */
  const stranger = (announced: number, sent: number) =>
    new Promise<void>((resolve) => {
      const socket = connect({ host: "127.0.0.1", port: farTcpPort, localAddress: ATTACKER_ADDRESS }, () => {
        const start = Buffer.alloc(4 + sent, 0xc1);
        start.writeUInt32BE(announced, 0);
        socket.write(start, () => resolve());
      });
      attackers.push(socket);
      socket.on("error", () => {});
      socket.on("close", () => resolve());
    });

  it.each([
    ["a 71,680-byte frame (the issue's), 69 KiB of it", 71_680, 69 * 1024, "near1"],
    ["a 100-byte frame (a handshake's size), 60 bytes of it", 100, 60, "near2"],
  ])("strangers announcing %s: RSS and descriptors stay bounded, and a peer still links and carries an app", { timeout: 90_000 }, async (_what, announced, sent, nearName) => {
    const pid = far.proc.child.pid!;
    const idle = { rss: rssMiB(pid)!, fds: fdCount(pid) };
    const peak = { ...idle };
    const sample = () => {
      peak.rss = Math.max(peak.rss, rssMiB(pid) ?? 0);
      peak.fds = Math.max(peak.fds, fdCount(pid));
    };
    const sampler = setInterval(sample, 100);
    try {
      for (let opened = 0; opened < ATTACK_CONNECTIONS; opened += ATTACK_BATCH) await Promise.all(Array.from({ length: ATTACK_BATCH }, () => stranger(announced, sent)));
      drip = setInterval(() => attackers.forEach((s) => !s.destroyed && s.write(Buffer.from([0x41]))), DRIP_INTERVAL_MS);
      const attackStart = Date.now();

      // A node starting now links to far, over TCP only, on its app's first connection, while the strangers drip.
      const appPort = await freePort();
      near = await startLinkedClient(server, nearName, ['peer_paths = ["tcp"]', appToml({ name: "echo", listen: appPort, peer: "far", target: echo.port })].join("\n"), { logLevel: "info" });
      const tookMs = await appComesBack(appPort, APP_BOUND_MS);
      await waitFor("the attack to have lasted its time", () => Date.now() - attackStart >= ATTACK_MS, ATTACK_MS + 5_000);
      sample();
      console.log(
        `${ATTACK_CONNECTIONS} strangers from ${ATTACKER_ADDRESS}: the app answered after ${(tookMs / 1000).toFixed(1)} s; ` +
          `far's RSS ${idle.rss.toFixed(0)} -> peak ${peak.rss.toFixed(0)} MiB, fds ${idle.fds} -> peak ${peak.fds}; ` +
          `${attackers.filter((s) => !s.destroyed).length} strangers still open`,
      );
      expect(peak.rss - idle.rss).toBeLessThan(RSS_GROWTH_LIMIT_MIB);
      expect(peak.fds - idle.fds).toBeLessThan(FD_GROWTH_LIMIT);
      // Dripping does not keep a connection: the handshake deadline counts from the accept.
      await waitFor("every stranger closed by the node", () => attackers.every((s) => s.destroyed), HANDSHAKE_TIMEOUT_MS + 10_000);
    } finally {
      clearInterval(sampler);
    }
  });
});
