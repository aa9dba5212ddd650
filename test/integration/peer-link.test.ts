// Two real inp2pc processes linked through a real inp2ps, all on 127.0.0.1: a TCP app and a UDP app
// carry data to targets on the far side, and `inp2pc status` shows the link.
import { createHash, randomBytes } from "node:crypto";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { connect, createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exposeToml, freePort, freeUdpPorts, INP2PC, runToEnd, startLinkedClient, startServer, stopLinkedClient, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";

const TRANSFER_BYTES = 16 * 1024 * 1024;

/** A TCP target that hashes everything it receives and, when the sender half-closes, answers the digest. */
function startHashSink(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    const hash = createHash("sha256");
    socket.on("data", (chunk) => hash.update(chunk));
    socket.on("end", () => socket.end(hash.digest("hex")));
    socket.on("error", () => socket.destroy());
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done({ server, port: (server.address() as { port: number }).port })));
}

function startUdpEcho(): Promise<{ socket: UdpSocket; port: number }> {
  const socket = createSocket("udp4");
  socket.on("message", (message, from) => socket.send(Buffer.concat([Buffer.from("echo:"), message]), from.port, from.address));
  return new Promise((done) => socket.bind(0, "127.0.0.1", () => done({ socket, port: socket.address().port })));
}

describe("peer links on loopback", () => {
  let server: ServerHandle;
  let sink: { server: Server; port: number };
  let echo: { socket: UdpSocket; port: number };
  let a: LinkedClient;
  let b: LinkedClient;
  let tcpAppPort: number;
  let udpAppPort: number;

  beforeAll(async () => {
    server = await startServer();
    sink = await startHashSink();
    echo = await startUdpEcho();
    tcpAppPort = await freePort();
    [udpAppPort] = await freeUdpPorts();
    b = await startLinkedClient(server, "far", exposeToml(`127.0.0.1:${sink.port}`, `127.0.0.1:${echo.port}`));
    a = await startLinkedClient(
      server,
      "near",
      [
        "[[client.apps]]",
        'name = "hash"',
        'protocol = "tcp"',
        `listen = "127.0.0.1:${tcpAppPort}"`,
        'peer = "far"',
        `target = "127.0.0.1:${sink.port}"`,
        "[[client.apps]]",
        'name = "echo"',
        'protocol = "udp"',
        `listen = "127.0.0.1:${udpAppPort}"`,
        'peer = "far"',
        `target = "127.0.0.1:${echo.port}"`,
      ].join("\n"),
    );
  }, 30_000);

  afterAll(async () => {
    for (const client of [a, b]) await stopLinkedClient(client);
    await server?.stop();
    sink?.server.close();
    echo?.socket.close();
  });

  it("a TCP app carries 16 MiB to the far side intact, half-close included", async () => {
    const data = randomBytes(TRANSFER_BYTES);
    const expected = createHash("sha256").update(data).digest("hex");
    const digest = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port: tcpAppPort }, () => socket.end(data));
      let answer = "";
      socket.on("data", (chunk) => (answer += chunk));
      socket.on("end", () => resolve(answer));
      socket.on("error", reject);
      setTimeout(() => reject(new Error(`no digest within 60 s; near's log:\n${a.proc.output.slice(-3000)}`)), 60_000);
    });
    expect(digest).toBe(expected);
  }, 90_000);

  it("a UDP app echoes through the far side", async () => {
    const socket = createSocket("udp4");
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        socket.on("message", (message) => resolve(message.toString()));
        const send = () => socket.send("ping-1", udpAppPort, "127.0.0.1");
        const timer = setInterval(send, 300); // the first datagram may wait for the link
        send();
        setTimeout(() => (clearInterval(timer), reject(new Error("no UDP echo"))), 10_000);
        socket.on("message", () => clearInterval(timer));
      });
      expect(reply).toBe("echo:ping-1");
    } finally {
      socket.close();
    }
  });

  it("inp2pc status --json shows the link, its kind and traffic, and the apps", async () => {
    const status = await waitFor("a link to far in the status", async () => {
      const result = await runToEnd(INP2PC, ["status", "--json", "--status-port", String(a.statusPort)]);
      const parsed = JSON.parse(result.output);
      return parsed.peers?.far?.link ? parsed : undefined;
    });
    expect(status.server.state).toBe("online");
    // On loopback a node's STUN-mapped address is its bound address: a public node, reached UDP direct.
    expect(status.peers.far).toMatchObject({ online: true, link: "udp-direct" });
    expect(status.peers.far.bytesOut).toBeGreaterThan(TRANSFER_BYTES);
    expect(status.apps.map((app: { name: string; state: string }) => [app.name, app.state])).toEqual([
      ["hash", "listening"],
      ["echo", "listening"],
    ]);
    const human = await runToEnd(INP2PC, ["status", "--status-port", String(a.statusPort)]);
    expect(human.output).toMatch(/^far\s+udp-direct\s+/m);
  });
});
