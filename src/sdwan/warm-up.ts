import { closeSync, writeSync } from "node:fs";
import { silentLogger } from "../log/index.ts";
import { loopbackLinkPair, loopbackTcpLinkPair, pacedWarmUp, WARM_UP_DATAGRAMS, warmUpLinks } from "../transport/index.ts";
import { loadDeviceRead, loadLibc } from "./ffi.ts";
import { VNET_HEADER_BYTES } from "./offload.ts";
import { Overlay } from "./overlay.ts";
import { ipToNumber, PROTOCOL_ICMP, PROTOCOL_TCP } from "./packet.ts";
import { deviceOnFd } from "./tun.ts";

// The link's warm-up (transport/warm-up.ts) for a node on the SDWAN: it leaves a packet's other steps in
// JavaScriptCore's interpreter (the device's read loop, the read taken apart, the route looked up, the
// datagram checked on arrival, collected and written to the device). This runs IP packets both ways
// between two overlays over two links on loopback, whose devices are the TUN device's own code on a
// socket pair: no TUN device, address or route, so the host's network sees nothing.

const READ_BUFFER_BYTES = 2_048;
const VNET_F_NEEDS_CSUM = 1;
const IPV4_HEADER_BYTES = 20;
const TCP_CHECKSUM_OFFSET = 16;
const ADDRESSES = ["10.255.255.1", "10.255.255.2"] as const;
const SUBNET = "10.255.255.0/30";

/** A TUN read of one packet: an ICMP echo (checksum complete) or a TCP segment (checksum partial), `bytes` long. */
export function deviceRead(bytes: number, protocol: number, from: string, to: string): Buffer {
  const frame = Buffer.alloc(VNET_HEADER_BYTES + bytes);
  const packet = frame.subarray(VNET_HEADER_BYTES);
  packet[0] = 0x45;
  packet.writeUInt16BE(bytes, 2);
  packet[8] = 64;
  packet[9] = protocol;
  packet.writeUInt32BE(ipToNumber(from), 12);
  packet.writeUInt32BE(ipToNumber(to), 16);
  if (protocol === PROTOCOL_TCP) {
    packet[IPV4_HEADER_BYTES + 12] = 0x80; // a 32-byte TCP header (timestamps)
    packet[IPV4_HEADER_BYTES + 13] = 0x10; // ACK
    frame[0] = VNET_F_NEEDS_CSUM;
    frame.writeUInt16LE(IPV4_HEADER_BYTES, 6);
    frame.writeUInt16LE(TCP_CHECKSUM_OFFSET, 8);
  }
  return frame;
}

/**
 * A node's start-up warm-up: its links' per-packet code (with the SDWAN's, when `sdwan`), and at the same
 * time that of links over TCP or a relay, so that the optimised code is made for both kinds of path.
 */
export function warmUpNode(sdwan: boolean): Promise<unknown> {
  return Promise.all([sdwan ? warmUpOverlay() : warmUpLinks(), warmUpLinks(WARM_UP_DATAGRAMS, loopbackTcpLinkPair)]);
}

/** Sends `packets` IP packets each way between two overlays, a few at a time; returns how many reached the far device. */
export async function warmUpOverlay(packets = WARM_UP_DATAGRAMS): Promise<number> {
  const libc = loadLibc();
  const hostFds: number[] = [];
  const { links, close } = await loopbackLinkPair();
  const names = ["warm-up-0", "warm-up-1"];
  const overlays: Overlay[] = [];
  const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  const read = loadDeviceRead();
  /** Packets the devices wrote (each a message on its socket pair). */
  let written = 0;
  const readWritten = () => {
    for (const fd of hostFds) {
      while (read(fd, buffer) > 0) written++;
    }
    return written;
  };
  try {
    for (const [i, link] of links.entries()) {
      const pair = libc.seqpacketPair();
      if (!pair) throw new Error("socketpair() failed");
      const device = deviceOnFd(pair[0], names[i]!);
      hostFds.push(pair[1]);
      const overlay = new Overlay({
        device: names[i]!,
        mtu: 1_400,
        routes: [],
        eager: false,
        peers: { link: (peer) => (peer === names[1 - i] ? link : undefined), connect: () => Promise.reject(new Error("no links in a warm-up")) },
        logger: silentLogger,
        system: { openTun: () => device, configureInterface: async () => {}, addRoute: async () => {}, removeRoute: async () => {} },
      });
      overlays.push(overlay);
      overlay.start();
      await overlay.applyMap({ version: 0, subnet: SUBNET, self: { name: names[i]!, ip: ADDRESSES[i]! }, nodes: [{ name: names[1 - i]!, ip: ADDRESSES[1 - i]!, routes: [] }] });
      overlay.attach(names[1 - i]!, link);
    }
    const reads = [0, 1].map((i) => [
      deviceRead(84, PROTOCOL_ICMP, ADDRESSES[i]!, ADDRESSES[1 - i]!),
      deviceRead(52, PROTOCOL_TCP, ADDRESSES[i]!, ADDRESSES[1 - i]!),
      deviceRead(1_400, PROTOCOL_TCP, ADDRESSES[i]!, ADDRESSES[1 - i]!),
    ]);
    await pacedWarmUp(
      packets,
      () => {
        for (const kind of reads[0]!.keys()) for (const [i, fd] of hostFds.entries()) writeSync(fd, reads[i]![kind]!);
        return reads[0]!.length;
      },
      readWritten,
    );
  } finally {
    overlays.forEach((overlay) => overlay.stop()); // closes the device's end of each pair
    hostFds.forEach((fd) => closeSync(fd));
    close();
  }
  return written;
}
