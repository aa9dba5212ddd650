// `inp2pc upgrade` and `inp2ps upgrade`: check for, install and restart into a newer release. With the
// program running (its local API answers), the running program does the upgrade and restarts itself
// (src/upgrade/restart.ts), and this command waits for the new version to come up or the rollback.
// Without it, this command replaces the binary, and the next start runs the new one.

import { writeSync } from "node:fs";
import type { CAC } from "cac";
import { isVersion, VERSION } from "../protocol/index.ts";
import { checkUpgrade, installUpgrade, UPGRADE_HEALTH_TIMEOUT_MS, type Installed, type Program, type UpgradeState } from "../upgrade/index.ts";
import { normalizeArgv, rawFlagValue } from "./args.ts";
import { exitWithError, UsageError } from "./common.ts";

/** How long the command waits for the restarted program, beyond the health check's own bound. */
const RESTART_WAIT_MARGIN_MS = 30_000;
const RESTART_POLL_INTERVAL_MS = 200;

export interface UpgradeRequestBody {
  version?: string;
  url?: string;
}

/** The running program, reached through its local API. */
export interface RunningProgram {
  /** "the inp2pc with its status API on 127.0.0.1:27186" */
  describe: string;
  upgrade(body: UpgradeRequestBody): Promise<{ installed: Installed | null }>;
  /** Its version and last upgrade; undefined while it does not answer (restarting). */
  state(): Promise<{ version: string; upgrade: UpgradeState | null } | undefined>;
}

export interface UpgradeCommandInit {
  program: Program;
  /** release_url from the config. */
  releaseUrl(parsed: Record<string, unknown>): string;
  /** The running program, or undefined when none answers. */
  running(parsed: Record<string, unknown>): Promise<RunningProgram | undefined>;
}

/**
 * cac's global -v/--version is a flag; `upgrade --version V` takes a value. The value is taken out of
 * the arguments before cac parses them.
 */
export function takeUpgradeVersion(args: string[]): { args: string[]; version: string | undefined } {
  if (args[0] !== "upgrade") return { args, version: undefined };
  const version = rawFlagValue(args, "version");
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--version") i++;
    else if (!args[i]!.startsWith("--version=")) rest.push(args[i]!);
  }
  if (version === undefined && rest.length !== args.length) throw new UsageError("upgrade --version needs a version, such as --version 1.2.3");
  return { args: rest, version };
}

/** The program's arguments, normalized, with `upgrade --version V` taken out; exits with a usage error on a bad one. */
export function commandLine(program: string): { args: string[]; upgradeVersion: string | undefined } {
  try {
    const { args, version } = takeUpgradeVersion(normalizeArgv(process.argv.slice(2)));
    return { args, upgradeVersion: version };
  } catch (err) {
    exitWithError(program, err);
  }
}

const print = (text: string) => writeSync(1, text.endsWith("\n") ? text : `${text}\n`);

async function waitForRestart(program: Program, running: RunningProgram, installed: Installed): Promise<void> {
  const deadline = Date.now() + UPGRADE_HEALTH_TIMEOUT_MS + RESTART_WAIT_MARGIN_MS;
  while (Date.now() < deadline) {
    const state = await running.state().catch(() => undefined);
    if (state?.version === installed.to) return void print(`${program} ${installed.to} is running`);
    if (state?.upgrade && state.upgrade.to === installed.to && (state.upgrade.state === "rolled-back" || state.upgrade.state === "failed")) {
      throw new Error(`the upgrade to ${installed.to} did not come up: ${state.upgrade.error}; ${program} ${state.version} runs again`);
    }
    await new Promise((r) => setTimeout(r, RESTART_POLL_INTERVAL_MS));
  }
  throw new Error(`${running.describe} did not come back as ${installed.to} within ${(UPGRADE_HEALTH_TIMEOUT_MS + RESTART_WAIT_MARGIN_MS) / 1000} s: check its log`);
}

async function runUpgrade(init: UpgradeCommandInit, parsed: Record<string, unknown>, version: string | undefined): Promise<void> {
  const { program } = init;
  if (version !== undefined && !isVersion(version)) throw new UsageError(`--version ${version} is not a version such as 1.2.3`);
  const urlFlag = typeof parsed.url === "string" ? parsed.url : undefined;
  const url = urlFlag ?? init.releaseUrl(parsed);
  if (parsed.check) {
    const check = await checkUpgrade({ releaseUrl: url, version });
    print(
      check.newer
        ? `${program} ${check.latest} is available (this is ${check.current}): run "${program} upgrade"`
        : `${program} ${check.current} is up to date (the newest release at ${url} is ${check.latest})`,
    );
    return;
  }
  const running = await init.running(parsed);
  if (running) {
    const { installed } = await running.upgrade({ version, url: urlFlag });
    if (!installed) return void print(`${program} ${VERSION} is up to date: the running ${program} has the newest release at ${url}`);
    print(`installed ${program} ${installed.to} over ${installed.from} at ${installed.path} (the old one is kept as ${installed.previous}); ${running.describe} restarts into it`);
    return waitForRestart(program, running, installed);
  }
  const installed = await installUpgrade(program, { releaseUrl: url, version });
  if (!installed) return void print(`${program} ${VERSION} is up to date (the newest release at ${url})`);
  print(
    `upgraded ${installed.path} from ${installed.from} to ${installed.to} (the old one is kept as ${installed.previous}); ` +
      `no running ${program} answered, so nothing was restarted: the next start runs ${installed.to}`,
  );
}

export function addUpgradeCommand(cli: CAC, init: UpgradeCommandInit, version: string | undefined): void {
  cli
    .command("upgrade", `upgrade ${init.program} to the newest release (or --version), checking its signature and checksums; a running ${init.program} restarts into it and goes back to the old binary (kept as <binary>.previous) when the new one does not come up`)
    .option("--check", "only say whether a newer release exists")
    .option("--version <version>", "upgrade (or downgrade) to this release instead of the newest")
    .option("--url <url>", "where releases live (default: release_url of the config)")
    .action(async (parsed) => {
      try {
        await runUpgrade(init, parsed, version);
        process.exit(0);
      } catch (err) {
        exitWithError(init.program, err);
      }
    });
}
