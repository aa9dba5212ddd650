// The real Prometheus server scrapes a real inp2ps and two inp2pc (an app between them, some traffic,
// one failed login), and its query API answers what an operator would ask.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hasCommand } from "../../scripts/natlab/lab.ts";
import { ADMIN_CREDENTIAL_FILE, SELF_SIGNED_CERT_FILE } from "../../src/server/index.ts";
import { PATH_KINDS } from "../../src/transport/index.ts";
import { echoOnce, startEcho } from "../helpers/echo.ts";
import { prng, randomBytes } from "../helpers/prng.ts";
import {
  appToml,
  exposeToml,
  freePort,
  linkedClientStatus,
  Proc,
  run,
  startLinkedClient,
  startServer,
  stopLinkedClient,
  tempDir,
  waitFor,
  type LinkedClient,
  type ServerHandle,
} from "../helpers/processes.ts";
import { SignalClient } from "../helpers/signal-client.ts";

const MISSING = hasCommand("prometheus") ? undefined : "`prometheus` missing (apt package prometheus; run scripts/natlab/deps.sh)";
const IN_CI = process.env.CI === "true";
if (MISSING && !IN_CI) console.warn(`Prometheus test skipped: ${MISSING}`);

const TARGETS_UP_WITHIN_MS = 20_000;
const SERIES_WITHIN_MS = 15_000;
const ECHO_BYTES = 64 * 1024;
const SEED = 1313;

type Vector = { metric: Record<string, string>; value: [number, string] }[];

describe.skipIf(MISSING && !IN_CI)("Prometheus scraping inp2ps and two inp2pc", () => {
  let server: ServerHandle;
  let alpha: LinkedClient;
  let beta: LinkedClient;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let prometheus: Proc;
  let dir: string;
  let base: string;

  const query = async (promql: string): Promise<Vector> => {
    const response = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`, { signal: AbortSignal.timeout(5_000) });
    const body = (await response.json()) as { status: string; data?: { resultType: string; result: Vector }; error?: string };
    if (body.status !== "success") throw new Error(`query ${promql} failed: ${body.error}`);
    return body.data!.result;
  };
  /** The query's samples once it has at least `atLeast` (a series appears with the next scrape). */
  const samples = (promql: string, atLeast = 1) =>
    waitFor(`${atLeast} samples of ${promql}`, async () => {
      const result = await query(promql);
      return result.length >= atLeast ? result : undefined;
    }, SERIES_WITHIN_MS, 250);
  const valuesByLabel = (vector: Vector, label: string) => Object.fromEntries(vector.map((s) => [s.metric[label], Number(s.value[1])]));

  beforeAll(async () => {
    if (MISSING) throw new Error(MISSING);
    dir = tempDir("inp2p-prometheus-");
    echo = await startEcho();
    server = await startServer();
    beta = await startLinkedClient(server, "beta", exposeToml(`127.0.0.1:${echo.port}`));
    const appPort = await freePort();
    alpha = await startLinkedClient(server, "alpha", appToml({ name: "echo", listen: appPort, peer: "beta", target: echo.port }));
    const data = randomBytes(prng(SEED), ECHO_BYTES);
    // An echo tried while the link still comes up may end early (a fresh-clone run once got one): wait for a whole one.
    const short: number[] = [];
    const echoed = await waitFor(
      "a whole echo through the app",
      async () => {
        const got = await echoOnce(appPort, data, 5_000).catch(() => undefined);
        if (got && got.length !== data.length) short.push(got.length);
        return got?.length === data.length ? got : undefined;
      },
      15_000,
      200,
    );
    expect(echoed.equals(data), `the echo's bytes (short echoes before it: ${short.join(", ") || "none"})`).toBe(true);
    // One failed login: a bad token (after alpha and beta logged in, so their address is not slowed).
    const opened = await SignalClient.attempt(server);
    if ("refused" in opened) throw new Error(`upgrade refused: ${opened.refused.body}`);
    expect((await opened.client.login("mallory", "999")).error.code).toBe("BAD_TOKEN");
    opened.client.close();

    const webPort = await freePort();
    base = `http://127.0.0.1:${webPort}`;
    const node = (client: LinkedClient) => ({ targets: [`127.0.0.1:${client.statusPort}`], labels: { node: client.node } });
    const config = {
      global: { scrape_interval: "1s", scrape_timeout: "900ms" },
      scrape_configs: [
        {
          job_name: "inp2ps",
          scheme: "https",
          // The server's self-signed certificate, valid for localhost and 127.0.0.1 (README's sample config).
          tls_config: { ca_file: join(server.dir, SELF_SIGNED_CERT_FILE), server_name: "localhost" },
          authorization: { credentials_file: join(server.dir, ADMIN_CREDENTIAL_FILE) },
          static_configs: [{ targets: [`127.0.0.1:${server.port}`] }],
        },
        { job_name: "inp2pc", static_configs: [node(alpha), node(beta)] },
      ],
    };
    writeFileSync(join(dir, "prometheus.yml"), JSON.stringify(config)); // JSON is YAML
    prometheus = run("prometheus", [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${webPort}`,
    ]);
    await waitFor(
      "Prometheus with all three targets up",
      async () => {
        const response = await fetch(`${base}/api/v1/targets`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
        if (!response?.ok) return undefined;
        const targets = ((await response.json()) as { data: { activeTargets: { health: string; lastError: string; scrapeUrl: string }[] } }).data.activeTargets;
        return targets.length === 3 && targets.every((t) => t.health === "up");
      },
      TARGETS_UP_WITHIN_MS,
      250,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nprometheus output:\n${prometheus.output.slice(-3000)}`);
    });
  }, 90_000);

  afterAll(async () => {
    await prometheus?.stop();
    await stopLinkedClient(alpha);
    await stopLinkedClient(beta);
    await server?.stop();
    echo?.server.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("counts both nodes online for the default user, and the bad-token login", async () => {
    expect(valuesByLabel(await samples('inp2p_nodes_online{job="inp2ps"}'), "user")).toEqual({ default: 2 });
    const failures = valuesByLabel(await samples('inp2p_auth_failures_total{job="inp2ps"}'), "reason");
    expect(failures.bad_token).toBeGreaterThanOrEqual(1);
    expect(failures.bad_signature).toBe(0);
    expect(Number((await samples('inp2p_logins_total{job="inp2ps"}'))[0]!.value[1])).toBeGreaterThanOrEqual(2);
    const plans = await samples('sum(inp2p_link_plans_total{job="inp2ps"})');
    expect(Number(plans[0]!.value[1])).toBeGreaterThanOrEqual(1);
  });

  it("sees the app's tunnel up on alpha, one link of the same kind on each node (the one the status API names), and the punch that made it", async () => {
    expect(valuesByLabel(await samples('inp2p_tunnel_up{job="inp2pc"}'), "app")).toEqual({ echo: 1 });
    const links = await samples('inp2p_links{job="inp2pc"} > 0', 2);
    expect(links.map((s) => [s.metric.node, s.value[1]]).sort()).toEqual([["alpha", "1"], ["beta", "1"]]);
    const kind = links[0]!.metric.kind!;
    expect(PATH_KINDS).toContain(kind);
    expect(links[1]!.metric.kind).toBe(kind);
    const status = await linkedClientStatus(alpha);
    expect(status.peers.beta.link).toBe(kind);
    // Both ran the server's plan (on loopback a direct path always works): each counted its attempt, linked over that kind.
    const punches = await samples(`inp2p_punch_attempts_total{job="inp2pc",outcome="linked",path="${kind}"}`, 2);
    expect(punches.map((s) => s.metric.node).sort()).toEqual(["alpha", "beta"]);
    expect(punches.find((s) => s.metric.node === "alpha")!.metric.own_nat).toBe(status.nat.natType);
  });

  it("has the peer RTT the link measured, and alpha's bytes to beta at least the echoed data", async () => {
    // The link's initiator pings at once; the other side measures at its first keepalive (15-25 s
    // later), so only one of the two is sure to be there by now.
    const rtt = await samples('inp2p_peer_rtt_seconds{job="inp2pc"}');
    for (const s of rtt) {
      expect(["alpha->beta", "beta->alpha"]).toContain(`${s.metric.node}->${s.metric.peer}`);
      expect(Number(s.value[1])).toBeGreaterThanOrEqual(0);
      expect(Number(s.value[1])).toBeLessThan(1);
    }
    const sent = await samples('inp2p_peer_sent_bytes_total{node="alpha",peer="beta"}');
    expect(Number(sent[0]!.value[1])).toBeGreaterThanOrEqual(ECHO_BYTES);
    const punches = await samples('sum(inp2p_punch_duration_seconds_count{job="inp2pc"})');
    expect(Number(punches[0]!.value[1])).toBeGreaterThanOrEqual(2);
  });

  it("reports each program's resident memory", async () => {
    const memory = await samples("process_resident_memory_bytes");
    expect(memory.map((s) => s.metric.job).sort()).toEqual(["inp2pc", "inp2pc", "inp2ps"]);
    for (const s of memory) expect(Number(s.value[1])).toBeGreaterThan(1024 * 1024);
  });
});
