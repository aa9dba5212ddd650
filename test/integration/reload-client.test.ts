// inp2pc on SIGHUP, with real inp2ps / inp2pc processes on 127.0.0.1: apps added, removed and changed,
// expose narrowed on the serving node, the log level, a bad file and settings that need a restart,
// while the server session and the peer link stay up. One server and two clients for the whole file;
// each test writes the whole config it needs.
import { readFileSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appComesBack, startEcho } from "../helpers/echo.ts";
import { appToml, exposeToml, freePort, linkedClientStatus, startLinkedClient, startServer, stopLinkedClient, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";
import { escapeRegExp, openLongLived, sighup } from "../helpers/reload.ts";

const ANSWER_WITHIN_MS = 10_000;
/** The tests check that the server session stays up: a loaded machine must not make it time out instead. */
const GENEROUS_HEARTBEATS = { heartbeatIntervalMs: 1_000, heartbeatTimeoutMs: 20_000 };
const reload = (client: LinkedClient) => sighup(client.proc, client.node);

/** Connects, sends a line, and resolves with what came back before the app closed the connection (bounded). */
function exchange(port: number, text = "hello"): Promise<{ answer: string; error?: string }> {
  return new Promise((resolve, reject) => {
    let answer = "";
    let error: string | undefined;
    const socket = connect({ host: "127.0.0.1", port }, () => socket.write(text));
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`port ${port} neither answered nor closed within ${ANSWER_WITHIN_MS} ms`))), ANSWER_WITHIN_MS);
    socket.on("data", (chunk: Buffer) => {
      answer += chunk.toString();
      if (answer.length >= text.length) socket.end();
    });
    socket.on("error", (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    socket.on("close", () => (clearTimeout(timer), resolve({ answer, error })));
  });
}

/** A TCP service that greets whoever connects, then closes. */
function startGreeter(greeting: string): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on("error", () => socket.destroy());
    socket.end(greeting);
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done({ server, port: (server.address() as { port: number }).port })));
}

describe("inp2pc reloads its config on SIGHUP", () => {
  let server: ServerHandle;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let greeter: Awaited<ReturnType<typeof startGreeter>>;
  let alpha: LinkedClient;
  let beta: LinkedClient;
  let alphaBase: string;
  let betaBase: string;
  const ports = { keep: 0, added: 0, doomed: 0, moving: 0, quiet: 0, loud: 0, bad: 0, late: 0 };

  /** alpha's config as started (log level info, app "keep" to beta's echo), with a log level and more apps. */
  const writeAlpha = (extra: string[] = [], logLevel = "info") =>
    writeFileSync(alpha.config, [alphaBase.replace(/^log_level = ".*"$/m, `log_level = "${logLevel}"`), ...extra].join("\n"));
  const writeBeta = (expose: string) => writeFileSync(beta.config, betaBase.replace(/^expose = .*$/m, expose));
  /** Back to the config alpha started with, whatever an earlier test left in force. */
  const resetAlpha = async () => {
    writeAlpha();
    await reload(alpha);
  };
  const linkSince = async () => (await linkedClientStatus(alpha)).peers.beta?.since as string | null;

  beforeAll(async () => {
    server = await startServer(GENEROUS_HEARTBEATS);
    echo = await startEcho();
    greeter = await startGreeter("greetings from the greeter");
    for (const name of Object.keys(ports) as (keyof typeof ports)[]) ports[name] = await freePort();
    beta = await startLinkedClient(server, "beta", exposeToml(`127.0.0.1:${echo.port}`, `127.0.0.1:${greeter.port}`), { logLevel: "info" });
    alpha = await startLinkedClient(server, "alpha", appToml({ name: "keep", listen: ports.keep, peer: "beta", target: echo.port }), { logLevel: "info" });
    alphaBase = readFileSync(alpha.config, "utf8");
    betaBase = readFileSync(beta.config, "utf8");
    await appComesBack(ports.keep, 15_000);
  }, 60_000);

  afterAll(async () => {
    await stopLinkedClient(alpha);
    await stopLinkedClient(beta);
    await server?.stop();
    echo?.server.close();
    greeter?.server.close();
  });

  it("an added app forwards at once, while an existing app's connection and the peer link stay up", async () => {
    await resetAlpha();
    const longLived = await openLongLived(ports.keep);
    try {
      expect(await longLived.echo("before the reload")).toBe("before the reload");
      const since = await linkSince();
      expect(since).not.toBeNull();
      writeAlpha([appToml({ name: "added", listen: ports.added, peer: "beta", target: echo.port })]);
      expect(await reload(alpha)).toMatch(/INFO +reloaded config: apps \+added$/m);
      await appComesBack(ports.added, 10_000);
      expect(await longLived.echo("after the reload")).toBe("after the reload");
      expect(await linkSince()).toBe(since);
      for (const client of [alpha, beta]) {
        expect(client.proc.output).not.toMatch(/peer link closed/);
        expect(client.proc.output.match(/ INFO +logged in/g)).toHaveLength(1);
      }
    } finally {
      longLived.socket.destroy();
    }
  }, 40_000);

  it("a removed app stops listening, its open connection goes on; a changed app listens again with its new target", async () => {
    await resetAlpha();
    const moving = (target: number) => appToml({ name: "moving", listen: ports.moving, peer: "beta", target });
    writeAlpha([appToml({ name: "doomed", listen: ports.doomed, peer: "beta", target: echo.port }), moving(echo.port)]);
    await reload(alpha);
    await appComesBack(ports.doomed, 10_000);
    await appComesBack(ports.moving, 10_000);
    const open = await openLongLived(ports.doomed);
    try {
      expect(await open.echo("before removal")).toBe("before removal");
      writeAlpha([moving(greeter.port)]);
      expect(await reload(alpha)).toMatch(/reloaded config: apps -doomed ~moving$/m);
      expect(await exchange(ports.doomed)).toMatchObject({ answer: "", error: "ECONNREFUSED" });
      expect(await open.echo("after removal")).toBe("after removal");
    } finally {
      open.socket.destroy();
    }
    expect((await exchange(ports.moving)).answer).toBe("greetings from the greeter");
    const apps = (await linkedClientStatus(alpha)).apps as { name: string; state: string }[];
    expect(apps.map((app) => [app.name, app.state])).toEqual([
      ["keep", "listening"],
      ["moving", "listening"],
    ]);
  }, 40_000);

  it("expose narrowed on the serving node: a new connection is refused, and the requester is told why", async () => {
    const longLived = await openLongLived(ports.keep);
    try {
      expect(await longLived.echo("while exposed")).toBe("while exposed");
      writeBeta(exposeToml(`127.0.0.1:${greeter.port}`));
      expect(await reload(beta)).toMatch(/reloaded config: expose$/m);
      const target = `127.0.0.1:${echo.port}`;
      expect(await exchange(ports.keep)).toMatchObject({ answer: "" });
      await beta.proc.waitForOutput(new RegExp(`refused peer alpha's stream to ${target}: not exposed`));
      const keep = await waitFor("alpha's word on the refusal", async () => ((await linkedClientStatus(alpha)).apps as { name: string; problem: string | null }[]).find((app) => app.name === "keep" && app.problem));
      expect(keep.problem).toBe(`app keep: beta refused ${target} (not exposed there): add "${target}" to expose in [client] on node beta`);
      // A connection opened before goes on: expose decides new connections.
      expect(await longLived.echo("opened before")).toBe("opened before");
    } finally {
      longLived.socket.destroy();
      writeBeta(exposeToml(`127.0.0.1:${echo.port}`, `127.0.0.1:${greeter.port}`));
      await reload(beta);
    }
    await appComesBack(ports.keep, 10_000);
  }, 40_000);

  it("the log level changes both ways", async () => {
    await resetAlpha();
    writeAlpha([appToml({ name: "quiet", listen: ports.quiet, peer: "beta", target: echo.port })], "warn");
    const quieter = await reload(alpha);
    expect(quieter).toMatch(/INFO +reloaded config: apps \+quiet, log level warn$/m);
    expect(quieter).not.toMatch(/app listening/);

    writeAlpha([appToml({ name: "quiet", listen: ports.quiet, peer: "beta", target: echo.port }), appToml({ name: "loud", listen: ports.loud, peer: "beta", target: echo.port })], "debug");
    const louder = await reload(alpha);
    expect(louder).toMatch(/INFO +app listening app=loud/);
    expect(louder).toMatch(/INFO +reloaded config: apps \+loud, log level debug$/m);
    expect(alpha.proc.output).not.toMatch(/app listening app=quiet/);
    writeAlpha();
    expect(await reload(alpha)).toMatch(/reloaded config: apps -quiet -loud, log level info$/m);
  }, 40_000);

  it("a malformed config or an invalid value is refused naming the problem, and the running config stays in force", async () => {
    await resetAlpha();
    const good = readFileSync(alpha.config, "utf8");

    writeFileSync(alpha.config, `${good}\n[[client.apps]\nname = "bad"\n`);
    const malformed = await reload(alpha);
    expect(malformed).toMatch(new RegExp(`ERROR config not reloaded, the running config stays in force error=.*${escapeRegExp(alpha.config)}:\\d+:\\d+: invalid TOML`));
    expect(malformed).not.toMatch(/reloaded config:/);

    writeFileSync(alpha.config, `${good}\n${appToml({ name: "bad", listen: ports.bad, peer: "beta", target: echo.port }).replace('protocol = "tcp"', 'protocol = "sctp"')}`);
    const invalid = await reload(alpha);
    expect(invalid).toMatch(new RegExp(`ERROR config not reloaded, the running config stays in force error=.*${escapeRegExp(alpha.config)}:\\d+: client\\.apps\\[1\\]\\.protocol: expected .*sctp`));

    expect(await exchange(ports.bad)).toMatchObject({ error: "ECONNREFUSED" });
    await appComesBack(ports.keep, 10_000);
    expect(((await linkedClientStatus(alpha)).apps as { name: string }[]).map((app) => app.name)).toEqual(["keep"]);
    // The config in force was not touched: the good file again changes nothing.
    writeFileSync(alpha.config, good);
    expect(await reload(alpha)).toMatch(/reloaded config: no changes$/m);
  }, 40_000);

  it("settings that need a restart are named and not applied; the rest is", async () => {
    await resetAlpha();
    const since = await linkSince();
    writeAlpha([appToml({ name: "late", listen: ports.late, peer: "beta", target: echo.port })]);
    writeFileSync(alpha.config, readFileSync(alpha.config, "utf8").replace(/^node = .*$/m, 'node = "renamed"').replace(/^server_port = .*$/m, "server_port = 1"));
    const output = await reload(alpha);
    expect(output).toMatch(/WARN +config changes not applied: client\.node, client\.server_port; restart to apply$/m);
    expect(output).toMatch(/reloaded config: apps \+late$/m);
    await appComesBack(ports.late, 10_000);
    const status = await linkedClientStatus(alpha);
    expect(status.node).toBe("alpha");
    expect(status.server.state).toBe("online");
    expect(status.peers.beta.since).toBe(since);
    // Read again, still not applied: named again.
    expect(await reload(alpha)).toMatch(/config changes not applied: client\.node, client\.server_port; restart to apply$/m);
  }, 40_000);
});
