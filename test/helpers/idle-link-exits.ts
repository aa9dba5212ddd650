// Run by test/unit/warm-up.test.ts under BUN_JSC_printEachOSRExit=1 (JavaScriptCore then prints each
// exit from optimised code): an SDWAN node's start-up warm-up, then IP packets one at a time, a few ms
// apart (each an idle packet), both ways from one overlay's device to the other's, over two links shaped
// as a node's planned lan links are, each with the UDP apps' handler beside the overlay's, and overlays
// whose peers are a class's instance as a node's are. Prints "arrived N" at the end.
import { randomBytes } from "node:crypto";
import { writeSync } from "node:fs";
import { SecureSession } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { DatagramType, UDP_APP_DATAGRAM_TYPES } from "../../src/protocol/index.ts";
import { Overlay, warmUpNode } from "../../src/sdwan/index.ts";
import { loadDeviceRead, loadLibc } from "../../src/sdwan/ffi.ts";
import { deviceOnFd } from "../../src/sdwan/tun.ts";
import { PROTOCOL_ICMP } from "../../src/sdwan/packet.ts";
import { deviceRead } from "../../src/sdwan/warm-up.ts";
import { Link, loopbackTcpLinkPair, PeerEndpoint, udpPath } from "../../src/transport/index.ts";

/** A node's peers are an instance of client/peers.ts's Peers (the warm-up's an object literal): a class of the same two methods. */
class PeerLinks {
  constructor(
    private readonly peer: string,
    private readonly only: Link,
  ) {}

  link(peer: string): Link | undefined {
    return peer === this.peer && !this.only.closed ? this.only : undefined;
  }

  connect(): Promise<Link> {
    return Promise.reject(new Error("no other links"));
  }
}

const IDLE_DATAGRAMS_EACH_WAY = 40; // test/unit/warm-up.test.ts counts on 40
const GAP_MS = 5;
const ARRIVAL_TIMEOUT_MS = 2_000;
const ADDRESSES = ["10.255.254.1", "10.255.254.2"] as const;
const PACKET_BYTES = 84;

await warmUpNode(true); // as an SDWAN node does

const endpoints = [new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" }), new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" })];
await Promise.all(endpoints.map((endpoint) => endpoint.start()));
const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
const sessionId = randomBytes(16);
const names = ["node-a", "node-b"];
const links = (["initiator", "responder"] as const).map((role, i) => {
  const path = udpPath(endpoints[i]!, `127.0.0.1:${endpoints[1 - i]!.udpPort}`, "lan");
  // The fields connect.ts gives a planned link, in its order.
  const firstCounter: number | undefined = undefined;
  return new Link({ peer: names[1 - i]!, path, session: new SecureSession({ role, secrets }), role, sessionId, logger: silentLogger, firstCounter, plannedAt: Date.now() });
});
/** Each overlay's device is the TUN device's own code on a socket pair, as the warm-up's are: the other end is the host's side. */
const libc = loadLibc();
const hostFds: number[] = [];
for (const [i, link] of links.entries()) {
  const pair = libc.seqpacketPair();
  if (!pair) throw new Error("socketpair() failed");
  const device = deviceOnFd(pair[0], `idle-${i}`);
  hostFds.push(pair[1]);
  const overlay = new Overlay({
    device: device.name,
    mtu: 1_400,
    routes: [],
    eager: false,
    peers: new PeerLinks(names[1 - i]!, link),
    logger: silentLogger,
    system: { openTun: () => device, configureInterface: async () => {}, addRoute: async () => {}, removeRoute: async () => {} },
  });
  overlay.start();
  await overlay.applyMap({ version: 0, subnet: "10.255.254.0/30", self: { name: names[i]!, ip: ADDRESSES[i]! }, nodes: [{ name: names[1 - i]!, ip: ADDRESSES[1 - i]!, routes: [] }] });
  link.onDatagram(UDP_APP_DATAGRAM_TYPES, () => {}); // as the UDP apps' attach() does
  overlay.attach(names[1 - i]!, link);
}

/** Made before the idle packets: what the helper itself runs then must not add exits of its own. */
const frames = [deviceRead(PACKET_BYTES, PROTOCOL_ICMP, ADDRESSES[0], ADDRESSES[1]), deviceRead(PACKET_BYTES, PROTOCOL_ICMP, ADDRESSES[1], ADDRESSES[0])];
const read = loadDeviceRead();
const readBuffer = Buffer.alloc(2_048);
let arrived = 0;
console.error("idle packets from here"); // on stderr, where JavaScriptCore prints its exits: those before it (the warm-up's own) are not counted
for (let i = 0; i < IDLE_DATAGRAMS_EACH_WAY; i++) {
  for (const [from, to] of [[0, 1], [1, 0]] as const) {
    writeSync(hostFds[from]!, frames[from]!);
    const deadline = performance.now() + ARRIVAL_TIMEOUT_MS;
    while (read(hostFds[to]!, readBuffer) <= 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
    if (performance.now() < deadline) arrived++;
    await new Promise((resolve) => setTimeout(resolve, GAP_MS));
  }
}
console.log(`arrived ${arrived}`);

// Then datagrams one at a time over a link on a TCP connection (as over TCP paths and relays).
const tcp = await loopbackTcpLinkPair();
let arrivedOverTcp = 0;
for (const link of tcp.links) link.onDatagram([DatagramType.ipPacket], () => void arrivedOverTcp++);
const tcpDatagram = Buffer.alloc(1 + PACKET_BYTES);
tcpDatagram[0] = DatagramType.ipPacket;
console.error("idle TCP datagrams from here");
for (let i = 0; i < IDLE_DATAGRAMS_EACH_WAY; i++) {
  for (const from of [0, 1]) {
    const before = arrivedOverTcp;
    tcp.links[from]!.sendDatagram(tcpDatagram);
    const deadline = performance.now() + ARRIVAL_TIMEOUT_MS;
    while (arrivedOverTcp === before && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
    await new Promise((resolve) => setTimeout(resolve, GAP_MS));
  }
}
console.log(`arrived over TCP ${arrivedOverTcp}`);
tcp.close();
for (const link of links) link.close("done");
endpoints.forEach((endpoint) => endpoint.close());
process.exit(0);
