import { join } from "node:path";
import { loadOrCreateIdentity } from "../crypto/index.ts";
import type { Logger } from "../log/index.ts";
import { detectNat, natInfoOf, watchNat } from "../nat/index.ts";
import { IDENTITY_FILE, KNOWN_SERVERS_FILE } from "./constants.ts";
import { ServerSession, type SessionEvents } from "./session.ts";
import { KnownServers } from "./trust.ts";

export { ServerSession, RequestError, type SessionState, type ServerSessionInit } from "./session.ts";
export { KnownServers, decideTrust } from "./trust.ts";
export { IDENTITY_FILE, KNOWN_SERVERS_FILE } from "./constants.ts";

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
}

export interface RunningClient {
  session: ServerSession;
  stop(): void;
}

/** Starts an inp2pc: identity key (created on first run), then the server session. */
export function startClient(init: ClientInit, logger: Logger, version: string, events: SessionEvents = {}): RunningClient {
  const identityPath = join(init.data_dir, IDENTITY_FILE);
  const { identity, created } = loadOrCreateIdentity(identityPath);
  if (created) logger.info("created this node's identity key", { file: identityPath });
  if (init.insecure) logger.warn("--insecure: talking to the server over plain ws://, without TLS");
  const session = new ServerSession(
    {
      host: init.server_host,
      port: init.server_port,
      insecure: init.insecure,
      node: init.node,
      token: init.token,
      identity,
      version,
      tlsFingerprint: init.tls_fingerprint,
      knownServers: new KnownServers(join(init.data_dir, KNOWN_SERVERS_FILE)),
      logger,
    },
    events,
  );
  session.start();
  const natWatcher = watchNat(
    () => detectNat({ serverHost: init.server_host, udpPorts: [init.stun_udp1, init.stun_udp2], tcpPorts: [init.stun_tcp1, init.stun_tcp2] }),
    (report) => session.setNat(natInfoOf(report)),
    logger,
  );
  return {
    session,
    stop: () => {
      natWatcher.stop();
      session.stop();
    },
  };
}
