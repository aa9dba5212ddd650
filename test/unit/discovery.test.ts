import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AutoServerError, chooseServer } from "../../src/client/auto-server.ts";
import { loadConfig } from "../../src/config/index.ts";
import type { DiscoveredServer } from "../../src/discovery/index.ts";
import { decodeNodeTxt, decodeServerTxt, encodeNodeTxt, encodeServerTxt, userHash, type ServerTxt } from "../../src/protocol/discovery.ts";
import { candidatePaths } from "../../src/transport/connect.ts";
import type { ConnectPlan } from "../../src/protocol/index.ts";

const TOKEN = "1234567890123456789";
const SHA_A = Array.from({ length: 32 }, (_, i) => (i * 7).toString(16).padStart(2, "0").toUpperCase()).join(":");
const SHA_B = Array.from({ length: 32 }, (_, i) => (255 - i).toString(16).padStart(2, "0").toUpperCase()).join(":");

const serverTxt = (over: Partial<ServerTxt> = {}): ServerTxt => ({
  role: "server",
  version: "0.1.0",
  wsPort: 27183,
  tls: true,
  tlsSha256: SHA_A,
  stunUdp: [27182, 27183],
  stunTcp: [27180, 27181],
  relayPort: 27184,
  lanHost: "box.local",
  ...over,
});

describe("Bonjour TXT records", () => {
  it("a server's record round-trips, and holds no token", () => {
    const encoded = encodeServerTxt(serverTxt());
    expect(encoded).toEqual({ role: "server", version: "0.1.0", wsPort: "27183", tls: "1", tlsSha256: SHA_A, stunUdp: "27182,27183", stunTcp: "27180,27181", relayPort: "27184", lanHost: "box.local" });
    expect(decodeServerTxt(encoded)).toEqual({ ok: serverTxt() });
    // As bonjour-service hands binary values over.
    expect(decodeServerTxt(Object.fromEntries(Object.entries(encoded).map(([k, v]) => [k, Buffer.from(v)])))).toEqual({ ok: serverTxt() });
  });

  it("a malformed server record is refused, naming the key", () => {
    expect(decodeServerTxt({ ...encodeServerTxt(serverTxt()), wsPort: "70000" })).toEqual({ error: expect.stringMatching(/^wsPort: /) });
    const { tlsSha256: _, ...noPin } = encodeServerTxt(serverTxt());
    expect(decodeServerTxt(noPin)).toEqual({ error: "tlsSha256: tls=1 without tlsSha256" });
    expect(decodeServerTxt({ ...encodeServerTxt(serverTxt()), role: "node" })).toEqual({ error: expect.stringMatching(/^role: /) });
    expect(decodeServerTxt("junk")).toEqual({ error: expect.stringMatching(/^role: /) });
  });

  it("a node's record carries a hash of its user: the same for one token, different for another, and neither the token nor the user name", () => {
    const user = userHash(TOKEN);
    expect(user).toMatch(/^[0-9a-f]{32}$/);
    expect(userHash(TOKEN)).toBe(user);
    expect(userHash("1234567890123456788")).not.toBe(user);
    const encoded = encodeNodeTxt({ role: "node", version: "0.1.0", node: "edge-1", user, udpPort: 40000, tcpPort: 0 });
    const text = JSON.stringify(encoded);
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain("default");
    expect(decodeNodeTxt(encoded)).toEqual({ ok: { role: "node", version: "0.1.0", node: "edge-1", user, udpPort: 40000, tcpPort: 0 } });
    expect(decodeNodeTxt({ ...encoded, node: "bad name" })).toEqual({ error: "node: a node name" });
  });
});

describe("bonjour setting", () => {
  it("is on by default, off with bonjour = false, INP2P_DISABLE_BONJOUR=1 or --bonjour false", () => {
    const dir = mkdtempSync(join(tmpdir(), "inp2p-bonjour-"));
    try {
      const file = (role: "server" | "client", extra: string) => {
        const path = join(dir, `${role}-${extra ? "off" : "on"}.toml`);
        writeFileSync(path, `role = "${role}"\n[${role}]\n${role === "client" ? 'server_host = "auto"\nnode = "n"\ntoken = "1"\n' : ""}${extra}\n`);
        return path;
      };
      const setting = (role: "server" | "client", path: string, env: Record<string, string> = {}, flags: Record<string, unknown> = {}) => loadConfig({ role, configPath: path, env, flags }).config[role]!.bonjour;
      for (const role of ["server", "client"] as const) {
        const on = file(role, "");
        expect({ role, on: setting(role, on) }).toEqual({ role, on: true });
        expect({ role, file: setting(role, file(role, "bonjour = false")) }).toEqual({ role, file: false });
        expect({ role, env: setting(role, on, { INP2P_DISABLE_BONJOUR: "1" }) }).toEqual({ role, env: false });
        expect({ role, env0: setting(role, on, { INP2P_DISABLE_BONJOUR: "0" }) }).toEqual({ role, env0: true });
        expect({ role, flag: setting(role, on, {}, { bonjour: "false" }) }).toEqual({ role, flag: false });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const found = (name: string, host: string, txt: Partial<ServerTxt> = {}): DiscoveredServer => ({ kind: "server", name, host, port: txt.wsPort ?? 27183, txt: serverTxt(txt) });

describe('server_host = "auto"', () => {
  const config = { insecure: false, tls_fingerprint: undefined };
  const code = (run: () => unknown) => {
    try {
      run();
    } catch (err) {
      if (err instanceof AutoServerError) return { code: err.code, message: err.message };
      throw err;
    }
    throw new Error("expected an AutoServerError");
  };

  it("one server found: its address and ports, its advertised fingerprint pinned", () => {
    expect(chooseServer([found("a", "192.168.1.5", { wsPort: 9000, stunUdp: [9001, 9002], stunTcp: [9003, 9004] })], config, 3000)).toEqual({
      server_host: "192.168.1.5",
      server_port: 9000,
      insecure: false,
      tls_fingerprint: SHA_A,
      stun_udp1: 9001,
      stun_udp2: 9002,
      stun_tcp1: 9003,
      stun_tcp2: 9004,
    });
  });

  it("none, several, or one without TLS: an error saying how to choose", () => {
    expect(code(() => chooseServer([], config, 3000))).toEqual({ code: "NONE_FOUND", message: expect.stringContaining("no inp2ps answered on this LAN within 3 s") });
    const several = code(() => chooseServer([found("a", "192.168.1.5"), found("b", "192.168.1.6", { tlsSha256: SHA_B })], config, 3000));
    expect(several.code).toBe("SEVERAL_FOUND");
    expect(several.message).toContain(`a at 192.168.1.5:27183 (TLS SHA-256 ${SHA_A}`);
    expect(several.message).toContain(`b at 192.168.1.6:27183 (TLS SHA-256 ${SHA_B}`);
    expect(several.message).toContain("--serverhost HOST --serverport PORT (add --newconfig to store it)");
    expect(code(() => chooseServer([found("a", "192.168.1.5", { tls: false, tlsSha256: undefined })], config, 3000))).toEqual({ code: "NO_TLS", message: expect.stringContaining("serves no TLS") });
  });

  it("a configured tls_fingerprint picks among several, and finds none when none matches", () => {
    const both = [found("a", "192.168.1.5"), found("b", "192.168.1.6", { tlsSha256: SHA_B })];
    expect(chooseServer(both, { ...config, tls_fingerprint: SHA_B }, 3000)).toMatchObject({ server_host: "192.168.1.6", tls_fingerprint: SHA_B });
    const none = code(() => chooseServer([found("a", "192.168.1.5")], { ...config, tls_fingerprint: SHA_B }, 3000));
    expect(none).toEqual({ code: "NONE_FOUND", message: expect.stringContaining(`found only: a at 192.168.1.5:27183`) });
  });
});

describe("connect plan with LAN peers found by Bonjour", () => {
  // Two nodes on one LAN segment without a NAT between them and the server: the server sees each at
  // its own address, so its reported LAN address is its public one.
  const plan = (udpPublic: string, udpLan: string[]): ConnectPlan => ({
    sessionId: "AAAAAAAAAAAAAAAAAAAAAA",
    startAt: 0,
    role: "initiator",
    peer: {
      name: "b",
      publicKey: "A".repeat(43),
      nat: { natType: "public", mapping: "endpoint-independent", filtering: "endpoint-independent", publicAddress: udpPublic, portPreserved: true, tcp: true },
      candidates: { udpLan, tcpLan: [], udpPublic, tcpPublic: null },
    },
  });

  it("without Bonjour, a peer whose LAN address is its public one is UDP direct", () => {
    expect(candidatePaths(plan("198.51.100.21:4000", ["198.51.100.21:4000"])).map((c) => `${c.kind} ${c.remote}`)).toEqual(["udp-direct 198.51.100.21:4000"]);
  });

  it("an endpoint found on this LAN comes first and is a lan path, even when it is the peer's public address", () => {
    expect(candidatePaths(plan("198.51.100.21:4000", []), ["198.51.100.21:4000"]).map((c) => `${c.kind} ${c.remote}`)).toEqual(["lan 198.51.100.21:4000"]);
    expect(candidatePaths(plan("203.0.113.9:5000", ["192.168.10.3:4000"]), ["192.168.77.3:4000"]).map((c) => `${c.kind} ${c.remote}`)).toEqual([
      "lan 192.168.77.3:4000",
      "lan 192.168.10.3:4000",
      "udp-direct 203.0.113.9:5000",
    ]);
  });
});
