// Limits behind a reverse proxy and over IPv6: a real inp2ps on 127.0.0.1 that trusts 127.0.0.1/32 as
// its proxy counts the client each X-Forwarded-For names (an IPv6 client by its /64); one that trusts
// no proxy, or a peer outside the trusted list, is counted by its own address whatever it sends.
import { networkInterfaces } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startServer, type ServerHandle } from "../helpers/processes.ts";
import { SignalClient, type Refused } from "../helpers/signal-client.ts";

const MAX_CONNS_PER_IP = 2;

/** Opens a WebSocket, from 127.0.0.1 unless told otherwise, with X-Forwarded-For when given. */
async function open(server: ServerHandle, forwardedFor?: string, localAddress?: string): Promise<{ client: SignalClient } | { refused: Refused }> {
  return SignalClient.attempt(server, { localAddress, headers: forwardedFor ? { "X-Forwarded-For": forwardedFor } : {} });
}

const opened = new Set<SignalClient>();
async function held(server: ServerHandle, forwardedFor?: string, localAddress?: string): Promise<SignalClient> {
  const result = await open(server, forwardedFor, localAddress);
  if ("refused" in result) throw new Error(`refused: ${result.refused.status} ${result.refused.body}`);
  opened.add(result.client);
  return result.client;
}
function closeAll(): void {
  for (const client of opened) client.close();
  opened.clear();
}

async function expectRefused(attempt: Promise<{ client: SignalClient } | { refused: Refused }>, status: number, body: RegExp): Promise<void> {
  const result = await attempt;
  if ("client" in result) result.client.close();
  expect("refused" in result && result.refused.status, "the upgrade was refused").toBe(status);
  if ("refused" in result) expect(result.refused.body).toMatch(body);
}

describe("behind a trusted proxy (trusted_proxies = [127.0.0.1/32])", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ tls: "off", maxConnsPerIp: MAX_CONNS_PER_IP, extraToml: 'trusted_proxies = ["127.0.0.1/32"]' });
  });
  afterAll(async () => {
    closeAll();
    await server?.stop();
  });

  it("counts connections per forwarded client: one client at its limit leaves the others their own", async () => {
    for (let i = 0; i < MAX_CONNS_PER_IP; i++) await held(server, "203.0.113.9, 198.51.100.1");
    await expectRefused(open(server, "198.51.100.1"), 429, /too many connections from this address/);
    const other = await held(server, "198.51.100.2");
    expect(await other.login("behind-proxy", server.token)).toMatchObject({ ok: true, result: { address: "198.51.100.2" } });
    const { body } = await api(server, "/api/v1/nodes", server.adminToken);
    expect(body.nodes.find((n: { name: string }) => n.name === "behind-proxy")?.address).toBe("198.51.100.2");
    closeAll();
  });

  it("counts an IPv6 client by its /64", async () => {
    await held(server, "2001:db8:1:2::a");
    await held(server, "2001:db8:1:2:ffff::b");
    await expectRefused(open(server, "2001:db8:1:2::c"), 429, /too many connections from this address/);
    await held(server, "2001:db8:1:3::a");
    closeAll();
  });

  it("counts a direct peer outside the trusted list by its own address, whatever it forwards", async () => {
    for (let i = 0; i < MAX_CONNS_PER_IP; i++) await held(server, `198.51.100.${10 + i}`, "127.0.0.2");
    await expectRefused(open(server, "198.51.100.20", "127.0.0.2"), 429, /too many connections from this address/);
    closeAll();
  });

  it("refuses a forwarded entry that is no IP address, naming it", async () => {
    await expectRefused(open(server, "198.51.100.1, not-an-ip"), 400, /X-Forwarded-For entry \\?"not-an-ip\\?" .* is not an IP address/);
  });
});

describe("with no trusted proxy", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ tls: "off", maxConnsPerIp: MAX_CONNS_PER_IP });
  });
  afterAll(async () => {
    closeAll();
    await server?.stop();
  });

  it("ignores X-Forwarded-For: every connection from 127.0.0.1 counts as 127.0.0.1", async () => {
    for (let i = 0; i < MAX_CONNS_PER_IP; i++) await held(server, `198.51.100.${i + 1}`);
    await expectRefused(open(server, "198.51.100.99"), 429, /too many connections from this address/);
    closeAll();
  });
});

const HAS_IPV6_LOOPBACK = Object.values(networkInterfaces()).flat().some((a) => a?.internal && a.family === "IPv6" && a.address === "::1");

describe.skipIf(!HAS_IPV6_LOOPBACK)("on ::1 (skipped when this machine has no IPv6 loopback)", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ tls: "off", listen: "::1", maxConnsPerIp: MAX_CONNS_PER_IP });
  });
  afterAll(async () => {
    closeAll();
    await server?.stop();
  });

  it("counts IPv6 clients by their /64, logs them in, and does not warn about plain ws on loopback", async () => {
    const clients = [];
    for (let i = 0; i < MAX_CONNS_PER_IP; i++) {
      const result = await SignalClient.attempt(server, { host: "[::1]" });
      if ("refused" in result) throw new Error(`refused: ${result.refused.status} ${result.refused.body}`);
      opened.add(result.client);
      clients.push(result.client);
    }
    await expectRefused(SignalClient.attempt(server, { host: "[::1]" }), 429, /too many connections from this address/);
    expect(await clients[0]!.login("v6-node", server.token)).toMatchObject({ ok: true, result: { address: expect.stringMatching(/^\[::1\]:\d+$/) } });
    expect(server.proc.output).not.toMatch(/captured login/);
    closeAll();
  });
});
