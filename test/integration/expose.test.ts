// Consent on the serving node: a peer reaches through a node only what that node's [client] expose
// lists. Real inp2ps / inp2pc processes on 127.0.0.1: the "open proxy" attack of issue 11 (a node
// made up with the user token reads a private TCP service, a UDP service and the local status API of
// a node that has no apps), and what both sides say when a target is refused.
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { connect, createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { echoOnce, startEcho } from "../helpers/echo.ts";
import { api, freePort, freeUdpPorts, linkedClientStatus, startLinkedClient, startServer, stopLinkedClient, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";

const ANSWER_WITHIN_MS = 15_000;
const RESEND_EVERY_MS = 300;

/** A private TCP service: says its secret to whoever connects. */
function startSecretService(secret: string): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on("error", () => socket.destroy());
    socket.end(secret);
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done({ server, port: (server.address() as { port: number }).port })));
}

/** A private UDP service: answers every datagram with its secret. */
function startSecretUdpService(secret: string): Promise<{ socket: UdpSocket; port: number; received: number }> {
  const socket = createSocket("udp4");
  const service = { socket, port: 0, received: 0 };
  socket.on("message", (_message, from) => {
    service.received++;
    socket.send(secret, from.port, from.address);
  });
  return new Promise((done) => socket.bind(0, "127.0.0.1", () => done(Object.assign(service, { port: socket.address().port }))));
}

/** Connects to a local app, optionally sends `request`, and resolves with everything that came back until the connection closed. */
function readThrough(port: number, request = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: "127.0.0.1", port }, () => {
      if (request) socket.write(request);
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the connection through app port ${port} did not close within ${ANSWER_WITHIN_MS} ms (got ${JSON.stringify(Buffer.concat(chunks).toString())})`));
    }, ANSWER_WITHIN_MS);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("close", () => (clearTimeout(timer), resolve(Buffer.concat(chunks).toString())));
    socket.on("error", () => {}); // a reset still ends in "close"
  });
}

/**
 * Sends to a local UDP app every RESEND_EVERY_MS until an answer comes back or `stop()` says enough
 * (bounded); resolves with the answers seen.
 */
async function askUdp(port: number, stop: () => boolean | Promise<boolean>): Promise<string[]> {
  const socket = createSocket("udp4");
  const answers: string[] = [];
  socket.on("message", (message) => answers.push(message.toString()));
  await new Promise<void>((done) => socket.bind(0, "127.0.0.1", () => done()));
  try {
    await waitFor(
      `an answer through UDP app port ${port}, or the requester's word that it was refused`,
      async () => {
        socket.send("hello?", port, "127.0.0.1");
        return answers.length > 0 || (await stop());
      },
      ANSWER_WITHIN_MS,
      RESEND_EVERY_MS,
    );
    return answers;
  } finally {
    socket.close();
  }
}

const app = (name: string, protocol: "tcp" | "udp", listenPort: number, peer: string, target: string) =>
  ["[[client.apps]]", `name = "${name}"`, `protocol = "${protocol}"`, `listen = "127.0.0.1:${listenPort}"`, `peer = "${peer}"`, `target = "${target}"`].join("\n");

describe("a node with nothing exposed (the open-proxy attack)", () => {
  let server: ServerHandle;
  let secretTcp: Awaited<ReturnType<typeof startSecretService>>;
  let secretUdp: Awaited<ReturnType<typeof startSecretUdpService>>;
  let beta: LinkedClient;
  let gamma: LinkedClient;
  const ports = { tcp: 0, status: 0, udp: 0 };

  beforeAll(async () => {
    server = await startServer();
    secretTcp = await startSecretService("beta's private TCP secret");
    secretUdp = await startSecretUdpService("beta's private UDP secret");
    beta = await startLinkedClient(server, "beta");
    ports.tcp = await freePort();
    ports.status = await freePort();
    [ports.udp] = await freeUdpPorts();
    // gamma: any node name, the user token, and apps that point at beta's loopback.
    gamma = await startLinkedClient(
      server,
      "gamma",
      [
        app("private-tcp", "tcp", ports.tcp, "beta", `127.0.0.1:${secretTcp.port}`),
        app("beta-status", "tcp", ports.status, "beta", `127.0.0.1:${beta.statusPort}`),
        app("private-udp", "udp", ports.udp, "beta", `127.0.0.1:${secretUdp.port}`),
      ].join("\n"),
    );
  }, 60_000);

  afterAll(async () => {
    await stopLinkedClient(gamma);
    await stopLinkedClient(beta);
    await server?.stop();
    secretTcp?.server.close();
    secretUdp?.socket.close();
  });

  it("gives a peer nothing of a private TCP service on its loopback", async () => {
    expect(await readThrough(ports.tcp)).toBe("");
  }, 30_000);

  it("gives a peer nothing of its local status API", async () => {
    expect(await readThrough(ports.status, "GET /api/v1/status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")).toBe("");
  }, 30_000);

  it("gives a peer nothing of a UDP service on its loopback", async () => {
    const refusedShown = async () => ((await linkedClientStatus(gamma)).apps as { name: string; problem?: string }[]).some((a) => a.name === "private-udp" && a.problem);
    const answers = await askUdp(ports.udp, refusedShown);
    expect(answers).toEqual([]);
    expect(secretUdp.received).toBe(0);
  }, 30_000);
});

describe("a node that exposes some targets", () => {
  let server: ServerHandle;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let udpService: Awaited<ReturnType<typeof startSecretUdpService>>;
  let secretTcp: Awaited<ReturnType<typeof startSecretService>>;
  let secretUdp: Awaited<ReturnType<typeof startSecretUdpService>>;
  let closedPort: number;
  let delta: LinkedClient;
  let gamma: LinkedClient;
  const ports = { echo: 0, udp: 0, privateTcp: 0, privateUdp: 0, closed: 0 };

  beforeAll(async () => {
    server = await startServer();
    echo = await startEcho();
    udpService = await startSecretUdpService("exposed UDP answer");
    secretTcp = await startSecretService("delta's private TCP secret");
    secretUdp = await startSecretUdpService("delta's private UDP secret");
    closedPort = await freePort(); // exposed, but nothing listens there
    delta = await startLinkedClient(server, "delta", `expose = ["127.0.0.1:${echo.port}", "127.0.0.1:${udpService.port}", "127.0.0.1:${closedPort}"]`);
    for (const key of ["echo", "privateTcp", "closed"] as const) ports[key] = await freePort();
    [ports.udp, ports.privateUdp] = await freeUdpPorts();
    gamma = await startLinkedClient(
      server,
      "gamma",
      [
        app("echo", "tcp", ports.echo, "delta", `127.0.0.1:${echo.port}`),
        app("dns-like", "udp", ports.udp, "delta", `127.0.0.1:${udpService.port}`),
        app("private-tcp", "tcp", ports.privateTcp, "delta", `127.0.0.1:${secretTcp.port}`),
        app("private-udp", "udp", ports.privateUdp, "delta", `127.0.0.1:${secretUdp.port}`),
        app("closed", "tcp", ports.closed, "delta", `127.0.0.1:${closedPort}`),
      ].join("\n"),
    );
  }, 60_000);

  afterAll(async () => {
    await stopLinkedClient(gamma);
    await stopLinkedClient(delta);
    await server?.stop();
    echo?.server.close();
    for (const service of [udpService, secretUdp]) service?.socket.close();
    secretTcp?.server.close();
  });

  const problemOf = async (name: string): Promise<string | null> => ((await linkedClientStatus(gamma)).apps as { name: string; problem: string | null }[]).find((a) => a.name === name)!.problem;

  it("forwards a TCP connection to an exposed target, byte for byte (the peer's answer does not reach the client)", async () => {
    const data = randomBytes(64 * 1024);
    let echoed: Buffer = Buffer.alloc(0);
    await waitFor("an echo through the exposed app", async () => (echoed = await echoOnce(ports.echo, data, 5_000).catch(() => Buffer.alloc(0))).length > 0, ANSWER_WITHIN_MS, 200);
    expect(echoed.equals(data)).toBe(true);
    expect(await problemOf("echo")).toBeNull();
  }, 30_000);

  it("forwards UDP to an exposed target", async () => {
    expect(await askUdp(ports.udp, () => false)).toContain("exposed UDP answer");
    expect(await problemOf("dns-like")).toBeNull();
  }, 30_000);

  it("refuses a TCP target it does not expose, saying on both sides what to add where, once per window", async () => {
    const target = `127.0.0.1:${secretTcp.port}`;
    const served = `refused peer gamma's stream to ${target}: not exposed; to allow it, add "${target}" to expose in [client] of this node (delta)`;
    const requested = `app private-tcp: delta refused ${target} (not exposed there): add "${target}" to expose in [client] on node delta`;
    const TRIES = 5;
    for (let i = 0; i < TRIES; i++) expect(await readThrough(ports.privateTcp, "let me in")).toBe("");
    await delta.proc.waitForOutput(new RegExp(escape(served)));
    await gamma.proc.waitForOutput(new RegExp(escape(requested)));
    expect(await problemOf("private-tcp")).toBe(requested);
    // One line per window on each side, however many connections were refused.
    expect(delta.proc.output.split(served).length - 1).toBe(1);
    expect(gamma.proc.output.split(requested).length - 1).toBe(1);
    // The server's audit lists the refusal once too: the serving node reports what it logs.
    const refusedEntries = async () =>
      ((await api(server, "/api/v1/audit", server.adminToken)).body.entries as { event: string; target?: string }[]).filter((e) => e.event === "target-refused" && e.target === target);
    await waitFor("the refused target in the server's audit", async () => (await refusedEntries()).length > 0 || undefined);
    expect(await refusedEntries()).toEqual([{ time: expect.any(String), event: "target-refused", user: "default", node: "delta", peer: "gamma", target, protocol: "tcp" }]);
  }, 60_000);

  it("refuses UDP to a target it does not expose, saying on both sides what to add where", async () => {
    const target = `127.0.0.1:${secretUdp.port}`;
    const requested = `app private-udp: delta refused ${target} (not exposed there): add "${target}" to expose in [client] on node delta`;
    const answers = await askUdp(ports.privateUdp, async () => (await problemOf("private-udp")) !== null);
    expect(answers).toEqual([]);
    expect(secretUdp.received).toBe(0);
    expect(await problemOf("private-udp")).toBe(requested);
    await gamma.proc.waitForOutput(new RegExp(escape(requested)));
    await delta.proc.waitForOutput(new RegExp(escape(`refused peer gamma's UDP datagrams to ${target}: not exposed; to allow it, add "${target}" to expose in [client] of this node (delta)`)));
  }, 30_000);

  it("tells the requester when an exposed target cannot be reached", async () => {
    expect(await readThrough(ports.closed, "hello")).toBe("");
    const problem = await waitFor("the closed app's problem in gamma's status", () => problemOf("closed"));
    expect(problem).toMatch(new RegExp(`^app closed: delta cannot reach 127\\.0\\.0\\.1:${closedPort}: .*ECONNREFUSED`));
    await delta.proc.waitForOutput(new RegExp(`cannot reach 127\\.0\\.0\\.1:${closedPort} for peer gamma: .*ECONNREFUSED`));
  }, 30_000);
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
