/** How long `inp2pc discover` and `server_host = "auto"` listen for answers by default. */
export const DEFAULT_DISCOVER_TIMEOUT_MS = 3_000;
/** Nodes remembered from LAN advertisements (and entries `discover` lists), all names together: bounds what the LAN can make us hold. */
export const MAX_LAN_NODES = 256;
/** Addresses remembered per node name (one per interface it answers on). */
export const MAX_LAN_ADDRESSES_PER_NODE = 4;
