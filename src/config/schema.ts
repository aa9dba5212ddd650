import { isIP } from "node:net";
import * as z from "zod";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../log/index.ts";
import { NODE_NAME_PATTERN } from "../protocol/index.ts";
import { cidrContains, ipToNumber, parseCidr } from "../sdwan/packet.ts";
import * as C from "./constants";
import {
  aclSelectorValue,
  booleanValue,
  describeValue,
  cidrValue,
  exposeValue,
  enumValue,
  fingerprintValue,
  hostPortValue,
  hostValue,
  httpUrlValue,
  interfaceNameValue,
  intInRange,
  ipv4CidrValue,
  ipv4Value,
  nameValue,
  optionalNameValue,
  optionalTokenValue,
  pathValue,
  positiveNumber,
  versionValue,
  relayNameValue,
  stringValue,
  tokenValue,
} from "./values";

export const ROLES = ["server", "client"] as const;
export const TLS_MODES = ["auto", "off"] as const;
export const APP_PROTOCOLS = ["tcp", "udp"] as const;
export const ACL_ACTIONS = ["allow", "deny"] as const;
/** How nodes get in: any node with its user's token, or each new name and key approved by the admin. */
export const ADMISSION_MODES = ["token", "approve"] as const;
/** Kinds of peer path a node may use: direct (or punched) UDP and TCP, and relays. */
export const PEER_TRANSPORTS = ["udp", "tcp", "relay"] as const;

export type Role = (typeof ROLES)[number];

const port = (fallback: number) => intInRange(C.MIN_PORT, C.MAX_PORT).default(fallback);

/** An IP address, IPv6 bare or in brackets (no host names: STUN tells clients its own address); "" = not set. */
const optionalIpValue = z.unknown().transform((value, ctx) => {
  if (value === "") return undefined;
  const ip = typeof value === "string" ? value.replace(/^\[(.*)\]$/, "$1") : "";
  if (isIP(ip) !== 0) return ip;
  ctx.addIssue({ code: "custom", message: `expected an IP address (IPv4 or IPv6), got ${describeValue(value)}`, input: value });
  return z.NEVER;
});
const WILDCARD_ADDRESSES = ["0.0.0.0", "::"];

export const userSchema = z.strictObject({
  name: nameValue,
  token: tokenValue,
});

/** `[[server.acl]]`: which nodes of `user` may ask for a link to which; see server/acl.ts. */
export const aclRuleSchema = z.strictObject({
  name: nameValue.optional(),
  user: nameValue.default(C.DEFAULT_USER_NAME),
  from: z.array(aclSelectorValue).min(1, "expected at least one selector"),
  to: z.array(aclSelectorValue).min(1, "expected at least one selector"),
  action: enumValue(ACL_ACTIONS),
});

/** `[server.sdwan]`: the virtual network's subnet, fixed addresses by node name, and how long addresses stay reserved. */
export const serverSdwanSchema = z.strictObject({
  subnet: ipv4CidrValue,
  static: z.record(z.string(), ipv4Value).default({}),
  reserve_hours: intInRange(0, C.MAX_SDWAN_RESERVE_HOURS).default(C.DEFAULT_SDWAN_RESERVE_HOURS),
});

/** `[client.sdwan]`: the TUN interface and the LAN subnets this node routes for the others. */
export const clientSdwanSchema = z.strictObject({
  enabled: booleanValue.default(false),
  name: interfaceNameValue.default(C.DEFAULT_SDWAN_INTERFACE),
  mtu: intInRange(C.MIN_SDWAN_MTU, C.MAX_SDWAN_MTU).default(C.DEFAULT_SDWAN_MTU),
  routes: z.array(ipv4CidrValue).max(C.MAX_SDWAN_ROUTES).default([]),
  eager: booleanValue.default(false),
});

// Empty strings in optional string fields mean "not set"; loading turns them into absent keys.
export const serverShape = {
  token: optionalTokenValue.optional(),
  token_file: pathValue.optional(),
  listen: hostValue(false).default(C.DEFAULT_SERVER_LISTEN),
  ws_port: port(C.DEFAULT_WS_PORT),
  stun_udp1: port(C.DEFAULT_STUN_UDP1_PORT),
  stun_udp2: port(C.DEFAULT_STUN_UDP2_PORT),
  stun_tcp1: port(C.DEFAULT_STUN_TCP1_PORT),
  stun_tcp2: port(C.DEFAULT_STUN_TCP2_PORT),
  stun_ip: optionalIpValue.optional(),
  stun_alt_ip: optionalIpValue.optional(),
  data_dir: pathValue.default(""),
  tls: enumValue(TLS_MODES).default(C.DEFAULT_TLS_MODE),
  tls_cert: pathValue.optional(),
  tls_key: pathValue.optional(),
  admin_token: stringValue.optional(),
  heartbeat_interval_ms: intInRange(C.MIN_HEARTBEAT_INTERVAL_MS, C.MAX_HEARTBEAT_INTERVAL_MS).default(
    C.DEFAULT_HEARTBEAT_INTERVAL_MS,
  ),
  heartbeat_timeout_ms: intInRange(1, C.MAX_HEARTBEAT_TIMEOUT_MS).default(C.DEFAULT_HEARTBEAT_TIMEOUT_MS),
  max_conns_per_ip: intInRange(1, C.MAX_CONNS_PER_IP_LIMIT).default(C.DEFAULT_MAX_CONNS_PER_IP),
  max_conns_before_login: intInRange(1, C.MAX_CONNS_PER_IP_LIMIT).default(C.DEFAULT_MAX_CONNS_BEFORE_LOGIN),
  login_rate: intInRange(1, C.MAX_LOGIN_RATE_PER_S).default(C.DEFAULT_LOGIN_RATE_PER_S),
  login_burst: intInRange(1, C.MAX_LOGIN_RATE_PER_S).default(C.DEFAULT_LOGIN_BURST),
  users: z.array(userSchema).default([]),
  relay: booleanValue.default(C.DEFAULT_SERVER_RELAY),
  relay_port: port(C.DEFAULT_SERVER_RELAY_PORT),
  relay_bw: positiveNumber(C.MAX_BW_MBPS).default(C.DEFAULT_SERVER_RELAY_BW_MBPS),
  trusted_relays: z.array(relayNameValue).default([]),
  prefer_super_relays: booleanValue.default(C.DEFAULT_PREFER_SUPER_RELAYS),
  sdwan: serverSdwanSchema.optional(),
  acl: z.array(aclRuleSchema).default([]),
  admission: enumValue(ADMISSION_MODES).default(C.DEFAULT_ADMISSION),
  auto_approve: z.array(cidrValue).max(C.MAX_AUTO_APPROVE_CIDRS).default([]),
  trusted_proxies: z.array(cidrValue).max(C.MAX_TRUSTED_PROXY_CIDRS).default([]),
  metrics_allow: z.array(cidrValue).max(C.MAX_METRICS_ALLOW_CIDRS).default([]),
  pairing_expiry_s: intInRange(1, C.MAX_PAIRING_EXPIRY_S).default(C.DEFAULT_PAIRING_EXPIRY_S),
  bonjour: booleanValue.default(C.DEFAULT_BONJOUR),
  release_url: httpUrlValue.default(C.DEFAULT_RELEASE_URL),
  /** The newest release the server tells nodes about; unset: what its own upgrade checks found. */
  latest_version: versionValue.optional(),
  release_check_hours: intInRange(0, C.MAX_RELEASE_CHECK_HOURS).default(C.DEFAULT_RELEASE_CHECK_HOURS),
};

type Issue = { path: (string | number)[]; message: string };

function distinctPorts(ports: [string, number][], kind: string, issues: Issue[]): void {
  const seen = new Map<number, string>();
  for (const [key, value] of ports) {
    const other = seen.get(value);
    if (other !== undefined) issues.push({ path: [key], message: `${kind} port ${value} is also used by ${other}` });
    else seen.set(value, key);
  }
}

/** The token comes from one place: token_file keeps it off the process list and out of the config file. */
function exclusiveTokenFile(table: { token?: string; token_file?: string }, issues: Issue[]): void {
  if (table.token && table.token_file) issues.push({ path: ["token_file"], message: "token and token_file are mutually exclusive: keep one" });
}

export const serverSchema = z.strictObject(serverShape).superRefine((s, ctx) => {
  const issues: Issue[] = [];
  exclusiveTokenFile(s, issues);
  if (s.heartbeat_timeout_ms <= s.heartbeat_interval_ms) {
    issues.push({
      path: ["heartbeat_timeout_ms"],
      message: `must be greater than heartbeat_interval_ms (${s.heartbeat_interval_ms}), got ${s.heartbeat_timeout_ms}`,
    });
  }
  const cert = s.tls_cert ?? "";
  const key = s.tls_key ?? "";
  if ((cert === "") !== (key === "")) {
    issues.push({
      path: [cert === "" ? "tls_cert" : "tls_key"],
      message: "tls_cert and tls_key must be given together",
    });
  }
  distinctPorts(
    [["ws_port", s.ws_port], ["stun_tcp1", s.stun_tcp1], ["stun_tcp2", s.stun_tcp2], ...(s.relay ? [["relay_port", s.relay_port] as [string, number]] : [])],
    "TCP",
    issues,
  );
  distinctPorts([["stun_udp1", s.stun_udp1], ["stun_udp2", s.stun_udp2]], "UDP", issues);
  if (s.stun_alt_ip !== undefined) {
    const primary = s.stun_ip ?? s.listen;
    const from = s.stun_ip === undefined ? ` (stun_ip is not set, so STUN uses listen = "${s.listen}")` : "";
    let problem: string | undefined;
    if (isIP(primary) === 0 || WILDCARD_ADDRESSES.includes(primary)) {
      problem = `needs stun_ip set to this server's first public IP${from}: change-IP answers must leave from a specific address`;
    } else if (primary === s.stun_alt_ip) problem = `must differ from the STUN address ${primary}${from}`;
    else if (isIP(primary) !== isIP(s.stun_alt_ip)) problem = `must be the same IP version as the STUN address ${primary}${from}`;
    if (problem) issues.push({ path: ["stun_alt_ip"], message: problem });
  }
  if (s.sdwan) checkSdwanStatic(s.sdwan, issues);
  const names = new Map<string, number>();
  const tokens = new Map<string, number>();
  s.users.forEach((user, i) => {
    if (user.name === C.DEFAULT_USER_NAME) {
      issues.push({ path: ["users", i, "name"], message: `"${C.DEFAULT_USER_NAME}" is reserved for server.token` });
    }
    const sameName = names.get(user.name);
    if (sameName !== undefined) {
      issues.push({ path: ["users", i, "name"], message: `duplicate user name "${user.name}" (also users[${sameName}])` });
    } else names.set(user.name, i);
    const sameToken = tokens.get(user.token);
    if (sameToken !== undefined) {
      issues.push({ path: ["users", i, "token"], message: `duplicate token (also users[${sameToken}].token)` });
    } else tokens.set(user.token, i);
    if (s.token !== undefined && s.token !== "" && user.token === s.token) {
      issues.push({ path: ["users", i, "token"], message: "token equals server.token (the default user's token)" });
    }
  });
  if (s.admin_token) {
    const never = "the admin credential must never be a user token";
    if (s.admin_token === s.token) issues.push({ path: ["admin_token"], message: `admin_token equals server.token (the default user's token): ${never}` });
    const user = s.users.findIndex((u) => u.token === s.admin_token);
    if (user >= 0) issues.push({ path: ["admin_token"], message: `admin_token equals users[${user}].token (user ${s.users[user]!.name}): ${never}` });
  }
  checkAcl(s, issues);
  s.trusted_relays.forEach((relay, i) => {
    const user = relay.split("/")[0]!;
    if (user !== C.DEFAULT_USER_NAME && !names.has(user))
      issues.push({ path: ["trusted_relays", i], message: `"${relay}" names user "${user}", who is not in [[server.users]] (nor "${C.DEFAULT_USER_NAME}")` });
  });
  for (const issue of issues) ctx.addIssue({ code: "custom", ...issue });
});

function checkAcl(s: { users: { name: string }[]; acl: z.output<typeof aclRuleSchema>[] }, issues: Issue[]): void {
  const users = [C.DEFAULT_USER_NAME, ...s.users.map((user) => user.name)];
  const names = new Map<string, number>();
  s.acl.forEach((rule, i) => {
    if (!users.includes(rule.user)) issues.push({ path: ["acl", i, "user"], message: `unknown user "${rule.user}" (the users are ${users.join(", ")})` });
    if (rule.name === undefined) return;
    const same = names.get(rule.name);
    if (same !== undefined) issues.push({ path: ["acl", i, "name"], message: `duplicate rule name "${rule.name}" (also acl[${same}])` });
    else names.set(rule.name, i);
  });
}

function checkSdwanStatic(sdwan: z.output<typeof serverSdwanSchema>, issues: Issue[]): void {
  const subnet = parseCidr(sdwan.subnet);
  const broadcast = subnet.network + 2 ** (32 - subnet.prefix) - 1;
  const taken = new Map<string, string>();
  for (const [node, ip] of Object.entries(sdwan.static)) {
    const path = ["sdwan", "static", node];
    if (!NODE_NAME_PATTERN.test(node)) issues.push({ path, message: `"${node}" is not a node name` });
    const value = ipToNumber(ip);
    if (!cidrContains(subnet, value)) issues.push({ path, message: `${ip} is outside the subnet ${sdwan.subnet}` });
    else if (subnet.prefix < 31 && (value === subnet.network || value === broadcast)) issues.push({ path, message: `${ip} is the subnet's ${value === subnet.network ? "network" : "broadcast"} address` });
    const other = taken.get(ip);
    if (other) issues.push({ path, message: `${ip} is also given to ${other}` });
    taken.set(ip, node);
  }
}

export const appSchema = z.strictObject({
  name: nameValue,
  protocol: enumValue(APP_PROTOCOLS),
  listen: hostPortValue,
  peer: nameValue,
  target: hostPortValue,
  enabled: booleanValue.default(C.DEFAULT_APP_ENABLED),
  allow: z.array(cidrValue).optional(),
});

// server_host, node and token default to "" (not set); checkRequired insists on them after merging.
export const clientShape = {
  server_host: hostValue(true).default(""),
  server_port: port(C.DEFAULT_SERVER_PORT),
  node: optionalNameValue.default(""),
  token: optionalTokenValue.default(""),
  token_file: pathValue.optional(),
  insecure: booleanValue.default(C.DEFAULT_INSECURE),
  tls_fingerprint: fingerprintValue.optional(),
  relay: booleanValue.default(C.DEFAULT_RELAY),
  super: booleanValue.default(C.DEFAULT_SUPER),
  relay_port: port(C.DEFAULT_RELAY_PORT),
  bw: positiveNumber(C.MAX_BW_MBPS).default(C.DEFAULT_BW_MBPS),
  stun_udp1: port(C.DEFAULT_STUN_UDP1_PORT),
  stun_udp2: port(C.DEFAULT_STUN_UDP2_PORT),
  stun_tcp1: port(C.DEFAULT_STUN_TCP1_PORT),
  stun_tcp2: port(C.DEFAULT_STUN_TCP2_PORT),
  data_dir: pathValue.default(""),
  status_port: port(C.DEFAULT_STATUS_PORT),
  peer_bind: hostValue(false).default(C.DEFAULT_PEER_BIND),
  peer_udp_port: intInRange(0, C.MAX_PORT).default(0),
  peer_tcp_port: intInRange(0, C.MAX_PORT).default(0),
  peer_paths: z.array(enumValue(PEER_TRANSPORTS)).min(1).default([...PEER_TRANSPORTS]),
  // Unset: the client's own defaults (RECONNECT_BASE_DELAY_MS, RECONNECT_MAX_DELAY_MS in client/constants.ts).
  reconnect_base_delay_ms: intInRange(C.MIN_RECONNECT_DELAY_MS, C.MAX_RECONNECT_DELAY_MS).optional(),
  reconnect_max_delay_ms: intInRange(C.MIN_RECONNECT_DELAY_MS, C.MAX_RECONNECT_DELAY_MS).optional(),
  apps: z.array(appSchema).default([]),
  /** What peers may reach through this node (nothing by default). */
  expose: z.array(exposeValue).max(C.MAX_EXPOSE_ENTRIES).default([...C.DEFAULT_EXPOSE]),
  sdwan: clientSdwanSchema.optional(),
  bonjour: booleanValue.default(C.DEFAULT_BONJOUR),
  release_url: httpUrlValue.default(C.DEFAULT_RELEASE_URL),
  auto_upgrade: booleanValue.default(C.DEFAULT_AUTO_UPGRADE),
  auto_upgrade_window_s: intInRange(0, C.MAX_AUTO_UPGRADE_WINDOW_S).default(C.DEFAULT_AUTO_UPGRADE_WINDOW_S),
};

export const clientSchema = z.strictObject(clientShape).superRefine((c, ctx) => {
  const issues: Issue[] = [];
  exclusiveTokenFile(c, issues);
  for (const issue of issues) ctx.addIssue({ code: "custom", ...issue });
  if (c.reconnect_base_delay_ms !== undefined && c.reconnect_max_delay_ms !== undefined && c.reconnect_base_delay_ms > c.reconnect_max_delay_ms)
    ctx.addIssue({
      code: "custom",
      path: ["reconnect_base_delay_ms"],
      message: `must not exceed reconnect_max_delay_ms (${c.reconnect_max_delay_ms}), got ${c.reconnect_base_delay_ms}`,
    });
  const names = new Map<string, number>();
  const listens = new Map<string, number>();
  c.apps.forEach((app, i) => {
    const sameName = names.get(app.name);
    if (sameName !== undefined) {
      ctx.addIssue({ code: "custom", path: ["apps", i, "name"], message: `duplicate app name "${app.name}" (also apps[${sameName}])` });
    } else names.set(app.name, i);
    const listenKey = `${app.protocol} ${app.listen}`;
    const sameListen = listens.get(listenKey);
    if (sameListen !== undefined) {
      ctx.addIssue({ code: "custom", path: ["apps", i, "listen"], message: `${app.protocol} ${app.listen} is also used by apps[${sameListen}]` });
    } else listens.set(listenKey, i);
  });
});

export const topShape = {
  role: enumValue(ROLES),
  log_level: enumValue(LOG_LEVELS).default(C.DEFAULT_LOG_LEVEL),
  log_format: enumValue(LOG_FORMATS).default(C.DEFAULT_LOG_FORMAT),
  server: serverSchema.optional(),
  client: clientSchema.optional(),
};

export const fileSchema = z.strictObject(topShape);

export type ServerConfig = z.output<typeof serverSchema>;
export type ClientConfig = z.output<typeof clientSchema>;
export type AppConfig = z.output<typeof appSchema>;
export type UserConfig = z.output<typeof userSchema>;
export type AclRuleConfig = z.output<typeof aclRuleSchema>;

export interface Config {
  role: Role;
  log_level: LogLevel;
  log_format: LogFormat;
  server?: ServerConfig;
  client?: ClientConfig;
}

/** Known keys per table, for "did you mean" (array indices dropped from the table path). */
export const KNOWN_KEYS: Record<string, readonly string[]> = {
  "": Object.keys(topShape),
  server: Object.keys(serverShape),
  "server.users": Object.keys(userSchema.shape),
  "server.sdwan": Object.keys(serverSdwanSchema.shape),
  "server.acl": Object.keys(aclRuleSchema.shape),
  client: Object.keys(clientShape),
  "client.apps": Object.keys(appSchema.shape),
  "client.sdwan": Object.keys(clientSdwanSchema.shape),
};
