import { randomBytes } from "node:crypto";
import { SecureSession } from "../crypto/index.ts";
import { createLogger } from "../log/index.ts";
import { Link } from "./link.ts";
import { datagramPath, type Path, type PathReceiver } from "./path.ts";

// JavaScriptCore runs a function in its interpreter until it has run some hundreds of times, and
// optimises it only after thousands. A node that has just started has run its per-packet code (seal,
// open, record dispatch) a few dozen times, so its first pings over a link took twice as long as
// the same pings a minute later (1.47 against 0.73 ms over the SDWAN in the NAT lab). Sending a few
// thousand datagrams between two in-memory links at start-up puts that code where traffic would.

/** Datagrams each way: enough for the optimising tier, about 50 ms of CPU once at start-up. */
export const WARM_UP_DATAGRAMS = 3_000;
/** Sizes cycled through: an ICMP echo, a TCP ACK, a full-size packet. */
const WARM_UP_SIZES_BYTES = [84, 52, 1_400] as const;

/** Two in-memory datagram paths, each delivering what the other sends, at once. */
function memoryPathPair(): [Path, Path] {
  const receivers: PathReceiver[] = [() => false, () => false];
  const make = (self: 0 | 1) =>
    datagramPath(
      `memory:${1 - self}`,
      "udp-direct",
      (packet) => receivers[1 - self]!(Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength)),
      (deliver) => (receivers[self] = deliver),
      () => {},
    );
  return [make(0), make(1)];
}

/** Runs a link's per-packet code `datagrams` times each way, between two in-memory links; returns how many datagrams arrived. */
export function warmUpLinks(datagrams = WARM_UP_DATAGRAMS): number {
  const logger = createLogger({ level: "error", write: () => {} });
  const secrets = { initiatorToResponder: randomBytes(32), responderToInitiator: randomBytes(32), chain: randomBytes(32) };
  const sessionId = randomBytes(16);
  const paths = memoryPathPair();
  const links = (["initiator", "responder"] as const).map(
    (role, i) => new Link({ peer: "warm-up", path: paths[i]!, session: new SecureSession({ role, secrets }), role, sessionId, logger }),
  );
  let arrived = 0;
  for (const link of links) link.onDatagram(() => arrived++);
  const payloads = WARM_UP_SIZES_BYTES.map((bytes) => Buffer.alloc(bytes));
  try {
    for (let i = 0; i < datagrams; i++) for (const link of links) link.sendDatagram(payloads[i % payloads.length]!);
  } finally {
    for (const link of links) link.close("warm-up over");
  }
  return arrived;
}
