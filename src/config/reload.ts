// Reloading a running program's config (SIGHUP): what changed, what can be applied without a restart,
// and the steps every reload takes whatever the role: read, refuse a bad file, apply, say what changed.
import { moreVerbose, type Logger } from "../log/index.ts";
import type { Config, Role } from "./schema";

/** A setting by its key path: "log_level", "client.apps", "server.acl". */
export type SettingPath = string;

/**
 * What each program applies while running (client/reload.ts, server/reload.ts); every other changed
 * setting waits for a restart (ports, TLS, the node's name, tokens and users, sdwan, data_dir...).
 */
export const RELOADABLE_SETTINGS: Record<Role, readonly SettingPath[]> = {
  client: ["log_level", "client.apps", "client.expose"],
  server: [
    "log_level",
    "server.acl",
    "server.admission",
    "server.auto_approve",
    "server.pairing_expiry_s",
    "server.trusted_relays",
    "server.prefer_super_relays",
    "server.metrics_allow",
    "server.latest_version",
  ],
};

export interface ReloadPlan {
  /** Settings that can be applied while running, and whose value changed. */
  changed: SettingPath[];
  /** Settings that changed but take effect only at the next start. */
  restartOnly: SettingPath[];
  /** The config in force once the plan is applied: the new reloadable settings, the old values of the rest. */
  inForce: Config;
}

/** JSON with object keys sorted and bigints as strings: two equal settings give the same text, whatever the key order in the file. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item === "bigint") return item.toString();
    if (item === null || typeof item !== "object" || Array.isArray(item)) return item;
    return Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}

/** The settings of a config by key path: the top-level ones, and each key of the role's table. */
function settingsOf(config: Config): Map<SettingPath, unknown> {
  const settings = new Map<SettingPath, unknown>([
    ["log_level", config.log_level],
    ["log_format", config.log_format],
  ]);
  for (const [key, value] of Object.entries(config[config.role] ?? {})) settings.set(`${config.role}.${key}`, value);
  return settings;
}

/** Compares the running config with a newly read one (same role); `reloadable` names what can be applied while running. */
export function planReload(running: Config, next: Config, reloadable: readonly SettingPath[] = RELOADABLE_SETTINGS[running.role]): ReloadPlan {
  const before = settingsOf(running);
  const after = settingsOf(next);
  const changed: SettingPath[] = [];
  const restartOnly: SettingPath[] = [];
  for (const path of new Set([...before.keys(), ...after.keys()])) {
    if (canonicalJson(before.get(path)) === canonicalJson(after.get(path))) continue;
    (reloadable.includes(path) ? changed : restartOnly).push(path);
  }
  changed.sort();
  restartOnly.sort();
  const role = running.role;
  const table: Record<string, unknown> = { ...running[role] };
  for (const path of changed) {
    if (!path.startsWith(`${role}.`)) continue;
    const key = path.slice(role.length + 1);
    if (after.has(path)) table[key] = after.get(path);
    else delete table[key];
  }
  const inForce: Config = { ...running, [role]: table };
  if (changed.includes("log_level")) inForce.log_level = next.log_level;
  return { changed, restartOnly, inForce };
}

export interface ReloadInit {
  logger: Logger;
  /** The config in force now. */
  running: Config;
  /** Reads the config again: the same file, environment and flags as at start. Throws ConfigError for a bad one. */
  load(): Config;
  /** Applies the reloadable settings of `next` (the log level is done here); returns what changed in words ("apps +a -b", "expose"). */
  apply(next: Config, plan: ReloadPlan): Promise<string[]> | string[];
}

/**
 * One reload: read the config; a bad one is refused with the reason and the running config stays in
 * force untouched; else the reloadable settings are applied, each changed setting that needs a restart
 * is named, and the changes are logged. Resolves with the config in force afterwards; never rejects.
 */
export async function reloadConfig(init: ReloadInit): Promise<Config> {
  const { logger, running } = init;
  let next: Config;
  try {
    next = init.load();
  } catch (err) {
    logger.error("config not reloaded, the running config stays in force", { error: (err as Error).message });
    return running;
  }
  const plan = planReload(running, next);
  if (plan.restartOnly.length > 0) logger.warn(`config changes not applied: ${plan.restartOnly.join(", ")}; restart to apply`);
  // The new level first, so that what applying logs follows it; the summary is said at the more verbose of the two.
  logger.setLevel(next.log_level);
  let changes: string[];
  try {
    changes = await init.apply(next, plan);
  } catch (err) {
    // Applying is idempotent: compared with the running config, the next reload applies it all again.
    logger.error("config reload failed part way; the next reload tries again", { error: (err as Error).message });
    return running;
  }
  if (plan.changed.includes("log_level")) changes.push(`log level ${next.log_level}`);
  logger.setLevel(moreVerbose(running.log_level, next.log_level));
  logger.info(`reloaded config: ${changes.length > 0 ? changes.join(", ") : "no changes"}`);
  logger.setLevel(next.log_level);
  return plan.inForce;
}
