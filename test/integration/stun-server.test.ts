// The STUN server on loopback: 127.0.0.1 primary, 127.0.0.2 alternate (both loopback on Linux).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/config/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { startStunServer, StunServerError, type RunningStunServer, type StunServerInit } from "../../src/nat/index.ts";
import {
  bindingRequest,
  decodeStun,
  encodeStun,
  mappedAddress,
  newTransactionId,
  readAddress,
  readAttribute,
  readErrorCode,
  StunAttr,
  type StunMessage,
} from "../../src/protocol/stun.ts";
import { freePort, freeUdpPorts, runToEnd, startServer, waitFor } from "../helpers/processes.ts";

const PRIMARY = "127.0.0.1";
const ALT = "127.0.0.2";
const NO_REPLY_WAIT_MS = 300;
/** The TCP deadline of the server these tests start, and a drip faster than it (each byte would reset an idle timer). */
const STUN_TCP_TEST_DEADLINE_MS = 300;
const STUN_DRIP_INTERVAL_MS = 100;
/** A request announcing this much, dripped at STUN_DRIP_INTERVAL_MS, would take 20 s to arrive. */
const DRIPPED_REQUEST_BODY_BYTES = 200;

interface Reply {
  message: StunMessage;
  bytes: Buffer;
  from: { address: string; port: number };
}

async function udpClient(ip = PRIMARY): Promise<UdpSocket & { replies: Reply[] }> {
  const socket = createSocket("udp4") as UdpSocket & { replies: Reply[] };
  socket.replies = [];
  socket.on("message", (bytes, from) => socket.replies.push({ message: decodeStun(bytes), bytes, from: { address: from.address, port: from.port } }));
  await new Promise<void>((done) => socket.bind(0, ip, done));
  return socket;
}

/** Sends one packet and waits for the reply with the same transaction id (or any reply, for garbage). */
async function exchange(client: UdpSocket & { replies: Reply[] }, packet: Buffer, port: number, ip = PRIMARY, waitMs = 1_000): Promise<Reply | undefined> {
  const id = packet.length >= 20 ? packet.subarray(packet.readUInt32BE(4) === 0x2112a442 ? 8 : 4, 20) : Buffer.alloc(0);
  client.replies.length = 0;
  client.send(packet, port, ip);
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    const reply = client.replies.find((r) => r.message.transactionId.equals(id));
    if (reply) return reply;
    await new Promise((r) => setTimeout(r, 5));
  }
  return undefined;
}

/** A STUN exchange over TCP: the whole stream until the server closes it. */
async function tcpExchange(port: number, chunks: Buffer[], options: { localPort?: number } = {}): Promise<{ received: Buffer; serverClosedFirst: boolean; localPort: number }> {
  const socket: Socket = connect({ host: PRIMARY, port, ...options });
  await new Promise<void>((done, fail) => socket.once("connect", done).once("error", fail));
  const localPort = socket.localPort!;
  const parts: Buffer[] = [];
  socket.on("data", (d: Buffer) => parts.push(d));
  const closedByServer = new Promise<boolean>((done) => {
    const timer = setTimeout(() => done(false), 3_000);
    socket.once("end", () => (clearTimeout(timer), done(true)));
    socket.once("close", () => (clearTimeout(timer), done(true)));
  });
  for (const chunk of chunks) {
    socket.write(chunk);
    await new Promise((r) => setTimeout(r, 20));
  }
  const serverClosedFirst = await closedByServer;
  socket.destroy();
  return { received: Buffer.concat(parts), serverClosedFirst, localPort };
}

// Tools some tests need: CI installs them (scripts/natlab/deps.sh); elsewhere those tests are skipped, saying so.
const SS_MISSING = Bun.which("ss") ? undefined : "ss(8) is not installed (apt-get install iproute2)";
const STUN_CLIENT = Bun.which("stun");
const STUN_CLIENT_MISSING = STUN_CLIENT ? undefined : "Debian's stun client is not installed (apt-get install stun-client)";
for (const reason of [SS_MISSING, STUN_CLIENT_MISSING]) if (reason) console.warn(`STUN server test skipped: ${reason}`);

/** "local peer" lines of TCP sockets in TIME_WAIT, from ss(8). */
function timeWaitSockets(): string[] {
  const text = execFileSync("ss", ["-tanH", "state", "time-wait"], { encoding: "utf8" });
  return text.split("\n").map((line) => line.trim().split(/\s+/).slice(-2).join(" "));
}

const base = (over: Partial<StunServerInit> = {}): StunServerInit => ({
  primaryIp: PRIMARY,
  altIp: ALT,
  udpPorts: [0, 0],
  tcpPorts: [0, 0],
  software: "inp2ps test",
  logger: silentLogger,
  responsesPerSecondPerSource: 10_000,
  ...over,
});

describe("STUN server with an alternate IP", () => {
  let server: RunningStunServer;
  let client: Awaited<ReturnType<typeof udpClient>>;
  let u1: number, u2: number, t1: number, t2: number;

  beforeAll(async () => {
    server = await startStunServer(base({ tcpDeadlineMs: STUN_TCP_TEST_DEADLINE_MS }));
    [u1, u2] = server.udpPorts;
    [t1, t2] = server.tcpPorts;
    client = await udpClient();
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  it("reports the ports it really bound", () => {
    expect(u1).toBeGreaterThan(0);
    expect(u2).toBeGreaterThan(0);
    expect(u1).not.toBe(u2);
    expect(t1).not.toBe(t2);
    expect(server.altIp).toBe(ALT);
  });

  it("Binding over UDP: XOR-MAPPED-ADDRESS and MAPPED-ADDRESS are the client, RESPONSE-ORIGIN and OTHER-ADDRESS right", async () => {
    const me = { family: 4, address: PRIMARY, port: client.address().port };
    for (const [ip, port, other] of [
      [PRIMARY, u1, { address: ALT, port: u2 }],
      [PRIMARY, u2, { address: ALT, port: u1 }],
      [ALT, u1, { address: PRIMARY, port: u2 }],
      [ALT, u2, { address: PRIMARY, port: u1 }],
    ] as const) {
      const reply = (await exchange(client, bindingRequest(), port, ip))!;
      expect(reply, `answer from ${ip}:${port}`).toBeDefined();
      expect(reply.message).toMatchObject({ cls: "success", method: 1, rfc3489: false });
      expect(readAddress(reply.message, StunAttr.XOR_MAPPED_ADDRESS)).toEqual(me);
      expect(readAddress(reply.message, StunAttr.MAPPED_ADDRESS)).toEqual(me);
      expect(reply.from).toEqual({ address: ip, port });
      expect(readAddress(reply.message, StunAttr.RESPONSE_ORIGIN)).toEqual({ family: 4, address: ip, port });
      expect(readAddress(reply.message, StunAttr.OTHER_ADDRESS)).toEqual({ family: 4, ...other });
      expect(readAttribute(reply.message, StunAttr.SOFTWARE)?.toString()).toBe("inp2ps test");
      expect(readAttribute(reply.message, StunAttr.FINGERPRINT)).toBeUndefined();
    }
  });

  it("CHANGE-REQUEST: change-port from the other port, change-IP from the alternate IP, both from both", async () => {
    for (const [flags, from] of [
      [{ changePort: true }, { address: PRIMARY, port: u2 }],
      [{ changeIp: true }, { address: ALT, port: u1 }],
      [{ changeIp: true, changePort: true }, { address: ALT, port: u2 }],
    ] as const) {
      const reply = (await exchange(client, bindingRequest(flags), u1))!;
      expect(reply, JSON.stringify(flags)).toBeDefined();
      expect(reply.from).toEqual(from);
      expect(readAddress(reply.message, StunAttr.RESPONSE_ORIGIN)).toEqual({ family: 4, ...from });
      expect(readAddress(reply.message, StunAttr.OTHER_ADDRESS)).toEqual({ family: 4, address: ALT, port: u2 });
      expect(mappedAddress(reply.message)?.port).toBe(client.address().port);
    }
  });

  it("a request with FINGERPRINT gets one back; a wrong FINGERPRINT gets nothing", async () => {
    const request = encodeStun({ method: 1, cls: "request", transactionId: newTransactionId(), attributes: [] }, { fingerprint: true });
    const reply = (await exchange(client, request, u1))!;
    expect(readAttribute(reply.message, StunAttr.FINGERPRINT)).toBeDefined();
    const bad = Buffer.from(request);
    bad[bad.length - 1] ^= 1;
    expect(await exchange(client, bad, u1, PRIMARY, NO_REPLY_WAIT_MS)).toBeUndefined();
  });

  it("unknown comprehension-required attributes get 420 with UNKNOWN-ATTRIBUTES; other methods 400", async () => {
    const transactionId = newTransactionId();
    const withPriority = encodeStun({ method: 1, cls: "request", transactionId, attributes: [{ type: 0x0024, value: Buffer.alloc(4) }, { type: 0x8029, value: Buffer.alloc(8) }] });
    const reply = (await exchange(client, withPriority, u1))!;
    expect(reply.message.cls).toBe("error");
    expect(readErrorCode(reply.message)?.code).toBe(420);
    expect(readAttribute(reply.message, StunAttr.UNKNOWN_ATTRIBUTES)).toEqual(Buffer.from([0x00, 0x24]));
    const allocate = encodeStun({ method: 3, cls: "request", transactionId: newTransactionId(), attributes: [] });
    const refused = (await exchange(client, allocate, u1))!;
    expect([refused.message.cls, refused.message.method, readErrorCode(refused.message)?.code]).toEqual(["error", 3, 400]);
  });

  it("an RFC 3489 request (no magic cookie) gets MAPPED-, SOURCE- and CHANGED-ADDRESS, no XOR, 4-byte-aligned attributes", async () => {
    const transactionId = randomBytes(16);
    transactionId[0] = 0x01; // never the magic cookie
    const reply = (await exchange(client, bindingRequest({ transactionId }), u1))!;
    expect(reply.message).toMatchObject({ cls: "success", rfc3489: true, transactionId });
    expect(reply.bytes.subarray(4, 20)).toEqual(transactionId);
    expect(readAddress(reply.message, StunAttr.MAPPED_ADDRESS)).toEqual({ family: 4, address: PRIMARY, port: client.address().port });
    expect(readAddress(reply.message, StunAttr.SOURCE_ADDRESS)).toEqual({ family: 4, address: PRIMARY, port: u1 });
    expect(readAddress(reply.message, StunAttr.CHANGED_ADDRESS)).toEqual({ family: 4, address: ALT, port: u2 });
    expect(readAttribute(reply.message, StunAttr.XOR_MAPPED_ADDRESS)).toBeUndefined();
    expect(readAttribute(reply.message, StunAttr.OTHER_ADDRESS)).toBeUndefined();
    for (const attribute of reply.message.attributes) expect(attribute.value.length % 4).toBe(0);
    expect(readAttribute(reply.message, StunAttr.SOFTWARE)?.toString()).toBe("inp2ps test ");
    const changed = (await exchange(client, bindingRequest({ transactionId, changeIp: true, changePort: true }), u1))!;
    expect(changed.from).toEqual({ address: ALT, port: u2 });
    expect(readAddress(changed.message, StunAttr.SOURCE_ADDRESS)).toEqual({ family: 4, address: ALT, port: u2 });
  });

  it("malformed packets get no reply, and the next good request is answered", async () => {
    const request = bindingRequest();
    const wrongLength = Buffer.from(request);
    wrongLength.writeUInt16BE(8, 2);
    const indication = encodeStun({ method: 1, cls: "indication", transactionId: newTransactionId(), attributes: [] });
    const success = encodeStun({ method: 1, cls: "success", transactionId: newTransactionId(), attributes: [] });
    const overLong = encodeStun({ method: 1, cls: "request", transactionId: newTransactionId(), attributes: [{ type: StunAttr.SOFTWARE, value: Buffer.alloc(1600) }] });
    const manyAttributes = encodeStun({ method: 1, cls: "request", transactionId: newTransactionId(), attributes: Array.from({ length: 100 }, () => ({ type: 0x8000, value: Buffer.alloc(0) })) });
    for (const packet of [Buffer.alloc(0), Buffer.from("GET / HTTP/1.1\r\n\r\n"), request.subarray(0, 19), wrongLength, indication, success, overLong, manyAttributes, Buffer.alloc(1400, 0xff)]) {
      client.replies.length = 0;
      client.send(packet, u1, PRIMARY);
    }
    await new Promise((r) => setTimeout(r, NO_REPLY_WAIT_MS));
    expect(client.replies).toEqual([]);
    expect(await exchange(client, bindingRequest(), u1)).toBeDefined();
  });

  it("Binding over TCP: answered, then the server closes first and the client's port is free at once", async () => {
    const request = bindingRequest();
    const first = await tcpExchange(t1, [request.subarray(0, 7), request.subarray(7)]);
    expect(first.serverClosedFirst).toBe(true);
    const message = decodeStun(first.received);
    expect(message.transactionId).toEqual(request.subarray(8, 20));
    expect(mappedAddress(message)).toEqual({ family: 4, address: PRIMARY, port: first.localPort });
    expect(readAddress(message, StunAttr.RESPONSE_ORIGIN)).toEqual({ family: 4, address: PRIMARY, port: t1 });
    expect(readAddress(message, StunAttr.OTHER_ADDRESS)).toEqual({ family: 4, address: ALT, port: t2 });
    // The same local port works again right away (a TCP punch reuses the probe's port).
    const again = await tcpExchange(t2, [bindingRequest()], { localPort: first.localPort });
    expect(mappedAddress(decodeStun(again.received))?.port).toBe(first.localPort);
    // CHANGE-REQUEST cannot apply over TCP: the answer comes back on the connection.
    const changed = await tcpExchange(t1, [bindingRequest({ changeIp: true, changePort: true })]);
    expect(readAddress(decodeStun(changed.received), StunAttr.RESPONSE_ORIGIN)).toEqual({ family: 4, address: PRIMARY, port: t1 });
  });

  it.skipIf(SS_MISSING)("TCP: TIME_WAIT is on the server's side of the connection, none on the client's", async () => {
    const { serverClosedFirst, localPort } = await tcpExchange(t1, [bindingRequest()]);
    expect(serverClosedFirst).toBe(true);
    // The server's socket enters TIME_WAIT once our FIN reaches it: wait for that.
    const serverSide = `${PRIMARY}:${t1} ${PRIMARY}:${localPort}`;
    const timeWait = await waitFor(`${serverSide} in TIME_WAIT`, () => {
      const sockets = timeWaitSockets();
      return sockets.includes(serverSide) && sockets;
    }, 5_000);
    expect(timeWait).not.toContain(`${PRIMARY}:${localPort} ${PRIMARY}:${t1}`);
  });

  it("TCP: garbage is closed without an answer, an idle connection is closed, connections per source are bounded", async () => {
    const garbage = await tcpExchange(t1, [Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")]);
    expect(garbage).toMatchObject({ serverClosedFirst: true, received: Buffer.alloc(0) });
    const tooLong = Buffer.from(bindingRequest());
    tooLong.writeUInt16BE(4000, 2);
    expect((await tcpExchange(t1, [tooLong])).received).toEqual(Buffer.alloc(0));
    const idle = await tcpExchange(t1, [bindingRequest().subarray(0, 10)]); // closed at the 300 ms deadline
    expect(idle).toMatchObject({ serverClosedFirst: true, received: Buffer.alloc(0) });
    const held: Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const socket = connect({ host: PRIMARY, port: t1 });
      await new Promise((done) => socket.once("connect", done));
      held.push(socket);
    }
    const fifth = await tcpExchange(t1, [bindingRequest()]);
    expect(fifth).toMatchObject({ serverClosedFirst: true, received: Buffer.alloc(0) });
    for (const socket of held) socket.destroy();
    // The server frees the slots as it sees the closes: a Binding is answered again within 5 s.
    const answered = await waitFor("a Binding answered over TCP again", async () => {
      const { received } = await tcpExchange(t1, [bindingRequest()]);
      return received.length > 0 && decodeStun(received);
    }, 5_000);
    expect(answered.cls).toBe("success");
  });

  it("TCP: a request dripped a byte at a time is closed at the deadline, which counts from the accept", async () => {
    const dripped = Buffer.from(bindingRequest());
    dripped.writeUInt16BE(DRIPPED_REQUEST_BODY_BYTES, 2);
    const socket = connect({ host: PRIMARY, port: t1 });
    socket.on("error", () => {});
    await new Promise((done) => socket.once("connect", done));
    const opened = Date.now();
    socket.write(dripped);
    const drip = setInterval(() => !socket.destroyed && socket.write(Buffer.from([0])), STUN_DRIP_INTERVAL_MS);
    try {
      await waitFor("the server to close the dripping connection", () => socket.destroyed || socket.readyState === "closed", STUN_TCP_TEST_DEADLINE_MS + 3_000, 20);
      expect(Date.now() - opened).toBeLessThan(STUN_TCP_TEST_DEADLINE_MS + 3_000);
    } finally {
      clearInterval(drip);
      socket.destroy();
    }
  });

  it.skipIf(STUN_CLIENT_MISSING)("Debian's stun client (package stun-client) classifies loopback as Open against it", async () => {
    // It sends test I to primary:port, test II (change-IP) and III (change-port) there, then test I
    // again to CHANGED-ADDRESS's IP at the same port.
    const { output } = await runToEnd(STUN_CLIENT!, [`${PRIMARY}:${u1}`], { timeoutMs: 10_000 });
    expect(output).toMatch(/Primary: Open/);
  });
});

describe("STUN server without an alternate IP (RFC 5780 §6)", () => {
  let server: RunningStunServer;
  let client: Awaited<ReturnType<typeof udpClient>>;

  beforeAll(async () => {
    server = await startStunServer(base({ altIp: undefined }));
    client = await udpClient();
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  it("answers without OTHER-ADDRESS; change-IP gets 420 naming CHANGE-REQUEST; change-port still works", async () => {
    const [u1, u2] = server.udpPorts;
    const plain = (await exchange(client, bindingRequest(), u1))!;
    expect(readAddress(plain.message, StunAttr.OTHER_ADDRESS)).toBeUndefined();
    expect(readAddress(plain.message, StunAttr.RESPONSE_ORIGIN)).toEqual({ family: 4, address: PRIMARY, port: u1 });
    for (const flags of [{ changeIp: true }, { changeIp: true, changePort: true }]) {
      const refused = (await exchange(client, bindingRequest(flags), u1))!;
      expect(refused.message.cls).toBe("error");
      expect(readErrorCode(refused.message)?.code).toBe(420);
      expect(readAttribute(refused.message, StunAttr.UNKNOWN_ATTRIBUTES)).toEqual(Buffer.from([0x00, 0x03]));
      expect(refused.from).toEqual({ address: PRIMARY, port: u1 });
    }
    const portOnly = (await exchange(client, bindingRequest({ changePort: true }), u1))!;
    expect([portOnly.message.cls, portOnly.from.port]).toEqual(["success", u2]);
    // RFC 3489 clients count any answer as "change-IP worked", so they get none.
    const old = Buffer.alloc(16, 7);
    expect(await exchange(client, bindingRequest({ transactionId: old, changeIp: true }), u1, PRIMARY, NO_REPLY_WAIT_MS)).toBeUndefined();
    const oldPlain = (await exchange(client, bindingRequest({ transactionId: old }), u1))!;
    expect(readAttribute(oldPlain.message, StunAttr.CHANGED_ADDRESS)).toBeUndefined();
  });
});

describe("STUN rate limit", () => {
  it("a burst of 200 from one source gets at most burst + rate x elapsed answers; another source is still answered", async () => {
    const server = await startStunServer(base({ responsesPerSecondPerSource: 20 }));
    const flood = await udpClient(PRIMARY);
    const other = await udpClient("127.0.0.3");
    try {
      const started = Date.now();
      for (let i = 0; i < 200; i++) flood.send(bindingRequest(), server.udpPorts[0], PRIMARY);
      const answer = await exchange(other, bindingRequest(), server.udpPorts[0]);
      await new Promise((r) => setTimeout(r, 200));
      const elapsedS = (Date.now() - started) / 1000;
      expect(answer?.message.cls).toBe("success");
      expect(flood.replies.length).toBeGreaterThanOrEqual(30);
      expect(flood.replies.length).toBeLessThanOrEqual(40 + Math.ceil(20 * elapsedS));
    } finally {
      flood.close();
      other.close();
      await server.stop();
    }
  });
});

describe("STUN rate buckets per protocol and per port", () => {
  it("50 pps spoofed over UDP from a victim's address to one port leave the victim's TCP probe and other UDP port answered", async () => {
    // A slow rate (1 a second), so that while the flood runs, its bucket is never the victim's to use.
    const server = await startStunServer(base({ responsesPerSecondPerSource: 1 }));
    const spoofed = await udpClient(PRIMARY);
    const victim = await udpClient(PRIMARY);
    const FLOOD_INTERVAL_MS = 20; // 50 packets a second
    const FLOOD_MAX_PACKETS = 500; // bound, should the test hang
    let sent = 0;
    const send = () => sent < FLOOD_MAX_PACKETS && (sent++, spoofed.send(bindingRequest(), server.udpPorts[0], PRIMARY));
    const started = Date.now();
    for (let i = 0; i < 10; i++) send();
    const flood = setInterval(send, FLOOD_INTERVAL_MS);
    try {
      await waitFor("the flood to be answered no more", () => spoofed.replies.length > 0 && sent >= 20, 5_000, 10);
      const otherPort = await exchange(victim, bindingRequest(), server.udpPorts[1]);
      expect(otherPort?.message.cls, "UDP on the other port").toBe("success");
      const tcp = await tcpExchange(server.tcpPorts[0], [bindingRequest()]);
      expect(tcp.received.length, "TCP on the flooded port number").toBeGreaterThan(0);
      expect(decodeStun(tcp.received).cls).toBe("success");
      // The flood itself got no more than its own bucket's burst and refill.
      expect(spoofed.replies.length).toBeLessThanOrEqual(2 + Math.ceil((Date.now() - started) / 1000));
    } finally {
      clearInterval(flood);
      spoofed.close();
      victim.close();
      await server.stop();
    }
  });
});

describe("STUN configuration", () => {
  it("refuses an alternate IP when the primary is a wildcard, and a second IP equal to the first", async () => {
    const wildcard = await startStunServer(base({ primaryIp: "0.0.0.0" })).catch((e) => e);
    expect(wildcard).toBeInstanceOf(StunServerError);
    expect(wildcard).toMatchObject({ code: "STUN_CONFIG", message: expect.stringMatching(/set stun_ip/) });
    await expect(startStunServer(base({ altIp: PRIMARY }))).rejects.toMatchObject({ code: "STUN_CONFIG" });
    await expect(startStunServer(base({ primaryIp: "stun.example" }))).rejects.toMatchObject({ code: "STUN_CONFIG" });
  });

  it("a port in use is a STUN_BIND error, and nothing is left bound", async () => {
    const first = await startStunServer(base({ altIp: undefined }));
    const clash = await startStunServer(base({ altIp: undefined, udpPorts: [0, first.udpPorts[1]] })).catch((e) => e);
    expect(clash).toMatchObject({ code: "STUN_BIND", message: expect.stringContaining(`UDP ${PRIMARY}:${first.udpPorts[1]}`) });
    // A TCP clash after the UDP sockets (and one TCP port) were bound: those are released again.
    const udpPorts = await freeUdpPorts();
    const tcp1 = await freePort();
    const tcpClash = await startStunServer(base({ altIp: undefined, udpPorts, tcpPorts: [tcp1, first.tcpPorts[1]] })).catch((e) => e);
    expect(tcpClash).toMatchObject({ code: "STUN_BIND", message: expect.stringContaining(`TCP ${PRIMARY}:${first.tcpPorts[1]}`) });
    const again = await startStunServer(base({ altIp: undefined, udpPorts, tcpPorts: [tcp1, 0] }));
    expect(again.udpPorts).toEqual(udpPorts);
    await again.stop();
    await first.stop();
    await first.stop(); // twice is fine
  });

  it("stun_ip / stun_alt_ip in [server]: IPs only, alternate needs a specific stun_ip", () => {
    const parse = (lines: string) => parseConfig(`role = "server"\n[server]\n${lines}\n`, "/tmp/inp2ps.toml");
    expect(parse('listen = "127.0.0.1"\nstun_alt_ip = "127.0.0.2"').server).toMatchObject({ stun_alt_ip: "127.0.0.2" });
    expect(parse('stun_ip = "[2001:db8::1]"\nstun_alt_ip = "2001:db8::2"').server).toMatchObject({ stun_ip: "2001:db8::1" });
    expect(parse('stun_ip = ""\nstun_alt_ip = ""').server?.stun_alt_ip).toBeUndefined();
    for (const [lines, message] of [
      ['stun_alt_ip = "198.51.100.2"', /stun_alt_ip.*needs stun_ip.*listen = "0.0.0.0"/],
      ['stun_ip = "198.51.100.1"\nstun_alt_ip = "198.51.100.1"', /must differ/],
      ['stun_ip = "198.51.100.1"\nstun_alt_ip = "2001:db8::2"', /same IP version/],
      ['stun_ip = "stun.example.org"', /stun_ip.*expected an IP address/],
    ] as const) {
      expect(() => parse(lines)).toThrow(ConfigError);
      expect(() => parse(lines)).toThrow(message);
    }
  });
});

describe("inp2ps starts the STUN server", () => {
  it("answers on the configured UDP and TCP ports, with the alternate IP", async () => {
    const [u1, u2] = await freeUdpPorts();
    const [t1, t2] = [await freePort(), await freePort()];
    const server = await startServer({
      tls: "off",
      extraToml: `stun_udp1 = ${u1}\nstun_udp2 = ${u2}\nstun_tcp1 = ${t1}\nstun_tcp2 = ${t2}\nstun_alt_ip = "${ALT}"`,
    });
    const client = await udpClient();
    try {
      expect(server.proc.output).toMatch(new RegExp(`STUN listening udp="${PRIMARY}:${u1},${PRIMARY}:${u2},${ALT}:${u1},${ALT}:${u2}"`));
      const reply = (await exchange(client, bindingRequest({ changeIp: true }), u1))!;
      expect(reply.from).toEqual({ address: ALT, port: u1 });
      expect(readAttribute(reply.message, StunAttr.SOFTWARE)?.toString()).toMatch(/^inp2ps /);
      const tcp = await tcpExchange(t2, [bindingRequest()]);
      expect(tcp.serverClosedFirst).toBe(true);
      expect(mappedAddress(decodeStun(tcp.received))?.port).toBe(tcp.localPort);
    } finally {
      client.close();
      await server.stop();
    }
  });
});
