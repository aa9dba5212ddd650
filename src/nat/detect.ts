import { createSocket, type Socket } from "node:dgram";
import { lookup } from "node:dns/promises";
import { connect } from "node:net";
import { formatTable } from "../log/index.ts";
import type { NatAllocation, NatBehaviour, NatInfo, NatType } from "../protocol/index.ts";
import {
  bindingRequest,
  decodeStun,
  mappedAddress,
  newTransactionId,
  readAddress,
  StunAttr,
  type StunAddress,
} from "../protocol/stun.ts";
import { ALLOCATION_FRESH_PROBES, classifyAllocation, freshMappings, type MappingObservation } from "./allocation.ts";

// NAT classification per RFC 5780 from one UDP socket, plus a STUN-over-TCP reachability check.
// Order matters: the filtering tests run before any packet goes to the server's alternate address,
// because sending there would open the very filter hole the tests look for.

/** Retransmission schedule of one STUN transaction: send at each offset, give up at the end. */
export const FIRST_BINDING_SCHEDULE_MS = [0, 250, 600, 1100];
export const FIRST_BINDING_GIVE_UP_MS = 1600;
export const PROBE_SCHEDULE_MS = [0, 200, 450];
export const PROBE_GIVE_UP_MS = 700;
export const TCP_CHECK_TIMEOUT_MS = 1500;
/**
 * How long a STUN TCP server that accepted the connection may take to answer: the connection already
 * shows that TCP gets through, and a busy server (many logins at once) answers late, not never.
 */
export const TCP_ANSWER_TIMEOUT_MS = 4_000;
/** A STUN TCP probe from a given local port still in use by the last one's closing: tried this many times, this far apart. */
const LOCAL_PORT_BUSY_ATTEMPTS = 5;
const LOCAL_PORT_BUSY_RETRY_MS = 20;
export const HAIRPIN_WAIT_MS = 400;
/** The fresh-socket probes start this long after the mapping tests, and the hairpin probe as long after them, so the mappings are made in that order. */
export const ALLOCATION_PROBE_STAGGER_MS = 20;

export interface NatReport extends NatInfo {
  localAddress: string;
  /** null when it could not be tested (no NAT, or no reply to the first binding). */
  hairpinning: boolean | null;
  /** Public address the STUN TCP probe saw, when it worked. */
  tcpPublicAddress: string | null;
  durationMs: number;
  notes: string[];
}

export interface DetectNatOptions {
  serverHost: string;
  udpPorts: [number, number];
  tcpPorts: [number, number];
}

const hostPort = (a: { address: string; port: number }) => (a.address.includes(":") ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
const sameEndpoint = (a?: StunAddress, b?: StunAddress) => !!a && !!b && a.address === b.address && a.port === b.port;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

interface Reply {
  mapped?: StunAddress;
  other?: StunAddress;
  from: { address: string; port: number };
}

/** Runs STUN transactions on one UDP socket, matching replies to requests by transaction id. */
class Prober {
  private readonly pending = new Map<string, (reply: Reply) => void>();
  private readonly ownRequests = new Set<string>();
  hairpinSeen = false;

  constructor(readonly socket: Socket) {
    // ICMP errors (port unreachable from a router or the server) surface as socket errors on
    // Linux; for a probe they just mean no answer, which the timeouts already handle.
    socket.on("error", () => {});
    socket.on("message", (packet, from) => {
      let message;
      try {
        message = decodeStun(packet);
      } catch {
        return; // not STUN, or malformed: ignore
      }
      const id = message.transactionId.toString("hex");
      if (message.cls === "request" && this.ownRequests.has(id)) {
        this.hairpinSeen = true;
        return;
      }
      if (message.cls !== "success") return;
      this.pending.get(id)?.({ mapped: mappedAddress(message), other: readAddress(message, StunAttr.OTHER_ADDRESS) ?? readAddress(message, StunAttr.CHANGED_ADDRESS), from });
    });
  }

  /** One transaction with retransmissions; resolves undefined when the schedule runs out. */
  async transact(to: { address: string; port: number }, schedule: number[], giveUpMs: number, change: { changeIp?: boolean; changePort?: boolean } = {}): Promise<Reply | undefined> {
    const transactionId = newTransactionId();
    const id = transactionId.toString("hex");
    const request = bindingRequest({ ...change, transactionId });
    return new Promise((done) => {
      const timers = schedule.map((at) => setTimeout(() => this.socket.send(request, to.port, to.address), at));
      const finish = (reply?: Reply) => {
        timers.forEach(clearTimeout);
        clearTimeout(giveUp);
        this.pending.delete(id);
        done(reply);
      };
      const giveUp = setTimeout(() => finish(undefined), giveUpMs);
      this.pending.set(id, finish);
    });
  }

  /** Sends a binding request to our own public mapping; a NAT that hairpins delivers it back to us. */
  async hairpin(to: StunAddress): Promise<boolean> {
    const transactionId = newTransactionId();
    this.ownRequests.add(transactionId.toString("hex"));
    this.socket.send(bindingRequest({ transactionId }), to.port, to.address);
    await sleep(HAIRPIN_WAIT_MS);
    return this.hairpinSeen;
  }
}

/**
 * STUN binding over TCP. The server answers once and closes first; we close only after its FIN, so
 * the TIME_WAIT is the server's and our local port is free at once (a TCP punch reuses it): once our
 * close has gone through (the server's ACK of our FIN). A `localPort` still in use then, or by another
 * socket for a moment (EADDRINUSE), is tried again, LOCAL_PORT_BUSY_ATTEMPTS times in all. (Other
 * programs' connections keep off a port only while it is held: see net/tcp-port-hold.ts.)
 */
export async function tcpBinding(
  server: { address: string; port: number },
  { connectTimeoutMs = TCP_CHECK_TIMEOUT_MS, answerTimeoutMs = TCP_ANSWER_TIMEOUT_MS, localPort }: { connectTimeoutMs?: number; answerTimeoutMs?: number; localPort?: number } = {},
): Promise<{ mapped: StunAddress; localPort: number } | undefined> {
  for (let attempt = 1; ; attempt++) {
    const outcome = await tcpBindingOnce(server, connectTimeoutMs, answerTimeoutMs, localPort);
    if (outcome !== "local port busy") return outcome;
    if (attempt === LOCAL_PORT_BUSY_ATTEMPTS) return undefined;
    await sleep(LOCAL_PORT_BUSY_RETRY_MS);
  }
}

function tcpBindingOnce(
  server: { address: string; port: number },
  connectTimeoutMs: number,
  answerTimeoutMs: number,
  localPort: number | undefined,
): Promise<{ mapped: StunAddress; localPort: number } | undefined | "local port busy"> {
  return new Promise((done) => {
    const socket = connect({ host: server.address, port: server.port, ...(localPort ? { localPort } : {}) });
    let received = Buffer.alloc(0);
    let answer: { mapped: StunAddress; localPort: number } | undefined;
    let portBusy = false;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      done(portBusy ? "local port busy" : answer);
    };
    let timer = setTimeout(finish, connectTimeoutMs);
    socket.on("connect", () => {
      clearTimeout(timer);
      timer = setTimeout(finish, answerTimeoutMs);
      socket.write(bindingRequest());
    });
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 20) return;
      const total = 20 + received.readUInt16BE(2);
      if (received.length < total) return;
      try {
        const mapped = mappedAddress(decodeStun(received.subarray(0, total)));
        if (mapped) answer = { mapped, localPort: socket.localPort! };
      } catch {
        finish();
      }
    });
    socket.on("end", finish); // the server's FIN: now closing leaves no TIME_WAIT here
    socket.on("error", (err: NodeJS.ErrnoException) => {
      portBusy = localPort !== undefined && err.code === "EADDRINUSE";
      finish();
    });
    socket.on("close", finish);
  });
}

/** The local address this host uses to reach `server` (what a connected UDP socket is bound to). */
async function localAddressToward(server: string): Promise<string> {
  const probe = createSocket("udp4");
  try {
    await new Promise<void>((done, fail) => probe.connect(9, server, (err?: Error) => (err ? fail(err) : done())));
    return probe.address().address;
  } catch {
    return "0.0.0.0";
  } finally {
    probe.close();
  }
}

export function classify(mapping: NatBehaviour, filtering: NatBehaviour, behindNat: boolean): NatType {
  if (!behindNat) return "public";
  if (mapping !== "endpoint-independent") return "symmetric";
  if (filtering === "endpoint-independent") return "full-cone";
  if (filtering === "address-dependent") return "restricted-cone";
  return "port-restricted-cone";
}

export class NatDetectError extends Error {
  readonly code = "NAT_DETECT";
}

/** Detects this host's NAT against an inp2ps STUN server; finishes in about 2 s, even with UDP blocked. */
export async function detectNat(options: DetectNatOptions): Promise<NatReport> {
  const started = Date.now();
  let serverIp: string;
  try {
    serverIp = (await lookup(options.serverHost, { family: 4 })).address;
  } catch (err) {
    throw new NatDetectError(`cannot resolve STUN server ${options.serverHost}: ${(err as Error).message}`);
  }
  const [udp1, udp2] = options.udpPorts;
  const notes: string[] = [];
  const tcpCheck = tcpBinding({ address: serverIp, port: options.tcpPorts[0] });
  const localIp = await localAddressToward(serverIp);

  const socket = createSocket("udp4");
  await new Promise<void>((done) => socket.bind(0, done));
  const localPort = socket.address().port;
  const prober = new Prober(socket);
  const finish = async (fields: Omit<NatReport, "tcp" | "tcpPublicAddress" | "durationMs" | "localAddress" | "notes">): Promise<NatReport> => {
    socket.close();
    const tcpMapped = (await tcpCheck)?.mapped;
    return {
      ...fields,
      tcp: tcpMapped !== undefined,
      tcpPublicAddress: tcpMapped ? hostPort(tcpMapped) : null,
      localAddress: hostPort({ address: localIp, port: localPort }),
      durationMs: Date.now() - started,
      notes,
    };
  };

  try {
    const first = await prober.transact({ address: serverIp, port: udp1 }, FIRST_BINDING_SCHEDULE_MS, FIRST_BINDING_GIVE_UP_MS);
    if (!first?.mapped) {
      notes.push(`no UDP answer from ${serverIp}:${udp1} within ${FIRST_BINDING_GIVE_UP_MS} ms`);
      return await finish({ natType: "udp-blocked", mapping: "unknown", filtering: "unknown", publicAddress: null, portPreserved: false, hairpinning: null, allocation: { kind: "unknown" } });
    }
    const mapped = first.mapped;
    const behindNat = !(mapped.address === localIp && mapped.port === localPort);
    const altIp = first.other && first.other.address !== serverIp ? first.other.address : undefined;
    if (!altIp) notes.push("the server has no alternate IP (stun_alt_ip): address- and port-dependent behaviour cannot be told apart");

    // Filtering: may the server answer from another IP and port, or from another port only?
    const [fromOtherIpAndPort, fromOtherPort] = await Promise.all([
      altIp ? prober.transact({ address: serverIp, port: udp1 }, PROBE_SCHEDULE_MS, PROBE_GIVE_UP_MS, { changeIp: true, changePort: true }) : undefined,
      prober.transact({ address: serverIp, port: udp1 }, PROBE_SCHEDULE_MS, PROBE_GIVE_UP_MS, { changePort: true }),
    ]);
    let filtering: NatBehaviour;
    if (fromOtherIpAndPort) filtering = "endpoint-independent";
    else if (fromOtherPort) filtering = altIp ? "address-dependent" : "unknown";
    else filtering = "address-and-port-dependent";

    // Mapping: is our public endpoint the same toward another server IP, and toward another port?
    // Then fresh sockets make new mappings one after another, to learn how ports are allocated; the
    // hairpin probe (which may make a mapping too) goes last.
    const stagger = (i: number) => sleep(ALLOCATION_PROBE_STAGGER_MS * (i + 1));
    const [towardAltIp, towardAltIpAndPort, fresh, hairpinning] = await Promise.all([
      altIp ? prober.transact({ address: altIp, port: udp1 }, PROBE_SCHEDULE_MS, PROBE_GIVE_UP_MS) : undefined,
      prober.transact({ address: altIp ?? serverIp, port: udp2 }, PROBE_SCHEDULE_MS, PROBE_GIVE_UP_MS),
      stagger(0).then(() => freshMappings({ address: serverIp, port: udp1 }, ALLOCATION_FRESH_PROBES, "0.0.0.0", PROBE_SCHEDULE_MS, PROBE_GIVE_UP_MS)),
      behindNat ? stagger(1).then(() => prober.hairpin(mapped)) : Promise.resolve(null),
    ]);
    let mapping: NatBehaviour;
    if (!towardAltIpAndPort?.mapped) {
      mapping = "unknown";
      notes.push("no answer from the server's second port; mapping behaviour unknown");
    } else if (altIp) {
      if (sameEndpoint(towardAltIp?.mapped, mapped)) mapping = "endpoint-independent";
      else if (sameEndpoint(towardAltIpAndPort.mapped, towardAltIp?.mapped)) mapping = "address-dependent";
      else mapping = "address-and-port-dependent";
    } else {
      mapping = sameEndpoint(towardAltIpAndPort.mapped, mapped) ? "endpoint-independent" : "address-and-port-dependent";
    }

    // Distinct mappings in the order they were made: the main socket's, then the fresh sockets'.
    const observations: MappingObservation[] = [];
    for (const port of new Set([mapped.port, towardAltIp?.mapped?.port, towardAltIpAndPort?.mapped?.port])) if (port !== undefined) observations.push({ localPort, mappedPort: port });
    for (const observation of fresh) if (observation) observations.push(observation);

    return await finish({
      natType: classify(mapping, filtering, behindNat),
      allocation: classifyAllocation(observations),
      mapping: behindNat ? mapping : "endpoint-independent",
      filtering,
      publicAddress: hostPort(mapped),
      portPreserved: mapped.port === localPort,
      hairpinning,
    });
  } catch (err) {
    socket.close();
    throw err;
  }
}

export function formatAllocation(allocation: NatAllocation | undefined): string {
  if (!allocation) return "unknown";
  if (allocation.kind !== "sequential") return allocation.kind;
  return `sequential (delta ${allocation.delta! > 0 ? "+" : ""}${allocation.delta})`;
}

/** The human table `inp2pc nat` prints. */
export function formatNatReport(report: NatReport): string {
  const rows: [string, string][] = [
    ["NAT type", report.natType],
    ["mapping", report.mapping],
    ["filtering", report.filtering],
    ["public address", report.publicAddress ?? "-"],
    ["local address", report.localAddress],
    ["port preserved", report.portPreserved ? "yes" : "no"],
    ["port allocation", formatAllocation(report.allocation)],
    ["hairpinning", report.hairpinning === null ? "not tested" : report.hairpinning ? "yes" : "no"],
    ["STUN over TCP", report.tcp ? `yes (${report.tcpPublicAddress})` : "no"],
    ["detected in", `${(report.durationMs / 1000).toFixed(1)} s`],
  ];
  return [...formatTable(rows), ...report.notes.map((n) => `note: ${n}`)].join("\n");
}
