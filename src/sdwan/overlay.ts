import { isIPv4 } from "node:net";
import type { Logger } from "../log/index.ts";
import { DatagramType, IP_DATAGRAM_TYPES, SUPER_PACKET_HEADER_BYTES, type SdwanMap } from "../protocol/index.ts";
import { SUPER_DATAGRAM_MAX_BYTES, type Link } from "../transport/index.ts";
import { FAIRNESS_WINDOW_MS, FlowAllowances } from "./fairness.ts";
import { isSuperPacket } from "./offload.ts";
import { addRoute, configureInterface, removeRoute } from "./netconf.ts";
import { cidrContains, ipToNumber, ipv4Addresses, parseCidr, type Cidr } from "./packet.ts";
import { openTun, type TunDevice } from "./tun.ts";

/** IP packets held per peer while its link comes up. */
const MAX_PENDING_PACKETS = 64;
/** A peer whose link attempt failed is not tried again for this long (packets to it are dropped). */
const CONNECT_RETRY_MS = 2_000;

/** What the overlay needs of the peer manager. */
export interface OverlayPeers {
  link(peer: string): Link | undefined;
  connect(peer: string): Promise<Link>;
}

/** What the overlay does to the host: the TUN device and the `ip` command (tests give fakes). */
export interface OverlaySystem {
  openTun(name: string): TunDevice;
  configureInterface(device: string, address: string, prefix: number, mtu: number): Promise<void>;
  addRoute(device: string, cidr: string): Promise<void>;
  removeRoute(device: string, cidr: string): Promise<void>;
}

const HOST_SYSTEM: OverlaySystem = { openTun, configureInterface, addRoute, removeRoute };

export interface OverlayInit {
  device: string;
  mtu: number;
  /** LAN subnets this node routes for the others. */
  routes: string[];
  /** Link to every member as soon as the map names it, rather than at the first packet. */
  eager: boolean;
  peers: OverlayPeers;
  logger: Logger;
  /** @default the host's TUN device and `ip` command */
  system?: OverlaySystem;
}

export interface OverlayStatus {
  state: "off" | "waiting for the map" | "up";
  error: string | null;
  interface: string | null;
  address: string | null;
  subnet: string | null;
  members: number;
  packetsOut: number;
  packetsIn: number;
  /** Of those, TCP super-packets sent and taken whole (on lan links carrying pieces; see protocol/apps.ts). */
  superPacketsOut: number;
  superPacketsIn: number;
  /**
   * Packets dropped: no member owns the destination, a peer sent one it may not, no link came up, or
   * its flow was over its allowance while the device's queue overflowed (see fairness.ts).
   */
  dropped: { noRoute: number; refused: number; noLink: number; overAllowance: number };
}

interface Member {
  name: string;
  /** Its virtual address (/32) and the subnets it routes. */
  owns: Cidr[];
}

/**
 * The virtual network on this node: IP packets from the TUN device go to the member owning their
 * destination as link datagrams (never in a reliable stream), and datagrams from members go back to
 * the device when their addresses are ones that member may use.
 */
export class Overlay {
  private tun?: TunDevice;
  private error: string | null = null;
  private map?: SdwanMap;
  private ownNets: Cidr[] = [];
  /** Members by the ranges they own, longest prefix first. */
  private table: { cidr: Cidr; member: Member }[] = [];
  private readonly members = new Map<string, Member>();
  /**
   * Members missing from the latest map whose link is still up: kept routable until that link closes,
   * so that a server restart (when the map fills up again node by node) does not cut established traffic.
   */
  private readonly lingering = new Map<string, Member>();
  private readonly installedRoutes = new Set<string>();
  private readonly pending = new Map<string, Buffer[]>();
  /**
   * The link each peer's packets go over: the peers' current one, looked up as links come and go rather
   * than per packet. A node's peers are another kind of object than the start-up warm-up's (see warm-up.ts),
   * and calling theirs on every packet left the optimised code once per idle packet.
   */
  private readonly links = new Map<string, Link>();
  private readonly failedAt = new Map<string, number>();
  private readonly linking = new Set<string>();
  private configured = "";
  /** Maps wait here to be applied one after the other. */
  private applying: Promise<void> = Promise.resolve();
  /** The version of the map applied last (-1: none since the last login). */
  private appliedVersion = -1;
  private readonly stats = { packetsOut: 0, packetsIn: 0, superPacketsOut: 0, superPacketsIn: 0, dropped: { noRoute: 0, refused: 0, noLink: 0 } };

  private readonly system: OverlaySystem;
  private readonly allowances = new FlowAllowances();
  /** Ends the allowances' current window; unset while no packet flows, so an idle node does not wake for it. */
  private fairnessTimer?: ReturnType<typeof setTimeout>;

  constructor(private readonly init: OverlayInit) {
    this.system = init.system ?? HOST_SYSTEM;
  }

  /** Opens the TUN device; on failure says exactly why and leaves everything else running. */
  start(): boolean {
    try {
      this.tun = this.system.openTun(this.init.device);
    } catch (err) {
      this.error = (err as Error).message;
      this.init.logger.error(`SDWAN is off: ${this.error}; everything else keeps running`);
      return false;
    }
    this.tun.start((withHeadroom, checksumPartial) => this.fromDevice(withHeadroom, checksumPartial), (packet, gsoSize) => this.superPacketFromDevice(packet, gsoSize));
    this.init.logger.info("SDWAN interface created", { device: this.tun.name });
    return true;
  }

  /** The TUN device's name, while it is open. */
  get device(): string | undefined {
    return this.tun?.name;
  }

  get ready(): boolean {
    return this.tun !== undefined;
  }

  stop(): void {
    clearTimeout(this.fairnessTimer);
    this.fairnessTimer = undefined;
    this.tun?.close();
    this.tun = undefined;
  }

  /** Whether packets to `ip` go through the overlay (its subnet, or a member's routes). */
  carries(ip: string): boolean {
    if (!this.map || !isIPv4(ip)) return false;
    const address = ipToNumber(ip);
    return cidrContains(parseCidr(this.map.subnet), address) || this.table.some(({ cidr }) => cidrContains(cidr, address));
  }

  /**
   * The server's map: sets this node's address, routes to the members' subnets, and the table. Maps are
   * applied one at a time in the order they came, and one older than the newest applied is ignored
   * (the `ip` calls of two maps must not interleave, and a late one must not bring back a member that left).
   */
  applyMap(map: SdwanMap): Promise<void> {
    this.applying = this.applying
      .then(() => this.applyIfNewer(map))
      .catch((err: Error) => this.init.logger.error(`SDWAN map ${map.version} could not be applied: ${err.message}`));
    return this.applying;
  }

  /** A new login: the server (perhaps restarted) numbers its maps anew, so the next one holds whatever its version. */
  loggedIn(): void {
    this.applying = this.applying.then(() => {
      this.appliedVersion = -1;
    });
  }

  private async applyIfNewer(map: SdwanMap): Promise<void> {
    const tun = this.tun;
    if (!tun) return;
    if (map.version <= this.appliedVersion) {
      this.init.logger.debug("SDWAN map ignored: not newer than the one applied", { version: map.version, applied: this.appliedVersion });
      return;
    }
    this.appliedVersion = map.version;
    this.map = map;
    const subnet = parseCidr(map.subnet);
    const wanted = `${map.self.ip}/${subnet.prefix}`;
    try {
      if (this.configured !== wanted) {
        await this.system.configureInterface(tun.name, map.self.ip, subnet.prefix, this.init.mtu);
        this.configured = wanted;
        this.init.logger.info("SDWAN address set", { device: tun.name, address: wanted, mtu: this.init.mtu });
      }
      const routes = new Set(map.nodes.flatMap((node) => node.routes).filter((route) => !this.init.routes.includes(route)));
      for (const route of routes) if (!this.installedRoutes.has(route)) await this.system.addRoute(tun.name, route);
      for (const route of this.installedRoutes) if (!routes.has(route)) await this.system.removeRoute(tun.name, route);
      this.installedRoutes.clear();
      routes.forEach((route) => this.installedRoutes.add(route));
    } catch (err) {
      this.error = (err as Error).message;
      this.init.logger.error(`SDWAN interface set-up failed: ${this.error}`);
    }
    this.ownNets = [parseCidr(`${map.self.ip}/32`), ...this.init.routes.map(parseCidr)];
    const previous = new Map(this.members);
    this.members.clear();
    for (const node of map.nodes) {
      this.members.set(node.name, { name: node.name, owns: [parseCidr(`${node.ip}/32`), ...node.routes.map(parseCidr)] });
      this.lingering.delete(node.name);
    }
    for (const [name, member] of previous) {
      const link = this.init.peers.link(name);
      if (this.members.has(name) || !link) continue;
      this.lingering.set(name, member);
      link.onClose(() => {
        if (this.lingering.get(name) !== member) return;
        this.lingering.delete(name);
        this.rebuildTable();
      });
    }
    this.rebuildTable();
    for (const name of this.pending.keys()) if (!this.members.has(name)) this.pending.delete(name);
    this.init.logger.debug("SDWAN map", { version: map.version, self: map.self.ip, members: map.nodes.map((n) => `${n.name}=${n.ip}`).join(" ") });
    if (this.init.eager) for (const member of this.members.values()) this.linkTo(member.name);
  }

  private rebuildTable(): void {
    this.table = [...this.members.values(), ...this.lingering.values()]
      .flatMap((member) => member.owns.map((cidr) => ({ cidr, member })))
      .sort((a, b) => b.cidr.prefix - a.cidr.prefix);
  }

  /** A link to a peer came up: its datagrams may carry IP packets for us. */
  attach(peer: string, link: Link): void {
    link.onDatagram(IP_DATAGRAM_TYPES, (datagram) => this.fromPeer(peer, datagram));
    this.followLink(peer);
    link.onClose(() => this.followLink(peer));
    const queued = this.pending.get(peer);
    if (queued) {
      this.pending.delete(peer);
      for (const datagram of queued) link.sendDatagram(datagram);
    }
  }

  /** Takes up the peers' current link to `peer`, and returns it (none: its packets wait for one to come up). */
  private followLink(peer: string): Link | undefined {
    const link = this.init.peers.link(peer);
    if (link) this.links.set(peer, link);
    else this.links.delete(peer);
    return link;
  }

  /** The link to send `peer`'s packets over now, if any. */
  private linkOf(peer: string): Link | undefined {
    const link = this.links.get(peer);
    return link && !link.closed ? link : this.followLink(peer);
  }

  /** An IP packet from a member, written to the device if its addresses are ones that member may use. */
  private fromPeer(peer: string, datagram: Buffer): void {
    if (!this.tun) return;
    const type = datagram[0];
    const superPacket = type === DatagramType.ipSuperPacket;
    const packet = datagram.subarray(superPacket ? SUPER_PACKET_HEADER_BYTES : 1);
    const addresses = ipv4Addresses(packet);
    const member = this.members.get(peer) ?? this.lingering.get(peer);
    if (!addresses || !member || !anyContains(member.owns, addresses.source) || !anyContains(this.ownNets, addresses.destination)) {
      this.stats.dropped.refused++;
      return;
    }
    if (!superPacket) this.tun.write(packet, type === DatagramType.ipPacketPartialChecksum);
    else if (this.tun.writeSuperPacket(packet, datagram.readUInt16BE(1))) this.stats.superPacketsIn++;
    else {
      this.stats.dropped.refused++; // not a TCP super-packet that the kernel could cut
      return;
    }
    this.stats.packetsIn++;
  }

  status(): OverlayStatus {
    return {
      state: !this.tun ? "off" : this.map ? "up" : "waiting for the map",
      error: this.error,
      interface: this.tun?.name ?? null,
      address: this.map?.self.ip ?? null,
      subnet: this.map?.subnet ?? null,
      members: this.members.size,
      packetsOut: this.stats.packetsOut,
      packetsIn: this.stats.packetsIn,
      superPacketsOut: this.stats.superPacketsOut,
      superPacketsIn: this.stats.superPacketsIn,
      dropped: { ...this.stats.dropped, overAllowance: this.allowances.droppedPackets },
    };
  }

  private endFairnessWindowLater(): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => {
      this.fairnessTimer = undefined;
      if (!this.tun) return;
      if (!this.allowances.active) return this.allowances.pause();
      this.allowances.endWindow(this.tun.queueDrops());
      this.fairnessTimer = this.endFairnessWindowLater();
    }, FAIRNESS_WINDOW_MS);
    timer.unref();
    return timer;
  }

  private fromDevice(withHeadroom: Buffer, checksumPartial: boolean): void {
    this.forward(withHeadroom, checksumPartial);
    // Set up once the packet is on its way: the first packet after an idle spell (a ping) need not wait for it.
    this.fairnessTimer ??= this.endFairnessWindowLater();
  }

  /** `withHeadroom`: the packet behind one spare byte, where the datagram's type goes (no copy). */
  private forward(withHeadroom: Buffer, checksumPartial: boolean): void {
    const packet = withHeadroom.subarray(1);
    if (!this.allowances.admit(packet)) return; // first: under a flood, the fewer steps a dropped packet costs, the better
    const member = this.routeOf(packet);
    if (!member) {
      this.stats.dropped.noRoute++;
      return;
    }
    withHeadroom[0] = checksumPartial ? DatagramType.ipPacketPartialChecksum : DatagramType.ipPacket;
    const link = this.linkOf(member.name);
    if (link) {
      this.stats.packetsOut++;
      link.sendDatagram(withHeadroom); // sealed at once: the buffer may be reused after
      return;
    }
    const queue = this.pending.get(member.name) ?? [];
    if (queue.length >= MAX_PENDING_PACKETS) {
      this.stats.dropped.noLink++;
      return;
    }
    queue.push(Buffer.from(withHeadroom));
    this.pending.set(member.name, queue);
    this.linkTo(member.name);
  }

  /**
   * A TCP super-packet from the device: whole, in one datagram, to a member whose link takes it (a lan
   * link carrying pieces); false when it is to be cut into segments instead (any other link, no route,
   * too large, or more segments than a peer writes).
   */
  private superPacketFromDevice(packet: Buffer, gsoSize: number): boolean {
    if (packet.length > SUPER_DATAGRAM_MAX_BYTES - SUPER_PACKET_HEADER_BYTES || !isSuperPacket(packet, gsoSize)) return false;
    const member = this.routeOf(packet);
    const link = member && this.linkOf(member.name);
    if (!link?.takesSuperPackets) return false;
    this.fairnessTimer ??= this.endFairnessWindowLater();
    if (!this.allowances.admit(packet)) return true;
    // The device's virtio_net_hdr is read by now: its last bytes take the datagram's header, no copy.
    const datagram = Buffer.from(packet.buffer, packet.byteOffset - SUPER_PACKET_HEADER_BYTES, packet.length + SUPER_PACKET_HEADER_BYTES);
    datagram[0] = DatagramType.ipSuperPacket;
    datagram.writeUInt16BE(gsoSize, 1);
    this.stats.packetsOut++;
    this.stats.superPacketsOut++;
    link.sendDatagram(datagram);
    return true;
  }

  /** The member owning an IPv4 packet's destination. */
  private routeOf(packet: Buffer): Member | undefined {
    const addresses = ipv4Addresses(packet);
    if (!addresses) return undefined;
    const table = this.table;
    for (let i = 0; i < table.length; i++) if (cidrContains(table[i]!.cidr, addresses.destination)) return table[i]!.member;
    return undefined;
  }

  private linkTo(peer: string): void {
    if (this.linking.has(peer) || this.init.peers.link(peer) || Date.now() - (this.failedAt.get(peer) ?? 0) < CONNECT_RETRY_MS) return;
    this.linking.add(peer);
    this.init.peers
      .connect(peer)
      .catch((err: Error) => {
        this.failedAt.set(peer, Date.now());
        this.stats.dropped.noLink += this.pending.get(peer)?.length ?? 0;
        this.pending.delete(peer);
        this.init.logger.warn(`SDWAN: no link to ${peer}: ${err.message}`);
      })
      .finally(() => this.linking.delete(peer));
  }
}

/**
 * Whether any of `cidrs` holds `address`. A loop of its own on a packet's path, not `some()` or `find()`:
 * those are shared by all the code of the process, which compiles them for whatever called them most,
 * and an idle packet's call then left the optimised code.
 */
function anyContains(cidrs: readonly Cidr[], address: number): boolean {
  for (let i = 0; i < cidrs.length; i++) if (cidrContains(cidrs[i]!, address)) return true;
  return false;
}
