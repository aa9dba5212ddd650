#!/usr/bin/env bun
import { networkInterfaces } from "node:os";
import cac from "cac";
import { ConfigError, DEFAULT_USER_NAME, ENV_TOKEN, loadConfig, writeConfig, type Config } from "../config/index.ts";
import { generateToken, tokenFromCredentials } from "../crypto/index.ts";
import { approveCommand, NODE_NAME_PATTERN, VERSION } from "../protocol/index.ts";
import { formatTable } from "../log/index.ts";
import { nodeTable, startServer, type AuditEntry, type NodeListing, type PairingListEntry, type RelayListing, type RunningServer, type UpgradeAsked } from "../server/index.ts";
import { BONJOUR_FLAG, BONJOUR_HELP, flagsToSettings, LOG_FLAGS, rawFlagValue, STUN_FLAGS, type FlagSpec } from "./args.ts";
import { addCommonOptions, exitWithError, EXIT_USAGE, makeLogger, onShutdown, printError } from "./common.ts";
import { fetchServerApi } from "./server-api.ts";
import { reloadOnSighup } from "./reload.ts";
import { addUpgradeCommand, commandLine, type RunningProgram } from "./upgrade.ts";
import { confirmHealthy, RELEASE_TARGET, SelfUpgrade, type UpgradeState } from "../upgrade/index.ts";

const PROGRAM = "inp2ps";

const SERVER_FLAGS: readonly FlagSpec[] = [
  { flag: "token", key: "token", kind: "string" },
  { flag: "ws-port", key: "ws_port", kind: "number" },
  { flag: "relay-port", key: "relay_port", kind: "number" },
  { flag: "relay-bw", key: "relay_bw", kind: "number" },
  BONJOUR_FLAG,
  ...STUN_FLAGS,
];

const { args, upgradeVersion } = commandLine(PROGRAM);
const cli = cac(PROGRAM);

function load(parsed: Record<string, unknown>, newconfig = false) {
  return loadConfig({
    role: "server",
    configPath: rawFlagValue(args, "config"),
    newconfig,
    flags: { ...flagsToSettings(SERVER_FLAGS, parsed, args), ...flagsToSettings(LOG_FLAGS, parsed, args) },
  });
}

/** A host name users can put in -serverhost: the first non-loopback IPv4 address, else localhost. */
function reachableAddress(listen: string): string {
  if (listen !== "0.0.0.0" && listen !== "::") return listen;
  const addresses = Object.values(networkInterfaces()).flat();
  return addresses.find((a) => a && a.family === "IPv4" && !a.internal)?.address ?? "127.0.0.1";
}

async function serve(parsed: Record<string, unknown>) {
  const loaded = load(parsed, Boolean(parsed.newconfig));
  let config: Config = loaded.config;
  const server = config.server!;
  const logger = makeLogger(config);
  let wrote = loaded.wrote;
  if (!server.token) {
    if (loaded.fromFile)
      throw new ConfigError(
        "CONFIG_MISSING",
        `no token in ${loaded.path}: add to [server] a line such as\n  token = "${generateToken()}"\n(freshly generated; or pass --token, or derive one with: inp2ps token --user U --password P)`,
        { file: loaded.path, keyPath: "server.token" },
      );
    config = { ...config, server: { ...server, token: generateToken() } };
    writeConfig(loaded.path, config);
    wrote = true;
    logger.info("generated a token and saved it", { file: loaded.path });
  }
  const settings = config.server!;
  // A release binary upgrades itself when the admin asks (REST); run from source it cannot.
  const upgrade: SelfUpgrade | undefined =
    RELEASE_TARGET === undefined
      ? undefined
      : new SelfUpgrade({ program: PROGRAM, releaseUrl: settings.release_url, logger, stop: () => running.stop(), resume: async () => void (running = await start()) });
  const start = (): Promise<RunningServer> => startServer({ ...settings, token: settings.token!, users: settings.users ?? [], upgrade }, logger, VERSION);
  const starting = start();
  // After an upgrade's rollback `running` is a new one: reloads and the shutdown go to the one running.
  reloadOnSighup({ logger, config, load: () => load(parsed).config, starting, apply: (_, next, plan) => running.reload(next.server!, plan) });
  let running: RunningServer = await starting;
  confirmHealthy(VERSION);
  const host = reachableAddress(settings.listen);
  const pin = running.tls && running.tls.source !== "files" ? ` -tls-fingerprint ${running.tls.fingerprint256}` : "";
  const insecure = running.tls ? "" : " -insecure";
  const admin = running.admin.file
    ? running.admin.created
      ? `${running.admin.secret} (new; saved in ${running.admin.file}, shown only this once)`
      : `in ${running.admin.file}`
    : `admin_token in ${loaded.path}`;
  process.stdout.write(
    [
      `inp2ps ${VERSION} listening on ${settings.listen}:${running.port} (${running.tls ? "TLS" : "plain ws, no TLS"})`,
      `  config:   ${wrote ? `${loaded.path} (written)` : loaded.fromFile ? loaded.path : "none (defaults and flags)"}`,
      `  token:    ${settings.token}`,
      `  admin:    ${admin}`,
      `  console:  ${running.tls ? "https" : "http"}://${host}:${running.port}/ (log in with the admin credential)`,
      running.tls ? `  TLS:      ${running.tls.source} certificate ${running.tls.certPath}` : undefined,
      running.tls ? `  SHA-256:  ${running.tls.fingerprint256}` : undefined,
      `  admission: ${settings.admission === "approve" ? `approve: new nodes wait for the admin; see them with "inp2ps pairing list", let one in with "${approveCommand("NAME", DEFAULT_USER_NAME)}"` : "token: any node with its user's token is in"}`,
      settings.admission === "approve" && settings.auto_approve.length ? `  auto-approved from: ${settings.auto_approve.join(", ")}` : undefined,
      `  relay:    ${running.relayPort ? `TCP port ${running.relayPort}, up to ${settings.relay_bw} Mbit/s (the last resort for peers without a direct path)` : "off"}`,
      `  join a node with:`,
      `    ${ENV_TOKEN}=${settings.token} inp2pc -serverhost ${host} -serverport ${running.port} -node NODE_NAME${pin}${insecure}`,
      "",
    ]
      .filter((line) => line !== undefined)
      .join("\n"),
  );
  onShutdown(logger, () => running.stop());
}

addCommonOptions(cli, "server");
cli
  .option("--token <token>", "the default user's token, a uint64 (generated and saved on first start when none is set)")
  .option("--ws-port <port>", "WebSocket signalling and REST API port (default: 27183)")
  .option("--relay-port <port>", "TCP port of the server's own relay, the last resort for peers (default: 27184)")
  .option("--relay-bw <mbps>", "bandwidth cap of the server's relay in Mbit/s (default: 100)")
  .option("--bonjour <true|false>", `advertise this server on its LAN as _inp2p._tcp (TXT: ports, TLS fingerprint; never a token); ${BONJOUR_HELP}`);

cli.command("", "start the server").action((parsed) => serve(parsed).catch((err) => exitWithError(PROGRAM, err)));

cli
  .command("token", "print the token for a user and password: CRC64-ISO(user + password)")
  .option("--user [user]", "user name")
  .option("--password [password]", "password (may be empty)")
  .action(() => {
    const user = rawFlagValue(args, "user");
    const password = rawFlagValue(args, "password");
    if (user === undefined || password === undefined) {
      printError(`${PROGRAM} token: give both --user and --password`);
      process.exit(EXIT_USAGE);
    }
    process.stdout.write(tokenFromCredentials(user, password) + "\n");
  });

/** The config's server, the node's user (--user, default: the default user) and the host to ask (--host). */
function apiTarget(parsed: Record<string, unknown>) {
  const { config } = load(parsed);
  const user = rawFlagValue(args, "user") ?? DEFAULT_USER_NAME;
  const call = (method: string, path: string) => fetchServerApi(config.server!, method, path, rawFlagValue(args, "host"));
  return { user, call, query: `?user=${encodeURIComponent(user)}` };
}

function usage(message: string): never {
  printError(`${PROGRAM} ${message}`);
  process.exit(EXIT_USAGE);
}

async function listNodes(parsed: Record<string, unknown>) {
  const { call } = apiTarget(parsed);
  const body = (await call("GET", "/api/v1/nodes")) as { nodes: NodeListing[]; offline?: NodeListing[]; pending?: NodeListing[] };
  const all = [...body.nodes, ...(body.offline ?? []), ...(body.pending ?? [])];
  if (parsed.json) {
    process.stdout.write(JSON.stringify(all, null, 2) + "\n");
    return;
  }
  process.stdout.write(formatTable(nodeTable(all)).join("\n") + "\n");
  if (all.length === 0) process.stdout.write("(no nodes known)\n");
}

cli
  .command("nodes [action] [...args]", "list the nodes: online, offline (with last seen) and pending (uses this config's admin credential and port); `nodes revoke NAME` disconnects and refuses a node; `nodes tag NAME [TAG ...]` sets its tags; `nodes upgrade NAME|--all` asks a node (or every node behind) to upgrade now to the newest release the server knows")
  .option("--all", "upgrade: every online node behind the newest release")
  .option("--json", "print JSON (list)")
  .option("--user <user>", "the node's user (default: default)")
  .option("--host <host>", "server host to ask (default: 127.0.0.1)")
  .action(async (action: string | undefined, rest: string[], parsed) => {
    try {
      if (action === undefined || action === "list") return await listNodes(parsed);
      if (action === "upgrade") return await upgradeNodes(rest, parsed);
      const [node, ...tags] = rest;
      if (action !== "revoke" && action !== "tag") usage(`nodes: unknown action "${action}" (list, revoke NAME, tag NAME [TAG ...], upgrade NAME|--all)`);
      if (!node) usage(`nodes ${action}: give the node's name`);
      const { user, call, query } = apiTarget(parsed);
      const path = `/api/v1/nodes/${encodeURIComponent(node)}`;
      if (action === "revoke") {
        if (tags.length) usage(`nodes revoke: one node name, got ${rest.length}`);
        const { revoked } = (await call("POST", `${path}/revoke${query}`)) as { revoked: { wasOnline: boolean } };
        process.stdout.write(
          `revoked node ${node} (user ${user})${revoked.wasOnline ? "; disconnected it, and its peers dropped their links" : ""}; ` +
            `it is refused until "${approveCommand(node, user)}"\n`,
        );
        return;
      }
      const { tagged } = (await call("PUT", `${path}/tags${query}&tags=${encodeURIComponent(tags.join(","))}`)) as { tagged: { tags: string[] } };
      process.stdout.write(tagged.tags.length ? `node ${node} (user ${user}) has tags: ${tagged.tags.join(" ")}\n` : `node ${node} (user ${user}) has no tags now\n`);
    } catch (err) {
      exitWithError(PROGRAM, err);
    }
  });

async function upgradeNodes(rest: string[], parsed: Record<string, unknown>) {
  if (parsed.all ? rest.length !== 0 : rest.length !== 1) usage("nodes upgrade: give one node's name, or --all");
  const { call, query } = apiTarget(parsed);
  const path = parsed.all ? "/api/v1/nodes/upgrade-all" : `/api/v1/nodes/${encodeURIComponent(rest[0]!)}/upgrade${query}`;
  const { asked } = (await call("POST", path)) as UpgradeAsked;
  for (const a of asked) process.stdout.write(`asked node ${a.node} (user ${a.user}) to upgrade from ${a.from} to ${a.to}\n`);
  if (asked.length === 0) process.stdout.write("no online node is behind the newest release\n");
}

/** The inp2ps running with this config, through its REST API and admin credential. */
async function runningServer(parsed: Record<string, unknown>): Promise<RunningProgram | undefined> {
  const { config } = load(parsed);
  const call = (method: string, path: string) => fetchServerApi(config.server!, method, path, rawFlagValue(args, "host"));
  const state = async () => (await call("GET", "/api/v1/upgrade")) as { version: string; upgrade: UpgradeState | null };
  if (!(await state().catch(() => undefined))) return undefined;
  return {
    describe: `the inp2ps on port ${config.server!.ws_port}`,
    state,
    upgrade: async (body) => {
      const query = new URLSearchParams(Object.entries(body).filter((e): e is [string, string] => e[1] !== undefined));
      return (await call("POST", `/api/v1/upgrade?${query}`)) as Awaited<ReturnType<RunningProgram["upgrade"]>>;
    },
  };
}

addUpgradeCommand(cli, { program: PROGRAM, releaseUrl: (parsed) => load(parsed).config.server!.release_url, running: runningServer }, upgradeVersion);

cli
  .command("pairing <action> [node]", "nodes waiting for approval: `pairing list`, `pairing approve NAME`, `pairing reject NAME`")
  .option("--json", "print JSON (list)")
  .option("--user <user>", "the node's user (default: default)")
  .option("--host <host>", "server host to ask (default: 127.0.0.1)")
  .action(async (action: string, node: string | undefined, parsed) => {
    try {
      if (action !== "list" && action !== "approve" && action !== "reject") usage(`pairing: unknown action "${action}" (list, approve NAME, reject NAME)`);
      const { user, call, query } = apiTarget(parsed);
      if (action === "list") {
        const { requests } = (await call("GET", "/api/v1/pairing")) as { requests: PairingListEntry[] };
        if (parsed.json) {
          process.stdout.write(JSON.stringify(requests, null, 2) + "\n");
          return;
        }
        const rows = [["NAME", "USER", "FROM", "KEY", "SINCE", "EXPIRES", "STATE"]];
        for (const r of requests)
          rows.push([r.node, r.user, r.address, r.publicKey.slice(0, 12) + (r.newKey ? " (new key)" : ""), r.since, r.expiresAt, r.waiting ? "waiting" : "away"]);
        process.stdout.write(formatTable(rows).join("\n") + "\n");
        process.stdout.write(requests.length === 0 ? "(no pairing requests)\n" : `approve one with: ${approveCommand("NAME", DEFAULT_USER_NAME)} [--user U]\n`);
        return;
      }
      if (!node) usage(`pairing ${action}: give the node's name`);
      const path = `/api/v1/pairing/${encodeURIComponent(node)}/${action}${query}`;
      if (action === "approve") {
        const { approved } = (await call("POST", path)) as { approved: { online: boolean } };
        process.stdout.write(`approved node ${node} (user ${user})${approved.online ? "; it is online now" : "; it comes online at its next login"}\n`);
      } else {
        await call("POST", path);
        process.stdout.write(`rejected the pairing request of node ${node} (user ${user})\n`);
      }
    } catch (err) {
      exitWithError(PROGRAM, err);
    }
  });

cli
  .command("forget <node>", "release a node name from its pinned identity key (after reinstalling that node)")
  .option("--user <user>", "the node's user (default: default)")
  .option("--host <host>", "server host to ask (default: 127.0.0.1)")
  .action(async (node: string, parsed) => {
    try {
      const { config } = load(parsed);
      const user = rawFlagValue(args, "user") ?? DEFAULT_USER_NAME;
      await fetchServerApi(config.server!, "DELETE", `/api/v1/nodes/${encodeURIComponent(node)}/key?user=${encodeURIComponent(user)}`, rawFlagValue(args, "host"));
      process.stdout.write(`forgot the identity key of node ${node} (user ${user}); the next node to log in under that name pins its key\n`);
    } catch (err) {
      exitWithError(PROGRAM, err);
    }
  });

cli
  .command("audit", "list the server's recent admission and authority decisions (uses this config's admin credential)")
  .option("--json", "print JSON")
  .option("--host <host>", "server host to ask (default: 127.0.0.1)")
  .action(async (parsed) => {
    try {
      const { config } = load(parsed);
      const body = (await fetchServerApi(config.server!, "GET", "/api/v1/audit", rawFlagValue(args, "host"))) as { entries: AuditEntry[] };
      if (parsed.json) {
        process.stdout.write(JSON.stringify(body.entries, null, 2) + "\n");
        return;
      }
      const rows = [["TIME", "EVENT", "DETAILS"]];
      for (const { time, event, ...fields } of body.entries) {
        const details = Object.entries(fields).map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`);
        rows.push([time, event, details.join(" ")]);
      }
      process.stdout.write(formatTable(rows).join("\n") + "\n");
      if (body.entries.length === 0) process.stdout.write("(no entries)\n");
    } catch (err) {
      exitWithError(PROGRAM, err);
    }
  });

const RELAYS_ACTIONS = ["list", "approve", "revoke"] as const;

/** "bob/relay1", or "relay1" with --user bob (default: the default user). */
function relayArgument(name: string | undefined, userFlag: string | undefined): { user: string; node: string } {
  if (!name) throw new Error(`give the relay: "inp2ps relays approve USER/NODE", or NODE with --user USER`);
  const parts = name.split("/");
  if (parts.length > 2) throw new Error(`"${name}" is not a relay: give USER/NODE, or NODE with --user USER`);
  if (parts.length === 2 && userFlag !== undefined) throw new Error(`"${name}" already names the user: drop --user, or give NODE alone`);
  const [user, node] = parts.length === 2 ? (parts as [string, string]) : [userFlag ?? DEFAULT_USER_NAME, name];
  for (const [what, value] of [["user", user], ["node", node]])
    if (!NODE_NAME_PATTERN.test(value!)) throw new Error(`"${value}" is not a ${what} name (1-63 letters, digits, '.', '_' or '-')`);
  return { user, node };
}

cli
  .command("relays [action] [name]", "super relays serving other users: list | approve NAME | revoke NAME (NAME: user/node, or node with --user)")
  .option("--user <user>", "the relay node's user (default: default), when NAME has no user/ part")
  .option("--json", "print JSON (list)")
  .option("--host <host>", "server host to ask (default: 127.0.0.1)")
  .action(async (action: string | undefined, name: string | undefined, parsed) => {
    try {
      const verb = action ?? "list";
      if (!(RELAYS_ACTIONS as readonly string[]).includes(verb)) throw new Error(`unknown relays action "${verb}": use ${RELAYS_ACTIONS.join(", ")}`);
      const { config } = load(parsed);
      const host = rawFlagValue(args, "host");
      if (verb === "list") return printRelays((await fetchServerApi(config.server!, "GET", "/api/v1/relays", host)) as { relays: RelayListing[] }, Boolean(parsed.json));
      const { user, node } = relayArgument(name, rawFlagValue(args, "user"));
      const path = `/api/v1/relays/${encodeURIComponent(user)}/${encodeURIComponent(node)}/approval`;
      await fetchServerApi(config.server!, verb === "approve" ? "PUT" : "DELETE", path, host);
      process.stdout.write(
        verb === "approve"
          ? `approved relay ${user}/${node}: as a super relay it now serves every user's nodes\n`
          : `revoked relay ${user}/${node}: it serves only user ${user}'s nodes again (links already on it stay until they close)\n`,
      );
    } catch (err) {
      exitWithError(PROGRAM, err);
    }
  });

function printRelays(body: { relays: RelayListing[] }, json: boolean): void {
  if (json) return void process.stdout.write(JSON.stringify(body.relays, null, 2) + "\n");
  const rows = [["RELAY", "ONLINE", "KIND", "APPROVED", "SERVES", "ADDRESS", "BW MBIT/S", "LOAD", "SESSIONS"]];
  for (const r of body.relays)
    rows.push([
      r.name,
      r.online ? "yes" : "no",
      r.super === null ? "-" : r.super ? "super" : "private",
      r.approvedBy ? `yes (${r.approvedBy})` : "no",
      r.serves ?? "-",
      r.address ?? "-",
      r.bwMbps === null ? "-" : String(r.bwMbps),
      r.loadMbps === null ? "-" : String(r.loadMbps),
      r.sessions === null ? "-" : String(r.sessions),
    ]);
  process.stdout.write(formatTable(rows).join("\n") + "\n");
  if (body.relays.length === 0) process.stdout.write("(no relays online or approved)\n");
}

try {
  cli.parse(["bun", PROGRAM, ...args]);
} catch (err) {
  exitWithError(PROGRAM, err);
}
