import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { AppConfig, ClientConfig } from "../config/index.ts";
import { loadOrCreateIdentity } from "../crypto/index.ts";
import type { Logger } from "../log/index.ts";
import { CloseCode, INSTANCE_ID_BYTES, type SdwanMap } from "../protocol/index.ts";
import { ClientMetrics } from "../metrics/index.ts";
import { Overlay, warmUpNode } from "../sdwan/index.ts";
import { PATH_KINDS } from "../transport/index.ts";
import { detectNat, NatCache, watchNat, type DetectNatOptions } from "../nat/index.ts";
import { LanPeers, Mdns } from "../discovery/index.ts";
import { userHash } from "../protocol/discovery.ts";
import { App, AppService, UdpFlowIds } from "./apps.ts";
import { ExposePolicy } from "./expose.ts";
import { IDENTITY_FILE, KNOWN_SERVERS_FILE, LINK_RETRY_DELAY_MS, NAT_CACHE_FILE } from "./constants.ts";
import { LinkReporter, linksReport } from "./link-report.ts";
import { PeerManager } from "./peers.ts";
import { applyClientReload } from "./reload.ts";
import { RelayNode } from "./relay-node.ts";
import { SdwanMaps } from "./sdwan-maps.ts";
import { ServerSession, type SessionEvents } from "./session.ts";
import { controlRoutes } from "./control.ts";
import { startStatusServer, type ClientStatus } from "./status.ts";
import { KnownServers } from "./trust.ts";
import { AutoUpgrade } from "./auto-upgrade.ts";
import type { SelfUpgrade } from "../upgrade/index.ts";

export { App, AppService, udpFlowIdleMsFrom, type AppStatus } from "./apps.ts";
export { ExposePolicy, type ExposeDecision } from "./expose.ts";
export { PeerError, PeerManager } from "./peers.ts";
export { ServerSession, RequestError, type SessionState, type ServerSessionInit } from "./session.ts";
export { formatStatus, type ClientStatus } from "./status.ts";
export { KnownServers, decideTrust } from "./trust.ts";
export { AUTO_SERVER_HOST, AutoServerError, chooseServer, resolveServerHost } from "./auto-server.ts";
export { IDENTITY_FILE, KNOWN_SERVERS_FILE, NAT_CACHE_FILE } from "./constants.ts";

export interface ClientInit {
  server_host: string;
  server_port: number;
  node: string;
  token: string;
  insecure: boolean;
  tls_fingerprint?: string;
  data_dir: string;
  stun_udp1: number;
  stun_udp2: number;
  stun_tcp1: number;
  stun_tcp2: number;
  status_port: number;
  peer_bind: string;
  peer_udp_port: number;
  peer_tcp_port: number;
  peer_paths: ("udp" | "tcp" | "relay")[];
  reconnect_base_delay_ms?: number;
  reconnect_max_delay_ms?: number;
  /** Offer this node as a relay: private (own user's nodes) or super (every user's). */
  relay: boolean;
  super: boolean;
  relay_port: number;
  bw: number;
  sdwan?: ClientConfig["sdwan"];
  apps: AppConfig[];
  /** What peers may reach through this node ([client] expose entries). */
  expose: readonly string[];
  /** How long a UDP app flow lives without traffic. @default UDP_FLOW_IDLE_MS */
  udpFlowIdleMs?: number;
  /** Advertise this node on the LAN and link to LAN peers found there (Bonjour _inp2p-node._udp). @default false: only inp2pc's command line turns it on, from the config. */
  bonjour?: boolean;
  /** Upgrades this program when asked (status API, the server); absent: no upgrades (tests, bun run). */
  upgrade?: SelfUpgrade;
  /** With upgrade: take the releases the server announces, within this window (s). @default undefined: only when asked */
  autoUpgradeWindowS?: number;
}

export interface RunningClient {
  session: ServerSession;
  peers: PeerManager;
  statusPort: number;
  status(): ClientStatus;
  /** Applies a reloaded config's apps and expose (see reload.ts); resolves with what changed, in words. */
  reload(next: Pick<ClientInit, "apps" | "expose">): Promise<string[]>;
  stop(): void;
}

/** Starts an inp2pc: identity, server session, NAT detection, peer links, apps and the status API. */
export async function startClient(init: ClientInit, logger: Logger, version: string, events: SessionEvents = {}): Promise<RunningClient> {
  const identityPath = join(init.data_dir, IDENTITY_FILE);
  const { identity, created } = loadOrCreateIdentity(identityPath);
  if (created) logger.info("created this node's identity key", { file: identityPath });
  if (init.insecure) logger.warn("--insecure: talking to the server over plain ws://, without TLS");

  // The session's events use these, and they need the session: assigned right after it.
  let peers: PeerManager;
  let apps: App[] = [];
  const appPeers = new Set(init.apps.filter((app) => app.enabled).map((app) => app.peer));
  let appsStarted = false;
  let stopped = false;
  /** Nodes of this user advertised on the LAN (when bonjour is on); set once the peer sockets are bound. */
  let lanPeers: LanPeers | undefined;

  /** Keeps a link to every peer an app needs, while that peer is online. */
  const ensureLink = (peer: string, verify = false) => {
    if (stopped || !appPeers.has(peer) || !session.peers.has(peer)) return;
    peers.connect(peer, { verify }).catch((err: Error) => logger.warn(`no link to ${peer} yet: ${err.message}`));
  };

  const session = new ServerSession(
    {
      host: init.server_host,
      port: init.server_port,
      insecure: init.insecure,
      node: init.node,
      token: init.token,
      identity,
      version,
      // New each run: peers see a restart as a new instance and drop their links to the old one at once.
      instance: randomBytes(INSTANCE_ID_BYTES).toString("base64url"),
      tlsFingerprint: init.tls_fingerprint,
      knownServers: new KnownServers(join(init.data_dir, KNOWN_SERVERS_FILE)),
      logger,
      reconnectBaseDelayMs: init.reconnect_base_delay_ms,
      reconnectMaxDelayMs: init.reconnect_max_delay_ms,
    },
    {
      ...events,
      online: (result) => {
        natWatcher.serverReachable(); // a result from while the server was away may be stale
        peers.onLoggedIn();
        // The peers this node needs: they come online (peerOnline, below) as the server answers the session's watch.
        // Links made with others (they linked to us) are watched too: the peer may have restarted while we were away.
        void session.watch(peers.allLinks().map(([name]) => name));
        void relayNode?.onLoggedIn(result.user);
        sdwanMaps.reset();
        if (overlay?.ready) {
          overlay.loggedIn();
          void joinOverlay();
        }
        linkReporter.loggedIn();
        if (!appsStarted) {
          appsStarted = true;
          void Promise.all(apps.map((app) => app.start()));
        }
        void session.watch(appPeers).then((online) => {
          for (const peer of appPeers) if (!online.some((p) => p.name === peer)) logger.warn(`app peer ${peer} is not online (yet)`);
        });
        events.online?.(result);
      },
      connectPlan: (plan) => peers.acceptPlan(plan),
      relayPlan: (plan) => peers.acceptRelayPlan(plan),
      sdwanMap: (map) => void applyMap(sdwanMaps.full(map)),
      sdwanDelta: (delta) => {
        const map = sdwanMaps.delta(delta);
        if (map !== "gap") return void applyMap(map);
        logger.warn("SDWAN: a map change that does not follow on from this node's map; asking for the whole map", { from: delta.from, version: delta.version });
        void joinOverlay();
      },
      peerOnline: (peer) => {
        // A link to an earlier run of the peer closes now, and a new one is made at once; a peer that
        // cannot tell its runs apart (an older node) may have restarted: its link must prove itself.
        if (peers.peerOnline(peer)) ensureLink(peer.name);
        else setTimeout(() => ensureLink(peer.name, true), LINK_RETRY_DELAY_MS);
        events.peerOnline?.(peer);
      },
      peerOffline: (name, reason) => {
        peers.peerOffline(name, reason);
        events.peerOffline?.(name, reason);
      },
      release: (version) => autoUpgrade?.announce(version),
      upgrade: (version) => {
        if (!init.upgrade) return logger.warn("the server asks for an upgrade, but this inp2pc cannot upgrade itself (not a release binary run as a daemon)");
        init.upgrade.upgrade({ version }).catch((err: Error) => logger.error(`upgrade asked by the server failed: ${err.message}`));
      },
      offline: (reason, closeCode) => {
        if (closeCode === CloseCode.revoked || closeCode === CloseCode.keyReplaced) peers.closeAll(reason);
        events.offline?.(reason, closeCode);
      },
    },
  );
  const autoUpgrade =
    init.upgrade && init.autoUpgradeWindowS !== undefined
      ? new AutoUpgrade({ node: init.node, current: version, windowS: init.autoUpgradeWindowS, upgrade: init.upgrade, logger })
      : undefined;
  // Read at scrape time only, when status and relayNode exist.
  const metrics = new ClientMetrics({ linkKinds: PATH_KINDS, view: () => status(), relay: init.relay || init.super ? () => relayNode?.counts() : undefined });
  peers = new PeerManager({
    session,
    metrics,
    identity,
    logger,
    stunHost: init.server_host,
    stunPort: init.stun_udp1,
    stunTcpPort: init.stun_tcp1,
    bind: init.peer_bind,
    transports: init.peer_paths.filter((path) => path !== "relay"),
    relays: init.peer_paths.includes("relay"),
    udpPort: init.peer_udp_port,
    tcpPort: init.peer_tcp_port,
    tunnelled: (ip) => overlay?.carries(ip) ?? false,
    lanEndpoints: (peer) => lanPeers?.udpEndpoints(peer) ?? [],
  });
  const relayNode =
    init.relay || init.super
      ? new RelayNode({ session, node: init.node, token: init.token, host: init.peer_bind, port: init.relay_port, bwMbps: init.bw, super: init.super, logger, onLimited: () => metrics.limited("relay") })
      : undefined;
  const overlay = init.sdwan?.enabled
    ? new Overlay({ device: init.sdwan.name, mtu: init.sdwan.mtu, routes: init.sdwan.routes, eager: init.sdwan.eager, peers, logger: logger.child("sdwan") })
    : undefined;
  overlay?.start();
  // While the login is on its way: the first packets over a link (and the SDWAN) then run optimised code (warm-up.ts).
  setImmediate(() =>
    warmUpNode(overlay?.ready === true).catch((err: Error) =>
      logger.debug("warming up the per-packet code failed; the first packets will only be slower", { error: err.message }),
    ),
  );
  const sdwanMaps = new SdwanMaps();
  /** The virtual network's members are peers this node needs to hear of (restarts, departures). */
  const applyMap = async (map: SdwanMap | undefined) => {
    if (!map) return;
    void session.watch(map.nodes.map((node) => node.name));
    await overlay?.applyMap(map);
  };
  /** Joins the server's virtual network (after each login): the answer is this node's address and the map. */
  const joinOverlay = async () => {
    try {
      const { sdwan } = await session.request("report", { sdwan: { routes: init.sdwan!.routes } });
      if (!sdwan) throw new Error("the server answered the join without a map");
      await applyMap(sdwanMaps.full(sdwan));
    } catch (err) {
      logger.error(`SDWAN: could not join the virtual network: ${(err as Error).message}`);
    }
  };
  const flowIds = new UdpFlowIds();
  const newApp = (app: AppConfig) => new App(app, peers, flowIds, logger, init.udpFlowIdleMs);
  apps = init.apps.map(newApp);
  const expose = new ExposePolicy(init.expose);
  await peers.start();
  // LAN peers are UDP endpoints; peers behind the SDWAN device are not on this LAN.
  const mdns = init.bonjour && peers.endpoint.offers("udp") ? new Mdns({ logger: logger.child("bonjour"), skip: (device, address) => device === overlay?.device || (overlay?.carries(address) ?? false) }) : undefined;
  lanPeers = mdns?.active
    ? new LanPeers({
        mdns,
        logger: logger.child("bonjour"),
        self: { version, node: init.node, user: userHash(init.token), udpPort: peers.endpoint.udpPort, tcpPort: peers.endpoint.offers("tcp") ? peers.endpoint.tcpPort : 0 },
      })
    : undefined;
  const service = new AppService({
    flowIds,
    logger,
    node: init.node,
    expose,
    udpFlowIdleMs: init.udpFlowIdleMs,
    // The server audits refused targets too (once per window per peer and target, as they are logged here).
    onRefused: (peer, target, protocol) =>
      void session.request("report", { refused: { peer, target, protocol } }).catch((err: Error) => logger.debug("could not report a refused target", { error: err.message })),
  });
  const linkReporter = new LinkReporter(session, () => linksReport(peers.allLinks(), apps.map((app) => app.status())), logger);
  peers.onLink((peer, link) => {
    void session.watch([peer]); // a peer that linked to us: hear when it leaves or restarts
    service.attach(peer, link);
    overlay?.attach(peer, link);
    linkReporter.changed();
    link.onClose(() => {
      linkReporter.changed();
      setTimeout(() => ensureLink(peer), LINK_RETRY_DELAY_MS);
    });
  });
  const stun: DetectNatOptions = { serverHost: init.server_host, udpPorts: [init.stun_udp1, init.stun_udp2], tcpPorts: [init.stun_tcp1, init.stun_tcp2] };
  const natWatcher = watchNat({
    detect: () => detectNat(stun),
    onResult: (nat) => {
      session.setNat(nat);
      peers.setNat(nat);
    },
    cache: new NatCache(join(init.data_dir, NAT_CACHE_FILE), stun, logger),
    tunnelled: ({ device, address }) => overlay !== undefined && (device === overlay.device || overlay.carries(address)),
    logger,
  });
  session.start();

  const status = (): ClientStatus => {
    const names = new Set([...session.peers.keys(), ...peers.allLinks().map(([name]) => name)]);
    return {
      node: init.node,
      version,
      pid: process.pid,
      server: {
        address: `${init.server_host}:${init.server_port}`,
        state: session.state,
        approval: session.awaitingApproval ?? null,
        user: session.login?.user ?? null,
        rttMs: session.rttMs ?? null,
        clockOffsetMs: Math.round(session.clockOffsetMs),
        error: session.problem ?? null,
      },
      nat: session.nat ?? null,
      peers: Object.fromEntries(
        [...names].sort().map((name) => {
          const link = peers.link(name);
          const stats = link?.stats();
          return [
            name,
            {
              online: session.peers.has(name),
              state: peers.info(name)?.state ?? null,
              link: stats?.kind ?? null,
              relay: stats?.via ?? null,
              punchMs: peers.info(name)?.punchMs ?? null,
              error: peers.info(name)?.error ?? null,
              remote: stats?.remote ?? null,
              rttMs: stats?.rttMs ?? null,
              bytesIn: stats?.bytesIn ?? 0,
              bytesOut: stats?.bytesOut ?? 0,
              since: stats ? new Date(stats.since).toISOString() : null,
              rejected: { auth: stats?.rejectedAuth ?? 0, replay: stats?.rejectedReplay ?? 0, malformed: stats?.rejectedMalformed ?? 0 },
            },
          ];
        }),
      ),
      apps: apps.map((app) => app.status()),
      sdwan: overlay ? overlay.status() : null,
      upgrade: init.upgrade?.last ?? null,
    };
  };
  let statusServer: { port: number; stop(): void } | undefined;
  try {
    statusServer = startStatusServer(init.status_port, status, metrics, controlRoutes({ node: init.node, session, peers, apps: () => apps, upgrade: init.upgrade }));
  } catch (err) {
    logger.warn(`status API not available on 127.0.0.1:${init.status_port}: ${(err as Error).message}`);
  }

  return {
    session,
    peers,
    statusPort: statusServer?.port ?? 0,
    status,
    // A new app's peer is watched first: its link is made once the server says it is online.
    reload: (next) => applyClientReload({ apps, appPeers, newApp, appsStarted: () => appsStarted, ensureLink: (peer) => void session.watch([peer]).then(() => ensureLink(peer)), expose }, next),
    stop: () => {
      stopped = true;
      autoUpgrade?.stop();
      natWatcher.stop();
      linkReporter.stop();
      statusServer?.stop();
      for (const app of apps) app.stop();
      relayNode?.stop();
      overlay?.stop();
      service.stop();
      void mdns?.stop();
      peers.stop();
      session.stop();
    },
  };
}
