export { advertiseNode, advertiseServer, lanHostName, nodeServiceName } from "./advertise.ts";
export { DEFAULT_DISCOVER_TIMEOUT_MS, MAX_LAN_ADDRESSES_PER_NODE, MAX_LAN_NODES } from "./constants.ts";
export { discover, type Discovered, type DiscoveredNode, type DiscoveredServer } from "./discover.ts";
export { LanPeers, type LanPeersInit } from "./lan-peers.ts";
export { Mdns, multicastInterfaces, type Found, type MdnsInit, type MulticastInterface } from "./mdns.ts";
