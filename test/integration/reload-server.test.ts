// inp2ps on SIGHUP, with real inp2ps / inp2pc processes on 127.0.0.1: an ACL added by a reload denies
// the next link while the link already up stays, the log level follows, the reload is audited; a bad
// file is refused by name and settings that need a restart are named. One server for the whole file;
// each test writes the whole config it needs.
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appComesBack, startEcho } from "../helpers/echo.ts";
import { api, appToml, exposeToml, freePort, linkedClientStatus, onlineNodes, startLinkedClient, startServer, stopLinkedClient, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";
import { escapeRegExp, openLongLived, sighup } from "../helpers/reload.ts";

/** Only gamma may ask for links: alpha's requests match no rule of user default, so they are denied. */
const GAMMA_ONLY_ACL = ["[[server.acl]]", 'name = "gamma-only"', 'from = ["gamma"]', 'to = ["*"]', 'action = "allow"'].join("\n");

describe("inp2ps reloads its config on SIGHUP", () => {
  let server: ServerHandle;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let alpha: LinkedClient;
  let beta: LinkedClient;
  let gamma: LinkedClient | undefined;
  let base: string;
  const ports = { toBeta: 0, toGamma: 0 };

  const reload = () => sighup(server.proc, "inp2ps");
  /** The server's config as started, with other log level and more lines in [server] and after it. */
  const writeServer = (options: { logLevel?: string; inServer?: string; after?: string } = {}) =>
    writeFileSync(
      server.configPath,
      [base.replace(/^log_level = ".*"$/m, `log_level = "${options.logLevel ?? "debug"}"`).replace(/^\[server\]$/m, `[server]\n${options.inServer ?? ""}`), options.after ?? ""].join("\n"),
    );
  const resetServer = async () => {
    writeServer();
    await reload();
  };
  const audit = async () => (await api(server, "/api/v1/audit", server.adminToken)).body.entries as { event: string; [field: string]: unknown }[];

  beforeAll(async () => {
    server = await startServer({ heartbeatIntervalMs: 1_000, heartbeatTimeoutMs: 20_000 });
    base = readFileSync(server.configPath, "utf8");
    echo = await startEcho();
    for (const name of Object.keys(ports) as (keyof typeof ports)[]) ports[name] = await freePort();
    beta = await startLinkedClient(server, "beta", exposeToml(`127.0.0.1:${echo.port}`), { logLevel: "info" });
    alpha = await startLinkedClient(
      server,
      "alpha",
      [appToml({ name: "to-beta", listen: ports.toBeta, peer: "beta", target: echo.port }), appToml({ name: "to-gamma", listen: ports.toGamma, peer: "gamma", target: echo.port })].join("\n"),
      { logLevel: "info" },
    );
    await appComesBack(ports.toBeta, 15_000);
  }, 60_000);

  afterAll(async () => {
    await stopLinkedClient(gamma);
    await stopLinkedClient(alpha);
    await stopLinkedClient(beta);
    await server?.stop();
    echo?.server.close();
  });

  it("an ACL added by SIGHUP denies a new link (ACL_DENIED) while the link already up stays, and the reload is audited", async () => {
    await resetServer();
    const longLived = await openLongLived(ports.toBeta);
    try {
      expect(await longLived.echo("before the ACL")).toBe("before the ACL");
      const since = (await linkedClientStatus(alpha)).peers.beta.since;
      expect(since).not.toBeNull();

      writeServer({ logLevel: "info", after: GAMMA_ONLY_ACL });
      const output = await reload();
      expect(output).toMatch(/INFO +reloaded config: acl, log level info$/m);
      expect(output).toMatch(/\[audit\] audit event=config-reloaded changed=\["log_level","server\.acl"\] notApplied=\[\]/);
      expect((await audit()).filter((entry) => entry.event === "config-reloaded").at(-1)).toMatchObject({ changed: ["log_level", "server.acl"], notApplied: [] });

      // A new link: gamma comes online, and alpha (its app to gamma) asks for a link the new rules deny.
      const mark = server.proc.output.length;
      gamma = await startLinkedClient(server, "gamma", exposeToml(`127.0.0.1:${echo.port}`), { logLevel: "info" });
      const message = `the server's ACL denies alpha -> gamma (no rule of user default allows it)`;
      await alpha.proc.waitForOutput(new RegExp(`no link to gamma yet: ${escapeRegExp(message)}`), 15_000);
      expect((await linkedClientStatus(alpha)).peers.gamma).toMatchObject({ state: "denied", link: null, error: message });
      await waitFor("the server's audit of the denial", async () => (await audit()).some((entry) => entry.event === "acl-denied" && entry.from === "alpha" && entry.to === "gamma"));
      // The audit line is info, the hub's own line about the denial debug: the level is info now, also in the audit's child logger.
      const after = server.proc.output.slice(mark);
      expect(after).toMatch(/INFO +\[audit\] audit event=acl-denied user=default from=alpha to=gamma/);
      expect(after).not.toMatch(/DEBUG/);

      // The link already up stays: the same link, and the connection on it still echoes.
      expect(await longLived.echo("after the ACL")).toBe("after the ACL");
      expect((await linkedClientStatus(alpha)).peers.beta).toMatchObject({ since, link: expect.any(String) });
      expect(alpha.proc.output).not.toMatch(/peer link closed/);
    } finally {
      longLived.socket.destroy();
    }
  }, 60_000);

  it("a malformed config or an invalid value is refused naming the problem, and the running config stays in force", async () => {
    await resetServer();
    const reloadsBefore = (await audit()).filter((entry) => entry.event === "config-reloaded").length;
    const good = readFileSync(server.configPath, "utf8");

    writeFileSync(server.configPath, `${good}\n[[server.acl]\n`);
    expect(await reload()).toMatch(new RegExp(`ERROR config not reloaded, the running config stays in force error=.*${escapeRegExp(server.configPath)}:\\d+:\\d+: invalid TOML`));
    writeServer({ inServer: 'admission = "sometimes"' });
    expect(await reload()).toMatch(new RegExp(`ERROR config not reloaded, the running config stays in force error=.*${escapeRegExp(server.configPath)}:\\d+: server\\.admission: expected .*sometimes`));
    writeServer({ after: '[[server.acl]]\nuser = "nobody"\nfrom = ["*"]\nto = ["*"]\naction = "allow"' });
    expect(await reload()).toMatch(/ERROR config not reloaded.*server\.acl\[0\]\.user: unknown user \\"nobody\\"/);

    expect((await audit()).filter((entry) => entry.event === "config-reloaded")).toHaveLength(reloadsBefore);
    expect(await onlineNodes(server)).toEqual(expect.arrayContaining(["alpha", "beta"]));
    writeFileSync(server.configPath, good);
    expect(await reload()).toMatch(/reloaded config: no changes$/m);
  }, 30_000);

  it("latest_version: the nodes are listed behind the release it names, and the nodes behind are told of it", async () => {
    await resetServer();
    const listed = async () => ((await api(server, "/api/v1/nodes", server.adminToken)).body.nodes as { name: string; behind: string | null }[]).find((n) => n.name === "alpha");
    expect((await listed())?.behind).toBeNull();
    writeServer({ inServer: 'latest_version = "99.0.0"' });
    expect(await reload()).toMatch(/reloaded config: latest_version$/m);
    expect((await listed())?.behind).toBe("99.0.0");
    await server.proc.waitForOutput(/newest release is 99\.0\.0; telling the nodes/);
    await resetServer();
    expect((await listed())?.behind).toBeNull();
  }, 30_000);

  it("settings that need a restart are named and not applied; the reloadable ones are", async () => {
    await resetServer();
    writeServer({ inServer: 'admission = "approve"' });
    const config = readFileSync(server.configPath, "utf8");
    writeFileSync(server.configPath, config.replace(/^ws_port = .*$/m, `ws_port = ${await freePort()}`).replace(/^heartbeat_interval_ms = .*$/m, "heartbeat_interval_ms = 700"));
    const output = await reload();
    expect(output).toMatch(/WARN +config changes not applied: server\.heartbeat_interval_ms, server\.ws_port; restart to apply$/m);
    expect(output).toMatch(/reloaded config: admission$/m);
    expect((await audit()).filter((entry) => entry.event === "config-reloaded").at(-1)).toMatchObject({
      changed: ["server.admission"],
      notApplied: ["server.heartbeat_interval_ms", "server.ws_port"],
    });
    // Still on its old port, with the nodes it had; a node new to it now waits for the admin.
    expect(await onlineNodes(server)).toEqual(expect.arrayContaining(["alpha", "beta"]));
    const delta = await startLinkedClient(server, "delta", "", { logLevel: "info", ready: /waiting for approval/ });
    await stopLinkedClient(delta);
  }, 30_000);
});
