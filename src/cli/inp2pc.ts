#!/usr/bin/env bun
import { writeSync } from "node:fs";
import cac from "cac";
import { loadConfig } from "../config/index.ts";
import { formatStatus, resolveServerHost, startClient, udpFlowIdleMsFrom, type ClientStatus, type RunningClient } from "../client/index.ts";
import { reloadOnSighup } from "./reload.ts";
import { VERSION } from "../protocol/index.ts";
import { detectNat, formatNatReport } from "../nat/index.ts";
import { BONJOUR_FLAG, BONJOUR_HELP, flagsToSettings, LOG_FLAGS, rawFlagValue, STUN_FLAGS, type FlagSpec } from "./args.ts";
import { addCommonOptions, exitWithError, makeLogger, onShutdown } from "./common.ts";
import { addDiagCommands } from "./diag.ts";
import { addDiscoverCommand } from "./discover.ts";
import { addUpgradeCommand, commandLine, type RunningProgram } from "./upgrade.ts";
import { confirmHealthy, RELEASE_TARGET, SelfUpgrade } from "../upgrade/index.ts";

const PROGRAM = "inp2pc";

const CLIENT_FLAGS: readonly FlagSpec[] = [
  { flag: "serverhost", key: "server_host", kind: "string" },
  { flag: "serverport", key: "server_port", kind: "number" },
  { flag: "node", key: "node", kind: "string" },
  { flag: "token", key: "token", kind: "string" },
  { flag: "insecure", key: "insecure", kind: "boolean" },
  { flag: "tls-fingerprint", key: "tls_fingerprint", kind: "string" },
  { flag: "relay", key: "relay", kind: "boolean" },
  { flag: "super", key: "super", kind: "boolean" },
  { flag: "relay-port", key: "relay_port", kind: "number" },
  { flag: "bw", key: "bw", kind: "number" },
  { flag: "status-port", key: "status_port", kind: "number" },
  BONJOUR_FLAG,
  ...STUN_FLAGS,
];

const { args, upgradeVersion } = commandLine(PROGRAM);
const cli = cac(PROGRAM);

/** The client config from file, environment and flags; commands that need only part of it pass requireAll false. */
function load(parsed: Record<string, unknown>, options: { newconfig?: boolean; requireAll?: boolean } = {}) {
  return loadConfig({
    role: "client",
    configPath: rawFlagValue(args, "config"),
    flags: { ...flagsToSettings(CLIENT_FLAGS, parsed, args), ...flagsToSettings(LOG_FLAGS, parsed, args) },
    ...options,
  });
}

async function run(parsed: Record<string, unknown>) {
  const loaded = load(parsed, { newconfig: Boolean(parsed.newconfig) });
  const { config } = loaded;
  const logger = makeLogger(config);
  if (loaded.wrote) logger.info("wrote config", { file: loaded.path });
  const settings = await resolveServerHost(loaded, logger);
  logger.info(`inp2pc ${VERSION} starting`, { node: settings.node, server: `${settings.server_host}:${settings.server_port}` });
  // A release binary upgrades itself when asked (status API, the server); run from source it cannot.
  const upgrade: SelfUpgrade | undefined =
    RELEASE_TARGET === undefined
      ? undefined
      : new SelfUpgrade({ program: PROGRAM, releaseUrl: settings.release_url, logger, stop: async () => client.stop(), resume: async () => void (client = await start()) });
  const start = (): Promise<RunningClient> =>
    startClient(
      { ...settings, udpFlowIdleMs: udpFlowIdleMsFrom(process.env), upgrade, autoUpgradeWindowS: settings.auto_upgrade ? settings.auto_upgrade_window_s : undefined },
      logger,
      VERSION,
      { online: () => confirmHealthy(VERSION) },
    );
  const starting = start();
  // After an upgrade's rollback `client` is a new one: reloads and the shutdown go to the one running.
  reloadOnSighup({ logger, config, load: () => load(parsed).config, starting, apply: (_, next) => client.reload(next.client!) });
  let client: RunningClient = await starting;
  onShutdown(logger, () => client.stop());
}

/** The inp2pc running with this config, through its status API. */
async function runningClient(parsed: Record<string, unknown>): Promise<RunningProgram | undefined> {
  const port = load(parsed, { requireAll: false }).config.client!.status_port;
  const base = `http://127.0.0.1:${port}/api/v1`;
  const state = async () => {
    const response = await fetch(`${base}/status`);
    return (await response.json()) as ClientStatus;
  };
  if (!(await state().catch(() => undefined))) return undefined;
  return {
    describe: `the inp2pc with its status API on 127.0.0.1:${port}`,
    state,
    upgrade: async (body) => {
      const response = await fetch(`${base}/upgrade`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      const answer = (await response.json()) as { error?: string; installed?: unknown };
      if (response.status === 404) throw new Error(`the running inp2pc on 127.0.0.1:${port} cannot upgrade itself (it runs from source, or is older than upgrades): stop it, then run "inp2pc upgrade" again`);
      if (!response.ok) throw new Error(answer.error ?? `the running inp2pc answered HTTP ${response.status}`);
      return answer as Awaited<ReturnType<RunningProgram["upgrade"]>>;
    },
  };
}

addCommonOptions(cli, "client");
cli
  .option("--serverhost <host>", 'inp2ps host name or address (required), or "auto": the one inp2ps advertising itself on this LAN (Bonjour), its TLS fingerprint pinned')
  .option("--serverport <port>", "inp2ps WebSocket port (default: 27183)")
  .option("--node <name>", "this node's name, unique per user (required)")
  .option("--token <token>", "the user's token, a uint64 (required; ps shows it to every local user: prefer INP2P_TOKEN or token_file)")
  .option("--insecure", "plain ws:// to the server, no TLS")
  .option("--tls-fingerprint <sha256>", "pin the server certificate's SHA-256 fingerprint")
  .option("--relay", "offer this node as a private relay, for its own user's nodes")
  .option("--super", "offer this node as a super relay, for every user's nodes")
  .option("--relay-port <port>", "relay listen port, TCP (default: 27185)")
  .option("--bw <mbps>", "relay bandwidth cap in Mbit/s (default: 10)")
  .option("--status-port <port>", "local status API port on 127.0.0.1 (default: 27186)")
  .option("--bonjour <true|false>", `advertise this node on its LAN (_inp2p-node._udp: name, user hash, peer ports; never a token) and link to LAN peers found there; ${BONJOUR_HELP}`);

cli.command("", "connect to the server and stay online").action((parsed) => run(parsed).catch((err) => exitWithError(PROGRAM, err)));

cli
  .command("status", "show the running inp2pc's server connection, NAT type, peer links and apps")
  .option("--json", "print JSON")
  .action(async (parsed) => {
    try {
      const { config } = load(parsed, { requireAll: false });
      const port = config.client!.status_port;
      let response: Response;
      try {
        response = await fetch(`http://127.0.0.1:${port}/api/v1/status`);
      } catch {
        throw new Error(`no inp2pc is running with its status API on 127.0.0.1:${port} (status_port in [client])`);
      }
      const status = (await response.json()) as ClientStatus;
      writeSync(1, (parsed.json ? JSON.stringify(status, null, 2) : formatStatus(status)) + "\n");
      process.exit(0);
    } catch (err) {
      exitWithError(PROGRAM, err);
    }
  });

cli
  .command("nat", "detect this host's NAT type against the server's STUN ports, then exit")
  .option("--json", "print JSON")
  .action(async (parsed) => {
    try {
      const loaded = load(parsed, { requireAll: false });
      if (!loaded.config.client!.server_host) throw new Error("give --serverhost (or server_host in the config, or INP2P_SERVER)");
      const settings = await resolveServerHost(loaded, makeLogger({ ...loaded.config, log_level: "warn" }));
      const report = await detectNat({
        serverHost: settings.server_host,
        udpPorts: [settings.stun_udp1, settings.stun_udp2],
        tcpPorts: [settings.stun_tcp1, settings.stun_tcp2],
      });
      writeSync(1, (parsed.json ? JSON.stringify(report, null, 2) : formatNatReport(report)) + "\n");
      process.exit(0);
    } catch (err) {
      exitWithError(PROGRAM, err);
    }
  });

addDiagCommands(cli, PROGRAM, load);
addUpgradeCommand(cli, { program: PROGRAM, releaseUrl: (parsed) => load(parsed, { requireAll: false }).config.client!.release_url, running: runningClient }, upgradeVersion);
addDiscoverCommand(cli, PROGRAM);

try {
  cli.parse(["bun", PROGRAM, ...args]);
} catch (err) {
  exitWithError(PROGRAM, err);
}
