// SIGHUP reloads, the logic without processes: which settings changed and which of them wait for a
// restart, the apps diff, how apps are stopped and started, and what one reload logs.
import { describe, expect, it } from "vitest";
import { applyClientReload, describeAppsDiff, diffApps, type ReloadableClient } from "../../src/client/reload.ts";
import { ExposePolicy } from "../../src/client/expose.ts";
import type { App } from "../../src/client/apps.ts";
import { ConfigError, parseConfig, planReload, reloadConfig, type AppConfig, type Config } from "../../src/config/index.ts";
import { createLogger, type LogLevel } from "../../src/log/index.ts";
import { generateIdentity } from "../../src/crypto/index.ts";
import { AuditLog } from "../../src/server/audit.ts";
import { RelayBroker } from "../../src/server/broker.ts";
import { PairingBook } from "../../src/server/pairing.ts";
import { Registry, type NodeSession } from "../../src/server/registry.ts";
import { TrustedRelays } from "../../src/server/relay-trust.ts";
import { applyServerReload, type ReloadableServer, type ServerPolicy } from "../../src/server/reload.ts";
import type { SignalHub } from "../../src/server/signal.ts";

const app = (name: string, listen = 10_000, more: Partial<AppConfig> = {}): AppConfig => ({
  name,
  protocol: "tcp",
  listen: `127.0.0.1:${listen}`,
  peer: "beta",
  target: "127.0.0.1:22",
  enabled: true,
  ...more,
});

const appToml = (a: AppConfig) => `[[client.apps]]\nname = "${a.name}"\nprotocol = "${a.protocol}"\nlisten = "${a.listen}"\npeer = "${a.peer}"\ntarget = "${a.target}"\n`;

function clientConfig(options: { node?: string; port?: number; level?: LogLevel; format?: string; expose?: string[]; apps?: AppConfig[] } = {}): Config {
  const text = [
    'role = "client"',
    `log_level = "${options.level ?? "info"}"`,
    `log_format = "${options.format ?? "text"}"`,
    "[client]",
    'server_host = "127.0.0.1"',
    `server_port = ${options.port ?? 27183}`,
    `node = "${options.node ?? "alpha"}"`,
    'token = "111"',
    `expose = ${JSON.stringify(options.expose ?? [])}`,
    ...(options.apps ?? []).map(appToml),
  ].join("\n");
  return parseConfig(text, "/etc/inp2p/inp2pc.toml");
}

function serverConfig(extra = ""): Config {
  return parseConfig(`role = "server"\n[server]\ntoken = "111"\n${extra}\n`, "/etc/inp2p/inp2ps.toml");
}

describe("planReload: what changed, and what waits for a restart", () => {
  it("the same settings, written in another order, change nothing", () => {
    const running = clientConfig({ apps: [app("a"), app("b", 10_001)] });
    const text = [
      'log_level = "info"',
      'role = "client"',
      "[client]",
      'token = "111"',
      'node = "alpha"',
      'server_host = "127.0.0.1"',
      '[[client.apps]]\ntarget = "127.0.0.1:22"\nname = "b"\nlisten = "127.0.0.1:10001"\npeer = "beta"\nprotocol = "tcp"',
      '[[client.apps]]\nname = "a"\nprotocol = "tcp"\nlisten = "127.0.0.1:10000"\npeer = "beta"\ntarget = "127.0.0.1:22"',
    ].join("\n");
    const plan = planReload(running, parseConfig(text, "/etc/inp2p/inp2pc.toml"));
    expect(plan.restartOnly).toEqual([]);
    // The app list's order differs; diffApps (by name) is what decides about apps.
    expect(diffApps(running.client!.apps, plan.inForce.client!.apps)).toEqual({ added: [], removed: [], changed: [] });
  });

  it("client: apps, expose and log level are reloadable; node, server port and log format are named for a restart", () => {
    const running = clientConfig({ apps: [app("a")] });
    const next = clientConfig({ node: "renamed", port: 9999, level: "debug", format: "json", expose: ["127.0.0.1:22"], apps: [app("a"), app("b", 10_001)] });
    const plan = planReload(running, next);
    expect(plan.changed.sort()).toEqual(["client.apps", "client.expose", "log_level"]);
    expect(plan.restartOnly.sort()).toEqual(["client.node", "client.server_port", "log_format"]);
    // In force: the new reloadable settings, the old values of what needs a restart.
    expect(plan.inForce.log_level).toBe("debug");
    expect(plan.inForce.log_format).toBe("text");
    expect(plan.inForce.client!.node).toBe("alpha");
    expect(plan.inForce.client!.server_port).toBe(27183);
    expect(plan.inForce.client!.apps.map((a) => a.name)).toEqual(["a", "b"]);
    expect(plan.inForce.client!.expose).toEqual(["127.0.0.1:22"]);
    // The same file read again: the unapplied settings are named again, nothing is reloadable.
    const again = planReload(plan.inForce, next);
    expect(again.changed).toEqual([]);
    expect(again.restartOnly.sort()).toEqual(["client.node", "client.server_port", "log_format"]);
  });

  it("server: the ACL, admission, pairing and relay trust are reloadable; ports and TLS are named for a restart", () => {
    const running = serverConfig();
    const next = serverConfig(
      [
        "ws_port = 9000",
        'tls = "off"',
        'admission = "approve"',
        'auto_approve = ["10.0.0.0/8"]',
        "pairing_expiry_s = 60",
        'trusted_relays = ["default/r1"]',
        "prefer_super_relays = true",
        '[[server.acl]]\nfrom = ["a"]\nto = ["*"]\naction = "allow"',
      ].join("\n"),
    );
    const plan = planReload(running, next);
    expect(plan.changed).toEqual([
      "server.acl",
      "server.admission",
      "server.auto_approve",
      "server.pairing_expiry_s",
      "server.prefer_super_relays",
      "server.trusted_relays",
    ]);
    expect(plan.restartOnly.sort()).toEqual(["server.tls", "server.ws_port"]);
    expect(plan.inForce.server!.acl).toHaveLength(1);
    expect(plan.inForce.server!.ws_port).toBe(running.server!.ws_port);
  });

  it("a setting removed from the file counts as changed (to its default or unset)", () => {
    const running = serverConfig('admin_token = "an-admin-secret"');
    const plan = planReload(running, serverConfig());
    expect(plan.restartOnly).toEqual(["server.admin_token"]);
    expect(plan.inForce.server!.admin_token).toBe("an-admin-secret");
  });
});

describe("diffApps", () => {
  it("names added, removed and changed apps, in that form", () => {
    const diff = diffApps([app("keep"), app("gone", 10_001), app("moved", 10_002)], [app("moved", 10_003), app("keep"), app("new", 10_004)]);
    expect(diff.added.map((a) => a.name)).toEqual(["new"]);
    expect(diff.removed).toEqual(["gone"]);
    expect(diff.changed.map((a) => a.name)).toEqual(["moved"]);
    expect(describeAppsDiff(diff)).toBe("apps +new -gone ~moved");
  });

  it("a change in any one setting of an app restarts it, and no change says nothing", () => {
    for (const change of [{ target: "127.0.0.1:23" }, { peer: "gamma" }, { enabled: false }, { protocol: "udp" as const }, { allow: ["10.0.0.0/8"] }])
      expect(diffApps([app("a")], [app("a", 10_000, change)]).changed.map((a) => a.name), JSON.stringify(change)).toEqual(["a"]);
    expect(describeAppsDiff(diffApps([app("a")], [app("a")]))).toBeUndefined();
  });
});

/** A stand-in for App that records what happened to it, in one shared journal. */
function fakeApp(config: AppConfig, journal: string[]): App {
  return { config, start: async () => void journal.push(`start ${config.name}`), stop: () => void journal.push(`stop ${config.name}`) } as unknown as App;
}

function fakeClient(apps: AppConfig[], options: { started: boolean; expose?: string[] }) {
  const journal: string[] = [];
  const client: ReloadableClient = {
    apps: apps.map((config) => fakeApp(config, journal)),
    appPeers: new Set(apps.filter((a) => a.enabled).map((a) => a.peer)),
    newApp: (config) => fakeApp(config, journal),
    appsStarted: () => options.started,
    ensureLink: (peer) => void journal.push(`link ${peer}`),
    expose: new ExposePolicy(options.expose ?? []),
  };
  return { client, journal };
}

describe("applyClientReload", () => {
  it("stops removed and changed apps before it starts any, keeps unchanged ones, and links to new peers", async () => {
    const { client, journal } = fakeClient([app("keep"), app("gone", 10_001), app("moved", 10_002)], { started: true });
    const kept = client.apps[0];
    const changes = await applyClientReload(client, { apps: [app("keep"), app("moved", 10_001), app("new", 10_003, { peer: "gamma" })], expose: [] });
    expect(changes).toEqual(["apps +new -gone ~moved"]);
    expect(journal).toEqual(["stop gone", "stop moved", "start moved", "start new", "link gamma"]);
    expect(client.apps[0]).toBe(kept);
    expect(client.apps.map((a) => a.config.name)).toEqual(["keep", "moved", "new"]);
    expect([...client.appPeers].sort()).toEqual(["beta", "gamma"]);
  });

  it("before the first login, new apps wait (they start with the others at login) and no link is asked for", async () => {
    const { client, journal } = fakeClient([app("a")], { started: false });
    await applyClientReload(client, { apps: [app("a"), app("b", 10_001, { peer: "gamma" })], expose: [] });
    expect(journal).toEqual([]);
    expect(client.apps.map((a) => a.config.name)).toEqual(["a", "b"]);
    expect(client.appPeers.has("gamma")).toBe(true);
  });

  it("a peer no app needs any more is dropped from the peers to keep linked", async () => {
    const { client } = fakeClient([app("a"), app("b", 10_001, { peer: "gamma" })], { started: true });
    await applyClientReload(client, { apps: [app("a")], expose: [] });
    expect([...client.appPeers]).toEqual(["beta"]);
  });

  it("a new expose list decides the next connection", async () => {
    const { client } = fakeClient([], { started: true, expose: ["127.0.0.1:22"] });
    expect((await client.expose.decide("127.0.0.1:22")).ok).toBe(true);
    expect(await applyClientReload(client, { apps: [], expose: ["127.0.0.1:80"] })).toEqual(["expose"]);
    expect(await client.expose.decide("127.0.0.1:22")).toMatchObject({ ok: false, code: "NOT_EXPOSED" });
    expect((await client.expose.decide("127.0.0.1:80")).ok).toBe(true);
    expect(await applyClientReload(client, { apps: [], expose: ["127.0.0.1:80"] })).toEqual([]);
  });
});

describe("reloadConfig: one reload, as logged", () => {
  const capture = (level: LogLevel) => {
    const lines: string[] = [];
    return { lines, logger: createLogger({ level, write: (line) => lines.push(line) }) };
  };

  it("a bad config is refused naming the problem, and the running config stays in force", async () => {
    const { lines, logger } = capture("info");
    const running = clientConfig();
    let applied = false;
    const inForce = await reloadConfig({
      logger,
      running,
      load: () => {
        throw new ConfigError("CONFIG_SYNTAX", "/etc/inp2p/inp2pc.toml:3:7: invalid TOML: expected a value");
      },
      apply: () => ((applied = true), []),
    });
    expect(inForce).toBe(running);
    expect(applied).toBe(false);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ERROR config not reloaded, the running config stays in force error=.*inp2pc\.toml:3:7: invalid TOML/);
  });

  it("when applying fails part way, it says so, and the next reload applies it all again", async () => {
    const { lines, logger } = capture("info");
    const running = clientConfig();
    const next = clientConfig({ apps: [app("a")] });
    const failing = await reloadConfig({
      logger,
      running,
      load: () => next,
      apply: () => {
        throw new Error("cannot do that");
      },
    });
    expect(failing).toBe(running);
    expect(lines.at(-1)).toMatch(/ERROR config reload failed part way; the next reload tries again error="cannot do that"$/);
    let seen: string[] = [];
    await reloadConfig({ logger, running: failing, load: () => next, apply: (_next, plan) => ((seen = plan.changed), ["apps +a"]) });
    expect(seen).toEqual(["client.apps"]);
  });

  it("names each change that needs a restart, and says what was reloaded", async () => {
    const { lines, logger } = capture("info");
    const next = clientConfig({ node: "renamed", level: "debug", apps: [app("a")] });
    await reloadConfig({ logger, running: clientConfig(), load: () => next, apply: () => ["apps +a"] });
    expect(lines[0]).toMatch(/WARN +config changes not applied: client\.node; restart to apply$/);
    expect(lines[1]).toMatch(/INFO +reloaded config: apps \+a, log level debug$/);
  });

  it("the new log level governs what applying logs, and the summary shows at the more verbose of the two", async () => {
    const quiet = capture("info");
    const child = quiet.logger.child("apps");
    await reloadConfig({
      logger: quiet.logger,
      running: clientConfig({ level: "info" }),
      load: () => clientConfig({ level: "warn" }),
      apply: () => (child.info("app listening"), []),
    });
    expect(quiet.lines.join("\n")).not.toMatch(/app listening/);
    expect(quiet.lines.at(-1)).toMatch(/INFO +reloaded config: log level warn$/);
    child.info("after the reload");
    expect(quiet.lines.join("\n")).not.toMatch(/after the reload/);

    const loud = capture("warn");
    await reloadConfig({
      logger: loud.logger,
      running: clientConfig({ level: "warn" }),
      load: () => clientConfig({ level: "debug" }),
      apply: () => (loud.logger.child("apps").debug("app listening"), []),
    });
    expect(loud.lines.join("\n")).toMatch(/DEBUG \[apps\] app listening/);
    expect(loud.lines.at(-1)).toMatch(/INFO +reloaded config: log level debug$/);
  });
});

describe("applyServerReload", () => {
  const node = (name: string, user: string, superRelay = false): NodeSession => {
    const now = Date.now();
    const relay = superRelay ? { port: 7000, super: true, bwMbps: 1000, loadMbps: 0, sessions: 0 } : undefined;
    return { user, name, publicKey: generateIdentity().publicKey, address: "127.0.0.1:1", host: "127.0.0.1", version: "t", relay, onlineSince: now, lastHeartbeat: now, send: () => {}, close: () => {} };
  };

  function server() {
    const registry = new Registry();
    const [a, b] = [node("a", "default"), node("b", "default")];
    for (const session of [a, b, node("sup", "bob", true)]) registry.add(session);
    const trustedRelays = new TrustedRelays(null, [], ["default", "bob"]);
    const broker = new RelayBroker({ registry, tokenOf: () => "1", serverRelay: { port: 9, key: new Uint8Array(32) }, trusted: (name) => trustedRelays.has(name) });
    const policies: Parameters<SignalHub["setPolicy"]>[0][] = [];
    const pairing = new PairingBook(3_600_000);
    const audit = new AuditLog(createLogger({ write: () => {} }));
    const metricsAllowed: ((address: string) => boolean)[] = [];
    const latest: (string | undefined)[] = [];
    const targets: ReloadableServer = {
      hub: { setPolicy: (policy) => void policies.push(policy) }, broker, pairing, trustedRelays, audit,
      setMetricsAllow: (allowed) => void metricsAllowed.push(allowed),
      fleet: { setConfigured: (version) => void latest.push(version) },
    };
    return { targets, policies, audit, pairing, trustedRelays, metricsAllowed, latest, relayFor: () => broker.plan(a, b).mine.relay.name };
  }
  const policy = (more: Partial<ServerPolicy> = {}): ServerPolicy => ({ acl: [], admission: "token", auto_approve: [], pairing_expiry_s: 3600, trusted_relays: [], prefer_super_relays: false, metrics_allow: [], ...more });
  const fileRequest = (pairing: PairingBook, node: string, now: number) => pairing.file({ user: "default", node, publicKey: "k", replacesKey: undefined, address: "10.0.0.1:1", login: {} as never }, `10.0.0.${node.length}`, now);

  it("hands the fleet a new latest_version only when it changed", () => {
    const { targets, latest } = server();
    applyServerReload(targets, policy({ latest_version: "2.0.0" }), { changed: ["server.admission"], restartOnly: [] });
    expect(latest).toEqual([]);
    expect(applyServerReload(targets, policy({ latest_version: "2.0.0" }), { changed: ["server.latest_version"], restartOnly: [] })).toEqual(["latest_version"]);
    expect(latest).toEqual(["2.0.0"]);
  });

  it("hands the hub the new ACL and admission, with auto_approve as a matcher, only when one of them changed", () => {
    const { targets, policies } = server();
    const acl = [{ user: "default", from: ["a"], to: ["*"], action: "allow" as const }];
    expect(applyServerReload(targets, policy({ acl, admission: "approve", auto_approve: ["10.0.0.0/8"] }), { changed: ["server.acl", "server.admission", "server.auto_approve"], restartOnly: [] })).toEqual([
      "acl",
      "admission",
      "auto_approve",
    ]);
    expect(policies).toHaveLength(1);
    expect(policies[0]).toMatchObject({ acl, admission: "approve" });
    expect([policies[0]!.autoApprove("10.1.2.3"), policies[0]!.autoApprove("192.168.1.1")]).toEqual([true, false]);
    applyServerReload(targets, policy(), { changed: ["log_level"], restartOnly: [] });
    expect(policies).toHaveLength(1);
  });

  it("metrics_allow decides who may scrape /metrics from the next request on", () => {
    const { targets, metricsAllowed } = server();
    applyServerReload(targets, policy({ metrics_allow: ["10.9.0.0/16"] }), { changed: ["server.metrics_allow"], restartOnly: [] });
    expect(metricsAllowed).toHaveLength(1);
    expect([metricsAllowed[0]!("10.9.1.1"), metricsAllowed[0]!("127.0.0.1")]).toEqual([true, false]);
    applyServerReload(targets, policy(), { changed: ["log_level"], restartOnly: [] });
    expect(metricsAllowed).toHaveLength(1);
  });

  it("trusted_relays and prefer_super_relays decide the next relay choice", () => {
    const { targets, relayFor, trustedRelays } = server();
    expect(relayFor()).toBe("server");
    applyServerReload(targets, policy({ trusted_relays: ["bob/sup"], prefer_super_relays: true }), { changed: ["server.prefer_super_relays", "server.trusted_relays"], restartOnly: [] });
    expect(trustedRelays.source("bob/sup")).toBe("config");
    expect(relayFor()).toBe("bob/sup");
    applyServerReload(targets, policy({ trusted_relays: ["bob/sup"] }), { changed: ["server.prefer_super_relays"], restartOnly: [] });
    expect(relayFor()).toBe("server");
    applyServerReload(targets, policy(), { changed: ["server.trusted_relays"], restartOnly: [] });
    expect(trustedRelays.has("bob/sup")).toBe(false);
  });

  it("pairing_expiry_s applies to requests filed from now on; one waiting keeps its expiry", () => {
    const { targets, pairing } = server();
    const now = 1_000_000;
    const waiting = fileRequest(pairing, "old", now);
    applyServerReload(targets, policy({ pairing_expiry_s: 60 }), { changed: ["server.pairing_expiry_s"], restartOnly: [] });
    const filed = fileRequest(pairing, "newer", now);
    expect(waiting).toMatchObject({ expiresAt: now + 3_600_000 });
    expect(filed).toMatchObject({ expiresAt: now + 60_000 });
  });

  it("audits each reload with what changed and what waits for a restart", () => {
    const { targets, audit } = server();
    applyServerReload(targets, policy(), { changed: ["log_level"], restartOnly: ["server.ws_port"] });
    expect(audit.list().at(-1)).toMatchObject({ event: "config-reloaded", changed: ["log_level"], notApplied: ["server.ws_port"] });
  });
});

describe("Logger.setLevel", () => {
  it("reaches the logger it was made from and every child", () => {
    const lines: string[] = [];
    const root = createLogger({ level: "info", write: (line) => lines.push(line) });
    const child = root.child("a");
    const grandchild = child.child("b");
    grandchild.debug("hidden");
    child.setLevel("debug");
    root.debug("root");
    grandchild.debug("grandchild");
    root.child("later").debug("later");
    expect(lines.map((line) => line.replace(/^\S+ /, ""))).toEqual(["DEBUG root", "DEBUG [a/b] grandchild", "DEBUG [later] later"]);
  });
});
