import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { ProtocolError, type SdwanDelta, type SdwanMap } from "../protocol/index.ts";
import { cidrContains, ipToNumber, numberToIp, parseCidr, type Cidr } from "../sdwan/packet.ts";
import type { NodeSession, Registry } from "./registry.ts";

export const SDWAN_STORE_FILE = "inp2ps.sdwan.db";

export interface SdwanInit {
  subnet: string;
  /** Fixed addresses by node name (for that name under every user). */
  static: Record<string, string>;
  reserve_hours: number;
}

/**
 * Virtual addresses, one per node and user, kept in an SQLite file so that a node gets its address
 * back after its own or the server's restart. An address stays reserved for its node for
 * `reserve_hours` after the node was last online; only then may another node get it.
 */
export class AddressBook {
  private readonly db: Database;
  private readonly subnet: Cidr;
  private readonly reserveMs: number;
  private readonly statics: Map<string, string>;

  constructor(file: string, private readonly init: SdwanInit) {
    this.subnet = parseCidr(init.subnet);
    this.reserveMs = init.reserve_hours * 3_600_000;
    this.statics = new Map(Object.entries(init.static));
    try {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      this.db = new Database(file, { create: true });
    } catch (err) {
      throw new Error(`cannot open the SDWAN address store ${file}: ${(err as Error).message}`);
    }
    this.db.run("PRAGMA journal_mode = WAL");
    this.db.run("CREATE TABLE IF NOT EXISTS addresses (user TEXT NOT NULL, node TEXT NOT NULL, ip TEXT NOT NULL, last_seen INTEGER NOT NULL, PRIMARY KEY (user, node))");
  }

  get subnetText(): string {
    return this.init.subnet;
  }

  /**
   * The node's address: its static one, else the one it had, else the lowest free one (neither
   * reserved nor `inUse` by a node online now, however long ago that node joined).
   */
  assign(user: string, node: string, now = Date.now(), inUse: ReadonlySet<string> = new Set()): string {
    const fixed = this.statics.get(node);
    const row = this.db.query<{ ip: string }, [string, string]>("SELECT ip FROM addresses WHERE user = ? AND node = ?").get(user, node);
    let ip = fixed ?? (row && cidrContains(this.subnet, ipToNumber(row.ip)) ? row.ip : undefined);
    if (!ip) ip = this.free(user, now, inUse);
    // Whoever held this address before (its reservation ran out, or it is now someone's static one) loses it.
    this.db.run("DELETE FROM addresses WHERE user = ? AND ip = ? AND node != ?", [user, ip, node]);
    this.db.run("INSERT INTO addresses (user, node, ip, last_seen) VALUES (?, ?, ?, ?) ON CONFLICT (user, node) DO UPDATE SET ip = excluded.ip, last_seen = excluded.last_seen", [user, node, ip, now]);
    return ip;
  }

  /** Marks the node as seen now (its reservation runs from its last sighting). */
  touch(user: string, node: string, now = Date.now()): void {
    this.db.run("UPDATE addresses SET last_seen = ? WHERE user = ? AND node = ?", [now, user, node]);
  }

  close(): void {
    this.db.close();
  }

  private free(user: string, now: number, inUse: ReadonlySet<string>): string {
    const taken = new Set<string>([...this.statics.values(), ...inUse]);
    for (const row of this.db.query<{ ip: string }, [string, number]>("SELECT ip FROM addresses WHERE user = ? AND last_seen > ?").all(user, now - this.reserveMs)) taken.add(row.ip);
    const size = 2 ** (32 - this.subnet.prefix);
    // The network and broadcast addresses are not hosts (except in /31 and /32).
    const [first, last] = this.subnet.prefix >= 31 ? [0, size - 1] : [1, size - 2];
    for (let offset = first; offset <= last; offset++) {
      const ip = numberToIp(this.subnet.network + offset);
      if (!taken.has(ip)) return ip;
    }
    throw new ProtocolError("SDWAN_FULL", `no free address left in ${this.init.subnet} (addresses stay reserved for ${this.init.reserve_hours} h after a node was last online)`);
  }
}

/**
 * Who is on the virtual network (per user), and telling them whenever that changes. A node's map
 * holds, and it is told about, only the members `visible` (the ACL) puts beside it.
 */
export class SdwanHub {
  /** Each user's network's changes so far: the version of the maps it gives out now. */
  private readonly versions = new Map<string, number>();

  constructor(
    private readonly book: AddressBook,
    private readonly registry: Registry,
    private readonly visible: (node: NodeSession, member: NodeSession) => boolean = () => true,
  ) {}

  /** A node joins (or updates its routes): it gets its address and the map; the others hear of it (a delta). */
  join(session: NodeSession, routes: string[]): SdwanMap {
    const inUse = new Set(this.members(session.user).filter((node) => node !== session).map((node) => node.sdwan!.ip));
    session.sdwan = { ip: this.book.assign(session.user, session.name, Date.now(), inUse), routes };
    this.changed(session.user);
    this.broadcast(session, { nodes: [{ name: session.name, ip: session.sdwan.ip, routes }], gone: [] });
    return this.mapFor(session);
  }

  /** A node went offline: its address stays reserved, and it leaves every peer's map (a delta). */
  leave(session: NodeSession): void {
    if (!session.sdwan) return;
    this.book.touch(session.user, session.name);
    this.changed(session.user);
    this.broadcast(session, { nodes: [], gone: [session.name] });
  }

  /** What the ACL lets each member reach may have changed (the admin tagged a node): every member gets its map anew. */
  refresh(user: string): void {
    this.changed(user);
    const members = this.members(user);
    for (const node of members) node.send(JSON.stringify({ type: "sdwan", map: this.mapFor(node, members) }));
  }

  private changed(user: string): void {
    this.versions.set(user, (this.versions.get(user) ?? 0) + 1);
  }

  private members(user: string): NodeSession[] {
    return this.registry.ofUser(user).filter((node) => node.sdwan);
  }

  private mapFor(session: NodeSession, members = this.members(session.user)): SdwanMap {
    return {
      version: this.versions.get(session.user) ?? 0,
      subnet: this.book.subnetText,
      self: { name: session.name, ip: session.sdwan!.ip },
      nodes: members.filter((node) => node !== session && this.visible(session, node)).map((node) => ({ name: node.name, ip: node.sdwan!.ip, routes: node.sdwan!.routes })),
    };
  }

  /**
   * Tells every other member of one change, as a delta from the version before: O(members) per change,
   * not a full map each (O(members²)). Members the change is not visible to get it empty, so that
   * every member's next delta follows on from its map.
   */
  private broadcast(about: NodeSession, change: Pick<SdwanDelta, "nodes" | "gone">): void {
    const version = this.versions.get(about.user) ?? 0;
    const text = (visible: boolean) => JSON.stringify({ type: "sdwan-delta", delta: { from: version - 1, version, ...(visible ? change : { nodes: [], gone: [] }) } });
    const [seen, unseen] = [text(true), text(false)];
    for (const node of this.members(about.user)) if (node !== about) node.send(this.visible(node, about) ? seen : unseen);
  }
}
