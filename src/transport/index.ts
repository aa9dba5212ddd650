export * from "./constants.ts";
export { WindowBudget } from "./budget.ts";
export { candidatePaths, ConnectError, Connector, punchIsUncertain, type ConnectorInit } from "./connect.ts";
export { endpointText, PeerEndpoint, ROAM_TRIALS_MAX, splitEndpoint, type EndpointInit, type PathRoute } from "./endpoint.ts";
export { FramedSocket, FramingError, readFrames, writeFrame } from "./framing.ts";
export { Link, SUPER_DATAGRAM_MAX_BYTES, type LinkInit, type LinkStats } from "./link.ts";
export { connectViaRelay, RelayError, RELAY_CONNECT_TIMEOUT_MS, type RelayConnectInit } from "./relayed.ts";
export { PATH_KINDS, pathRank, tcpPath, udpPath, type Path, type PathKind, type PathReceiver } from "./path.ts";
export { loopbackLinkPair, loopbackTcpLinkPair, pacedWarmUp, warmUpLinks, WARM_UP_DATAGRAMS, type LinkPair } from "./warm-up.ts";
