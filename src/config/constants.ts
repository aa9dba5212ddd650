// Defaults for every setting. The example files in config/ show the same values.

export const DEFAULT_LOG_LEVEL = "info";
export const DEFAULT_LOG_FORMAT = "text";

export const DEFAULT_SERVER_LISTEN = "0.0.0.0";
export const DEFAULT_WS_PORT = 27183;
export const DEFAULT_STUN_UDP1_PORT = 27182;
export const DEFAULT_STUN_UDP2_PORT = 27183;
export const DEFAULT_STUN_TCP1_PORT = 27180;
export const DEFAULT_STUN_TCP2_PORT = 27181;
export const DEFAULT_TLS_MODE = "auto";
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 10_000;
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_CONNS_PER_IP = 32;
/** Signalling connections that have not logged in yet, all addresses together. */
export const DEFAULT_MAX_CONNS_BEFORE_LOGIN = 1_024;
/**
 * Logins admitted per second once the burst is spent ([server] login_rate); later ones are told when to come back.
 * A login (TLS handshake included) costs inp2ps about 0.5 ms of CPU (idle-clients bench), so this is half a core;
 * a machine that cannot keep up admits fewer (LoginAdmission slows down while the event loop lags).
 */
export const DEFAULT_LOGIN_RATE_PER_S = 1000;
/** Logins admitted at once before the steady rate applies ([server] login_burst). */
export const DEFAULT_LOGIN_BURST = 200;
export const MAX_LOGIN_RATE_PER_S = 100_000;
/** The server relays as the last resort, on its own TCP port, within its own cap. */
export const DEFAULT_SERVER_RELAY = true;
export const DEFAULT_SERVER_RELAY_PORT = 27184;
export const DEFAULT_SERVER_RELAY_BW_MBPS = 100;
/** Admission when the key is absent: "token", as configs from before pairing expect. */
export const DEFAULT_ADMISSION = "token";
/** Admission in a config inp2ps writes itself (first start, --newconfig): the admin approves each node. */
export const NEW_CONFIG_ADMISSION = "approve";
/** A pairing request waits this long for the admin, then its node is told it expired. */
export const DEFAULT_PAIRING_EXPIRY_S = 3_600;
/** Another user's super relay (approved by the admin) comes after the server's own relay unless this is set. */
export const DEFAULT_PREFER_SUPER_RELAYS = false;
/** inp2ps advertises itself on its LAN (_inp2p._tcp); inp2pc advertises itself and finds LAN peers (_inp2p-node._udp). */
export const DEFAULT_BONJOUR = true;
/** Where both programs look for releases to upgrade to (GitHub's layout; see src/protocol/release.ts). */
export const DEFAULT_RELEASE_URL = "https://github.com/inp2p/inp2p/releases";
/** Nodes upgrade themselves when the server announces a newer release only when this is set. */
export const DEFAULT_AUTO_UPGRADE = false;
/** A node with auto_upgrade waits a random time up to this after the announcement, so a fleet does not upgrade at once. */
export const DEFAULT_AUTO_UPGRADE_WINDOW_S = 3_600;
export const MAX_AUTO_UPGRADE_WINDOW_S = 7 * 86_400;
/** inp2ps checks release_url for a newer release this often (0: never; it still announces latest_version and its own). */
export const DEFAULT_RELEASE_CHECK_HOURS = 0;
export const MAX_RELEASE_CHECK_HOURS = 8_760;

export const DEFAULT_SERVER_PORT = DEFAULT_WS_PORT;
export const DEFAULT_RELAY_PORT = 27185;
export const DEFAULT_STATUS_PORT = 27186;
/** Address the peer UDP socket and TCP listener bind; a specific address is also the only LAN candidate. */
export const DEFAULT_PEER_BIND = "0.0.0.0";
export const DEFAULT_BW_MBPS = 10;
export const DEFAULT_INSECURE = false;
export const DEFAULT_RELAY = false;
export const DEFAULT_SUPER = false;
export const DEFAULT_APP_ENABLED = true;
/** Peers reach nothing through a node unless its [client] expose lists it. */
export const DEFAULT_EXPOSE: readonly string[] = [];

/** SDWAN: the TUN interface's name and MTU (room for IP+UDP, the envelope and the record's overhead). */
export const DEFAULT_SDWAN_INTERFACE = "inp2p0";
export const DEFAULT_SDWAN_MTU = 1400;
/** A node's SDWAN address stays reserved for it this long after it was last online. */
export const DEFAULT_SDWAN_RESERVE_HOURS = 720;

// Ranges enforced by the schema.
export const MIN_PORT = 1;
export const MAX_PORT = 65_535;
export const MIN_HEARTBEAT_INTERVAL_MS = 100;
export const MAX_HEARTBEAT_INTERVAL_MS = 600_000;
export const MAX_HEARTBEAT_TIMEOUT_MS = 3_600_000;
export const MAX_CONNS_PER_IP_LIMIT = 100_000;
export const MAX_BW_MBPS = 1_000_000;
export const MIN_SDWAN_MTU = 576;
export const MAX_SDWAN_MTU = 9000;
export const MAX_SDWAN_ROUTES = 64;
export const MAX_EXPOSE_ENTRIES = 256;
export const MAX_SDWAN_RESERVE_HOURS = 87_600;
export const MAX_PAIRING_EXPIRY_S = 30 * 86_400;
export const MAX_AUTO_APPROVE_CIDRS = 256;
export const MAX_TRUSTED_PROXY_CIDRS = 256;
export const MAX_METRICS_ALLOW_CIDRS = 256;
export const MIN_RECONNECT_DELAY_MS = 100;
export const MAX_RECONNECT_DELAY_MS = 3_600_000;
export const MAX_UINT64 = 18_446_744_073_709_551_615n;

export const DEFAULT_USER_NAME = "default";
/** [[server.acl]] selectors: every node of the user, or its nodes with an admin-set tag ("tag:cams"). */
export const ACL_ANY = "*";
export const ACL_TAG_PREFIX = "tag:";
export const SERVER_CONFIG_FILE = "inp2ps.toml";
export const CLIENT_CONFIG_FILE = "inp2pc.toml";


// Environment variables read by loadConfig.
export const ENV_TOKEN = "INP2P_TOKEN";
export const ENV_NODE = "INP2P_NODE";
export const ENV_SERVER = "INP2P_SERVER";
/** "1": no Bonjour advertising (and no LAN peer discovery), whatever the config says. */
export const ENV_DISABLE_BONJOUR = "INP2P_DISABLE_BONJOUR";
