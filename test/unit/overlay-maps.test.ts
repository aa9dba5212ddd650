import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log/index.ts";
import type { SdwanMap } from "../../src/protocol/index.ts";
import { Overlay, type OverlaySystem, type TunDevice } from "../../src/sdwan/index.ts";
import { FAIRNESS_WINDOW_MS } from "../../src/sdwan/fairness.ts";
import type { Link } from "../../src/transport/index.ts";

/** At most this many netconf calls are let through before a test gives up (its maps never settled). */
const MAX_RELEASES = 100;

/**
 * A host whose `ip` calls take time and finish in whatever order the test says, like the kernel: an
 * address added twice fails ("File exists"). `packet` pushes an IP packet into the TUN device.
 */
function slowHost() {
  const waiting: (() => void)[] = [];
  const addresses = new Set<string>();
  let onPacket: (packet: Buffer, checksumPartial: boolean) => void = () => {};
  const dropReads = { count: 0 };
  const tun: TunDevice = { name: "fake0", start: (handler) => (onPacket = handler), write: () => {}, writeSuperPacket: () => true, queueDrops: () => (dropReads.count++, 0), readWakes: () => ({ tap: 0, backstop: 0 }), close: () => {} };
  const system: OverlaySystem = {
    openTun: () => tun,
    async configureInterface(_device, address, prefix) {
      addresses.clear();
      await new Promise<void>((resolve) => waiting.push(resolve));
      if (addresses.has(`${address}/${prefix}`)) throw new Error("ip addr add: RTNETLINK answers: File exists");
      addresses.add(`${address}/${prefix}`);
    },
    addRoute: async () => {},
    removeRoute: async () => {},
  };
  /** Lets the netconf calls finish, the newest first, until every promise given has settled. */
  async function finishNewestFirst(settling: Promise<unknown>[]): Promise<void> {
    let settled = false;
    void Promise.allSettled(settling).then(() => (settled = true));
    for (let i = 0; i < MAX_RELEASES && !settled; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      waiting.pop()?.();
    }
    expect(settled, "the maps settled").toBe(true);
  }
  function packet(destination: string): void {
    const withHeadroom = Buffer.alloc(29); // the device hands each packet over behind a byte of headroom
    const ip = withHeadroom.subarray(1);
    ip[0] = 0x45;
    Buffer.from("10.9.0.1".split(".").map(Number)).copy(ip, 12);
    Buffer.from(destination.split(".").map(Number)).copy(ip, 16);
    onPacket(withHeadroom, false);
  }
  return { system, addresses, finishNewestFirst, packet, dropReads };
}

/** Peers that are all linked; what each was sent. */
function linkedPeers() {
  const sent = new Map<string, number>();
  const link = (peer: string) => ({ sendDatagram: () => sent.set(peer, (sent.get(peer) ?? 0) + 1), onClose: () => {} }) as unknown as Link;
  return { sent, peers: { link, connect: async (peer: string) => link(peer) } };
}

const mapOf = (version: number, members: string[]): SdwanMap => ({
  version,
  subnet: "10.9.0.0/24",
  self: { name: "self", ip: "10.9.0.1" },
  nodes: members.map((name, i) => ({ name, ip: `10.9.0.${i + 2}`, routes: [] })),
});

function overlayOn(host: ReturnType<typeof slowHost>, peers: ReturnType<typeof linkedPeers>["peers"]): Overlay {
  const overlay = new Overlay({ device: "fake0", mtu: 1400, routes: [], eager: false, peers, logger: silentLogger, system: host.system });
  expect(overlay.start()).toBe(true);
  return overlay;
}

describe("SDWAN maps arriving back to back", () => {
  it("are applied one at a time, in order: the address is set once and the newest members route", async () => {
    const host = slowHost();
    const { sent, peers } = linkedPeers();
    const overlay = overlayOn(host, peers);
    const first = overlay.applyMap(mapOf(1, ["beta"]));
    const second = overlay.applyMap(mapOf(2, ["beta", "gamma"]));
    await host.finishNewestFirst([first, second]);
    expect(overlay.status()).toMatchObject({ error: null, address: "10.9.0.1", members: 2 });
    expect([...host.addresses]).toEqual(["10.9.0.1/24"]);
    host.packet("10.9.0.3");
    expect(sent.get("gamma"), "a packet to gamma (only on the newer map) went to gamma").toBe(1);
    expect(overlay.status().dropped.noRoute).toBe(0);
  });

  it("never let an older map overwrite a newer one, until a new login starts the count anew", async () => {
    const host = slowHost();
    const { sent, peers } = linkedPeers();
    const overlay = overlayOn(host, peers);
    await host.finishNewestFirst([overlay.applyMap(mapOf(7, ["beta", "gamma"]))]);
    await host.finishNewestFirst([overlay.applyMap(mapOf(6, ["beta"])), overlay.applyMap(mapOf(7, ["beta"]))]);
    expect(overlay.status().members, "maps 6 and the same 7 again left map 7 as it was").toBe(2);
    host.packet("10.9.0.3");
    expect(sent.get("gamma")).toBe(1);
    // The server restarted: its count starts again, and its first map is the one that holds.
    overlay.loggedIn();
    await host.finishNewestFirst([overlay.applyMap(mapOf(1, ["delta"]))]);
    expect(overlay.status().members).toBe(1);
    host.packet("10.9.0.2");
    expect(sent.get("delta"), "a packet to 10.9.0.2 went to delta, its owner on the new server's map").toBe(1);
  });
});

describe("the overlay's fairness windows", () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it("read the device's drop counter only while packets flow: an idle node does not wake for them", async () => {
    const host = slowHost();
    const overlay = overlayOn(host, linkedPeers().peers);
    expect(overlay.start()).toBe(true);
    try {
      await sleep(4 * FAIRNESS_WINDOW_MS);
      expect(host.dropReads.count, "idle").toBe(0);
      for (let i = 0; i < 6; i++) {
        host.packet("10.9.0.2");
        await sleep(FAIRNESS_WINDOW_MS / 2);
      }
      await sleep(FAIRNESS_WINDOW_MS);
      const whileFlowing = host.dropReads.count;
      expect(whileFlowing, "while packets flowed").toBeGreaterThanOrEqual(2);
      await sleep(6 * FAIRNESS_WINDOW_MS);
      expect(host.dropReads.count - whileFlowing, "idle again").toBeLessThanOrEqual(1);
    } finally {
      overlay.stop();
    }
  });
});
