// The exposition's bounds: label values come from fixed lists or bounded tables, whatever is fed in.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.ts";
import { AUTH_FAILURE_REASONS, authFailureReason, ClientMetrics, ServerMetrics, type ClientMetricsView } from "../../src/metrics/index.ts";
import { ERROR_CODES } from "../../src/protocol/index.ts";
import { PATH_KINDS } from "../../src/transport/index.ts";
import { parseExposition, samplesOf } from "../helpers/exposition.ts";
import { prng, randomInt } from "../helpers/prng.ts";

const SEED = 4242;
const scrape = async (metrics: { response(): Promise<Response> }) => parseExposition(await (await metrics.response()).text());

describe("ServerMetrics", () => {
  it("counts every login refusal under one of the fixed reasons, whatever the code", async () => {
    const random = prng(SEED);
    const codes = [...ERROR_CODES, "PAIRING_RATE_LIMITED", "TOO_MANY_PENDING", "A_CODE_OF_A_NEWER_SERVER"];
    const metrics = new ServerMetrics({ users: ["default"], online: () => [] });
    const refusals = 500;
    for (let i = 0; i < refusals; i++) metrics.authFailure(authFailureReason(codes[randomInt(random, codes.length)]!));
    const failures = samplesOf(await scrape(metrics), "inp2p_auth_failures_total");
    expect(failures.map((s) => s.labels.reason)).toEqual([...AUTH_FAILURE_REASONS]);
    expect(failures.reduce((sum, s) => sum + s.value, 0)).toBe(refusals);
    expect(authFailureReason("BAD_TOKEN")).toBe("bad_token");
    expect(authFailureReason("A_CODE_OF_A_NEWER_SERVER")).toBe("other");
  });

  it("has a nodes-online series per configured user, zero included, read at each scrape", async () => {
    const online = [{ user: "bob" }, { user: "bob" }];
    const metrics = new ServerMetrics({ users: ["default", "bob"], online: () => online });
    const count = async () => Object.fromEntries(samplesOf(await scrape(metrics), "inp2p_nodes_online").map((s) => [s.labels.user, s.value]));
    expect(await count()).toEqual({ default: 0, bob: 2 });
    online.pop();
    expect(await count()).toEqual({ default: 0, bob: 1 });
  });

  it("labels a plan with unknown for a NAT not detected yet, and has no relay series without a relay", async () => {
    const metrics = new ServerMetrics({ users: ["default"], online: () => [] });
    metrics.plan("direct", undefined, "symmetric");
    const samples = await scrape(metrics);
    expect(samplesOf(samples, "inp2p_link_plans_total")).toEqual([{ name: "inp2p_link_plans_total", labels: { path: "direct", requester_nat: "unknown", peer_nat: "symmetric" }, value: 1 }]);
    expect(samplesOf(samples, "inp2p_relay_sessions")).toEqual([]);
  });
});

describe("ClientMetrics", () => {
  const peer = (link: string | null, rttMs: number | null, bytes = 0) => ({ link, rttMs, bytesIn: bytes, bytesOut: bytes * 2 });
  const app = (name: string, peerName: string, state: string, connections = 0) => ({ name, peer: peerName, state, connections, totalConnections: connections + 3 });

  it("has per-peer series only for peers with a link, and tunnel_up 1 only for a listening app whose peer is linked", async () => {
    const view: ClientMetricsView = {
      server: { state: "online" },
      peers: { beta: peer("udp-punch", 12, 1000), gamma: peer("relay-server", null, 10), delta: peer(null, null) },
      apps: [app("web", "beta", "listening", 2), app("ssh", "delta", "listening"), app("db", "beta", "failed")],
    };
    const samples = await scrape(new ClientMetrics({ linkKinds: PATH_KINDS, view: () => view }));
    const byLabel = (name: string, label: string) => Object.fromEntries(samplesOf(samples, name).map((s) => [s.labels[label], s.value]));
    expect(byLabel("inp2p_peer_rtt_seconds", "peer")).toEqual({ beta: 0.012 });
    expect(byLabel("inp2p_peer_received_bytes_total", "peer")).toEqual({ beta: 1000, gamma: 10 });
    expect(byLabel("inp2p_peer_sent_bytes_total", "peer")).toEqual({ beta: 2000, gamma: 20 });
    expect(byLabel("inp2p_tunnel_up", "app")).toEqual({ web: 1, ssh: 0, db: 0 });
    expect(byLabel("inp2p_app_connections", "app")).toEqual({ web: 2, ssh: 0, db: 0 });
    expect(byLabel("inp2p_app_connections_total", "app")).toEqual({ web: 5, ssh: 3, db: 3 });
    const links = byLabel("inp2p_links", "kind");
    expect(Object.keys(links)).toEqual([...PATH_KINDS]);
    expect(links).toMatchObject({ "udp-punch": 1, "relay-server": 1, lan: 0 });
    expect(samplesOf(samples, "inp2p_server_online")[0]!.value).toBe(1);
  });

  it("drops a peer's series when its link goes, so the label set stays within the peer table", async () => {
    const random = prng(SEED);
    const view: ClientMetricsView = { server: { state: "online" }, peers: {}, apps: [] };
    const metrics = new ClientMetrics({ linkKinds: PATH_KINDS, view: () => view });
    for (let round = 0; round < 20; round++) {
      view.peers = {};
      for (let i = 0; i < 1 + randomInt(random, 5); i++) view.peers[`peer-${round}-${i}`] = peer("lan", randomInt(random, 100));
      const names = samplesOf(await scrape(metrics), "inp2p_peer_rtt_seconds").map((s) => s.labels.peer).sort();
      expect(names).toEqual(Object.keys(view.peers).sort());
    }
  });

  it("observes punch times by path and counts attempts by NAT pair, and reads relay counts (zero until the relay runs)", async () => {
    let relay: { sessions: number; bytesRelayed: number } | undefined;
    const metrics = new ClientMetrics({ linkKinds: PATH_KINDS, view: () => ({ server: { state: "offline" }, peers: {}, apps: [] }), relay: () => relay });
    metrics.punch("symmetric", undefined, "no_path");
    metrics.punch("full-cone", "port-restricted-cone", "linked", "udp-punch");
    metrics.linked("udp-punch", 300);
    let samples = await scrape(metrics);
    expect(samplesOf(samples, "inp2p_punch_attempts_total").map((s) => s.labels)).toEqual([
      { own_nat: "symmetric", peer_nat: "unknown", path: "none", outcome: "no_path" },
      { own_nat: "full-cone", peer_nat: "port-restricted-cone", path: "udp-punch", outcome: "linked" },
    ]);
    expect(samplesOf(samples, "inp2p_punch_duration_seconds_bucket", { path: "udp-punch", le: "0.25" })[0]!.value).toBe(0);
    expect(samplesOf(samples, "inp2p_punch_duration_seconds_bucket", { path: "udp-punch", le: "0.5" })[0]!.value).toBe(1);
    expect(samplesOf(samples, "inp2p_relay_sessions")).toEqual([{ name: "inp2p_relay_sessions", labels: {}, value: 0 }]);
    relay = { sessions: 2, bytesRelayed: 4096 };
    samples = await scrape(metrics);
    expect(samplesOf(samples, "inp2p_relay_sessions")[0]!.value).toBe(2);
    expect(samplesOf(samples, "inp2p_relay_bytes_total")[0]!.value).toBe(4096);
    expect(samplesOf(samples, "inp2p_server_online")[0]!.value).toBe(0);
  });
});

describe("process metrics", () => {
  it("report the memory of Buffers the program holds, apart from the JavaScript heap", async () => {
    const metrics = new ClientMetrics({ linkKinds: PATH_KINDS, view: () => ({ server: { state: "online" }, peers: {}, apps: [] }) });
    const external = async () => samplesOf(await scrape(metrics), "inp2p_external_memory_bytes")[0]!.value;
    const before = await external();
    const held = Array.from({ length: 64 }, () => Buffer.alloc(1024 * 1024, 1));
    // Half of what is held: other Buffers of the process may be collected meanwhile.
    expect(await external()).toBeGreaterThanOrEqual(before + 32 * 1024 * 1024);
    expect(held.length).toBe(64);
  });
});

describe("[server] metrics_allow", () => {
  const server = (extra: string) => () => parseConfig(`role = "server"\n[server]\ntoken = "1"\n${extra}\n`, "/x.toml");

  it("takes IPv4 and IPv6 CIDRs (an address alone as its /32 or /128), is empty by default, and names a bad entry", () => {
    expect(server("")().server?.metrics_allow).toEqual([]);
    expect(server('metrics_allow = ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]')().server?.metrics_allow).toEqual(["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]);
    expect(server('metrics_allow = ["10.0.0.0/8", "prometheus.lan"]')).toThrow(/server\.metrics_allow\[1\]: expected a CIDR/);
    expect(server('metrics_allow = "127.0.0.1/32"')).toThrow(/server\.metrics_allow/);
  });

  it("holds at most 256 entries", () => {
    const list = (n: number) => `metrics_allow = [${Array.from({ length: n }, (_, i) => `"10.${i >> 8}.${i & 255}.0/24"`).join(", ")}]`;
    expect(server(list(256))().server?.metrics_allow).toHaveLength(256);
    expect(server(list(257))).toThrow(/server\.metrics_allow/);
  });
});
