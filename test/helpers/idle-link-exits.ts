// Run by test/unit/warm-up.test.ts under BUN_JSC_printEachOSRExit=1 (JavaScriptCore then prints each
// exit from optimised code): an SDWAN node's start-up warm-up, then IP datagrams one at a time, a few ms
// apart (each an idle packet), both ways between two links shaped as a node's planned lan links are,
// each with the UDP apps' handler beside the overlay's. Prints "arrived N" at the end.
import { randomBytes } from "node:crypto";
import { SecureSession } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { DatagramType, UDP_APP_DATAGRAM_TYPES } from "../../src/protocol/index.ts";
import { Overlay, warmUpOverlay, type TunDevice } from "../../src/sdwan/index.ts";
import { ipToNumber } from "../../src/sdwan/packet.ts";
import { Link, PeerEndpoint, udpPath } from "../../src/transport/index.ts";

const IDLE_DATAGRAMS_EACH_WAY = 40; // test/unit/warm-up.test.ts counts on 40
const GAP_MS = 5;
const ARRIVAL_TIMEOUT_MS = 2_000;
const ADDRESSES = ["10.255.254.1", "10.255.254.2"] as const;
const PACKET_BYTES = 84;

await warmUpOverlay();

const endpoints = [new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" }), new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" })];
await Promise.all(endpoints.map((endpoint) => endpoint.start()));
const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
const sessionId = randomBytes(16);
const names = ["node-a", "node-b"];
let arrived = 0;
const links = (["initiator", "responder"] as const).map((role, i) => {
  const path = udpPath(endpoints[i]!, `127.0.0.1:${endpoints[1 - i]!.udpPort}`, "lan");
  // The fields connect.ts gives a planned link, in its order.
  const firstCounter: number | undefined = undefined;
  return new Link({ peer: names[1 - i]!, path, session: new SecureSession({ role, secrets }), role, sessionId, logger: silentLogger, firstCounter, plannedAt: Date.now() });
});
for (const [i, link] of links.entries()) {
  const device: TunDevice = {
    name: `idle-${i}`,
    start: () => {},
    write: () => void arrived++,
    writeSuperPacket: () => false,
    readWakes: () => ({ tap: 0, backstop: 0 }),
    queueDrops: () => 0,
    close: () => {},
  };
  const overlay = new Overlay({
    device: device.name,
    mtu: 1_400,
    routes: [],
    eager: false,
    peers: { link: (peer) => (peer === names[1 - i] ? link : undefined), connect: () => Promise.reject(new Error("no other links")) },
    logger: silentLogger,
    system: { openTun: () => device, configureInterface: async () => {}, addRoute: async () => {}, removeRoute: async () => {} },
  });
  overlay.start();
  await overlay.applyMap({ version: 0, subnet: "10.255.254.0/30", self: { name: names[i]!, ip: ADDRESSES[i]! }, nodes: [{ name: names[1 - i]!, ip: ADDRESSES[1 - i]!, routes: [] }] });
  link.onDatagram(UDP_APP_DATAGRAM_TYPES, () => {}); // as the UDP apps' attach() does
  overlay.attach(names[1 - i]!, link);
}

/** An ICMP echo from `from` to `to`, as a link datagram. */
function ipDatagram(from: string, to: string): Buffer {
  const datagram = Buffer.alloc(1 + PACKET_BYTES);
  datagram[0] = DatagramType.ipPacket;
  const packet = datagram.subarray(1);
  packet[0] = 0x45;
  packet.writeUInt16BE(PACKET_BYTES, 2);
  packet[8] = 64;
  packet[9] = 1;
  packet.writeUInt32BE(ipToNumber(from), 12);
  packet.writeUInt32BE(ipToNumber(to), 16);
  return datagram;
}

for (let i = 0; i < IDLE_DATAGRAMS_EACH_WAY; i++) {
  for (const [from, to] of [[0, 1], [1, 0]] as const) {
    const before = arrived;
    links[from]!.sendDatagram(ipDatagram(ADDRESSES[from], ADDRESSES[to]));
    const deadline = performance.now() + ARRIVAL_TIMEOUT_MS;
    while (arrived === before && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
    await new Promise((resolve) => setTimeout(resolve, GAP_MS));
  }
}
console.log(`arrived ${arrived}`);
for (const link of links) link.close("done");
endpoints.forEach((endpoint) => endpoint.close());
process.exit(0);
