// SIGHUP in both programs: read the config again, once the program has started, and apply what it
// can while running (config/reload.ts says what that is and how a reload goes).
import { reloadConfig, type Config, type ReloadPlan } from "../config/index.ts";
import type { Logger } from "../log/index.ts";
import { onReload } from "./common.ts";

export interface ReloadOnSighupInit<Running> {
  logger: Logger;
  /** The config the program started with. */
  config: Config;
  /** Reads the config again: the same file, environment and flags. */
  load(): Config;
  /** The program's start; a SIGHUP before it is done waits for it instead of ending the process (the signal's default). */
  starting: Promise<Running>;
  /** Applies a new config's reloadable settings to the running program; returns what changed, in words. */
  apply(running: Running, next: Config, plan: ReloadPlan): Promise<string[]> | string[];
}

export function reloadOnSighup<Running>(init: ReloadOnSighupInit<Running>): void {
  let inForce = init.config;
  onReload(init.logger, async () => {
    const running = await init.starting;
    inForce = await reloadConfig({ logger: init.logger, running: inForce, load: init.load, apply: (next, plan) => init.apply(running, next, plan) });
  });
}
