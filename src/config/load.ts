import { existsSync, readFileSync } from "node:fs";
import { writeSecretFile } from "../crypto/index.ts";
import { dirname, resolve } from "node:path";
import { parse, stringify, TomlError } from "smol-toml";
import type * as z from "zod";
import * as C from "./constants";
import { ConfigError } from "./errors";
import { fileWhere, formatKeyPath, issuesToError, knownKeysAt, suggestKey, type KeyPath } from "./format";
import { tokenValue } from "./values";
import {
  clientSchema,
  fileSchema,
  serverSchema,
  topShape,
  type ClientConfig,
  type Config,
  type Role,
  type ServerConfig,
} from "./schema";

export const PROGRAM_NAMES: Record<Role, string> = { server: "inp2ps", client: "inp2pc" };

/** How each required client setting can be given; used in CONFIG_MISSING messages. */
export const REQUIRED_CLIENT_SETTINGS = [
  { key: "server_host", flag: "--serverhost", env: C.ENV_SERVER, fileKeys: "server_host" },
  { key: "node", flag: "--node", env: C.ENV_NODE, fileKeys: "node" },
  { key: "token", flag: "--token", env: C.ENV_TOKEN, fileKeys: "token (or token_file)" },
] as const;

const TABLE_SCHEMAS = { server: serverSchema, client: clientSchema } as const;
// Optional string settings where "" means "not set"; they become absent keys.
const EMPTY_MEANS_UNSET: Record<Role, readonly string[]> = {
  server: ["token", "token_file", "admin_token", "tls_cert", "tls_key"],
  client: ["token_file", "tls_fingerprint"],
};
const PATH_KEYS = ["data_dir", "token_file", "tls_cert", "tls_key"];
// A token from a flag or the environment replaces the file's token_file, and the other way round.
const TOKEN_SOURCES: Record<string, string> = { token: "token_file", token_file: "token" };
const TOP_LEVEL_SETTINGS = ["log_level", "log_format"] as const;

export interface LoadConfigOptions {
  role: Role;
  /** undefined => defaultConfigPath(role); a missing default file is fine, a missing explicit one is not. */
  configPath?: string;
  /** Settings of the role's table by their TOML names (e.g. { ws_port: 9000 }), plus log_level / log_format. */
  flags?: Record<string, unknown>;
  /** Default process.env. */
  env?: Record<string, string | undefined>;
  /** Ignore an existing file; build from flags, environment and defaults, and write the result to the path. */
  newconfig?: boolean;
  /** Default true. Commands that need only part of a client config (inp2pc nat) turn it off. */
  requireAll?: boolean;
}

export interface LoadedConfig {
  config: Config;
  path: string;
  fromFile: boolean;
  wrote: boolean;
}

export function defaultConfigPath(role: Role): string {
  return resolve(process.cwd(), role === "server" ? C.SERVER_CONFIG_FILE : C.CLIENT_CONFIG_FILE);
}

function parseToml(text: string, file: string): Record<string, unknown> {
  try {
    // "asNeeded": integers beyond 2^53 (uint64 tokens) arrive as bigint instead of losing digits.
    return parse(text, { integersAsBigInt: "asNeeded" });
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    const reason = error.message.split("\n")[0]!.replace(/^Invalid TOML document:\s*/, "");
    const context = error.codeblock.trimEnd().replace(/^/gm, "    ");
    throw new ConfigError("CONFIG_SYNTAX", `${file}:${error.line}:${error.column}: invalid TOML: ${reason}\n${context}`, {
      file,
      line: error.line,
    });
  }
}

/** Drops "" optional strings and resolves relative paths against baseDir. */
function finishTable<T extends ServerConfig | ClientConfig>(role: Role, table: T, baseDir: string): T {
  const out: Record<string, unknown> = { ...table };
  for (const key of EMPTY_MEANS_UNSET[role]) if (out[key] === "") delete out[key];
  for (const key of PATH_KEYS) {
    const value = out[key];
    if (typeof value === "string" && value !== "") out[key] = resolve(baseDir, value);
  }
  return out as T;
}

function validateFile(raw: Record<string, unknown>, file: string, text: string): Config {
  const result = fileSchema.safeParse(raw, { reportInput: true });
  if (!result.success) throw issuesToError(result.error.issues, { where: fileWhere(file, text), file, text });
  const { role, log_level, log_format } = result.data;
  const other: Role = role === "server" ? "client" : "server";
  if (result.data[other] !== undefined) {
    throw new ConfigError("CONFIG_ROLE", `${file}: role is "${role}" but the file has a [${other}] table; a ${role} config holds only [${role}]`, {
      file,
      keyPath: other,
    });
  }
  const table = result.data[role];
  if (table === undefined) {
    throw new ConfigError("CONFIG_SCHEMA", `${file}: missing table [${role}] (role is "${role}"; the table may be empty)`, {
      file,
      keyPath: role,
    });
  }
  const finished = finishTable(role, table, dirname(file));
  if (finished.data_dir === "") finished.data_dir = dirname(file);
  return { role, log_level, log_format, [role]: finished };
}

/** Parses and validates one file's text: syntax, schema, role/table consistency. No merging. */
export function parseConfig(text: string, file: string): Config {
  return validateFile(parseToml(text, file), file, text);
}

function defaultsFor(role: Role): Config {
  // A server config inp2ps writes itself admits by approval; a file without the key keeps token admission.
  const data = fileSchema.parse({ role, [role]: role === "server" ? { admission: C.NEW_CONFIG_ADMISSION } : {} });
  return { role, log_level: data.log_level, log_format: data.log_format, [role]: data[role] };
}

// A setting given outside the file: a flag or an environment variable.
interface Overlay {
  source: string; // "--ws-port", "INP2P_TOKEN"
  key: string;
  value: unknown;
}

function coerceString(text: string): unknown {
  if (/^-?\d+$/.test(text)) {
    const n = Number(text);
    return Number.isSafeInteger(n) ? n : BigInt(text);
  }
  if (/^-?\d*\.\d+$/.test(text)) return Number(text);
  if (text === "true") return true;
  if (text === "false") return false;
  return undefined;
}

// Flags and environment variables arrive as strings; try the value as given, then as a number/boolean.
function parseSetting(schema: z.ZodType, value: unknown) {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success || typeof value !== "string") return result;
  const coerced = coerceString(value);
  if (coerced === undefined) return result;
  const retry = schema.safeParse(coerced);
  return retry.success ? retry : result;
}

function applyOverlay(config: Config, overlay: Overlay): void {
  const role = config.role;
  const isTop = (TOP_LEVEL_SETTINGS as readonly string[]).includes(overlay.key);
  const basePath: KeyPath = isTop ? [overlay.key] : [role, overlay.key];
  const shape: Record<string, z.ZodType> = isTop ? topShape : TABLE_SCHEMAS[role].shape;
  const schema = Object.hasOwn(shape, overlay.key) ? shape[overlay.key] : undefined;
  if (schema === undefined) {
    const suggestion = suggestKey(overlay.key, knownKeysAt([role]));
    const hint = suggestion === undefined ? "" : ` — did you mean ${role}.${suggestion}?`;
    throw new ConfigError("CONFIG_UNKNOWN_KEY", `${overlay.source}: unknown setting ${formatKeyPath(basePath)}${hint}`, {
      keyPath: formatKeyPath(basePath),
    });
  }
  const result = parseSetting(schema, overlay.value);
  if (!result.success) throw issuesToError(result.error.issues, { where: () => overlay.source, basePath });
  let value = result.data;
  if (isTop) {
    Object.assign(config, { [overlay.key]: value });
    return;
  }
  if (PATH_KEYS.includes(overlay.key) && typeof value === "string" && value !== "") value = resolve(value);
  const table: Record<string, unknown> = { ...config[role] };
  if (value === "" && EMPTY_MEANS_UNSET[role].includes(overlay.key)) delete table[overlay.key];
  else table[overlay.key] = value;
  const replaced = TOKEN_SOURCES[overlay.key];
  if (replaced !== undefined && value !== "") delete table[replaced];
  Object.assign(config, { [role]: table });
}

function flagName(key: string): string {
  return `--${key.replace(/_/g, "-")}`;
}

function envOverlays(role: Role, env: Record<string, string | undefined>): Overlay[] {
  const overlays: Overlay[] = [];
  const token = env[C.ENV_TOKEN];
  if (token) overlays.push({ source: C.ENV_TOKEN, key: "token", value: token });
  if (env[C.ENV_DISABLE_BONJOUR] === "1") overlays.push({ source: C.ENV_DISABLE_BONJOUR, key: "bonjour", value: false });
  if (role !== "client") return overlays;
  const node = env[C.ENV_NODE];
  if (node) overlays.push({ source: C.ENV_NODE, key: "node", value: node });
  const server = env[C.ENV_SERVER];
  if (server) {
    // "host:port" or "[v6]:port" sets both; anything else (a host, a bare IPv6 address) is the host.
    const match = /^(\[[^\]]*\]|[^:]*):([^:]*)$/.exec(server);
    if (match) {
      overlays.push({ source: C.ENV_SERVER, key: "server_host", value: match[1] });
      overlays.push({ source: C.ENV_SERVER, key: "server_port", value: match[2] });
    } else overlays.push({ source: C.ENV_SERVER, key: "server_host", value: server });
  }
  return overlays;
}

/** Loads the config for `role`: flags > environment > TOML > defaults, validated, client fields checked. */
export function loadConfig(opts: LoadConfigOptions): LoadedConfig {
  const { role } = opts;
  const explicit = opts.configPath !== undefined;
  const path = resolve(opts.configPath ?? defaultConfigPath(role));
  const env = opts.env ?? process.env;

  let config: Config;
  let fromFile = false;
  if (!opts.newconfig && existsSync(path)) {
    const text = readFileSync(path, "utf8");
    const raw = parseToml(text, path);
    if ((raw.role === "server" || raw.role === "client") && raw.role !== role) {
      throw new ConfigError("CONFIG_ROLE", `${path}: role is "${raw.role}" but ${PROGRAM_NAMES[role]} needs a ${role} config`, {
        file: path,
        keyPath: "role",
      });
    }
    config = validateFile(raw, path, text);
    fromFile = true;
  } else if (!opts.newconfig && explicit) {
    throw new ConfigError("CONFIG_NOT_FOUND", `${path}: config file not found (check the path, or give --newconfig to create it)`, {
      file: path,
    });
  } else {
    config = defaultsFor(role);
  }

  const overlays = envOverlays(role, env);
  for (const [key, value] of Object.entries(opts.flags ?? {})) {
    if (value !== undefined) overlays.push({ source: flagName(key), key, value });
  }
  for (const overlay of overlays) applyOverlay(config, overlay);

  // Checks across settings (ports, heartbeat, users, apps) again, now that flags and env are in.
  if (overlays.length > 0) {
    const result = TABLE_SCHEMAS[role].safeParse(config[role], { reportInput: true });
    if (!result.success) {
      const where = fromFile ? `${path} + flags/environment` : "flags/environment";
      throw issuesToError(result.error.issues, { where: () => where, basePath: [role], file: path });
    }
    Object.assign(config, { [role]: finishTable(role, result.data, dirname(path)) });
  }
  const table = config[role]!;
  if (table.data_dir === "") table.data_dir = dirname(path);
  if (table.token_file) table.token = readTokenFile(role, table.token_file, fromFile ? path : "flags/environment");

  if (opts.requireAll !== false || opts.newconfig) checkRequired(config, path);
  let wrote = false;
  if (opts.newconfig) {
    writeConfig(path, config);
    wrote = true;
  }
  return { config, path, fromFile, wrote };
}

/** The token in a token_file: trimmed, and a valid token, or an error naming the key and the file (never its content). */
function readTokenFile(role: Role, file: string, where: string): string {
  const keyPath = `${role}.token_file`;
  const fail = (problem: string) => new ConfigError("CONFIG_SCHEMA", `${where}: ${keyPath}: ${problem}`, { file: where, keyPath });
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw fail(`cannot read ${file}: ${(err as Error).message}`);
  }
  const token = text.trim();
  if (token === "") throw fail(`${file} is empty: put this node's user token in it`);
  const result = tokenValue.safeParse(token);
  if (!result.success) throw fail(`${file} does not hold a token: expected a token: an integer 1..${C.MAX_UINT64}`);
  return result.data;
}

/** The role's table must exist; a client needs server_host, node and token. All missing ones are named. */
export function checkRequired(config: Config, file?: string): void {
  const where = file ?? "the config file";
  const table = config[config.role];
  if (table === undefined) {
    throw new ConfigError("CONFIG_MISSING", `missing [${config.role}] table: add it to ${where}`, { file, keyPath: config.role });
  }
  if (config.role !== "client" || config.client === undefined) return;
  const client = config.client;
  const missing = REQUIRED_CLIENT_SETTINGS.filter((s) => client[s.key] === "");
  if (missing.length === 0) return;
  const lines = missing.map((s) => `missing client.${s.key}: give ${s.flag}, set ${s.env}, or add ${s.fileKeys} to [client] in ${where}`);
  throw new ConfigError("CONFIG_MISSING", lines.join("\n"), { file, keyPath: `client.${missing[0]!.key}` });
}

// Absent optional keys and empty users/apps lists are left out of a written file.
function withoutEmpty(table: object): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(table).filter(([, value]) => value !== undefined && !(Array.isArray(value) && value.length === 0)),
  );
}

/** Writes TOML atomically, mode 0600 because it holds tokens; parent dir 0700. */
export function writeConfig(path: string, config: Config): void {
  const file = resolve(path);
  const dir = dirname(file);
  const table = withoutEmpty(config[config.role] ?? {});
  // A token read from token_file stays in that file.
  if (table.token_file) delete table.token;
  // The default data_dir is the file's own directory; leave it implicit so the file can be moved.
  if (table.data_dir === dir) delete table.data_dir;
  const document = { role: config.role, log_level: config.log_level, log_format: config.log_format, [config.role]: table };
  const program = PROGRAM_NAMES[config.role];
  const header = `# inp2p ${config.role} config written by ${program}; it holds tokens, keep it private.\n# Every key is described in ${program}.example.toml.\n\n`;
  const text = header + stringify(document);
  writeSecretFile(file, text);
}
