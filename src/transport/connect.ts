import type { Socket } from "node:dgram";
import { connect as tcpConnect, type Socket as TcpSocket } from "node:net";
import { Handshake, type Identity } from "../crypto/index.ts";
import type { Logger } from "../log/index.ts";
import { isPredictable } from "../nat/allocation.ts";
import { MAX_LAN_CANDIDATES, type ConnectPlan, type NatInfo } from "../protocol/index.ts";
import { PreAuthPool } from "../net/index.ts";
import { WindowBudget } from "./budget.ts";
import {
  CONNECT_ATTEMPT_TIMEOUT_MS,
  Envelope,
  HANDSHAKE_TIMEOUT_MS,
  MAX_PREAUTH_TCP_FRAME_BYTES,
  MAX_TCP_FRAME_BYTES,
  PATH_GRACE_MS,
  PATH_STAGGER_MS,
  PEER_TCP_MAX_PENDING,
  PEER_TCP_MAX_PENDING_PER_ADDRESS,
  SESSION_ID_BYTES,
  SPRAY_WINDOW_MS,
  SPRAYS_PER_PEER_PER_WINDOW,
} from "./constants.ts";
import { endpointText, splitEndpoint, type PeerEndpoint, type UdpSource } from "./endpoint.ts";
import { FramedSocket } from "./framing.ts";
import { Link } from "./link.ts";
import { openHardSide, ownSocketPath, pokePacket, sprayEasySide } from "./birthday.ts";
import { startPrediction, type RunningPrediction } from "./predict.ts";
import { pathRank, tcpPath, udpPath, type PathKind } from "./path.ts";

/** UDP handshake packets are resent this often until answered (they may be lost). */
const HANDSHAKE_RESEND_MS = 250;
/** A TCP punch keeps trying this long, each attempt this long, this far apart. */
const TCP_PUNCH_WINDOW_MS = 4_000;
const TCP_PUNCH_ATTEMPT_MS = 700;
const TCP_PUNCH_RETRY_MS = 100;
/** Remote addresses one coordinated session may try at once (bounds what a stranger can make us hold). */
const MAX_PATHS_PER_SESSION = 16;
/**
 * The responder pokes the initiator's addresses at these offsets (from the start time): each poke
 * opens the responder's own NAT toward the initiator, so the initiator's next resent first message
 * gets in. Spread out so that a few lost packets do not lose the punch.
 */
const POKE_AT_MS = [0, 50, 150, 300, 500, 800, 1200, 1700, 2300, 3000, 4000];
/** Addresses of the initiator one plan pokes, at most: its public one and its LAN ones, as many as the server takes. */
const MAX_POKE_TARGETS = 1 + MAX_LAN_CANDIDATES;

export class ConnectError extends Error {
  readonly code = "NO_PATH";
}

export interface ConnectorInit {
  endpoint: PeerEndpoint;
  identity: Identity;
  logger: Logger;
  /** Called when a plan punches without wide probing because its peer's share is spent (a metric counts it). */
  onProbingLimited?(): void;
  /** Local time of a server timestamp. */
  localTimeOf(serverTime: number): number;
  /** The peer's UDP endpoints found on this LAN (Bonjour): tried first, as `lan` paths. Default: none. */
  lanEndpoints?(peer: string): readonly string[];
}

interface Candidate {
  kind: PathKind;
  transport: "udp" | "tcp";
  remote: string;
}

export function envelope(sessionId: Buffer, message: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([Envelope.handshake]), sessionId, message]);
}

export const handshakeBody = (packet: Buffer) => (packet[0] === Envelope.handshake && packet.length > 1 + SESSION_ID_BYTES ? packet.subarray(1 + SESSION_ID_BYTES) : undefined);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, Math.max(0, ms)));

/** For the log: the TCP punch a plan makes, or why it makes none. */
function tcpPunchText(target: string | null | undefined, endpoint: PeerEndpoint): string {
  if (!endpoint.offers("tcp")) return "none (peer_paths leave out tcp)";
  if (!target) return "none (the peer has no TCP mapping)";
  if (!endpoint.tcpPunch) return `none (no TCP mapping of our own toward ${target})`;
  return `${endpoint.tcpPunch.localPort} -> ${target}`;
}

/** TCP simultaneous open: connect again and again from `localPort` until the peer's SYN meets ours. */
async function punchTcp(remote: string, localPort: number, signal: AbortSignal, logger: Logger): Promise<TcpSocket | undefined> {
  const { host, port } = splitEndpoint(remote);
  const deadline = Date.now() + TCP_PUNCH_WINDOW_MS;
  let attempts = 0;
  let lastError = "none";
  while (!signal.aborted && Date.now() < deadline) {
    attempts++;
    const socket = await new Promise<TcpSocket | undefined>((done) => {
      const attempt = tcpConnect({ host, port, localPort, noDelay: true });
      let settled = false;
      const give = (value?: TcpSocket) => {
        if (settled) return; // a connected socket now belongs to the caller, aborts and all
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        attempt.removeAllListeners("error");
        if (!value) attempt.destroy();
        done(value);
      };
      const onAbort = () => give();
      const timer = setTimeout(() => ((lastError = "timed out"), give()), TCP_PUNCH_ATTEMPT_MS);
      attempt.once("connect", () => give(attempt));
      attempt.once("error", (err: NodeJS.ErrnoException) => ((lastError = err.code ?? err.message), give()));
      signal.addEventListener("abort", onAbort, { once: true });
    });
    if (socket) return signal.aborted ? (socket.destroy(), undefined) : socket;
    await new Promise((r) => setTimeout(r, TCP_PUNCH_RETRY_MS));
  }
  if (!signal.aborted) logger.debug("TCP punch gave up", { remote, from: localPort, attempts, lastError });
  return undefined;
}

/**
 * Whether the birthday technique is needed: a symmetric NAT whose ports cannot be predicted (not
 * sequential: else predict.ts) on the hard side, facing a NAT that only lets in the exact address it
 * has sent to.
 */
export function needsBirthday(hard: NatInfo | undefined, easy: NatInfo | null | undefined): boolean {
  // An easy side that is itself symmetric maps each spray probe anew, so no probe can match what the
  // hard side's sockets opened (they opened toward its STUN-mapped address): spraying would be waste.
  return hard?.natType === "symmetric" && !isPredictable(hard) && !!easy && easy.natType !== "public" && easy.natType !== "symmetric" && easy.filtering === "address-and-port-dependent";
}

/**
 * Whether a punch between these NATs may fail or take seconds, so a relayed link should carry the
 * first bytes while it runs: an unknown or UDP-blocked NAT on either side, or a symmetric NAT facing
 * a port-restricted or symmetric one (port prediction, the birthday technique, or no path at all).
 * A public or cone side facing anything else is reached by a plain punch within a few round trips.
 */
export function punchIsUncertain(mine: NatInfo | null | undefined, theirs: NatInfo | null | undefined): boolean {
  if (!mine || !theirs || mine.natType === "udp-blocked" || theirs.natType === "udp-blocked") return true;
  const hard = ["port-restricted-cone", "symmetric"];
  return (mine.natType === "symmetric" && hard.includes(theirs.natType)) || (theirs.natType === "symmetric" && hard.includes(mine.natType));
}

/** The peer's LAN endpoints: those found on this LAN (`onLan`), then those it reported that are not its public one. */
function lanEndpoints(plan: ConnectPlan, onLan: readonly string[]): Set<string> {
  const c = plan.peer.candidates;
  // A public peer's reported LAN address is its public one: that is UDP direct, not LAN, unless its
  // advertisement reached us on our own link.
  return new Set([...onLan, ...(c?.udpLan ?? []).filter((remote) => remote !== c?.udpPublic)]);
}

/** The paths worth trying toward a peer, best first (LAN, then UDP direct, then TCP direct). */
export function candidatePaths(plan: ConnectPlan, onLan: readonly string[] = []): Candidate[] {
  const c = plan.peer.candidates;
  if (!c) return [];
  const lan = lanEndpoints(plan, onLan);
  const list: Candidate[] = [...lan].map((remote) => ({ kind: "lan" as const, transport: "udp" as const, remote }));
  // A peer behind a NAT is reached at its mapped address only because both sides send at once: a punched path.
  const peerBehindNat = plan.peer.nat ? plan.peer.nat.natType !== "public" : !c.udpLan.includes(c.udpPublic ?? "");
  if (c.udpPublic && !lan.has(c.udpPublic)) list.push({ kind: peerBehindNat ? "udp-punch" : "udp-direct", transport: "udp", remote: c.udpPublic });
  for (const remote of new Set([...c.tcpLan, ...(c.tcpPublic ? [c.tcpPublic] : [])])) list.push({ kind: "tcp-direct", transport: "tcp", remote });
  return list.slice(0, MAX_PATHS_PER_SESSION);
}

/** Runs both sides of link set-up for one coordinated plan. */
export class Connector {
  /** A responder gets the connection, its first frame, and what to call once the peer has authenticated on it. */
  private readonly responders = new Map<string, (framed: FramedSocket, first: Buffer, kind: PathKind, authenticated: () => void) => void>();
  /** TCP connections the peer started whose handshake is not done. */
  private readonly strangers = new PreAuthPool({ maxPerAddress: PEER_TCP_MAX_PENDING_PER_ADDRESS, maxTotal: PEER_TCP_MAX_PENDING, deadlineMs: HANDSHAKE_TIMEOUT_MS });
  private readonly sprays = new WindowBudget(SPRAYS_PER_PEER_PER_WINDOW, SPRAY_WINDOW_MS);

  constructor(private readonly init: ConnectorInit) {
    init.endpoint.onTcp((socket) => this.acceptTcp(socket));
  }

  async run(plan: ConnectPlan): Promise<Link> {
    return plan.role === "initiator" ? this.initiate(plan) : this.respond(plan);
  }

  /** A remote reached through our own SDWAN overlay: a link there would run over itself. */
  private tunnelled(remote: string): boolean {
    return this.init.endpoint.tunnelled(splitEndpoint(remote).host);
  }

  /** Whether this plan may probe widely (SPRAYS_PER_PEER_PER_WINDOW); ask only when it would. */
  private maySpray(plan: ConnectPlan): boolean {
    if (this.sprays.take(plan.peer.name)) return true;
    this.init.onProbingLimited?.();
    this.init.logger.debug("punching without port prediction or the birthday technique: the peer's plans spent their share", { peer: plan.peer.name });
    return false;
  }

  private handshake(plan: ConnectPlan, sessionId: Buffer): Handshake {
    return new Handshake({ identity: this.init.identity, peerPublicKey: plan.peer.publicKey, sessionId, role: plan.role });
  }

  private async initiate(plan: ConnectPlan): Promise<Link> {
    const { endpoint, logger } = this.init;
    const sessionId = Buffer.from(plan.sessionId, "base64url");
    const candidates = candidatePaths(plan, this.init.lanEndpoints?.(plan.peer.name)).filter((c) => endpoint.offers(c.transport) && !this.tunnelled(c.remote));
    if (candidates.length === 0) throw new ConnectError(`peer ${plan.peer.name} has published no addresses yet`);
    await sleep(this.init.localTimeOf(plan.startAt) - Date.now());

    type Success = { candidate: Candidate; finish: () => Link };
    const cleanups: (() => void)[] = [];
    const udpAttempts = new Map<string, (body: Buffer) => void>();
    let heardPoke: (remote: string) => void = () => {};
    cleanups.push(endpoint.routeSession(plan.sessionId, (packet, from) => {
      const remote = endpointText(from.address, from.port);
      if (this.tunnelled(remote)) return;
      const body = handshakeBody(packet);
      if (body) udpAttempts.get(remote)?.(body);
      else heardPoke(remote);
    }));
    // First, so that its pokes make this side's new mappings before anything else does.
    const prediction = startPrediction(endpoint, plan, sessionId, logger, () => this.maySpray(plan));
    if (prediction) cleanups.push(() => prediction.stop());

    return new Promise<Link>((resolve, reject) => {
      let best: Success | undefined;
      let decided = false;
      let graceTimer: ReturnType<typeof setTimeout> | undefined;
      const failures: string[] = [];
      const decide = () => {
        if (decided || !best) return;
        decided = true;
        clearTimeout(graceTimer);
        clearTimeout(giveUp);
        try {
          resolve(best.finish()); // first: it marks its connection chosen, so the clean-up below keeps it
        } catch (err) {
          reject(err);
        } finally {
          cleanups.forEach((cleanup) => cleanup());
        }
      };
      const succeed = (success: Success) => {
        if (decided) return;
        if (!best || pathRank(success.candidate.kind) < pathRank(best.candidate.kind)) best = success;
        if (pathRank(best.candidate.kind) === 0) return decide();
        graceTimer ??= setTimeout(decide, PATH_GRACE_MS);
      };
      const giveUp = setTimeout(() => {
        if (decided) return;
        decided = true;
        cleanups.forEach((cleanup) => cleanup());
        reject(new ConnectError(`no path to ${plan.peer.name} within ${CONNECT_ATTEMPT_TIMEOUT_MS / 1000} s (tried ${candidates.map((c) => `${c.kind} ${c.remote}`).join(", ")}${failures.length ? `; ${failures.join("; ")}` : ""})`));
      }, CONNECT_ATTEMPT_TIMEOUT_MS);

      // A poke naming this session came from where the peer listens (a predicted port): try there.
      let pokedAttempts = 0;
      heardPoke = (remote) => {
        prediction?.heard(remote);
        if (decided || udpAttempts.has(remote) || pokedAttempts >= MAX_PATHS_PER_SESSION) return;
        pokedAttempts++;
        this.tryUdp(plan, sessionId, { kind: "udp-punch", transport: "udp", remote }, udpAttempts, cleanups, succeed);
      };

      candidates.forEach((candidate, index) => {
        const startTimer = setTimeout(() => {
          if (decided) return;
          if (candidate.transport === "udp") this.tryUdp(plan, sessionId, candidate, udpAttempts, cleanups, succeed);
          else this.tryTcp(plan, sessionId, candidate, cleanups, succeed, (why) => failures.push(`${candidate.remote}: ${why}`));
        }, pathRank(candidate.kind) * PATH_STAGGER_MS + index);
        cleanups.push(() => clearTimeout(startTimer));
      });
      const punchTarget = plan.peer.candidates?.tcpPunch;
      logger.debug("racing paths", { peer: plan.peer.name, candidates: candidates.map((c) => `${c.kind}:${c.remote}`).join(" "), tcpPunch: tcpPunchText(punchTarget, endpoint) });

      if (punchTarget && endpoint.tcpPunch && endpoint.offers("tcp")) {
        const candidate: Candidate = { kind: "tcp-punch", transport: "tcp", remote: punchTarget };
        const abort = new AbortController();
        cleanups.push(() => abort.abort());
        const localPort = endpoint.tcpPunch.localPort;
        const start = setTimeout(
          () =>
            void punchTcp(punchTarget, localPort, abort.signal, logger).then((socket) => {
              if (!socket) return;
              if (decided) return socket.destroy();
              this.tryTcp(plan, sessionId, candidate, cleanups, succeed, (why) => failures.push(`tcp-punch ${punchTarget}: ${why}`), socket);
            }),
          pathRank("tcp-punch") * PATH_STAGGER_MS,
        );
        cleanups.push(() => clearTimeout(start));
      }

      const target = plan.peer.candidates?.udpPublic;
      if (target && endpoint.offers("udp") && needsBirthday(endpoint.nat, plan.peer.nat) && this.maySpray(plan)) {
        const stats = { packetsSent: 0 };
        const hard = openHardSide(target, sessionId, endpoint.bindHost, stats);
        cleanups.push(() => {
          hard.stop();
          logger.debug("birthday punch: packets sent from the hard side", { peer: plan.peer.name, packets: stats.packetsSent });
        });
        void hard.punched.then(({ socket, remote }) => {
          if (decided) return socket.close();
          logger.debug("birthday punch hit", { peer: plan.peer.name, remote, packets: stats.packetsSent });
          this.tryOwnSocket(plan, sessionId, socket, remote, cleanups, succeed);
        });
      }
    });
  }

  /** A handshake over a birthday-punched socket of its own. */
  private tryOwnSocket(
    plan: ConnectPlan,
    sessionId: Buffer,
    socket: Socket,
    remote: string,
    cleanups: (() => void)[],
    succeed: (s: { candidate: Candidate; finish: () => Link }) => void,
  ): void {
    const { host, port } = splitEndpoint(remote);
    const handshake = this.handshake(plan, sessionId);
    const first = envelope(sessionId, handshake.start());
    const resend = setInterval(() => socket.send(first, port, host), HANDSHAKE_RESEND_MS);
    let chosen = false;
    cleanups.push(() => {
      clearInterval(resend);
      if (!chosen) socket.close();
    });
    socket.send(first, port, host);
    const onMessage = (packet: Buffer, from: UdpSource) => {
      const body = handshakeBody(packet);
      if (!body || handshake.complete || endpointText(from.address, from.port) !== remote) return;
      try {
        handshake.receive(body);
      } catch {
        return;
      }
      if (!handshake.complete) return;
      clearInterval(resend);
      const candidate: Candidate = { kind: "udp-punch", transport: "udp", remote };
      succeed({
        candidate,
        finish: () => {
          chosen = true;
          socket.off("message", onMessage);
          return this.link(plan, sessionId, ownSocketPath(socket, remote, "udp-punch"), handshake);
        },
      });
    };
    socket.on("message", onMessage);
  }

  private tryUdp(
    plan: ConnectPlan,
    sessionId: Buffer,
    candidate: Candidate,
    attempts: Map<string, (body: Buffer) => void>,
    cleanups: (() => void)[],
    succeed: (s: { candidate: Candidate; finish: () => Link }) => void,
  ): void {
    const { endpoint } = this.init;
    const handshake = this.handshake(plan, sessionId);
    const first = envelope(sessionId, handshake.start());
    const resend = setInterval(() => endpoint.sendUdp(first, candidate.remote), HANDSHAKE_RESEND_MS);
    cleanups.push(() => clearInterval(resend));
    endpoint.sendUdp(first, candidate.remote);
    attempts.set(candidate.remote, (body) => {
      if (handshake.complete) return;
      try {
        handshake.receive(body);
      } catch (err) {
        this.init.logger.debug("handshake reply refused", { peer: plan.peer.name, from: candidate.remote, error: (err as Error).message });
        return;
      }
      clearInterval(resend);
      if (!handshake.complete) return;
      succeed({ candidate, finish: () => this.link(plan, sessionId, udpPath(endpoint, candidate.remote, candidate.kind), handshake) });
    });
  }

  private tryTcp(
    plan: ConnectPlan,
    sessionId: Buffer,
    candidate: Candidate,
    cleanups: (() => void)[],
    succeed: (s: { candidate: Candidate; finish: () => Link }) => void,
    fail: (why: string) => void,
    connected?: TcpSocket,
  ): void {
    const { host, port } = splitEndpoint(candidate.remote);
    const socket = connected ?? tcpConnect({ host, port, noDelay: true });
    let chosen = false;
    cleanups.push(() => !chosen && socket.destroy());
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy(new Error("timed out")));
    socket.on("error", (err) => fail(err.message));
    const framed = new FramedSocket(socket);
    framed.maxFrameBytes = MAX_PREAUTH_TCP_FRAME_BYTES;
    const handshake = this.handshake(plan, sessionId);
    if (connected) framed.send(envelope(sessionId, handshake.start()));
    else socket.on("connect", () => framed.send(envelope(sessionId, handshake.start())));
    framed.onFrame = (frame) => {
      const body = handshakeBody(frame);
      if (!body || handshake.complete) return;
      try {
        handshake.receive(body);
      } catch (err) {
        socket.destroy();
        return fail((err as Error).message);
      }
      if (!handshake.complete) return;
      succeed({
        candidate,
        finish: () => {
          chosen = true;
          socket.setTimeout(0);
          framed.maxFrameBytes = MAX_TCP_FRAME_BYTES;
          return this.link(plan, sessionId, tcpPath(framed, candidate.kind), handshake);
        },
      });
    };
  }

  private respond(plan: ConnectPlan): Promise<Link> {
    const { endpoint, logger } = this.init;
    const sessionId = Buffer.from(plan.sessionId, "base64url");
    const peerLan = lanEndpoints(plan, this.init.lanEndpoints?.(plan.peer.name) ?? []);
    const cleanups: (() => void)[] = [];
    const pokeStart = this.init.localTimeOf(plan.startAt) - Date.now();

    // Port prediction first (its timer before the pokes'), so its pokes make our new mappings first.
    let prediction: RunningPrediction | undefined;
    const predictTimer = setTimeout(() => (prediction = startPrediction(endpoint, plan, sessionId, logger, () => this.maySpray(plan))), Math.max(0, pokeStart));
    cleanups.push(() => {
      clearTimeout(predictTimer);
      prediction?.stop();
    });

    // Open our own NAT toward the initiator's addresses, so its first packets get in.
    const listed = [...(plan.peer.candidates?.udpPublic ? [plan.peer.candidates.udpPublic] : []), ...peerLan];
    const pokeTargets = [...new Set(listed)].filter((target) => !this.tunnelled(target)).slice(0, MAX_POKE_TARGETS);
    const poke = Buffer.from([Envelope.poke]);
    for (const at of POKE_AT_MS) {
      const timer = setTimeout(() => pokeTargets.forEach((target) => endpoint.sendUdp(poke, target)), Math.max(0, pokeStart) + at);
      cleanups.push(() => clearTimeout(timer));
    }
    // Both sides open a TCP connection at once from their probed ports: the SYNs cross in the NATs.
    const punchTarget = plan.peer.candidates?.tcpPunch;
    logger.debug("answering a link plan", { peer: plan.peer.name, pokes: pokeTargets.join(" "), tcpPunch: tcpPunchText(punchTarget, endpoint) });
    if (punchTarget && endpoint.tcpPunch && endpoint.offers("tcp")) {
      const abort = new AbortController();
      cleanups.push(() => abort.abort());
      const localPort = endpoint.tcpPunch.localPort;
      const timer = setTimeout(() => void punchTcp(punchTarget, localPort, abort.signal, logger).then((socket) => socket && this.adoptTcp(socket, "tcp-punch")), Math.max(0, pokeStart));
      cleanups.push(() => clearTimeout(timer));
    }
    // A symmetric initiator facing our port-restricting NAT: spray its IP (the birthday technique).
    const hardIp = plan.peer.candidates?.udpPublic?.replace(/:\d+$/, "");
    if (hardIp && endpoint.offers("udp") && needsBirthday(plan.peer.nat ?? undefined, endpoint.nat) && this.maySpray(plan)) {
      const stats = { packetsSent: 0 };
      let spray: { stop(): void } | undefined;
      const timer = setTimeout(() => (spray = sprayEasySide(endpoint, hardIp, sessionId, stats)), Math.max(0, pokeStart));
      cleanups.push(() => {
        clearTimeout(timer);
        spray?.stop();
        logger.debug("birthday punch: probes sent from the easy side", { peer: plan.peer.name, packets: stats.packetsSent });
      });
    }

    return new Promise<Link>((resolve, reject) => {
      let done = false;
      const finish = (make: () => Link) => {
        if (done) return;
        done = true;
        clearTimeout(giveUp);
        cleanups.forEach((cleanup) => cleanup());
        try {
          resolve(make());
        } catch (err) {
          reject(err);
        }
      };
      const giveUp = setTimeout(() => {
        if (done) return;
        done = true;
        cleanups.forEach((cleanup) => cleanup());
        reject(new ConnectError(`${plan.peer.name} did not complete a handshake within ${CONNECT_ATTEMPT_TIMEOUT_MS / 1000} s`));
      }, CONNECT_ATTEMPT_TIMEOUT_MS);

      // UDP: one handshake per remote address the initiator tries. Each completes on its first message;
      // the path the initiator chose is the one its first authenticated record arrives on.
      const udpHandshakes = new Map<string, Handshake>();
      const answer = (remote: string, body: Buffer) => {
        let handshake = udpHandshakes.get(remote);
        if (!handshake) {
          if (udpHandshakes.size >= MAX_PATHS_PER_SESSION) return; // bound what one session can make us hold
          handshake = this.handshake(plan, sessionId);
          udpHandshakes.set(remote, handshake);
        }
        let reply: Uint8Array | undefined;
        try {
          reply = handshake.receive(body); // a resent first message gets the same answer again
        } catch (err) {
          logger.debug("handshake refused", { peer: plan.peer.name, from: remote, error: (err as Error).message });
          return;
        }
        if (reply) endpoint.sendUdp(envelope(sessionId, reply), remote);
        if (handshake.complete && !cleanupByRemote.has(remote)) {
          const done = handshake;
          // Until a path is chosen, this remote's records come here; the first authentic one chooses it.
          cleanupByRemote.set(remote, endpoint.routeAddress(remote, (packet) => {
            if (packet[0] !== Envelope.sealed || !done.session().open(packet, true, 1)) return false;
            // Punched only when both sides are behind NATs; a public side is reached directly.
            const bothBehindNat = plan.peer.nat?.natType !== "public" && endpoint.nat !== undefined && endpoint.nat.natType !== "public";
            const kind: PathKind = peerLan.has(remote) ? "lan" : bothBehindNat ? "udp-punch" : "udp-direct";
            finish(() => this.link(plan, sessionId, udpPath(endpoint, remote, kind), done));
            return true;
          }));
        }
      };
      const cleanupByRemote = new Map<string, () => void>();
      cleanups.push(() => cleanupByRemote.forEach((cleanup) => cleanup()));
      // A poke naming this session reached us through the initiator's NAT: poke back the way it came,
      // once, so the initiator hears where we are and starts a handshake there.
      const echoed = new Set<string>();
      cleanups.push(endpoint.routeSession(plan.sessionId, (packet, from) => {
        const remote = endpointText(from.address, from.port);
        if (this.tunnelled(remote)) return;
        prediction?.heard(remote);
        const body = handshakeBody(packet);
        if (body) answer(remote, body);
        else if (!echoed.has(remote) && echoed.size < MAX_PATHS_PER_SESSION) {
          echoed.add(remote);
          endpoint.sendUdp(pokePacket(sessionId), remote);
        }
      }));

      // TCP: connections the initiator dialed, handed over by acceptTcp with their first frame.
      this.responders.set(plan.sessionId, (framed, first, kind, authenticated) => {
        const handshake = this.handshake(plan, sessionId);
        const onFrame = (frame: Buffer) => {
          if (handshake.complete) {
            // The initiator's first authenticated record says it chose this connection.
            const chosen = frame[0] === Envelope.sealed ? handshake.session().open(frame, false, 1) : null;
            if (!chosen) return framed.socket.destroy();
            authenticated();
            return finish(() => this.link(plan, sessionId, tcpPath(framed, kind), handshake, chosen.counter + 1));
          }
          const body = handshakeBody(frame);
          if (!body) return framed.socket.destroy();
          try {
            const reply = handshake.receive(body);
            if (reply) framed.send(envelope(sessionId, reply));
          } catch (err) {
            logger.debug("TCP handshake refused", { peer: plan.peer.name, error: (err as Error).message });
            return framed.socket.destroy();
          }
        };
        framed.onFrame = onFrame;
        onFrame(first);
      });
      cleanups.push(() => this.responders.delete(plan.sessionId));
    });
  }

  /** A dialed TCP connection: its first frame names the session it belongs to. */
  private acceptTcp(socket: TcpSocket): void {
    this.adoptTcp(socket, "tcp-direct");
  }

  /**
   * A TCP connection the peer started (accepted, or punched): its first frame names the session. Until
   * the peer authenticates it is a stranger's: small frames, an absolute deadline, a share of a pool.
   */
  private adoptTcp(socket: TcpSocket, kind: PathKind): void {
    socket.on("error", () => socket.destroy());
    const slot = this.strangers.admit(socket);
    if ("refused" in slot) return void socket.destroy();
    socket.setNoDelay(true);
    const framed = new FramedSocket(socket);
    framed.maxFrameBytes = MAX_PREAUTH_TCP_FRAME_BYTES;
    const authenticated = () => {
      slot.authenticated();
      framed.maxFrameBytes = MAX_TCP_FRAME_BYTES;
    };
    framed.onFrame = (frame) => {
      const sessionId = frame[0] === Envelope.handshake && frame.length > 1 + SESSION_ID_BYTES ? frame.subarray(1, 1 + SESSION_ID_BYTES).toString("base64url") : undefined;
      const responder = sessionId ? this.responders.get(sessionId) : undefined;
      if (!responder) return void socket.destroy(); // not a session we expect: a stranger
      responder(framed, frame, kind, authenticated);
    };
  }

  private link(plan: ConnectPlan, sessionId: Buffer, path: ReturnType<typeof udpPath>, handshake: Handshake, firstCounter = 0): Link {
    const link = new Link({ peer: plan.peer.name, path, session: handshake.session(), role: plan.role, sessionId, logger: this.init.logger, firstCounter, plannedAt: plan.startAt });
    // The initiator's first record tells the responder which path it chose; send one at once. That
    // ping goes to the connector, never answered, so the responder pings too: its pong and ping carry
    // what each side offers the other (its pieces port on a lan link) and measure the RTT.
    link.probe();
    this.init.logger.info("peer link up", { peer: plan.peer.name, path: path.kind, remote: path.remote });
    return link;
  }
}
