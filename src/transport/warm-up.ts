import { randomBytes } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { SecureSession } from "../crypto/index.ts";
import { silentLogger } from "../log/index.ts";
import { LONE_RECEIVE_IDLE_MS, LONE_SEND_IDLE_MS, PeerEndpoint } from "./endpoint.ts";
import { Link } from "./link.ts";
import { FramedSocket } from "./framing.ts";
import { tcpPath, udpPath, type Path } from "./path.ts";

// JavaScriptCore runs a function in its interpreter until it has run some hundreds of times, and
// optimises it only after thousands. A node that has just started has run its per-packet code (seal,
// open, record dispatch, the UDP socket's send and receive) a few dozen times, so its first pings over
// a link took twice as long as the same pings a minute later (1.47 against 0.73 ms over the SDWAN in
// the NAT lab). Sending a few thousand datagrams at start-up between two links of its own, over two
// peer endpoints on loopback, puts that code where traffic would. (Links in memory, without the
// sockets, left the endpoint's code cold: ab.ts --ping-only gave 1.03 ms against 0.75 over loopback.)

/** Datagrams each way: enough for the optimising tier. */
export const WARM_UP_DATAGRAMS = 3_000;
/** A warm-up gives up after this long (a busy machine), or when nothing arrived for WARM_UP_STALL_MS (a packet lost): what ran is warm all the same. */
const WARM_UP_TIMEOUT_MS = 5_000;
const WARM_UP_STALL_MS = 100;
/**
 * Every so many sends the warm-up pauses for longer than LONE_SEND_IDLE_MS and LONE_RECEIVE_IDLE_MS, so
 * that the next packets take a lone packet's path (an idle link's ping) too: JavaScriptCore compiles
 * code a warm-up never ran to leave the optimised code when reached, and each idle packet paid for that.
 */
const IDLE_GAP_EVERY_SENDS = 25;
const IDLE_GAP_MS = Math.max(LONE_SEND_IDLE_MS, LONE_RECEIVE_IDLE_MS) + 2;
/** The warm-up's datagrams are zeros: their type (first byte) is 0, which no real datagram has. */
const WARM_UP_DATAGRAM_TYPE = 0;
/** Sizes cycled through: an ICMP echo, a TCP ACK, a full-size packet. */
const WARM_UP_SIZES_BYTES = [84, 52, 1_400] as const;

export interface LinkPair {
  links: [Link, Link];
  close(): void;
}

/** Two links between two peer endpoints on loopback (UDP sockets of their own), on a throwaway session. */
export async function loopbackLinkPair(): Promise<LinkPair> {
  const endpoints = [new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" }), new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" })];
  const closeEndpoints = () => endpoints.forEach((endpoint) => endpoint.close());
  try {
    await Promise.all(endpoints.map((endpoint) => endpoint.start()));
  } catch (err) {
    closeEndpoints();
    throw err;
  }
  const paths = endpoints.map((endpoint, i) => udpPath(endpoint, `127.0.0.1:${endpoints[1 - i]!.udpPort}`, "udp-direct"));
  return linkPairOver(paths as [Path, Path], closeEndpoints);
}

/**
 * Two links over one TCP connection on loopback (a listener of their own, closed after). Links over a
 * TCP path or a relay run code that UDP links do not (no send memory of the endpoint's, a framed socket,
 * records checked in turn): after a warm-up over UDP alone, each of their idle packets left the optimised
 * code in sendRecord, seal and receive, each way.
 */
export async function loopbackTcpLinkPair(): Promise<LinkPair> {
  const server = createServer();
  const sockets: Socket[] = [];
  const closeAll = () => {
    sockets.forEach((socket) => socket.destroy());
    server.close();
  };
  try {
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
    const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
    const client = connect((server.address() as { port: number }).port, "127.0.0.1");
    sockets.push(client);
    await new Promise<void>((resolve, reject) => client.once("connect", resolve).once("error", reject));
    sockets.push(await accepted);
  } catch (err) {
    closeAll();
    throw err;
  }
  sockets.forEach((socket) => socket.setNoDelay(true));
  return linkPairOver(sockets.map((socket) => tcpPath(new FramedSocket(socket), "tcp-direct")) as [Path, Path], closeAll);
}

/** Two links, initiator and responder, over two ends of a path, on a throwaway session. */
function linkPairOver(paths: [Path, Path], closePaths: () => void): LinkPair {
  const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
  const sessionId = randomBytes(16);
  const links = (["initiator", "responder"] as const).map(
    (role, i) => new Link({ peer: "warm-up", path: paths[i]!, session: new SecureSession({ role, secrets }), role, sessionId, logger: silentLogger }),
  ) as [Link, Link];
  return {
    links,
    close: () => {
      for (const link of links) link.close("warm-up over");
      closePaths();
    },
  };
}

/**
 * Calls `send` (which sends a few packets each way and says how many each way) until `total` went each
 * way, waiting after each call until `arrived()` (both ways together) has caught up, as traffic would
 * come: every packet then passes the receive path's wake-up too. Gives up after WARM_UP_TIMEOUT_MS, or
 * WARM_UP_STALL_MS without an arrival.
 */
export async function pacedWarmUp(total: number, send: () => number, arrived: () => number): Promise<void> {
  const deadline = performance.now() + WARM_UP_TIMEOUT_MS;
  let lastCount = 0;
  let lastArrivalAt = performance.now();
  for (let sent = 0, sends = 0; sent < total; ) {
    if (++sends % IDLE_GAP_EVERY_SENDS === 0) await new Promise((resolve) => setTimeout(resolve, IDLE_GAP_MS));
    sent += send();
    for (;;) {
      const count = arrived();
      const now = performance.now();
      if (count !== lastCount) [lastCount, lastArrivalAt] = [count, now];
      if (count >= 2 * sent) break;
      if (now >= deadline || now - lastArrivalAt >= WARM_UP_STALL_MS) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/**
 * Runs a link's per-packet code `datagrams` times each way, between two links on loopback (over UDP, or
 * TCP with loopbackTcpLinkPair); returns how many datagrams arrived.
 */
export async function warmUpLinks(datagrams = WARM_UP_DATAGRAMS, linkPair: () => Promise<LinkPair> = loopbackLinkPair): Promise<number> {
  const { links, close } = await linkPair();
  let arrived = 0;
  for (const link of links) link.onDatagram([WARM_UP_DATAGRAM_TYPE], () => arrived++);
  const payloads = WARM_UP_SIZES_BYTES.map((bytes) => Buffer.alloc(bytes));
  try {
    await pacedWarmUp(
      datagrams,
      () => {
        for (const payload of payloads) for (const link of links) link.sendDatagram(payload);
        return payloads.length;
      },
      () => arrived,
    );
  } finally {
    close();
  }
  return arrived;
}
