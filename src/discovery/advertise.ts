import { hostname } from "node:os";
import type { Logger } from "../log/index.ts";
import { encodeNodeTxt, encodeServerTxt, NODE_SERVICE, SERVER_SERVICE, type NodeTxt, type ServerTxt } from "../protocol/discovery.ts";
import { Mdns } from "./mdns.ts";

/** This host's name as Bonjour shows it (lanHost). */
export const lanHostName = () => `${hostname().split(".")[0]}.local`;

export interface AdvertiseServerInit {
  logger: Logger;
  /** The address inp2ps listens on: a wildcard advertises on every interface, else on the one holding it. */
  listen: string;
  txt: Omit<ServerTxt, "role" | "lanHost">;
}

/** inp2ps on the LAN: `_inp2p._tcp` with its ports and TLS fingerprint (never a token). */
export function advertiseServer(init: AdvertiseServerInit): Mdns {
  const wildcard = init.listen === "0.0.0.0" || init.listen === "::";
  const mdns = new Mdns({ logger: init.logger, address: wildcard ? undefined : init.listen });
  const txt = encodeServerTxt({ role: "server", lanHost: lanHostName(), ...init.txt });
  const name = `inp2ps-${hostname().split(".")[0]}-${init.txt.wsPort}`;
  mdns.publish({ ...SERVER_SERVICE, name, port: init.txt.wsPort, txt });
  if (mdns.active) init.logger.info("advertising on the LAN (Bonjour _inp2p._tcp; turn off with bonjour = false or INP2P_DISABLE_BONJOUR=1)", { name });
  return mdns;
}

export interface AdvertiseNodeInit {
  logger: Logger;
  txt: Omit<NodeTxt, "role">;
}

/** An inp2pc on the LAN: `_inp2p-node._udp` with its name, its user's hash and its peer ports. */
export function advertiseNode(mdns: Mdns, init: AdvertiseNodeInit): void {
  const name = nodeServiceName(init.txt.node, init.txt.user);
  mdns.publish({ ...NODE_SERVICE, name, port: init.txt.udpPort || init.txt.tcpPort, txt: encodeNodeTxt({ role: "node", ...init.txt }) });
}

/** Unique on a LAN: two users may both have a node named "nas". */
export const nodeServiceName = (node: string, user: string) => `${node.replace(/\./g, "-")}-${user.slice(0, 8)}`;
