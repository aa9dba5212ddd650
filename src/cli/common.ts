import { writeSync } from "node:fs";
import type { CAC } from "cac";
import { ConfigError } from "../config/index.ts";
import { releaseKeyFingerprint } from "../crypto/index.ts";
import { createLogger, type LogFormat, type Logger, type LogLevel } from "../log/index.ts";
import { VERSION } from "../protocol/index.ts";
import { STUN_FLAGS } from "./args.ts";

export const EXIT_USAGE = 2;
export const EXIT_FAILURE = 1;

export function addCommonOptions(cli: CAC, role: "server" | "client"): void {
  const file = role === "server" ? "inp2ps.toml" : "inp2pc.toml";
  cli
    .option("--config <path>", `TOML config file (default: ./${file}; read when present)`)
    .option("--newconfig", "ignore an existing config file and write a new one from the flags")
    .option("--log-level <level>", "debug | info | warn | error (default: info)")
    .option("--log-format <format>", "text | json (default: text)");
  const stunDefaults = ["27182", "27183", "27180", "27181"];
  STUN_FLAGS.forEach((spec, i) =>
    cli.option(`--${spec.flag} <port>`, `${role === "server" ? "serve" : "the server's"} STUN ${spec.flag.slice(5, 8).toUpperCase()} port ${spec.flag.at(-1)} (default: ${stunDefaults[i]})`),
  );
  cli.help();
  cli.version(VERSION);
  // cac names the runtime by process.version, which under Bun is the Node version it mimics.
  cli.outputVersion = () => writeSync(1, `${versionLine(cli.name)}\nrelease signing key: ed25519 sha256:${releaseKeyFingerprint()}\n`);
}

/** What --version prints: the product's version, and the Bun it runs on (compiled in, for a built binary). */
export function versionLine(program: string): string {
  return `${program}/${VERSION} (bun ${Bun.version}, ${process.platform}-${process.arch})`;
}

export function makeLogger(config: { log_level: LogLevel; log_format: LogFormat }): Logger {
  return createLogger({ level: config.log_level, format: config.log_format });
}

/** Writes to stderr synchronously: an asynchronous write to a pipe is lost when process.exit follows. */
export function printError(text: string): void {
  writeSync(2, text.endsWith("\n") ? text : text + "\n");
}

/** A command's arguments are wrong: printed with a pointer to --help, exit code EXIT_USAGE. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Prints an error the way a user should see it, and exits. */
export function exitWithError(program: string, err: unknown): never {
  const error = err as Error & { name?: string };
  if (err instanceof ConfigError) {
    printError(`${program}: ${error.message}`);
    process.exit(EXIT_USAGE);
  }
  if (err instanceof UsageError) {
    printError(`${program}: ${error.message} (see ${program} --help)`);
    process.exit(EXIT_USAGE);
  }
  if (error?.name === "CACError") {
    const unused = error.message.match(/^Unused args: (.*)$/);
    // cac reports options camel-cased (--bogusFlag); name them as the user typed them.
    const text = unused
      ? `unknown command or extra argument ${unused[1]}`
      : error.message.replace(/`--([A-Za-z0-9]+)`/g, (_, name: string) => `--${name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}`).replace(/`/g, "");
    printError(`${program}: ${text} (see ${program} --help)`);
    process.exit(EXIT_USAGE);
  }
  printError(`${program}: ${error?.message ?? String(err)}`);
  process.exit(EXIT_FAILURE);
}

/** Runs `stop` once on SIGINT/SIGTERM, then exits. */
export function onShutdown(logger: Logger, stop: () => Promise<void> | void): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(`received ${signal}; shutting down`);
    Promise.resolve(stop()).finally(() => process.exit(0));
  };
  process.on("SIGINT", () => handler("SIGINT"));
  process.on("SIGTERM", () => handler("SIGTERM"));
}

/**
 * Adds a SIGHUP handler that runs `reload`, one at a time: a SIGHUP during a reload runs it once more afterwards
 * (however many came). What it throws is logged.
 */
export function onReload(logger: Logger, reload: () => Promise<void>): void {
  let running = false;
  let again = false;
  const run = async () => {
    running = true;
    do {
      again = false;
      logger.info("received SIGHUP; reloading the config");
      await reload().catch((err: Error) => logger.error("config reload failed", { error: err.message }));
    } while (again);
    running = false;
  };
  process.on("SIGHUP", () => {
    if (running) again = true;
    else void run();
  });
}
