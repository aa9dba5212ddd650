// PeerManager.connect around a peer's restart and its presence, against a scripted server (real
// sockets on 127.0.0.1, no other peer): a link request made while the peer is offline must not turn
// into a punch that outlives the peer's return (it once held a TCP app through a relay for over 5 s
// after its peer restarted: the churn soak, test/e2e/churn.test.ts, in CI), and a request while an
// attempt is under way shares it rather than doubling it.
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { PeerError, PeerManager } from "../../src/client/peers.ts";
import { RequestError, type ServerSession } from "../../src/client/session.ts";
import { generateIdentity } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import type { ConnectPlan, NatInfo, PeerInfo } from "../../src/protocol/index.ts";

const PEER = "far";
const NAT: NatInfo = { natType: "port-restricted-cone", mapping: "endpoint-independent", filtering: "address-and-port-dependent", publicAddress: "127.0.0.1", portPreserved: true, tcp: false };
/** Well under the 6 s a punch toward a silent candidate takes to give up. */
const PROMPT_MS = 1_500;

type Request = (kind: string, body: { peer: string }) => Promise<unknown>;

/** A ServerSession as far as PeerManager uses one: online, the peers it knows, requests answered by `answer`. */
function scriptedSession(answer: Request) {
  const peers = new Map<string, PeerInfo>();
  const requests: string[] = [];
  const session = {
    state: "online",
    peers,
    clockOffsetMs: 0,
    serverNow: () => Date.now(),
    request: (kind: string, body: { peer: string }) => {
      requests.push(kind);
      return kind === "report" ? Promise.resolve({}) : answer(kind, body);
    },
  };
  return { session: session as unknown as ServerSession, peers, requests };
}

/** A plan toward a UDP port that never answers: the punch runs until it gives up. */
async function planTowardSilence(): Promise<ConnectPlan> {
  const silent = createSocket("udp4");
  await new Promise<void>((resolve) => silent.bind(0, "127.0.0.1", resolve));
  const port = silent.address().port;
  silent.close();
  const candidates = { udpLan: [`127.0.0.1:${port}`], tcpLan: [], udpPublic: `127.0.0.1:${port}`, tcpPublic: null };
  return { sessionId: randomBytes(16).toString("base64url"), startAt: Date.now(), role: "initiator", peer: { name: PEER, publicKey: generateIdentity().publicKey, instance: randomBytes(8).toString("base64url"), nat: NAT, candidates } };
}

const settledWithin = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise.then(() => "linked", (err: Error) => (err as PeerError).code ?? err.message), new Promise<string>((resolve) => setTimeout(() => resolve(`still pending after ${ms} ms`), ms))]);

describe("PeerManager.connect around a peer's restart and its presence", () => {
  const managers: PeerManager[] = [];
  afterEach(() => managers.splice(0).forEach((manager) => manager.stop()));

  async function startManager(answer: Request) {
    const scripted = scriptedSession(answer);
    const manager = new PeerManager({ session: scripted.session, identity: generateIdentity(), logger: silentLogger, stunHost: "127.0.0.1", stunPort: 9, stunTcpPort: 9, bind: "127.0.0.1" });
    managers.push(manager);
    await manager.start();
    manager.setNat(NAT);
    return { manager, ...scripted };
  }

  it("a peer that needs a relay and is offline: the request fails at once, even if the peer is back before the fallback's plan", async () => {
    const plan = await planTowardSilence();
    // The server had no relay plan (the peer was offline), and then a punch plan (it had logged in again).
    const { manager, requests } = await startManager((kind) => (kind === "relay" ? Promise.reject(new RequestError("PEER_OFFLINE", `peer "${PEER}" is not online`)) : Promise.resolve(plan)));
    (manager as unknown as { needsRelay: Set<string> }).needsRelay.add(PEER); // as after a punch that found no path
    expect(await settledWithin(manager.connect(PEER), PROMPT_MS)).toBe("PEER_OFFLINE");
    expect(requests.filter((kind) => kind !== "report")).toEqual(["relay"]);
    expect(manager.info(PEER), "the link state inp2pc status shows").toMatchObject({ state: "failed", error: `peer "${PEER}" is not online` });
  });

  it("a request while a plan the peer pushed is under way waits for it, even before the peer's run is known here", async () => {
    const { manager, requests } = await startManager(() => new Promise(() => {}));
    manager.acceptPlan(await planTowardSilence()); // the peer asked first; its presence has not come yet
    const request = manager.connect(PEER);
    request.catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(requests.filter((kind) => kind !== "report"), "link requests sent to the server").toEqual([]);
  });
});
