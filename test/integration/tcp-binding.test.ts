// The STUN-over-TCP probe (NAT detection's TCP check, and the port a TCP punch reuses) against a server
// that is slow to answer: a connection it accepted proves TCP works, so its late answer still counts.
// And the probes of a refresh stay on one local port, even when it is still taken for a moment.
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { TCP_CHECK_TIMEOUT_MS, tcpBinding } from "../../src/nat/detect.ts";
import { addressAttribute, decodeStun, encodeStun, STUN_BINDING_METHOD, STUN_HEADER_BYTES, StunAttr } from "../../src/protocol/stun.ts";
import { silentLogger } from "../../src/log/index.ts";
import { startStunServer } from "../../src/nat/stun-server.ts";
import { PeerEndpoint } from "../../src/transport/endpoint.ts";
import { freePort, freeUdpPorts } from "../helpers/processes.ts";

/** How long the port of the last probe stays taken before the next probe: under the probe's retries (detect.ts). */
const PORT_HELD_MS = 30;
const HOLD_ATTEMPTS = 10;

/** A STUN TCP server on loopback that answers each binding request `delayMs` after it arrives. */
async function slowStunServer(delayMs: number): Promise<{ server: Server; port: number }> {
  const server = createServer((socket: Socket) => {
    socket.on("error", () => {});
    socket.once("data", (request: Buffer) => {
      const { transactionId } = decodeStun(request.subarray(0, STUN_HEADER_BYTES + request.readUInt16BE(2)));
      const mapped = { family: 4 as const, address: "203.0.113.7", port: 40_001 };
      const answer = encodeStun({ method: STUN_BINDING_METHOD, cls: "success", transactionId, attributes: [addressAttribute(StunAttr.XOR_MAPPED_ADDRESS, mapped, transactionId)] });
      setTimeout(() => socket.end(answer), delayMs);
    });
  });
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  return { server, port: (server.address() as { port: number }).port };
}

describe("STUN over TCP", () => {
  let server: Server | undefined;
  afterEach(() => void server?.close());

  it("takes an answer that comes later than the connect timeout from a server that accepted the connection (a busy server)", async () => {
    const slow = await slowStunServer(TCP_CHECK_TIMEOUT_MS + 500);
    server = slow.server;
    const result = await tcpBinding({ address: "127.0.0.1", port: slow.port });
    expect(result?.mapped).toEqual({ family: 4, address: "203.0.113.7", port: 40_001 });
  });

  it("gives up on a server that accepted the connection but never answers, after the answer timeout", async () => {
    const silent = await slowStunServer(60_000);
    server = silent.server;
    const startedAt = Date.now();
    const result = await tcpBinding({ address: "127.0.0.1", port: silent.port }, { connectTimeoutMs: TCP_CHECK_TIMEOUT_MS, answerTimeoutMs: 300 });
    expect(result).toBeUndefined();
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(300);
    expect(Date.now() - startedAt).toBeLessThan(TCP_CHECK_TIMEOUT_MS);
  });

  it("waits for its previous port when something still holds it for a moment (our last connection from it not closed yet, say), instead of moving", async () => {
    const stun = await startStunServer({ primaryIp: "127.0.0.1", udpPorts: await freeUdpPorts(), tcpPorts: [await freePort(), await freePort()], software: "test", logger: silentLogger });
    const endpoint = new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" });
    const holder = createServer();
    try {
      await endpoint.start();
      await endpoint.refreshTcpMapping("127.0.0.1", stun.tcpPorts[0]);
      const first = endpoint.tcpPunch;
      // The same wait as the probe's: the first probe's close may not be through yet.
      for (let attempt = 1; ; attempt++) {
        const listened = await new Promise<Error | undefined>((settle) => {
          holder.once("error", settle);
          holder.listen(first!.localPort, "127.0.0.1", () => settle(undefined));
        });
        if (!listened) break;
        if ((listened as NodeJS.ErrnoException).code !== "EADDRINUSE" || attempt === HOLD_ATTEMPTS) throw listened;
        await new Promise((resolve) => setTimeout(resolve, PORT_HELD_MS));
      }
      setTimeout(() => holder.close(), PORT_HELD_MS);
      await endpoint.refreshTcpMapping("127.0.0.1", stun.tcpPorts[0]);
      expect(endpoint.tcpPunch).toEqual(first);
    } finally {
      holder.close();
      endpoint.close();
      await stun.stop();
    }
  });

  it("probes again from the port it probed from before, so the mapping a peer was told stays the one a punch uses", async () => {
    // A plan carries the mapping the server had; a refresh that moved to a fresh port meanwhile punched from the wrong one.
    const stun = await startStunServer({ primaryIp: "127.0.0.1", udpPorts: await freeUdpPorts(), tcpPorts: [await freePort(), await freePort()], software: "test", logger: silentLogger });
    const endpoint = new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" });
    try {
      await endpoint.start();
      const probes = [];
      for (let i = 0; i < 3; i++) {
        await endpoint.refreshTcpMapping("127.0.0.1", stun.tcpPorts[0]);
        probes.push(endpoint.tcpPunch);
      }
      expect(probes[0]?.mapped).toBe(`127.0.0.1:${probes[0]?.localPort}`);
      expect(probes).toEqual([probes[0], probes[0], probes[0]]);
      // Before NAT detection ends, whether the mapping is worth a punch is not known: left out, not null
      // (the server planned with a null it took for "no TCP mapping", moments before the real one came).
      expect(endpoint.candidates().tcpPunch).toBeUndefined();
      endpoint.nat = { natType: "full-cone", mapping: "endpoint-independent", filtering: "endpoint-independent", publicAddress: "127.0.0.1", portPreserved: true, tcp: true };
      expect(endpoint.candidates().tcpPunch).toBe(probes[0]?.mapped);
    } finally {
      endpoint.close();
      await stun.stop();
    }
  });
});
