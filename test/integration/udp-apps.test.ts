// Apps through two real inp2pc processes and a real inp2ps on 127.0.0.1: several UDP apps toward one
// peer never mix their datagrams, the serving side survives a flow that idled out before its link
// died, and connections that end normally leave no warnings behind.
import { execFileSync } from "node:child_process";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { connect, createServer, type Server } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  exposeToml,
  freePort,
  freeUdpPorts,
  INP2PC,
  logsSince,
  restartLinkedClient,
  run,
  runToEnd,
  startLinkedClient,
  startServer,
  stopLinkedClient,
  waitFor,
  type LinkedClient,
  type Proc,
  type ServerHandle,
} from "../helpers/processes.ts";

const ANSWER_WITHIN_MS = 10_000;
const RESEND_EVERY_MS = 300;

/** A UDP service that answers every datagram with `tag|datagram`, and remembers what it got. */
function startTaggedService(tag: string): Promise<{ socket: UdpSocket; port: number; received: string[] }> {
  const socket = createSocket("udp4");
  const received: string[] = [];
  socket.on("message", (message, from) => {
    received.push(message.toString());
    socket.send(`${tag}|${message}`, from.port, from.address);
  });
  return new Promise((done) => socket.bind(0, "127.0.0.1", () => done({ socket, port: socket.address().port, received })));
}

/** A local UDP client of an app: asks and waits for the answer to exactly that question, keeping every datagram it gets. */
class UdpAsker {
  readonly socket = createSocket("udp4");
  readonly replies: string[] = [];
  private waiters = new Map<string, (reply: string) => void>();

  constructor(readonly appPort: number) {
    this.socket.on("message", (message) => {
      const text = message.toString();
      this.replies.push(text);
      const question = text.slice(text.indexOf("|") + 1);
      this.waiters.get(question)?.(text);
    });
  }

  ready(): Promise<void> {
    return new Promise((done) => this.socket.bind(0, "127.0.0.1", () => done()));
  }

  /** Resolves with the first datagram that answers `question` (the first ones may wait for the link, so it resends). */
  ask(question: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const send = () => this.socket.send(question, this.appPort, "127.0.0.1");
      const resend = setInterval(send, RESEND_EVERY_MS);
      const timer = setTimeout(() => {
        clearInterval(resend);
        this.waiters.delete(question);
        reject(new Error(`no answer to ${question} within ${ANSWER_WITHIN_MS} ms; this client got: ${JSON.stringify(this.replies.slice(-10))}`));
      }, ANSWER_WITHIN_MS);
      this.waiters.set(question, (reply) => {
        clearInterval(resend);
        clearTimeout(timer);
        this.waiters.delete(question);
        resolve(reply);
      });
      send();
    });
  }

  close(): void {
    this.socket.close();
  }
}

const udpApp = (name: string, listenPort: number, targetPort: number) =>
  ["[[client.apps]]", `name = "${name}"`, 'protocol = "udp"', `listen = "127.0.0.1:${listenPort}"`, 'peer = "far"', `target = "127.0.0.1:${targetPort}"`].join("\n");

const tcpApp = (name: string, listenPort: number, targetPort: number) =>
  ["[[client.apps]]", `name = "${name}"`, 'protocol = "tcp"', `listen = "127.0.0.1:${listenPort}"`, 'peer = "far"', `target = "127.0.0.1:${targetPort}"`].join("\n");

const hasCommand = (name: string) => {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore", env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
    return true;
  } catch {
    return false;
  }
};
const missingDnsTools = ["dig", "dnsmasq"].filter((name) => !hasCommand(name));
if (missingDnsTools.length) console.warn(`udp-apps: skipping the dig/dnsmasq test: ${missingDnsTools.join(" and ")} not installed (scripts/natlab/deps.sh installs them)`);

/** Warnings and worse in a process's log since `from` (an offset into its output). */
const warningsSince = (proc: Proc, from: number) => proc.output.slice(from).split("\n").filter((line) => /\s(WARN|ERROR)\s/.test(line));

describe("two UDP apps toward one peer", () => {
  let server: ServerHandle;
  let alpha: Awaited<ReturnType<typeof startTaggedService>>;
  let beta: Awaited<ReturnType<typeof startTaggedService>>;
  let near: LinkedClient;
  let far: LinkedClient;
  let alphaPort: number;
  let betaPort: number;
  let dnsAppPort: number;
  let dnsmasq: Proc | undefined;
  const askers: UdpAsker[] = [];

  beforeAll(async () => {
    server = await startServer();
    alpha = await startTaggedService("alpha");
    beta = await startTaggedService("beta");
    [alphaPort, betaPort] = await freeUdpPorts();
    const [dnsmasqPort] = await freeUdpPorts();
    [dnsAppPort] = await freeUdpPorts();
    if (!missingDnsTools.length) {
      dnsmasq = run("dnsmasq", [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        `--port=${dnsmasqPort}`,
        "--address=/svc.inp2p.test/10.1.2.3",
        "--pid-file=",
        "--user=root",
        "--log-facility=-",
      ]);
      await dnsmasq.waitForOutput(/started, version/);
    }
    far = await startLinkedClient(server, "far", exposeToml(`127.0.0.1:${alpha.port}`, `127.0.0.1:${beta.port}`, `127.0.0.1:${dnsmasqPort}`));
    near = await startLinkedClient(server, "near", [udpApp("alpha", alphaPort, alpha.port), udpApp("beta", betaPort, beta.port), udpApp("dns", dnsAppPort, dnsmasqPort)].join("\n"));
  }, 60_000);

  afterEach(() => {
    for (const asker of askers.splice(0)) asker.close();
  });

  afterAll(async () => {
    await stopLinkedClient(near);
    await stopLinkedClient(far);
    await server?.stop();
    await dnsmasq?.stop();
    alpha?.socket.close();
    beta?.socket.close();
  });

  const newAsker = async (port: number) => {
    const asker = new UdpAsker(port);
    askers.push(asker);
    await asker.ready();
    return asker;
  };

  it("every answer comes from the app's own target, with interleaved traffic from several clients each", async () => {
    const CLIENTS_PER_APP = 3;
    const ROUNDS = 10;
    // Interleaved creation: each app's flows are opened alternately, as two busy apps would.
    const clients: { app: "alpha" | "beta"; asker: UdpAsker }[] = [];
    for (let i = 0; i < CLIENTS_PER_APP; i++) {
      clients.push({ app: "alpha", asker: await newAsker(alphaPort) });
      clients.push({ app: "beta", asker: await newAsker(betaPort) });
    }
    for (let round = 0; round < ROUNDS; round++) {
      const answers = await Promise.all(clients.map(({ app, asker }, i) => asker.ask(`${app}:${i}:${round}`)));
      answers.forEach((answer, i) => expect(answer).toBe(`${clients[i]!.app}|${clients[i]!.app}:${i}:${round}`));
    }
    // Nothing else arrived anywhere: no client got another's answer, no service another app's datagram.
    clients.forEach(({ app, asker }, i) => {
      expect(asker.replies.length).toBeGreaterThanOrEqual(ROUNDS);
      for (const reply of asker.replies) expect(reply).toMatch(new RegExp(`^${app}\\|${app}:${i}:\\d+$`));
    });
    expect(alpha.received.length).toBeGreaterThanOrEqual(ROUNDS * CLIENTS_PER_APP);
    expect(beta.received.length).toBeGreaterThanOrEqual(ROUNDS * CLIENTS_PER_APP);
    for (const datagram of alpha.received) expect(datagram).toMatch(/^alpha:/);
    for (const datagram of beta.received) expect(datagram).toMatch(/^beta:/);
  }, 60_000);

  it.skipIf(missingDnsTools.length > 0)("dig through a DNS app gets dnsmasq's answer while a UDP app beside it echoes", async () => {
    const DIGS = 10;
    const echoes = [await newAsker(alphaPort), await newAsker(alphaPort)];
    for (let i = 0; i < DIGS; i++) {
      const [dig, ...answers] = await Promise.all([
        runToEnd("dig", ["@127.0.0.1", "-p", String(dnsAppPort), "+tries=3", "+time=2", "+short", "svc.inp2p.test", "A"]),
        ...echoes.map((echo, j) => echo.ask(`alpha:dig-${i}-${j}`)),
      ]);
      expect(dig.output.trim(), `dig #${i}`).toBe("10.1.2.3");
      answers.forEach((answer, j) => expect(answer).toBe(`alpha|alpha:dig-${i}-${j}`));
    }
  }, 90_000);
});

describe("a UDP flow that idled out before its link died", () => {
  let server: ServerHandle;
  let echo: Awaited<ReturnType<typeof startTaggedService>>;
  let near: LinkedClient;
  let far: LinkedClient;
  let appPort: number;
  const env = { INP2P_UDP_FLOW_IDLE_MS: "500" };

  beforeAll(async () => {
    server = await startServer();
    echo = await startTaggedService("echo");
    [appPort] = await freeUdpPorts();
    far = await startLinkedClient(server, "far", exposeToml(`127.0.0.1:${echo.port}`), { env });
    near = await startLinkedClient(server, "near", udpApp("echo", appPort, echo.port), { env });
  }, 60_000);

  afterAll(async () => {
    await stopLinkedClient(near);
    await stopLinkedClient(far);
    await server?.stop();
    echo?.socket.close();
  });

  it("leaves the serving node alive and serving when the requesting node goes away", async () => {
    const first = new UdpAsker(appPort);
    await first.ready();
    try {
      expect(await first.ask("echo:first")).toBe("echo|echo:first");
    } finally {
      first.close();
    }
    await far.proc.waitForOutput(/UDP flow closed after idling/, 15_000);
    const linkClosedBefore = far.proc.output.match(/peer link closed/g)?.length ?? 0;
    await near.proc.stop();
    // Without a word from a stopped peer, the far side notices after a keepalive goes unanswered.
    await waitFor("far to close its link to near", () => (far.proc.output.match(/peer link closed/g)?.length ?? 0) > linkClosedBefore, 60_000, 200);
    near = await restartLinkedClient(near);
    expect(far.proc.exitCode, `far's log:\n${far.proc.output.slice(-3000)}`).toBeNull();
    const fresh = new UdpAsker(appPort);
    await fresh.ready();
    try {
      expect(await fresh.ask("echo:fresh")).toBe("echo|echo:fresh");
    } finally {
      fresh.close();
    }
  }, 120_000);

  it("refuses a malformed INP2P_UDP_FLOW_IDLE_MS, naming it", async () => {
    const result = await runToEnd(INP2PC, ["--config", near.config], {
      env: { INP2P_UDP_FLOW_IDLE_MS: "soon" },
    });
    expect(result.code).not.toBe(0);
    expect(result.output).toContain('INP2P_UDP_FLOW_IDLE_MS must be a positive number of milliseconds, not "soon"');
  });
});

describe("TCP connections that end normally", () => {
  let server: ServerHandle;
  let hangUp: { server: Server; port: number };
  let talker: { server: Server; port: number };
  let near: LinkedClient;
  let far: LinkedClient;
  let hangUpAppPort: number;
  let talkerAppPort: number;

  const listen = (server: Server) => new Promise<{ server: Server; port: number }>((done) => server.listen(0, "127.0.0.1", () => done({ server, port: (server.address() as { port: number }).port })));

  beforeAll(async () => {
    server = await startServer();
    // Answers a line and closes, as a server does after its last response.
    hangUp = await listen(
      createServer((socket) => {
        let line = "";
        socket.on("error", () => socket.destroy());
        socket.on("data", (data) => {
          line += data;
          if (line.endsWith("\n")) socket.end("bye\n", () => socket.destroy());
        });
      }),
    );
    // Talks without pause until the client goes away.
    talker = await listen(
      createServer((socket) => {
        const chunk = Buffer.alloc(64 * 1024, "t");
        const talk = () => {
          while (!socket.destroyed && socket.write(chunk));
        };
        socket.on("drain", talk);
        socket.on("error", () => socket.destroy());
        talk();
      }),
    );
    hangUpAppPort = await freePort();
    talkerAppPort = await freePort();
    far = await startLinkedClient(server, "far", exposeToml(`127.0.0.1:${hangUp.port}`, `127.0.0.1:${talker.port}`));
    near = await startLinkedClient(server, "near", [tcpApp("hangup", hangUpAppPort, hangUp.port), tcpApp("talker", talkerAppPort, talker.port)].join("\n"));
  }, 60_000);

  afterAll(async () => {
    await stopLinkedClient(near);
    await stopLinkedClient(far);
    await server?.stop();
    hangUp?.server.close();
    talker?.server.close();
  });

  it("a target that closes while the client still sends is not a warning", async () => {
    const AFTER_BYE_BYTES = 1024 * 1024;
    const logFrom = { near: near.proc.output.length, far: far.proc.output.length };
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port: hangUpAppPort, allowHalfOpen: true }, () => socket.write("hello\n"));
      const chunk = Buffer.alloc(16 * 1024, "c");
      let answer = "";
      let unsentBytes = AFTER_BYE_BYTES;
      // The client still has things to say when the target has already gone.
      const send = () => {
        while (unsentBytes > 0) {
          unsentBytes -= chunk.length;
          if (!socket.write(chunk)) return;
        }
        socket.end();
      };
      socket.on("drain", send);
      socket.on("data", (data) => {
        answer += data;
        if (answer === "bye\n") send();
      });
      socket.on("close", () => resolve(answer));
      socket.on("error", () => socket.destroy());
      const logs = () => logsSince({ near: { proc: near.proc, from: logFrom.near }, far: { proc: far.proc, from: logFrom.far } });
      setTimeout(() => reject(new Error(`no close within ${ANSWER_WITHIN_MS} ms (answer so far: ${JSON.stringify(answer)})\n${logs()}`)), ANSWER_WITHIN_MS);
    });
    expect(answer).toBe("bye\n");
    // The far side did see the target go away under its writes (so this test took that path) ...
    await far.proc.waitForOutput(/target connection ended with an error|cannot reach 127/, ANSWER_WITHIN_MS);
    // ... and neither side called it a warning.
    expect(warningsSince(far.proc, logFrom.far)).toEqual([]);
    expect(warningsSince(near.proc, logFrom.near)).toEqual([]);
  }, 30_000);

  it("a client that closes while the target still sends is not a warning", async () => {
    const logFrom = { near: near.proc.output.length, far: far.proc.output.length };
    const received = await new Promise<number>((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port: talkerAppPort });
      let bytes = 0;
      socket.on("data", (data: Buffer) => {
        bytes += data.length;
        if (bytes >= 256 * 1024) socket.destroy();
      });
      socket.on("close", () => resolve(bytes));
      socket.on("error", reject);
      const logs = () => logsSince({ near: { proc: near.proc, from: logFrom.near }, far: { proc: far.proc, from: logFrom.far } });
      setTimeout(() => reject(new Error(`no 256 KiB within ${ANSWER_WITHIN_MS} ms (got ${bytes})\n${logs()}`)), ANSWER_WITHIN_MS);
    });
    expect(received).toBeGreaterThanOrEqual(256 * 1024);
    // The target's connection is closed in turn, not left talking into the void.
    await waitFor("the talker's connection to close", () => new Promise<boolean>((done) => talker.server.getConnections((_, count) => done(count === 0))), ANSWER_WITHIN_MS);
    expect(warningsSince(far.proc, logFrom.far)).toEqual([]);
    expect(warningsSince(near.proc, logFrom.near)).toEqual([]);
  }, 30_000);
});

describe("an app whose peer is away", () => {
  let server: ServerHandle;
  let near: LinkedClient;
  let appPort: number;
  const CONNECTIONS = 30;

  beforeAll(async () => {
    server = await startServer();
    appPort = await freePort();
    near = await startLinkedClient(server, "lonely", `[[client.apps]]\nname = "to-ghost"\nprotocol = "tcp"\nlisten = "127.0.0.1:${appPort}"\npeer = "ghost"\ntarget = "127.0.0.1:9"\n`);
  });
  afterAll(async () => {
    await stopLinkedClient(near);
    await server?.stop();
  });

  it("says so once in a while, not once a connection", async () => {
    const refused = async () =>
      new Promise<void>((done) => {
        const socket = connect(appPort, "127.0.0.1");
        socket.on("error", () => done());
        socket.on("close", () => done());
      });
    for (let i = 0; i < CONNECTIONS; i++) await refused();
    const warnings = () => near.proc.output.split("\n").filter((line) => /WARN .*to-ghost.*ghost/.test(line));
    await waitFor("the app's warning", () => warnings().length > 0, 5_000);
    expect(warnings().length, warnings().join("\n")).toBeLessThanOrEqual(2);
    expect(warnings()[0]).toMatch(/peer "ghost" is not online/);
  });
});
