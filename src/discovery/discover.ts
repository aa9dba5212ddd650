import type { Logger } from "../log/index.ts";
import { decodeNodeTxt, decodeServerTxt, NODE_SERVICE, SERVER_SERVICE, type NodeTxt, type ServerTxt } from "../protocol/discovery.ts";
import { MAX_LAN_NODES } from "./constants.ts";
import { Mdns, type Found } from "./mdns.ts";

export interface DiscoveredServer {
  kind: "server";
  name: string;
  host: string;
  port: number;
  txt: ServerTxt;
}

export interface DiscoveredNode {
  kind: "node";
  name: string;
  host: string;
  port: number;
  txt: NodeTxt;
}

export type Discovered = DiscoveredServer | DiscoveredNode;

export interface DiscoverInit {
  logger: Logger;
  timeoutMs: number;
  /** Default both. */
  kinds?: readonly ("server" | "node")[];
}

/** Listens on the LAN for `timeoutMs` and lists the inp2p servers and nodes that answered, servers first. */
export async function discover(init: DiscoverInit): Promise<Discovered[]> {
  const kinds = init.kinds ?? ["server", "node"];
  const found = new Map<string, Discovered>();
  const mdns = new Mdns({ logger: init.logger });
  const keep = (kind: "server" | "node", entry: Found) => {
    const decoded = kind === "server" ? decodeServerTxt(entry.txt) : decodeNodeTxt(entry.txt);
    if ("error" in decoded) return init.logger.debug("ignored a malformed advertisement", { name: entry.name, from: entry.address, error: decoded.error });
    const key = `${kind} ${entry.name} ${entry.address}`;
    if (!found.has(key) && found.size >= MAX_LAN_NODES) return;
    found.set(key, { kind, name: entry.name, host: entry.address, port: entry.port, txt: decoded.ok } as Discovered);
  };
  if (kinds.includes("server")) mdns.browse(SERVER_SERVICE, (entry) => keep("server", entry));
  if (kinds.includes("node")) mdns.browse(NODE_SERVICE, (entry) => keep("node", entry));
  if (mdns.active) await new Promise((done) => setTimeout(done, init.timeoutMs));
  await mdns.stop();
  const rank = (entry: Discovered) => (entry.kind === "server" ? 0 : 1);
  return [...found.values()].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name) || a.host.localeCompare(b.host));
}
