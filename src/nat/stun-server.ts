import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, isIP, type Server, type Socket } from "node:net";
import type { Logger } from "../log/index.ts";
import { limitKey, PreAuthPool } from "../net/index.ts";
import {
  addressAttribute,
  decodeStun,
  encodeStun,
  errorCodeAttribute,
  MAX_STUN_MESSAGE_BYTES,
  readAttribute,
  readChangeRequest,
  STUN_BINDING_METHOD,
  STUN_HEADER_BYTES,
  StunAttr,
  verifyFingerprint,
  type StunAddress,
  type StunAttribute,
  type StunMessage,
} from "../protocol/stun.ts";

// The STUN server of inp2ps: RFC 5389 Binding over UDP and TCP, RFC 5780 CHANGE-REQUEST /
// RESPONSE-ORIGIN / OTHER-ADDRESS, and answers RFC 3489 clients (no magic cookie) the way they
// expect: MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS, every attribute a multiple of 4 long.
//
// Sockets form a grid: IP index 0 = primaryIp, 1 = altIp; port index 0 = udp1/tcp1, 1 = udp2/tcp2.
// Each socket is bound to its own address so a reply leaves from exactly the address it names.
//
// Amplification: a minimal Binding request is 20 bytes; the IPv4 answer with an alternate address is
// about 84 bytes (4x), an IPv6 one up to about 150 (7x). That is why every answer is charged to the
// source's token bucket: a spoofed source can be sent at most the burst, then the rate, per UDP socket.
// A source is an IPv4 address or an IPv6 /64. Buckets are per protocol and per socket, so that packets
// spoofed from a victim's address to one port cannot starve its probes over TCP or to the other ports.

/** Answers per second one source may get from one socket (UDP and TCP each, per IP and port). */
export const DEFAULT_STUN_RESPONSES_PER_SECOND_PER_SOURCE = 20;
/** Bucket size, as a multiple of the per-second rate. */
export const STUN_RESPONSE_BURST_FACTOR = 2;
/** Bound on the number of source IPs whose buckets are remembered (least recently seen forgotten first). */
export const MAX_RATE_LIMITED_SOURCES = 10_000;
/** A TCP probe still open this long after its accept is closed (however it trickles bytes). */
export const STUN_TCP_DEADLINE_MS = 5_000;
export const MAX_STUN_TCP_CONNECTIONS_PER_SOURCE = 4;
export const MAX_STUN_TCP_CONNECTIONS = 1_024;
/** Dropped packets are logged (at debug) at most once per this interval, with a count. */
export const STUN_DROP_LOG_INTERVAL_MS = 10_000;
/** SOFTWARE must stay under 128 characters (RFC 5389 §15.10). */
const MAX_SOFTWARE_CHARS = 127;
/** Comprehension-required attributes a request may carry; any other one gets a 420. */
const UNDERSTOOD = new Set<number>([StunAttr.CHANGE_REQUEST, StunAttr.USERNAME, StunAttr.MESSAGE_INTEGRITY]);

export interface StunServerInit {
  primaryIp: string;
  /** Alternate public IP for CHANGE-REQUEST change-IP; needs a specific primaryIp of the same family. */
  altIp?: string;
  udpPorts: [number, number];
  tcpPorts: [number, number];
  software: string;
  logger: Logger;
  /** Default DEFAULT_STUN_RESPONSES_PER_SECOND_PER_SOURCE. */
  responsesPerSecondPerSource?: number;
  /** Default STUN_TCP_DEADLINE_MS. */
  tcpDeadlineMs?: number;
  /** Called for each request dropped by the per-source answer rate (a metric counts them). */
  onRateLimited?(): void;
}

export interface RunningStunServer {
  stop(): Promise<void>;
  /** The ports really bound (port 0 in the init picks free ones). */
  udpPorts: [number, number];
  tcpPorts: [number, number];
  altIp?: string;
}

export type StunServerErrorCode = "STUN_CONFIG" | "STUN_BIND";

export class StunServerError extends Error {
  constructor(
    readonly code: StunServerErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Token bucket per key (a source, with the socket it reached). Map order is least recently seen first, so eviction is O(1). */
export class SourceRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  take(source: string): boolean {
    const now = this.now();
    const bucket = this.buckets.get(source) ?? { tokens: this.burst, atMs: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.atMs) * this.perSecond) / 1000);
    bucket.atMs = now;
    this.buckets.delete(source);
    if (this.buckets.size >= MAX_RATE_LIMITED_SOURCES) this.buckets.delete(this.buckets.keys().next().value!);
    this.buckets.set(source, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}

const isWildcard = (ip: string) => ip === "0.0.0.0" || ip === "::";

/** A socket's view of a peer as a STUN address; IPv4-mapped IPv6 ("::ffff:1.2.3.4") becomes IPv4. */
function stunAddress(ip: string, port: number): StunAddress {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return { family: 4, address: mapped[1]!, port };
  return { family: isIP(ip) === 6 ? 6 : 4, address: ip, port };
}

interface Cell {
  ip: 0 | 1;
  port: 0 | 1;
}
type Outcome = { reply: Buffer; from: Cell } | { drop: string };

/** Decides what to answer; knows the address grid but does no I/O. */
class Responder {
  constructor(
    private readonly ips: string[],
    private readonly software: string,
    private readonly limiter: SourceRateLimiter,
    private readonly onRateLimited: () => void = () => {},
  ) {}

  answer(packet: Buffer, client: StunAddress, at: Cell, ports: [number, number], transport: "udp" | "tcp"): Outcome {
    let request: StunMessage;
    try {
      request = decodeStun(packet);
    } catch (err) {
      return { drop: (err as Error).message };
    }
    if (request.cls !== "request") return { drop: `a ${request.cls}, not a request` };
    if (readAttribute(request, StunAttr.FINGERPRINT) && !verifyFingerprint(packet)) return { drop: "FINGERPRINT does not match" };
    if (!this.limiter.take(`${transport} ${at.ip}:${ports[at.port]} ${limitKey(client.address)}`)) {
      this.onRateLimited();
      return { drop: "over the per-source answer rate" };
    }
    const reply = (bytes: Buffer, from: Cell = at) => ({ reply: bytes, from });
    if (request.method !== STUN_BINDING_METHOD) return reply(this.error(request, 400, "Bad Request: only Binding is served"));
    const unknown = request.attributes.filter((a) => a.type < 0x8000 && !UNDERSTOOD.has(a.type)).map((a) => a.type);
    if (unknown.length > 0) return reply(this.error(request, 420, "Unknown Attribute", unknown));
    // Over TCP the answer can only come back on the same connection: CHANGE-REQUEST is ignored there.
    const change = transport === "udp" ? readChangeRequest(request) : { changeIp: false, changePort: false };
    const hasAlt = this.ips.length === 2;
    if (change.changeIp && !hasAlt) {
      // RFC 5780 §6: a server without a second IP includes no OTHER-ADDRESS and answers CHANGE-REQUEST with
      // 420. RFC 3489 clients match answers by transaction id only and would count a 420 as the change-IP
      // test passing, so they get no answer, which is what they read as "change-IP not possible".
      if (request.rfc3489) return { drop: "change-IP asked, but there is no alternate IP" };
      return reply(this.error(request, 420, "Unknown Attribute: no alternate IP for change-IP", [StunAttr.CHANGE_REQUEST]));
    }
    const from: Cell = { ip: change.changeIp ? flip(at.ip) : at.ip, port: change.changePort ? flip(at.port) : at.port };
    const origin = this.endpoint(from, ports);
    const other = hasAlt ? this.endpoint({ ip: flip(at.ip), port: flip(at.port) }, ports) : undefined;
    const id = request.transactionId;
    const attributes: StunAttribute[] = [];
    if (request.rfc3489) {
      attributes.push(addressAttribute(StunAttr.MAPPED_ADDRESS, client, id));
      if (origin) attributes.push(addressAttribute(StunAttr.SOURCE_ADDRESS, origin, id));
      if (other) attributes.push(addressAttribute(StunAttr.CHANGED_ADDRESS, other, id));
    } else {
      attributes.push(addressAttribute(StunAttr.XOR_MAPPED_ADDRESS, client, id));
      attributes.push(addressAttribute(StunAttr.MAPPED_ADDRESS, client, id));
      if (origin) attributes.push(addressAttribute(StunAttr.RESPONSE_ORIGIN, origin, id));
      if (other) attributes.push(addressAttribute(StunAttr.OTHER_ADDRESS, other, id));
    }
    attributes.push({ type: StunAttr.SOFTWARE, value: text(this.software, request.rfc3489) });
    return reply(this.encode(request, attributes, "success"), from);
  }

  /** Where the socket of `cell` is, as a client should see it; undefined when bound to a wildcard. */
  private endpoint(cell: Cell, ports: [number, number]): StunAddress | undefined {
    const ip = this.ips[cell.ip]!;
    return isWildcard(ip) ? undefined : stunAddress(ip, ports[cell.port]);
  }

  private error(request: StunMessage, code: number, reason: string, unknown: number[] = []): Buffer {
    const errorCode = errorCodeAttribute(code, "");
    const attributes = [{ type: errorCode.type, value: Buffer.concat([errorCode.value, text(reason, request.rfc3489)]) }];
    if (unknown.length > 0) {
      // RFC 3489 wants the list a multiple of 4 bytes long: an odd count repeats one attribute.
      const types = request.rfc3489 && unknown.length % 2 === 1 ? [...unknown, unknown.at(-1)!] : unknown;
      const value = Buffer.alloc(types.length * 2);
      types.forEach((type, i) => value.writeUInt16BE(type, i * 2));
      attributes.push({ type: StunAttr.UNKNOWN_ATTRIBUTES, value });
    }
    return this.encode(request, attributes, "error");
  }

  private encode(request: StunMessage, attributes: StunAttribute[], cls: "success" | "error"): Buffer {
    const fingerprint = !request.rfc3489 && readAttribute(request, StunAttr.FINGERPRINT) !== undefined;
    const { transactionId, rfc3489 } = request;
    return encodeStun({ method: request.method, cls, transactionId, rfc3489, attributes }, { fingerprint });
  }
}

const flip = (i: 0 | 1): 0 | 1 => (i === 0 ? 1 : 0);

/** UTF-8 text; for RFC 3489 padded with spaces to a multiple of 4 (its parsers skip no padding). */
function text(value: string, rfc3489: boolean): Buffer {
  const bytes = Buffer.from(value, "utf8");
  return rfc3489 ? Buffer.concat([bytes, Buffer.alloc((4 - (bytes.length % 4)) % 4, " ")]) : bytes;
}

/** Counts dropped packets and logs them at debug at most once per STUN_DROP_LOG_INTERVAL_MS. */
class DropLog {
  private count = 0;
  private lastLogMs = 0;

  constructor(private readonly logger: Logger) {}

  note(reason: string, from: string): void {
    this.count++;
    const now = Date.now();
    if (now - this.lastLogMs < STUN_DROP_LOG_INTERVAL_MS) return;
    this.logger.debug("STUN packets dropped", { count: this.count, last: reason, from });
    this.count = 0;
    this.lastLogMs = now;
  }
}

function bindUdp(ip: string, port: number): Promise<UdpSocket> {
  const socket = createSocket({ type: isIP(ip) === 6 ? "udp6" : "udp4" });
  return new Promise((done, fail) => {
    socket.once("error", (err) => {
      socket.close();
      fail(new StunServerError("STUN_BIND", `cannot bind STUN UDP ${hostPort(ip, port)}: ${err.message}`));
    });
    socket.bind({ address: ip, port, exclusive: true }, () => {
      socket.removeAllListeners("error");
      done(socket);
    });
  });
}

function listenTcp(server: Server, ip: string, port: number): Promise<Server> {
  return new Promise((done, fail) => {
    server.once("error", (err) => fail(new StunServerError("STUN_BIND", `cannot listen on STUN TCP ${hostPort(ip, port)}: ${err.message}`)));
    server.listen({ host: ip, port, exclusive: true }, () => {
      server.removeAllListeners("error");
      done(server);
    });
  });
}

const hostPort = (ip: string, port: number) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);

export async function startStunServer(init: StunServerInit): Promise<RunningStunServer> {
  const { primaryIp, altIp, logger } = init;
  if (isIP(primaryIp) === 0) throw new StunServerError("STUN_CONFIG", `STUN address must be an IP address, got "${primaryIp}"`);
  if (altIp !== undefined) {
    if (isWildcard(primaryIp)) {
      throw new StunServerError(
        "STUN_CONFIG",
        `stun_alt_ip ${altIp} needs a specific primary address, but STUN would bind ${primaryIp}: set stun_ip to this server's first public IP`,
      );
    }
    if (isIP(altIp) !== isIP(primaryIp)) throw new StunServerError("STUN_CONFIG", `stun_alt_ip ${altIp} and the STUN address ${primaryIp} must both be IPv4 or both IPv6`);
    if (altIp === primaryIp) throw new StunServerError("STUN_CONFIG", `stun_alt_ip must differ from the STUN address ${primaryIp}`);
  }
  const ips = altIp === undefined ? [primaryIp] : [primaryIp, altIp];
  const perSecond = init.responsesPerSecondPerSource ?? DEFAULT_STUN_RESPONSES_PER_SECOND_PER_SOURCE;
  const responder = new Responder(ips, init.software.slice(0, MAX_SOFTWARE_CHARS), new SourceRateLimiter(perSecond, perSecond * STUN_RESPONSE_BURST_FACTOR), init.onRateLimited);
  const drops = new DropLog(logger);
  const udp: UdpSocket[][] = [];
  const tcp: Server[] = [];
  const strangers = new PreAuthPool({ maxPerAddress: MAX_STUN_TCP_CONNECTIONS_PER_SOURCE, maxTotal: MAX_STUN_TCP_CONNECTIONS, deadlineMs: init.tcpDeadlineMs ?? STUN_TCP_DEADLINE_MS });
  const udpPorts: [number, number] = [...init.udpPorts];
  const tcpPorts: [number, number] = [...init.tcpPorts];

  let closed: Promise<void> | undefined;
  const closeAll = () => {
    closed ??= (async () => {
      strangers.destroyAll();
      await Promise.all([
        ...udp.flat().map((s) => new Promise<void>((done) => s.close(() => done()))),
        ...tcp.map((s) => new Promise<void>((done) => s.close(() => done()))),
      ]);
    })();
    return closed;
  };

  const onUdp = (at: Cell) => (packet: Buffer, peer: { address: string; port: number }) => {
    try {
      const outcome = responder.answer(packet, stunAddress(peer.address, peer.port), at, udpPorts, "udp");
      if ("drop" in outcome) return drops.note(outcome.drop, peer.address);
      udp[outcome.from.ip]![outcome.from.port]!.send(outcome.reply, peer.port, peer.address, (err) => {
        if (err) drops.note(`send failed: ${err.message}`, peer.address);
      });
    } catch (err) {
      drops.note(`internal error: ${(err as Error).message}`, peer.address);
    }
  };

  const onTcp = (at: Cell) => (socket: Socket) => {
    const source = stunAddress(socket.remoteAddress ?? "", socket.remotePort ?? 0);
    // A probe never authenticates: it stays in the pool until it closes, or the deadline closes it.
    if ("refused" in strangers.admit(socket)) {
      drops.note("too many STUN TCP connections", source.address);
      socket.destroy();
      return;
    }
    socket.on("error", () => socket.destroy());
    // RFC 5389 framing over TCP: a 20-byte header, then its length. One request is answered, then the
    // server closes first, so the client's local port is free for reuse at once (no TIME_WAIT there).
    let buffered = Buffer.alloc(0);
    let answered = false;
    socket.on("data", (chunk: Buffer) => {
      if (answered) return;
      const room = MAX_STUN_MESSAGE_BYTES - buffered.length;
      buffered = Buffer.concat([buffered, chunk.subarray(0, room)]);
      if (buffered.length < STUN_HEADER_BYTES) return;
      const total = STUN_HEADER_BYTES + buffered.readUInt16BE(2);
      if ((buffered[0]! & 0xc0) !== 0 || total > MAX_STUN_MESSAGE_BYTES) {
        drops.note("TCP stream is not STUN", source.address);
        socket.destroy();
        return;
      }
      if (buffered.length < total) return;
      answered = true;
      try {
        const outcome = responder.answer(buffered.subarray(0, total), source, at, tcpPorts, "tcp");
        if ("drop" in outcome) {
          drops.note(outcome.drop, source.address);
          socket.destroy();
        } else socket.end(outcome.reply);
      } catch (err) {
        drops.note(`internal error: ${(err as Error).message}`, source.address);
        socket.destroy();
      }
    });
  };

  try {
    for (const [i, ip] of ips.entries()) {
      const row: UdpSocket[] = [];
      udp.push(row);
      for (const p of [0, 1] as const) {
        const socket = await bindUdp(ip, udpPorts[p]);
        udpPorts[p] = socket.address().port;
        socket.on("message", onUdp({ ip: i as 0 | 1, port: p }));
        socket.on("error", (err) => logger.warn("STUN UDP socket error", { address: hostPort(ip, udpPorts[p]), error: err }));
        row.push(socket);
      }
      for (const p of [0, 1] as const) {
        const server = await listenTcp(createServer({ allowHalfOpen: false }, onTcp({ ip: i as 0 | 1, port: p })), ip, tcpPorts[p]);
        tcp.push(server);
        tcpPorts[p] = (server.address() as { port: number }).port;
      }
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  const list = (ports: [number, number]) => ips.flatMap((ip) => ports.map((port) => hostPort(ip, port))).join(",");
  logger.info("STUN listening", { udp: list(udpPorts), tcp: list(tcpPorts), alternate: altIp ?? "none" });
  return { udpPorts, tcpPorts, altIp, stop: closeAll };
}
