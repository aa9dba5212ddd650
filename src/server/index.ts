import { randomBytes } from "node:crypto";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { websocket } from "hono/bun";
import { DEFAULT_LOGIN_BURST, DEFAULT_LOGIN_RATE_PER_S, DEFAULT_MAX_CONNS_BEFORE_LOGIN, DEFAULT_USER_NAME, type ReloadPlan } from "../config/index.ts";
import type { Logger } from "../log/index.ts";
import { advertiseServer, type Mdns } from "../discovery/index.ts";
import { startStunServer } from "../nat/stun-server.ts";
import { cidrMatcher } from "../net/index.ts";
import { CloseCode, isLoopbackAddress } from "../protocol/index.ts";
import { startRelay, type RunningRelay } from "../relay/index.ts";
import { ServerMetrics } from "../metrics/index.ts";
import { RelayBroker } from "./broker.ts";
import type { AclRule } from "./acl.ts";
import { AddressBook, SDWAN_STORE_FILE, SdwanHub, type SdwanInit } from "./sdwan.ts";
import { createApp, WS_PATH } from "./app.ts";
import { HEARTBEAT_SWEEP_INTERVAL_MS, WS_BACKPRESSURE_LIMIT_BYTES, WS_HARD_MAX_FRAME_BYTES } from "./constants.ts";
import { loadAdminCredential, type AdminCredential } from "./admin.ts";
import { AuditLog } from "./audit.ts";
import { AddressGuard } from "./guard.ts";
import { FailedLogins } from "./failed-logins.ts";
import { trackLastSeen } from "./last-seen.ts";
import { NodeStore } from "./nodes.ts";
import { PairingBook } from "./pairing.ts";
import { Registry } from "./registry.ts";
import { Presence } from "./presence.ts";
import { LoginAdmission } from "./admission.ts";
import { LoopLag } from "./loop-lag.ts";
import { TRUSTED_RELAYS_FILE, TrustedRelays } from "./relay-trust.ts";
import { applyServerReload, type ServerPolicy } from "./reload.ts";
import { SignalHub, type User } from "./signal.ts";
import { resolveTls, type TlsMaterial } from "./tls.ts";

export { resolveTls, TlsSetupError, SELF_SIGNED_CERT_FILE } from "./tls.ts";
export { HEALTH_PATH, WS_PATH } from "./app.ts";
export type { AuditEntry, AuditEvent } from "./audit.ts";
export { ADMIN_CREDENTIAL_FILE, AdminCredentialError, adminCredentialFile, readAdminCredential, type AdminCredential } from "./admin.ts";
export type { PairingListEntry } from "./rest-pairing.ts";
export type { RelayListing } from "./rest-relays.ts";
export type { UpgradeAsked } from "./rest-upgrade.ts";
export { Fleet } from "./fleet.ts";
export { nodeTable, type NodeListing } from "./node-list.ts";

/** The node records (approved keys, revocations, tags); the name is the older pins file's, which it reads. */
export const NODE_STORE_FILE = "inp2ps.keys.json";
export { NodeStore, type NodeRecord } from "./nodes.ts";
export type { ServerPolicy } from "./reload.ts";

import { Fleet } from "./fleet.ts";
import { fetchRelease, type SelfUpgrade } from "../upgrade/index.ts";
export interface ServerInit {
  listen: string;
  ws_port: number;
  token: string;
  users: User[];
  admin_token?: string;
  tls: "auto" | "off";
  tls_cert?: string;
  tls_key?: string;
  data_dir: string;
  heartbeat_interval_ms: number;
  heartbeat_timeout_ms: number;
  max_conns_per_ip: number;
  /** Connections that have not logged in yet, all addresses together; more are closed at once. Default DEFAULT_MAX_CONNS_BEFORE_LOGIN. */
  max_conns_before_login?: number;
  /** Logins admitted per second once the burst is spent. @default DEFAULT_LOGIN_RATE_PER_S */
  login_rate?: number;
  /** Logins admitted at once before login_rate applies. @default DEFAULT_LOGIN_BURST */
  login_burst?: number;
  stun_udp1: number;
  stun_udp2: number;
  stun_tcp1: number;
  stun_tcp2: number;
  /** Address the STUN sockets bind; default: listen (resolved when it is a host name). */
  stun_ip?: string;
  /** Second public IP for change-IP; needs a specific stun_ip. */
  stun_alt_ip?: string;
  /** The server's own relay (the last tier): on, its TCP port (0 picks a free one) and cap in Mbit/s. */
  relay: boolean;
  relay_port: number;
  relay_bw: number;
  /** Super relays ("user/node") approved in the config to serve users other than their own. */
  trusted_relays: string[];
  /** Approved super relays of other users before the server's own relay. */
  prefer_super_relays: boolean;
  /** The virtual network, when configured. */
  sdwan?: SdwanInit;
  /** [[server.acl]]: which nodes of a user may link to which (none: all may). */
  acl?: readonly AclRule[];
  /** How nodes get in: "token" (any node with the token) or "approve" (the admin approves each). */
  admission: "token" | "approve";
  /** CIDRs whose new nodes are approved at once. */
  auto_approve: string[];
  pairing_expiry_s: number;
  /** CIDRs of reverse proxies whose X-Forwarded-For names the client that limits count. */
  trusted_proxies?: string[];
  /** CIDRs that may read /metrics without the admin credential. */
  metrics_allow?: string[];
  /** Advertise on the LAN (Bonjour _inp2p._tcp). @default false: only inp2ps's command line turns it on, from the config. */
  bonjour?: boolean;
  /** Where releases live, for the release checks. */
  release_url?: string;
  /** The newest release nodes are told about, besides what checks find. */
  latest_version?: string;
  /** Hours between checks of release_url for a newer release; 0: none. @default 0 */
  release_check_hours?: number;
  /** This inp2ps upgrading itself when the admin asks (REST); absent: it cannot. */
  upgrade?: SelfUpgrade;
}

export interface RunningServer {
  port: number;
  /** URL clients connect to, e.g. wss://127.0.0.1:27183/ws */
  wsUrl: string;
  tls: TlsMaterial | null;
  /** The STUN ports really bound (a 0 in the config picks free ones). */
  stun: { udpPorts: [number, number]; tcpPorts: [number, number]; altIp?: string };
  /** The server relay's port, when it runs one. */
  relayPort?: number;
  /** The admin credential for the REST API (never a user token). */
  admin: AdminCredential;
  /** Every route of the REST app (method and path pattern), for tests that must cover each one. */
  routes: readonly { method: string; path: string }[];
  /** Applies a reloaded config's ACL, admission and relay trust, and audits the reload (see reload.ts); returns what changed, in words. */
  reload(policy: ServerPolicy, plan: Pick<ReloadPlan, "changed" | "restartOnly">): string[];
  stop(): Promise<void>;
}

export async function startServer(init: ServerInit, logger: Logger, version: string): Promise<RunningServer> {
  const tls = resolveTls(init);
  const users = [{ name: DEFAULT_USER_NAME, token: init.token }, ...init.users];
  const admin = loadAdminCredential(init, users.map((u) => u.token));
  const trustedRelays = new TrustedRelays(
    join(init.data_dir, TRUSTED_RELAYS_FILE),
    init.trusted_relays,
    users.map((user) => user.name),
  );
  const listenIp = isIP(init.listen) ? init.listen : (await lookup(init.listen)).address;
  if (!tls && !isLoopbackAddress(listenIp))
    logger.warn(
      `tls = "off" on a non-loopback address (${init.listen}): logins cross the network in the clear, and a captured login (nonce and proof) ` +
        `lets an attacker test token guesses offline, at no cost and unseen; a weak token (one derived from a guessable password with ` +
        `"inp2ps token") falls in seconds. Serve TLS (tls = "auto", or tls_cert/tls_key), or listen on 127.0.0.1 behind a TLS proxy; ` +
        `keep tokens long and random (as inp2ps generates them)`,
    );
  // Its gauges read the registry and the relay (made below) at scrape time only.
  const metrics = new ServerMetrics({ users: users.map((u) => u.name), online: () => registry.all(), relay: init.relay ? () => relay?.counts() : undefined });
  const stun = await startStunServer({
    primaryIp: init.stun_ip ?? listenIp,
    altIp: init.stun_alt_ip,
    udpPorts: [init.stun_udp1, init.stun_udp2],
    tcpPorts: [init.stun_tcp1, init.stun_tcp2],
    software: `inp2ps ${version}`,
    logger: logger.child("stun"),
    onRateLimited: () => metrics.limited("stun"),
  });
  const registry = new Registry();
  const presence = new Presence(registry);
  let relay: RunningRelay | undefined;
  const relayKey = randomBytes(32);
  if (init.relay) {
    try {
      relay = await startRelay({ host: init.listen, port: init.relay_port, name: "server", key: relayKey, serverNow: Date.now, bwMbps: init.relay_bw, logger: logger.child("relay"), onLimited: () => metrics.limited("relay") });
    } catch (err) {
      await stun.stop();
      throw new Error(`cannot start the server relay on TCP port ${init.relay_port}: ${(err as Error).message} (set relay_port, or relay = false, in [server])`);
    }
  }
  const broker = new RelayBroker({
    registry,
    tokenOf: (user) => users.find((u) => u.name === user)?.token,
    serverRelay: relay ? { port: relay.port, key: relayKey } : undefined,
    trusted: (name) => trustedRelays.has(name),
    preferSuperRelays: init.prefer_super_relays,
    logger,
  });
  const guard = new AddressGuard(init.max_conns_per_ip);
  const failedLogins = new FailedLogins(logger);
  const addressBook = init.sdwan ? new AddressBook(join(init.data_dir, SDWAN_STORE_FILE), init.sdwan) : undefined;
  const nodes = new NodeStore(join(init.data_dir, NODE_STORE_FILE));
  const audit = new AuditLog(logger.child("audit"));
  const pairing = new PairingBook(init.pairing_expiry_s * 1000);
  const loopLag = new LoopLag();
  const hub: SignalHub = new SignalHub({
    users,
    registry,
    presence,
    loginAdmission: new LoginAdmission(init.login_rate ?? DEFAULT_LOGIN_RATE_PER_S, init.login_burst ?? DEFAULT_LOGIN_BURST, Date.now, () => loopLag.ms),
    broker,
    // Called only once the hub exists (when a node joins the virtual network).
    sdwan: addressBook ? new SdwanHub(addressBook, registry, (node, member): boolean => hub.linkableBothWays(node, member)) : undefined,
    nodes,
    admission: init.admission,
    autoApprove: cidrMatcher(init.auto_approve),
    pairing,
    guard,
    maxConnectionsBeforeLogin: init.max_conns_before_login ?? DEFAULT_MAX_CONNS_BEFORE_LOGIN,
    failedLogins,
    audit,
    acl: init.acl,
    tagsOf: (user, name) => nodes.tagsOf(user, name),
    logger,
    metrics,
    version,
    heartbeatIntervalMs: init.heartbeat_interval_ms,
    heartbeatTimeoutMs: init.heartbeat_timeout_ms,
  });
  let metricsAllow = cidrMatcher(init.metrics_allow ?? []);
  const releaseUrl = init.release_url;
  const fleet = new Fleet({
    registry,
    logger,
    version,
    configured: init.latest_version,
    check: releaseUrl ? async () => (await fetchRelease({ releaseUrl })).version : undefined,
    checkIntervalMs: (init.release_check_hours ?? 0) * 3_600_000,
  });
  const app = createApp({
    hub, registry, nodes, guard, failedLogins, trustedProxies: cidrMatcher(init.trusted_proxies ?? []), audit, trustedRelays, version, fleet, upgrade: init.upgrade,
    admin, userTokens: users.map((u) => u.token), metrics, metricsAllow: (address) => metricsAllow(address),
  });
  let server: ReturnType<typeof Bun.serve<any>>;
  try {
    server = Bun.serve<any>({
      hostname: init.listen,
      port: init.ws_port,
      fetch: app.fetch,
      websocket: {
        ...websocket,
        maxPayloadLength: WS_HARD_MAX_FRAME_BYTES,
        backpressureLimit: WS_BACKPRESSURE_LIMIT_BYTES,
        closeOnBackpressureLimit: true,
        idleTimeout: Math.ceil((init.heartbeat_timeout_ms * 2) / 1000),
      },
      ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    });
  } catch (err) {
    loopLag.stop();
    await stun.stop();
    await relay?.stop();
    addressBook?.close();
    throw err;
  }
  const sweeper = setInterval(() => hub.sweep(), HEARTBEAT_SWEEP_INTERVAL_MS);
  const lastSeen = trackLastSeen(registry, nodes);
  const port = server.port ?? init.ws_port;
  let bonjour: Mdns | undefined;
  if (init.bonjour)
    bonjour = advertiseServer({
      logger: logger.child("bonjour"),
      listen: listenIp,
      txt: { version, wsPort: port, tls: tls !== null, tlsSha256: tls?.fingerprint256, stunUdp: stun.udpPorts, stunTcp: stun.tcpPorts, relayPort: relay?.port },
    });
  const host = init.listen === "0.0.0.0" || init.listen === "::" ? "127.0.0.1" : init.listen;
  return {
    port,
    wsUrl: `${tls ? "wss" : "ws"}://${host.includes(":") ? `[${host}]` : host}:${port}${WS_PATH}`,
    tls,
    stun: { udpPorts: stun.udpPorts, tcpPorts: stun.tcpPorts, altIp: stun.altIp },
    relayPort: relay?.port,
    admin,
    routes: app.routes.map((r) => ({ method: r.method, path: r.path })),
    reload: (policy, plan) => applyServerReload({ hub, broker, pairing, trustedRelays, audit, fleet, setMetricsAllow: (allowed) => (metricsAllow = allowed) }, policy, plan),
    async stop() {
      clearInterval(sweeper);
      loopLag.stop();
      fleet.stop();
      lastSeen.stop();
      presence.stop();
      await bonjour?.stop();
      for (const session of registry.all()) session.close(CloseCode.shutdown, "server shutting down");
      await server.stop(true);
      await stun.stop();
      await relay?.stop();
      addressBook?.close();
      nodes.flush();
    },
  };
}
