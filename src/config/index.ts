// Public API of the config module: one TOML format for both roles, schema, defaults, load/merge/write.
export * from "./constants";
export { ConfigError, type ConfigErrorCode, type ConfigErrorDetails } from "./errors";
export { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../log/index.ts";
export {
  ACL_ACTIONS,
  APP_PROTOCOLS,
  ROLES,
  TLS_MODES,
  type AclRuleConfig,
  type AppConfig,
  type ClientConfig,
  type Config,
  type Role,
  type ServerConfig,
  type UserConfig,
} from "./schema";
export {
  checkRequired,
  defaultConfigPath,
  loadConfig,
  parseConfig,
  PROGRAM_NAMES,
  REQUIRED_CLIENT_SETTINGS,
  writeConfig,
  type LoadConfigOptions,
  type LoadedConfig,
} from "./load";
export { splitHostPort, type HostPort } from "./values";
export { normalizeHostName, parseExposeEntry, type ExposeHost, type ExposeRule } from "./expose";
export { canonicalJson, planReload, RELOADABLE_SETTINGS, reloadConfig, type ReloadInit, type ReloadPlan, type SettingPath } from "./reload";
