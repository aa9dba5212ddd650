import type { Logger } from "../log/index.ts";
import { decodeNodeTxt, NODE_SERVICE, type NodeTxt } from "../protocol/discovery.ts";
import { advertiseNode } from "./advertise.ts";
import { MAX_LAN_ADDRESSES_PER_NODE, MAX_LAN_NODES } from "./constants.ts";
import type { Mdns } from "./mdns.ts";

export interface LanPeersInit {
  mdns: Mdns;
  logger: Logger;
  /** What this node advertises; its `user` hash also selects which advertisements count. */
  self: Omit<NodeTxt, "role">;
}

/**
 * Nodes of this node's user seen on the LAN (`_inp2p-node._udp`), by node name: the UDP endpoints
 * their advertisements came from. Only a hint for the connect plan: the link handshake still proves
 * the peer's key, so a forged advertisement costs one failed handshake and nothing more.
 */
export class LanPeers {
  /** node name -> service instance name -> "ip:port" */
  private readonly nodes = new Map<string, Map<string, string>>();
  private readonly byService = new Map<string, string>();

  constructor(private readonly init: LanPeersInit) {
    advertiseNode(init.mdns, { logger: init.logger, txt: init.self });
    init.mdns.browse(NODE_SERVICE, (found) => {
      const decoded = decodeNodeTxt(found.txt);
      if ("error" in decoded) return init.logger.debug("ignored a malformed node advertisement", { from: found.address, error: decoded.error });
      this.seen(`${found.name} ${found.address}`, decoded.ok, found.address);
    }, (name) => this.gone(name));
  }

  /** The UDP endpoints on this LAN of the node of this user named `peer`. */
  udpEndpoints(peer: string): string[] {
    return [...(this.nodes.get(peer)?.values() ?? [])];
  }

  private seen(key: string, txt: NodeTxt, address: string): void {
    if (txt.user !== this.init.self.user || txt.node === this.init.self.node || txt.udpPort === 0) return;
    this.forget(key);
    let entries = this.nodes.get(txt.node);
    if (!entries) {
      if (this.nodes.size >= MAX_LAN_NODES) return;
      this.nodes.set(txt.node, (entries = new Map()));
    }
    if (entries.size >= MAX_LAN_ADDRESSES_PER_NODE) return;
    const endpoint = `${address}:${txt.udpPort}`;
    entries.set(key, endpoint);
    this.byService.set(key, txt.node);
    this.init.logger.debug("LAN peer seen", { peer: txt.node, endpoint });
  }

  private gone(service: string): void {
    for (const key of [...this.byService.keys()]) if (key.startsWith(`${service} `)) this.forget(key);
  }

  private forget(key: string): void {
    const node = this.byService.get(key);
    if (node === undefined) return;
    this.byService.delete(key);
    const entries = this.nodes.get(node);
    entries?.delete(key);
    if (entries?.size === 0) this.nodes.delete(node);
  }
}
