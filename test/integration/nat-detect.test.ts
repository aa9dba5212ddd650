// NAT detection on loopback: no NAT here, so the host must come out "public"; UDP to closed ports
// must come out "udp-blocked" quickly while TCP is still checked. Real NATs are tested in test/e2e.
import { createSocket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { KnownServers, ServerSession } from "../../src/client/index.ts";
import { generateIdentity } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { classify, detectNat } from "../../src/nat/index.ts";
import { FIRST_BINDING_GIVE_UP_MS } from "../../src/nat/detect.ts";
import { startStunServer, type RunningStunServer } from "../../src/nat/stun-server.ts";
import { api, freePort, INP2PC, onlineNodes, runToEnd, startClient, startServer, tempDir, waitFor } from "../helpers/processes.ts";

async function freeUdpPort(): Promise<number> {
  const socket = createSocket("udp4");
  await new Promise<void>((done) => socket.bind(0, "127.0.0.1", done));
  const { port } = socket.address();
  socket.close();
  return port;
}

describe("classify", () => {
  it.each([
    ["endpoint-independent", "endpoint-independent", true, "full-cone"],
    ["endpoint-independent", "address-dependent", true, "restricted-cone"],
    ["endpoint-independent", "address-and-port-dependent", true, "port-restricted-cone"],
    ["address-dependent", "address-and-port-dependent", true, "symmetric"],
    ["address-and-port-dependent", "endpoint-independent", true, "symmetric"],
    ["endpoint-independent", "endpoint-independent", false, "public"],
  ] as const)("mapping %s + filtering %s (behind NAT: %s) is %s", (mapping, filtering, behindNat, expected) => {
    expect(classify(mapping, filtering, behindNat)).toBe(expected);
  });
});

describe("detectNat against a STUN server on loopback", () => {
  let withAlt: RunningStunServer;
  let withoutAlt: RunningStunServer;

  beforeAll(async () => {
    withAlt = await startStunServer({ primaryIp: "127.0.0.1", altIp: "127.0.0.2", udpPorts: [await freeUdpPort(), await freeUdpPort()], tcpPorts: [await freePort(), await freePort()], software: "test", logger: silentLogger });
    withoutAlt = await startStunServer({ primaryIp: "127.0.0.1", udpPorts: [await freeUdpPort(), await freeUdpPort()], tcpPorts: [await freePort(), await freePort()], software: "test", logger: silentLogger });
  });
  afterAll(async () => {
    await withAlt?.stop();
    await withoutAlt?.stop();
  });

  it("finds no NAT: public, endpoint-independent both ways, port preserved, TCP reachable", async () => {
    const report = await detectNat({ serverHost: "127.0.0.1", udpPorts: withAlt.udpPorts, tcpPorts: withAlt.tcpPorts });
    expect(report).toMatchObject({ natType: "public", mapping: "endpoint-independent", filtering: "endpoint-independent", portPreserved: true, tcp: true, hairpinning: null, allocation: { kind: "preserving" } });
    expect(report.publicAddress).toBe(report.localAddress);
    expect(report.notes).toEqual([]);
  });

  it("without an alternate IP it still answers, and says what it could not test", async () => {
    const report = await detectNat({ serverHost: "localhost", udpPorts: withoutAlt.udpPorts, tcpPorts: withoutAlt.tcpPorts });
    expect(report.natType).toBe("public");
    expect(report.notes.join(" ")).toMatch(/no alternate IP/);
  });

  it("UDP blocked: udp-blocked once the first binding gives up, not much later; TCP still checked", async () => {
    const udpPorts: [number, number] = [await freeUdpPort(), await freeUdpPort()];
    const started = Date.now();
    const report = await detectNat({ serverHost: "127.0.0.1", udpPorts, tcpPorts: withAlt.tcpPorts });
    const elapsedMs = Date.now() - started;
    expect(report.natType).toBe("udp-blocked");
    expect(report.allocation).toEqual({ kind: "unknown" });
    expect(report.tcp).toBe(true);
    expect(report.notes).toContain(`no UDP answer from 127.0.0.1:${udpPorts[0]} within ${FIRST_BINDING_GIVE_UP_MS} ms`);
    // It waited out the give-up time and then stopped; the ceiling leaves room for a loaded machine.
    expect(elapsedMs).toBeGreaterThanOrEqual(FIRST_BINDING_GIVE_UP_MS);
    expect(elapsedMs).toBeLessThan(FIRST_BINDING_GIVE_UP_MS + 8_000);
  });

  it("a name that does not resolve is a clear error", async () => {
    await expect(detectNat({ serverHost: "no-such-host.invalid", udpPorts: withAlt.udpPorts, tcpPorts: withAlt.tcpPorts })).rejects.toThrow(/cannot resolve STUN server no-such-host.invalid/);
  });
});

describe("NAT type through inp2ps and inp2pc", () => {
  it("inp2pc nat --json reports against a running inp2ps; a client's login carries its NAT type to the nodes API", async () => {
    const [u1, u2, t1, t2] = [await freeUdpPort(), await freeUdpPort(), await freePort(), await freePort()];
    const server = await startServer({ extraToml: `stun_udp1 = ${u1}\nstun_udp2 = ${u2}\nstun_tcp1 = ${t1}\nstun_tcp2 = ${t2}\nstun_alt_ip = "127.0.0.2"` });
    const stunFlags = ["--stun-udp1", String(u1), "--stun-udp2", String(u2), "--stun-tcp1", String(t1), "--stun-tcp2", String(t2)];
    const client = startClient({ node: "nat-1", port: server.port, token: server.token, extraArgs: stunFlags });
    try {
      const cli = await runToEnd(INP2PC, ["nat", "--json", "--serverhost", "127.0.0.1", ...stunFlags]);
      expect(cli.code, cli.output).toBe(0);
      const report = JSON.parse(cli.output);
      expect(report).toMatchObject({ natType: "public", mapping: "endpoint-independent", filtering: "endpoint-independent", portPreserved: true, tcp: true });
      expect(report.publicAddress).toMatch(/^127\.0\.0\.1:\d+$/);

      const human = await runToEnd(INP2PC, ["nat", "-serverhost", "127.0.0.1", ...stunFlags]);
      expect(human.output).toMatch(/NAT type\s+public/);

      await waitFor("the node's NAT type in /api/v1/nodes", async () => {
        const { body } = await api(server, "/api/v1/nodes", server.adminToken);
        return body.nodes.find((n: { name: string; natType: string | null }) => n.name === "nat-1" && n.natType === "public");
      });
      expect(client.output).toMatch(/NAT type: public/);
      expect(await onlineNodes(server)).toEqual(["nat-1"]);
    } finally {
      await client.stop();
      await server.stop();
    }
  });

  it("a NAT type learned after login reaches the server as a report", async () => {
    const server = await startServer();
    const identity = generateIdentity();
    const dir = tempDir("inp2pc-report-");
    const session = new ServerSession({ host: "127.0.0.1", port: server.port, insecure: false, node: "late-nat", token: server.token, identity, version: "test", knownServers: new KnownServers(join(dir, "known.json")), logger: silentLogger });
    try {
      session.start();
      await waitFor("login", () => session.state === "online");
      const natType = async () => ((await api(server, "/api/v1/nodes", server.adminToken)).body.nodes as { name: string; natType: string | null }[]).find((n) => n.name === "late-nat")?.natType;
      expect(await natType()).toBeNull();
      session.setNat({ natType: "symmetric", mapping: "address-and-port-dependent", filtering: "address-and-port-dependent", publicAddress: "198.51.100.20:4242", portPreserved: false, tcp: true });
      await waitFor("the reported NAT type", async () => (await natType()) === "symmetric");
    } finally {
      session.stop();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
