import type { Candidates, NatInfo, PeerInfo, RelayOffer } from "../protocol/index.ts";
import type { NodeReport } from "./node-reports.ts";

export interface NodeSession {
  readonly user: string;
  readonly name: string;
  readonly publicKey: string;
  /** The run of inp2pc logged in (PeerInfo.instance), when the node sends one. */
  readonly instance?: string;
  readonly address: string;
  /** The IP the server sees this node connect from (where its relay, if any, is reached). */
  readonly host: string;
  readonly version: string;
  nat?: NatInfo;
  candidates?: Candidates;
  /** Set while the node offers to relay. */
  relay?: RelayOffer;
  /** Set while the node is on the virtual network. */
  sdwan?: { ip: string; routes: string[] };
  /** The node's last measured heartbeat round trip. */
  rttMs?: number;
  /** The node's latest link table (for the console); it goes with the session. */
  report?: NodeReport;
  readonly onlineSince: number;
  lastHeartbeat: number;
  /** Sends one serialized ServerMessage. */
  send(text: string): void;
  close(code: number, reason: string): void;
}

export const peerInfo = (session: NodeSession): PeerInfo => ({
  name: session.name,
  ...(session.instance ? { instance: session.instance } : {}),
  version: session.version,
  natType: session.nat?.natType,
  onlineSince: session.onlineSince,
});

type ChangeListener = (session: NodeSession, event: "online" | "offline", reason?: "revoked") => void;

/**
 * The nodes online now, by user and name. Nodes of different users never see each other. Who hears of
 * a change is the listeners' business (presence.ts: only the nodes interested in it).
 */
export class Registry {
  private readonly byUser = new Map<string, Map<string, NodeSession>>();
  private readonly listeners: ChangeListener[] = [];

  /** Adds a listener for nodes coming online and going offline (`reason`: the admin revoked it). */
  onChange(listener: ChangeListener): void {
    this.listeners.push(listener);
  }

  get size(): number {
    let count = 0;
    for (const nodes of this.byUser.values()) count += nodes.size;
    return count;
  }

  get(user: string, name: string): NodeSession | undefined {
    return this.byUser.get(user)?.get(name);
  }

  /** Adds a session; returns the session it replaced under the same name, if any. */
  add(session: NodeSession): NodeSession | undefined {
    let nodes = this.byUser.get(session.user);
    if (!nodes) this.byUser.set(session.user, (nodes = new Map()));
    const previous = nodes.get(session.name);
    nodes.set(session.name, session);
    for (const listener of this.listeners) listener(session, "online");
    return previous;
  }

  /** Removes a session if it is still the current one for its name; returns whether it was. Peers hear a revocation as such. */
  remove(session: NodeSession, reason?: "revoked"): boolean {
    const nodes = this.byUser.get(session.user);
    if (nodes?.get(session.name) !== session) return false;
    nodes.delete(session.name);
    if (nodes.size === 0) this.byUser.delete(session.user);
    for (const listener of this.listeners) listener(session, "offline", reason);
    return true;
  }

  /** The nodes of one user online now: O(N) of that user, for answers asked for (peers, the console), never per login. */
  ofUser(user: string): NodeSession[] {
    return [...(this.byUser.get(user)?.values() ?? [])];
  }

  peers(session: NodeSession): NodeSession[] {
    return this.ofUser(session.user).filter((other) => other !== session);
  }

  all(): NodeSession[] {
    return [...this.byUser.values()].flatMap((nodes) => [...nodes.values()]);
  }
}
