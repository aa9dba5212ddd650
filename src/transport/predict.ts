import { isPredictable } from "../nat/allocation.ts";
import type { Logger } from "../log/index.ts";
import type { ConnectPlan, NatInfo } from "../protocol/index.ts";
import { pokePacket } from "./birthday.ts";
import { endpointText, splitEndpoint, type PeerEndpoint } from "./endpoint.ts";

// Port prediction for a symmetric NAT that allocates ports sequentially (nat/allocation.ts). The hard
// side publishes the port its latest new mapping got (a fresh STUN binding) and the step; its next
// mapping, the one its peer socket makes toward us, lands a few steps further. So we poke a window of
// predicted ports of its IP from our peer socket, opening our own NAT for each exact address; its
// handshake from the predicted port then gets in. A poke carries the session id: a peer that hears
// one starts (initiator) or echoes (responder) the handshake toward where it came from.
//
// Both sides symmetric-sequential ("lockstep"): each side's k-th poke makes its own k-th new mapping.
// The initiator pokes the responder's ports base + k*delta, the responder the initiator's
// base + (2k-1)*delta. With no other mappings made since the bases were published, the first pokes of
// both meet; when the two sides made s other mappings meanwhile (b of them the responder), the
// responder's (1+s)-th poke meets the initiator's (1+s+b)-th, which the odd stride makes possible.

/**
 * Predicted ports poked, from the published base on. Facing a cone the window is wide, to cover the
 * other mappings the hard side may make meanwhile (another link's lockstep pokes among them); in
 * lockstep each poke is a mapping of our own, so fewer.
 */
export const PREDICT_WINDOW_PORTS = 128;
export const PREDICT_LOCKSTEP_PORTS = 64;
/** The window is poked again at these offsets from the start time, until a path confirms. */
export const PREDICT_ROUNDS_AT_MS = [0, 400, 900, 1500, 2200, 3000, 4000];

export interface Prediction {
  ip: string;
  base: number;
  delta: number;
}

/**
 * The peer's next mappings, when they can be predicted. The base is the fresh one it published, else
 * the port of its peer socket's mapping toward the server (older, so further behind, but in the window
 * unless the host made many mappings since).
 */
export function peerPrediction(peer: ConnectPlan["peer"]): Prediction | undefined {
  const udpPublic = peer.candidates?.udpPublic;
  if (!isPredictable(peer.nat) || !udpPublic) return undefined;
  const { host, port } = splitEndpoint(udpPublic);
  return { ip: host, base: peer.candidates?.udpPredict?.base ?? port, delta: peer.candidates?.udpPredict?.delta ?? peer.nat!.allocation!.delta! };
}

/** Whether our NAT needs the predicted ports poked: it lets in only exact addresses we sent to. */
export const needsPrediction = (own: NatInfo | undefined): boolean => !!own && own.natType !== "public" && own.filtering === "address-and-port-dependent";

/** The ports to poke, in order: base + k*delta (dense), or base + (2k-1)*delta (odd; see above). */
export function predictedPorts(prediction: Prediction, stride: "dense" | "odd", count: number): number[] {
  const ports: number[] = [];
  for (let k = 1; k <= count; k++) {
    const port = prediction.base + prediction.delta * (stride === "dense" ? k : 2 * k - 1);
    if (port >= 1 && port <= 65535) ports.push(port);
  }
  return ports;
}

export interface PredictionSpray {
  /** Where each predicted remote is in the window (1 = the first port poked). */
  readonly targets: Map<string, number>;
  readonly packetsSent: number;
  stop(): void;
}

/**
 * Pokes the predicted ports from the peer socket: the first round now (so its new mappings are made
 * before anything else this side sends), the others at PREDICT_ROUNDS_AT_MS, until `stop()`.
 */
export function sprayPredicted(endpoint: PeerEndpoint, prediction: Prediction, stride: "dense" | "odd", sessionId: Buffer, count: number): PredictionSpray {
  const poke = pokePacket(sessionId);
  const remotes = predictedPorts(prediction, stride, count).map((port) => endpointText(prediction.ip, port));
  let packetsSent = 0;
  const round = () => {
    for (const remote of remotes) endpoint.sendUdp(poke, remote);
    packetsSent += remotes.length;
  };
  round();
  const timers = PREDICT_ROUNDS_AT_MS.filter((at) => at > 0).map((at) => setTimeout(round, at));
  return {
    targets: new Map(remotes.map((remote, i) => [remote, i + 1])),
    get packetsSent() {
      return packetsSent;
    },
    stop: () => timers.forEach(clearTimeout),
  };
}

export interface RunningPrediction {
  /** Tell it where a packet of this session came from (notes a hit on a predicted port). */
  heard(remote: string): void;
  stop(): void;
}

/**
 * Starts poking the peer's predicted ports if its NAT allocates sequentially and ours filters by exact
 * address (and `allowed()`, asked only then, agrees); undefined otherwise. Call at the start time, before this side sends anything else.
 * `stop()` logs what it cost and whether the peer answered from a predicted port.
 */
export function startPrediction(endpoint: PeerEndpoint, plan: ConnectPlan, sessionId: Buffer, logger: Logger, allowed: () => boolean): RunningPrediction | undefined {
  const prediction = peerPrediction(plan.peer);
  if (!prediction || !endpoint.offers("udp") || !needsPrediction(endpoint.nat) || !allowed()) return undefined;
  const lockstep = isPredictable(endpoint.nat);
  const stride = lockstep && plan.role === "responder" ? "odd" : "dense";
  const spray = sprayPredicted(endpoint, prediction, stride, sessionId, lockstep ? PREDICT_LOCKSTEP_PORTS : PREDICT_WINDOW_PORTS);
  let hit: { remote: string; index: number } | undefined;
  let stopped = false;
  return {
    heard(remote) {
      const index = spray.targets.get(remote);
      if (index !== undefined) hit ??= { remote, index };
    },
    stop() {
      if (stopped) return;
      stopped = true;
      spray.stop();
      const window = `${prediction.ip}:${prediction.base}${prediction.delta > 0 ? "+" : ""}${prediction.delta}*k (${stride})`;
      if (hit) logger.info("port prediction hit", { peer: plan.peer.name, remote: hit.remote, index: hit.index, window, packets: spray.packetsSent });
      else logger.info("port prediction: no answer from a predicted port", { peer: plan.peer.name, window, packets: spray.packetsSent });
    },
  };
}
