// Who may read inp2ps's /metrics: the admin credential, or a client address in metrics_allow (the
// forwarded one behind a trusted proxy); anyone else is refused, saying what would let them in.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStatusServer, type ClientStatus } from "../../src/client/status.ts";
import { ClientMetrics } from "../../src/metrics/index.ts";
import { PATH_KINDS } from "../../src/transport/index.ts";
import type { ServerInit } from "../../src/server/index.ts";
import { IN_PROCESS_TOKEN as USER_TOKEN, startInProcessServer, type InProcessServer } from "../helpers/in-process-server.ts";
import { parseExposition, samplesOf } from "../helpers/exposition.ts";

async function serverWith(settings: Partial<ServerInit>): Promise<InProcessServer & { url: string }> {
  const started = await startInProcessServer({ users: [{ name: "bob", token: "42" }], ...settings });
  return { ...started, url: `http://127.0.0.1:${started.server.port}/metrics` };
}

async function scrape(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers });
  return { status: response.status, type: response.headers.get("content-type") ?? "", text: await response.text() };
}

describe("inp2ps /metrics behind a trusted proxy, metrics_allow = 10.9.0.0/16", () => {
  let s: Awaited<ReturnType<typeof serverWith>>;
  beforeAll(async () => {
    s = await serverWith({ trusted_proxies: ["127.0.0.1/32"], metrics_allow: ["10.9.0.0/16"] });
  });
  afterAll(() => s?.stop());

  it("refuses a request without a credential from an address not in metrics_allow with 401, naming both ways in", async () => {
    const direct = await scrape(s.url);
    expect(direct.status).toBe(401);
    expect(JSON.parse(direct.text).error).toBe(
      "metrics need the admin credential ('Authorization: Bearer <admin credential>'), or a client address in [server] metrics_allow of the server's config; 127.0.0.1 is not in it",
    );
    const forwarded = await scrape(s.url, { "x-forwarded-for": "10.9.1.2, 10.8.7.6" });
    expect(forwarded.status).toBe(401);
    expect(forwarded.text).toContain("10.8.7.6 is not in it");
  });

  it("serves the address the trusted proxy forwards when it is in metrics_allow", async () => {
    const allowed = await scrape(s.url, { "x-forwarded-for": "10.9.1.2" });
    expect(allowed.status).toBe(200);
    expect(allowed.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(samplesOf(parseExposition(allowed.text), "inp2p_nodes_online")).toEqual([
      { name: "inp2p_nodes_online", labels: { user: "default" }, value: 0 },
      { name: "inp2p_nodes_online", labels: { user: "bob" }, value: 0 },
    ]);
  });

  it("refuses a forwarded address that is not one with 400", async () => {
    const bad = await scrape(s.url, { "x-forwarded-for": "not-an-address" });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text).error).toBe('X-Forwarded-For entry "not-an-address" (from trusted proxy 127.0.0.1) is not an IP address');
  });

  it("judges a request that sends a credential by it: a user token gets 403, the admin credential the metrics", async () => {
    const user = await scrape(s.url, { authorization: `Bearer ${USER_TOKEN}`, "x-forwarded-for": "10.9.1.2" });
    expect(user.status).toBe(403);
    expect(JSON.parse(user.text).error).toContain("that is a user token, which grants nothing on this API but health");
    const wrong = await scrape(s.url, { authorization: "Bearer not-the-admin-credential" });
    expect(wrong.status).toBe(403);
    const admin = await scrape(s.url, { authorization: `Bearer ${s.server.admin.secret}` });
    expect(admin.status).toBe(200);
    expect(samplesOf(parseExposition(admin.text), "process_resident_memory_bytes")[0]!.value).toBeGreaterThan(0);
  });
});

describe("inp2ps /metrics with metrics_allow = 127.0.0.1/32 and no trusted proxy", () => {
  let s: Awaited<ReturnType<typeof serverWith>>;
  beforeAll(async () => {
    s = await serverWith({ metrics_allow: ["127.0.0.1/32"] });
  });
  afterAll(() => s?.stop());

  it("serves an allowed address without a credential, whatever X-Forwarded-For it writes", async () => {
    expect((await scrape(s.url)).status).toBe(200);
    expect((await scrape(s.url, { "x-forwarded-for": "10.8.7.6" })).status).toBe(200);
  });

  it("has every auth failure reason and rate limit from the start, at zero", async () => {
    const samples = parseExposition((await scrape(s.url)).text);
    expect(samplesOf(samples, "inp2p_auth_failures_total").map((x) => [x.labels.reason, x.value])).toEqual(
      ["bad_token", "bad_signature", "key_mismatch", "revoked", "pending", "rate_limited", "login_timeout", "admin_credential", "other"].map((r) => [r, 0]),
    );
    expect(samplesOf(samples, "inp2p_rate_limited_total").map((x) => x.labels.limit)).toEqual(["preauth", "logins", "plans", "messages", "stun", "relay"]);
  });
});

describe("inp2pc /metrics on the status port", () => {
  const status = { node: "alpha", server: { state: "online" }, peers: {}, apps: [] } as unknown as ClientStatus;
  let statusServer: ReturnType<typeof startStatusServer>;
  beforeAll(() => {
    statusServer = startStatusServer(0, () => status, new ClientMetrics({ linkKinds: PATH_KINDS, view: () => status }));
  });
  afterAll(() => statusServer?.stop());

  it("answers Host 127.0.0.1 and localhost, and refuses any other Host (DNS rebinding) with 403", async () => {
    for (const host of [`127.0.0.1:${statusServer.port}`, `localhost:${statusServer.port}`]) {
      const response = await fetch(`http://127.0.0.1:${statusServer.port}/metrics`, { headers: { host } });
      expect(response.status, host).toBe(200);
      expect(samplesOf(parseExposition(await response.text()), "inp2p_server_online")[0]!.value).toBe(1);
    }
    const rebound = await fetch(`http://127.0.0.1:${statusServer.port}/metrics`, { headers: { host: "attacker.example:80" } });
    expect(rebound.status).toBe(403);
    expect(((await rebound.json()) as { error: string }).error).toContain('refused Host "attacker.example:80"');
  });
});
