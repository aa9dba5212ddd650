import { readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { Bonjour, type Browser, type Service } from "bonjour-service";
import type { Logger } from "../log/index.ts";

// Bonjour on every LAN interface at once. One mDNS socket per interface: a multi-homed host (a LAN
// beside the uplink to its NAT router) must send its queries and announcements out of each one, while
// the kernel sends multicast from one socket out of a single interface only (the default route's).
// 224.0.0.251 is link-local: no router forwards it, so nothing found here crossed a network.

const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;
const IFF_MULTICAST = 0x1000;

export interface MulticastInterface {
  device: string;
  address: string;
}

/** IPv4 interfaces that are up and can multicast (Linux: their flags; elsewhere: every non-internal one). */
export function multicastInterfaces(skip: (device: string, address: string) => boolean = () => false, only?: string): MulticastInterface[] {
  const found: MulticastInterface[] = [];
  for (const [device, addresses] of Object.entries(networkInterfaces())) {
    const address = addresses?.find((a) => a.family === "IPv4" && !a.internal && (only === undefined || a.address === only))?.address;
    if (!address || skip(device, address)) continue;
    const flags = deviceFlags(device);
    if (flags !== undefined && ((flags & IFF_UP) === 0 || (flags & IFF_MULTICAST) === 0 || (flags & IFF_LOOPBACK) !== 0)) continue;
    found.push({ device, address });
  }
  return found;
}

function deviceFlags(device: string): number | undefined {
  try {
    return Number(readFileSync(`/sys/class/net/${device}/flags`, "utf8").trim());
  } catch {
    return undefined;
  }
}

export interface ServiceType {
  type: string;
  protocol: "tcp" | "udp";
}

export interface Found {
  /** The service instance's name (unique on the LAN). */
  name: string;
  /** The address its answer came from: on our own link, so reachable from here. */
  address: string;
  port: number;
  txt: unknown;
}

export interface MdnsInit {
  logger: Logger;
  /** Interfaces to leave out (the SDWAN device: peers behind it are not on this LAN). */
  skip?: (device: string, address: string) => boolean;
  /** Only the interface holding this address (a server listening on one address); default: all. */
  address?: string;
}

/** Publishes and browses on each multicast interface; errors are logged once each, never thrown. */
export class Mdns {
  private readonly instances: { device: string; bonjour: Bonjour }[] = [];
  private readonly browsers: Browser[] = [];
  private readonly warned = new Set<string>();

  /** No usable interface: one log line, and an Mdns that does nothing. */
  constructor(private readonly init: MdnsInit) {
    const interfaces = multicastInterfaces(init.skip, init.address);
    if (interfaces.length === 0) {
      init.logger.warn(
        init.address === undefined
          ? "Bonjour: no network interface that is up supports multicast; LAN discovery is off"
          : `Bonjour: no network interface that is up and supports multicast holds ${init.address}; not advertising on the LAN`,
      );
      return;
    }
    for (const { device, address } of interfaces) {
      const onError = (err: Error & { code?: string }) => this.failed(device, address, err);
      let bonjour: Bonjour;
      try {
        // Options of multicast-dns, which bonjour-service hands on (its types name only its own).
        bonjour = new Bonjour({ interface: address, bind: "0.0.0.0" } as object, onError);
      } catch (err) {
        onError(err as Error);
        continue;
      }
      const mdns = (bonjour as unknown as { server: { mdns: NodeJS.EventEmitter } }).server.mdns;
      mdns.on("error", onError);
      mdns.on("warning", (err: Error & { code?: string }) => this.warnOnce(`${device} ${err.code ?? err.message}`, `Bonjour on ${device} (${address}): ${err.message}`, "debug"));
      this.instances.push({ device, bonjour });
    }
  }

  /** Whether any interface still runs mDNS. */
  get active(): boolean {
    return this.instances.length > 0;
  }

  publish(service: ServiceType & { name: string; port: number; txt: Record<string, string> }): void {
    for (const { device, bonjour } of this.instances) {
      try {
        // probe = false: names are unique by construction; a name conflict would print to the console.
        bonjour.publish({ name: service.name, type: service.type, protocol: service.protocol, port: service.port, txt: service.txt, probe: false, disableIPv6: true });
      } catch (err) {
        this.warnOnce(`${device} publish ${service.name}`, `Bonjour on ${device}: cannot advertise ${service.name}: ${(err as Error).message}`, "warn");
      }
    }
  }

  /** Calls `up` for each service of `type` seen (again when it changes) and `down` when it leaves. */
  browse(type: ServiceType, up: (found: Found) => void, down: (name: string) => void = () => {}): void {
    for (const { bonjour } of this.instances) {
      const browser = bonjour.find({ type: type.type, protocol: type.protocol });
      const seen = (service: Service) => {
        if (service.referer?.address && service.port) up({ name: service.name, address: service.referer.address, port: service.port, txt: service.txt });
      };
      browser.on("up", seen);
      browser.on("srv-update", seen);
      browser.on("txt-update", seen);
      browser.on("down", (service: Service) => down(service.name));
      this.browsers.push(browser);
    }
  }

  /** Says goodbye for what it published (TTL 0), then closes every socket. */
  async stop(): Promise<void> {
    for (const browser of this.browsers.splice(0)) browser.stop();
    const instances = this.instances.splice(0);
    await Promise.all(
      instances.map(
        ({ bonjour }) =>
          new Promise<void>((done) => {
            const close = () => {
              try {
                bonjour.destroy(() => done());
              } catch {
                done();
              }
            };
            try {
              bonjour.unpublishAll(close);
            } catch {
              close();
            }
          }),
      ),
    );
  }

  private failed(device: string, address: string, err: Error & { code?: string }): void {
    this.warnOnce(`${device} failed`, `Bonjour off on ${device} (${address}): ${err.code ? `${err.code}: ` : ""}${err.message}`, "warn");
    const index = this.instances.findIndex((instance) => instance.device === device);
    if (index < 0) return;
    const { bonjour } = this.instances.splice(index, 1)[0]!;
    try {
      bonjour.destroy();
    } catch {
      // its socket may never have opened
    }
    if (this.instances.length === 0) this.init.logger.warn("Bonjour: no interface left; LAN discovery is off");
  }

  private warnOnce(key: string, message: string, level: "warn" | "debug"): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.init.logger[level](message);
  }
}
