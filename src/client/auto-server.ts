import { writeConfig, type ClientConfig, type LoadedConfig } from "../config/index.ts";
import { DEFAULT_DISCOVER_TIMEOUT_MS, discover, type DiscoveredServer } from "../discovery/index.ts";
import type { Logger } from "../log/index.ts";

/** `server_host = "auto"`: the server is the one inp2ps advertising itself on this LAN. */
export const AUTO_SERVER_HOST = "auto";

export class AutoServerError extends Error {
  override readonly name = "AutoServerError";
  constructor(
    readonly code: "NONE_FOUND" | "SEVERAL_FOUND" | "NO_TLS" | "BONJOUR_OFF",
    message: string,
  ) {
    super(message);
  }
}

const describe = (s: DiscoveredServer) => `${s.name} at ${s.host}:${s.port} (${s.txt.tls ? `TLS SHA-256 ${s.txt.tlsSha256}` : "no TLS"}, inp2ps ${s.txt.version})`;

/**
 * The one server to use among those found on the LAN, as client settings: its address and ports, and
 * its advertised certificate fingerprint pinned (the TLS handshake must then show that certificate).
 * A configured tls_fingerprint picks among several servers. None, several, or one without TLS (nothing
 * to pin: anyone on the LAN could pose as it) is an error saying how to choose.
 */
export function chooseServer(found: readonly DiscoveredServer[], config: Pick<ClientConfig, "tls_fingerprint" | "insecure">, waitedMs: number): Partial<ClientConfig> {
  const pinned = config.tls_fingerprint;
  const matching = pinned ? found.filter((s) => s.txt.tlsSha256 === pinned) : found;
  const choose = "set server_host (and server_port) in [client], or give --serverhost HOST --serverport PORT; --newconfig stores the choice";
  if (matching.length === 0) {
    const others = found.length ? `; found only: ${found.map(describe).join("; ")}` : "";
    throw new AutoServerError(
      "NONE_FOUND",
      `server_host = "auto": no inp2ps ${pinned ? `with TLS SHA-256 ${pinned} ` : ""}answered on this LAN within ${waitedMs / 1000} s${others}. ` +
        `Is inp2ps running on this LAN with bonjour on (multicast does not cross routers)? Else ${choose}`,
    );
  }
  if (matching.length > 1)
    throw new AutoServerError(
      "SEVERAL_FOUND",
      `server_host = "auto": ${matching.length} inp2ps servers answered on this LAN:\n${matching.map((s) => `  ${describe(s)}`).join("\n")}\n` +
        `choose one: --serverhost HOST --serverport PORT (add --newconfig to store it), or keep "auto" and pin its --tls-fingerprint`,
    );
  const server = matching[0]!;
  if (!server.txt.tls && !config.insecure)
    throw new AutoServerError(
      "NO_TLS",
      `server_host = "auto": ${describe(server)} serves no TLS, so there is no fingerprint to pin and anyone on the LAN could pose as it; ` +
        `${choose}, with insecure = true if you trust this LAN`,
    );
  return {
    server_host: server.host,
    server_port: server.port,
    insecure: !server.txt.tls,
    ...(server.txt.tlsSha256 ? { tls_fingerprint: server.txt.tlsSha256 } : {}),
    stun_udp1: server.txt.stunUdp[0],
    stun_udp2: server.txt.stunUdp[1],
    stun_tcp1: server.txt.stunTcp[0],
    stun_tcp2: server.txt.stunTcp[1],
  };
}

/**
 * The client settings to run with: as loaded, or with server_host = "auto" the one server found on the
 * LAN, its advertised fingerprint pinned; with --newconfig that choice is stored as a direct endpoint.
 * A configured endpoint is used as it is: Bonjour is only asked when server_host is "auto".
 */
export async function resolveServerHost(loaded: LoadedConfig, logger: Logger): Promise<ClientConfig> {
  const settings = loaded.config.client!;
  if (settings.server_host !== AUTO_SERVER_HOST) return settings;
  if (!settings.bonjour)
    throw new AutoServerError("BONJOUR_OFF", `server_host = "auto" finds the server by Bonjour, which is off (bonjour = false or INP2P_DISABLE_BONJOUR=1): set server_host, or turn Bonjour on`);
  const found = await discover({ logger: logger.child("bonjour"), timeoutMs: DEFAULT_DISCOVER_TIMEOUT_MS, kinds: ["server"] });
  const chosen: ClientConfig = { ...settings, ...chooseServer(found.filter((entry): entry is DiscoveredServer => entry.kind === "server"), settings, DEFAULT_DISCOVER_TIMEOUT_MS) };
  logger.info("using the inp2ps found on this LAN; its certificate must match the advertised fingerprint", { server: `${chosen.server_host}:${chosen.server_port}`, sha256: chosen.tls_fingerprint ?? "none (insecure)" });
  if (loaded.wrote) {
    writeConfig(loaded.path, { ...loaded.config, client: chosen });
    logger.info("stored the server found on the LAN in the config", { file: loaded.path });
  }
  return chosen;
}
