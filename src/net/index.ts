export { PreAuthPool, type PreAuthLimits, type PreAuthSlot } from "./preauth.ts";
export { cidrMatcher, clientAddress, IPV6_LIMIT_PREFIX_BITS, limitKey, plainAddress, type ClientAddress } from "./client-address.ts";
export { holdTcpPort, type TcpPortHold } from "./tcp-port-hold.ts";
