// Wide probing on a peer's behalf, in-process on loopback: a peer whose plans say it sits behind a
// sequentially allocating symmetric NAT makes this node (behind a port-restricting one) poke 128
// predicted ports of an address the peer chose, 7 times, per plan. Only a few plans per peer and
// window get that; the rest punch without.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/crypto/index.ts";
import { createLogger } from "../../src/log/index.ts";
import type { ConnectPlan, NatInfo } from "../../src/protocol/index.ts";
import { Connector, PeerEndpoint, SPRAYS_PER_PEER_PER_WINDOW } from "../../src/transport/index.ts";

/** Plans at once from the one peer: its share, and as many again. */
const PLANS = 2 * SPRAYS_PER_PEER_PER_WINDOW;
/**
 * Where the peer says its NAT maps: an address nobody listens on, at ports below the ephemeral range
 * (other tests' sockets on this machine never get the pokes).
 */
const CLAIMED_PUBLIC = "127.77.0.1:20000";
const OWN_NAT: NatInfo = { natType: "port-restricted-cone", mapping: "endpoint-independent", filtering: "address-and-port-dependent", publicAddress: "127.0.0.1", portPreserved: true, tcp: true };
const CLAIMED_NAT: NatInfo = {
  natType: "symmetric",
  mapping: "address-and-port-dependent",
  filtering: "address-and-port-dependent",
  publicAddress: "127.77.0.1",
  portPreserved: false,
  tcp: true,
  allocation: { kind: "sequential", delta: 1 },
};

describe("wide probing for one peer's plans", () => {
  let endpoint: PeerEndpoint | undefined;
  afterEach(() => endpoint?.close());

  it(`runs port prediction for ${SPRAYS_PER_PEER_PER_WINDOW} of ${PLANS} plans at once, and punches without for the rest`, async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: "debug", write: (line) => lines.push(line) });
    endpoint = new PeerEndpoint({ logger, host: "127.0.0.1", transports: ["udp"] });
    await endpoint.start();
    endpoint.nat = OWN_NAT;
    let limited = 0;
    const connector = new Connector({ endpoint, identity: generateIdentity(), logger, localTimeOf: (serverTime) => serverTime, onProbingLimited: () => limited++ });
    const peer = { name: "mallory", publicKey: generateIdentity().publicKey, nat: CLAIMED_NAT, candidates: { udpLan: [], tcpLan: [], udpPublic: CLAIMED_PUBLIC, tcpPublic: null } };
    const plans: ConnectPlan[] = Array.from({ length: PLANS }, () => ({ sessionId: randomBytes(16).toString("base64url"), startAt: Date.now(), role: "responder", peer }));
    const results = await Promise.allSettled(plans.map((plan) => connector.run(plan)));
    expect(results.map((r) => r.status)).toEqual(Array(PLANS).fill("rejected")); // nobody answers

    const predictions = lines.filter((line) => line.includes("port prediction: no answer from a predicted port"));
    const packets = predictions.map((line) => Number(/packets=(\d+)/.exec(line)?.[1]));
    console.log(`${predictions.length} of ${PLANS} plans ran port prediction: ${packets.join(", ")} pokes`);
    expect(predictions.length).toBe(SPRAYS_PER_PEER_PER_WINDOW);
    expect(packets.every((n) => n > 0)).toBe(true);
    expect(lines.filter((line) => line.includes("punching without port prediction")).length).toBe(PLANS - SPRAYS_PER_PEER_PER_WINDOW);
    expect(limited).toBe(PLANS - SPRAYS_PER_PEER_PER_WINDOW); // what inp2p_rate_limited_total{limit="wide_probing"} counts
  }, 20_000);
});
