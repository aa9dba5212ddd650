// `inp2pc doctor`, `inp2pc ping` and `inp2pc speedtest` against real inp2ps / inp2pc processes on
// 127.0.0.1. One server and two linked nodes serve every test that needs them: beta's app reaches a
// target alpha exposes (beta is the healthy node), alpha's app asks beta for one it does not expose.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEcho } from "../helpers/echo.ts";
import {
  appToml,
  exposeToml,
  freePort,
  freeUdpPorts,
  INP2PC,
  logsSince,
  run,
  runToEnd,
  startLinkedClient,
  startServer,
  stopLinkedClient,
  tempDir,
  waitFor,
  type LinkedClient,
  type ServerHandle,
} from "../helpers/processes.ts";

const COMMAND_TIMEOUT_MS = 40_000;
/** alpha, beta, omega and kappa may link; zeta, of the same user, may link to no one. */
const LINKABLE = '["alpha", "beta", "omega", "kappa"]';
const ACL_TOML = ["[[server.acl]]", 'name = "linkable"', `from = ${LINKABLE}`, `to = ${LINKABLE}`, 'action = "allow"'].join("\n");

interface Layer {
  layer: string;
  name: string;
  status: string;
  measured: string;
  threshold: string;
  fix: string | null;
}

async function doctor(args: string[]): Promise<{ code: number | null; output: string; report: { exitCode: number; failed: string | null; layers: Layer[] } }> {
  const json = await runToEnd(INP2PC, ["doctor", "--json", ...args], { timeoutMs: COMMAND_TIMEOUT_MS });
  return { code: json.code, output: json.output, report: JSON.parse(json.output) };
}

const layer = (report: { layers: Layer[] }, name: string) => {
  const found = report.layers.find((l) => l.name === name);
  if (!found) throw new Error(`no check named ${name} in ${JSON.stringify(report.layers.map((l) => l.name))}`);
  return found;
};

/** A client config file of its own (for the failing layers), with the given [client] lines. */
function clientConfig(lines: string[]): string {
  const dir = tempDir("inp2pc-doctor-");
  const path = join(dir, "inp2pc.toml");
  writeFileSync(path, ['role = "client"', "[client]", `data_dir = "${dir}"`, ...lines].join("\n") + "\n", { mode: 0o600 });
  return path;
}

describe("doctor, ping and speedtest between two running nodes", () => {
  let server: ServerHandle;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let alpha: LinkedClient;
  let beta: LinkedClient;
  let zeta: LinkedClient;
  /** Linked to no one until the ping test pings it. */
  let omega: LinkedClient;
  let hiddenPort: number;

  beforeAll(async () => {
    server = await startServer({ tail: ACL_TOML });
    echo = await startEcho();
    hiddenPort = await freePort();
    const betaAppPort = await freePort();
    const alphaAppPort = await freePort();
    alpha = await startLinkedClient(server, "alpha", [exposeToml(`127.0.0.1:${echo.port}`), appToml({ name: "hidden", listen: alphaAppPort, peer: "beta", target: hiddenPort })].join("\n"));
    beta = await startLinkedClient(server, "beta", appToml({ name: "web", listen: betaAppPort, peer: "alpha", target: echo.port }));
    zeta = await startLinkedClient(server, "zeta", appToml({ name: "blocked", listen: await freePort(), peer: "alpha", target: echo.port }));
    omega = await startLinkedClient(server, "omega");
  }, 60_000);

  afterAll(async () => {
    await stopLinkedClient(omega);
    await stopLinkedClient(zeta);
    await stopLinkedClient(alpha);
    await stopLinkedClient(beta);
    await server?.stop();
    echo?.server.close();
  });

  it("doctor on a healthy node: every layer ok, exit 0", async () => {
    const sides = { alpha: { proc: alpha.proc, from: alpha.proc.output.length }, beta: { proc: beta.proc, from: beta.proc.output.length } };
    const { code, output, report } = await doctor(["--config", beta.config]);
    // On failure, what both nodes said meanwhile: a link that stops answering is seen in their logs.
    expect(report.layers.filter((l) => l.status === "fail"), `${output}\n${logsSince(sides, 40)}`).toEqual([]);
    expect(code).toBe(0);
    expect(report.exitCode).toBe(0);
    for (const name of ["config", "server", "tls", "login", "nat", "peer alpha", "app web", "system ffi"]) expect(layer(report, name).status, name).toBe("ok");
    expect(layer(report, "tls").measured).toMatch(/matches the first-use record/);
    expect(layer(report, "login").measured).toMatch(/logged in as beta of user default/);
    expect(layer(report, "app web").measured).toContain(`alpha connected to 127.0.0.1:${echo.port}`);
    const text = await runToEnd(INP2PC, ["doctor", "--config", beta.config], { timeoutMs: COMMAND_TIMEOUT_MS });
    console.log(`doctor on a healthy node:\n${text.output}`);
    expect(text.code).toBe(0);
    expect(text.output).toMatch(/^app web +ok +listening on/m);
    expect(text.output).toContain("all layers ok");
    // It read the running node's state: no second login replaced it.
    expect(server.proc.output).not.toMatch(/node logged in again; closing its older session node=beta/);
    expect(beta.proc.output).not.toMatch(/another machine runs as this node/);
  }, 60_000);

  it("doctor with a pinned fingerprint the server's certificate does not match: exit 12, and the fix", async () => {
    const wrong = Array.from({ length: 32 }, () => "AB").join(":");
    const config = clientConfig([
      'server_host = "127.0.0.1"',
      `server_port = ${server.port}`,
      'node = "gamma"',
      `token = "${server.token}"`,
      `tls_fingerprint = "${wrong}"`,
      `status_port = ${await freePort()}`,
      ...Object.entries(server.stunPorts).map(([key, port]) => `${key} = ${port}`),
    ]);
    const { code, output, report } = await doctor(["--config", config]);
    expect(code, output).toBe(12);
    expect(report.failed).toBe("tls");
    const tls = layer(report, "tls");
    expect(tls.status).toBe("fail");
    expect(tls.measured).toContain(`server certificate does not match the pinned tls_fingerprint: expected ${wrong}, got ${server.fingerprint}`);
    expect(tls.fix).toContain(`set tls_fingerprint = "${server.fingerprint}" in [client]`);
    expect(layer(report, "server").status).toBe("ok");
    expect(layer(report, "login")).toMatchObject({ status: "skipped", measured: "TLS failed" });
    expect(server.proc.output).not.toMatch(/node=gamma/); // it never logged in
  }, 60_000);
  it("doctor names an app whose target the serving node does not expose: exit 16, and the fix", async () => {
    const { code, output, report } = await doctor(["--config", alpha.config]);
    expect(code, output).toBe(16);
    expect(report.failed).toBe("app");
    const app = layer(report, "app hidden");
    expect(app.status).toBe("fail");
    expect(app.measured).toContain(`beta refused 127.0.0.1:${hiddenPort} (NOT_EXPOSED)`);
    expect(app.fix).toBe(`add "127.0.0.1:${hiddenPort}" to expose in [client] on node beta`);
    for (const name of ["config", "server", "tls", "login", "nat"]) expect(layer(report, name).status, name).toBe("ok");
    const text = await runToEnd(INP2PC, ["doctor", "--config", alpha.config], { timeoutMs: COMMAND_TIMEOUT_MS });
    console.log(`doctor on a node whose app target is refused:\n${text.output}`);
    expect(text.output).toContain(`fix: add "127.0.0.1:${hiddenPort}" to expose in [client] on node beta`);
    expect(text.output).toContain("first failing layer: app (exit code 16)");
  }, 60_000);

  it("doctor names a peer an app needs that the server's ACL keeps from linking: exit 15, and the fix", async () => {
    const { code, output, report } = await doctor(["--config", zeta.config]);
    expect(code, output).toBe(15);
    expect(report.failed).toBe("peer");
    const peer = layer(report, "peer alpha");
    expect(peer.status).toBe("fail");
    expect(peer.measured).toBe("no link (app blocked needs it): the server's ACL denies zeta -> alpha (no rule of user default allows it)");
    expect(peer.fix).toBe("ask the server's admin for an ACL rule that lets this node link to alpha");
  }, 60_000);

  it("ping: one line per ping with the path, then a summary with no loss", async () => {
    const { code, output } = await runToEnd(INP2PC, ["ping", "beta", "-c", "3", "-i", "0.2", "--config", alpha.config], { timeoutMs: COMMAND_TIMEOUT_MS });
    expect(code, output).toBe(0);
    const pongs = output.match(/^pong from beta over \S+ .* in \d+\.\d+ ms \(seq \d\)$/gm) ?? [];
    expect(pongs.map((line) => line.match(/seq (\d)/)![1]), output).toEqual(["1", "2", "3"]);
    expect(output).toMatch(/^3 sent, 3 received, 0% loss; rtt min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms$/m);

    const json = await runToEnd(INP2PC, ["ping", "beta", "--count", "2", "--interval", "0.2", "--json", "--config", alpha.config], { timeoutMs: COMMAND_TIMEOUT_MS });
    expect(json.code, json.output).toBe(0);
    const summary = JSON.parse(json.output);
    expect(summary).toMatchObject({ peer: "beta", sent: 2, received: 2, lossPercent: 0 });
    expect(summary.path).toMatch(/^(lan|udp-direct|udp-punch|tcp-direct|tcp-punch|relay-\w+)$/);
    expect(summary.minMs).toBeGreaterThan(0);
    expect(summary.minMs).toBeLessThanOrEqual(summary.avgMs);
    expect(summary.avgMs).toBeLessThanOrEqual(summary.maxMs);
    expect(summary.pings.map((p: { seq: number }) => p.seq)).toEqual([1, 2]);
  }, 60_000);

  it("ping of a peer with no link yet makes one and says which path it took", async () => {
    const { code, output } = await runToEnd(INP2PC, ["ping", "omega", "-c", "2", "-i", "0.2", "--config", alpha.config], { timeoutMs: COMMAND_TIMEOUT_MS });
    expect(code, output).toBe(0);
    const lines = output.trim().split("\n");
    expect(lines[0]).toMatch(/^no link to omega yet: made one over (lan|udp-direct|udp-punch|tcp-direct|tcp-punch|relay-\w+( via relay \S+)?) \(\S+\) in \d+ ms$/);
    expect(lines.slice(1, 3)).toEqual([expect.stringMatching(/^pong from omega over .* \(seq 1\)$/), expect.stringMatching(/^pong from omega over .* \(seq 2\)$/)]);
    expect(output.match(/no link to omega yet/g)).toHaveLength(1);
  }, 60_000);

  it("ping of a peer that goes away midway counts the pings after as lost, says why, and still sums up", async () => {
    const kappa = await startLinkedClient(server, "kappa");
    const pinging = run(INP2PC, ["ping", "kappa", "-c", "4", "-i", "0.5", "--config", alpha.config]);
    try {
      await pinging.waitForOutput(/^pong from kappa .*\(seq 1\)$/m, 20_000);
      await kappa.proc.stop();
      await waitFor("the ping to finish", () => pinging.exitCode !== null, 30_000);
      expect(pinging.exitCode, pinging.output).toBe(0); // some pongs came back
      expect(pinging.output).toMatch(/^no pong from kappa/m);
      const summary = pinging.output.match(/^4 sent, (\d) received, (\d+)% loss/m);
      expect(summary, pinging.output).not.toBeNull();
      expect(Number(summary![1])).toBeGreaterThanOrEqual(1);
      expect(Number(summary![1])).toBeLessThan(4);
      expect(Number(summary![2])).toBe(((4 - Number(summary![1])) / 4) * 100);
    } finally {
      await pinging.stop();
      await stopLinkedClient(kappa);
    }
  }, 60_000);

  it("ping of a peer that is not online, or that the ACL denies, fails with a clear error", async () => {
    const { code, output } = await runToEnd(INP2PC, ["ping", "nosuch", "-c", "1", "--config", alpha.config], { timeoutMs: COMMAND_TIMEOUT_MS });
    expect(code).toBe(1);
    expect(output.trim()).toBe("inp2pc: peer nosuch is not online: no node of this user by that name is logged in to the server (inp2ps nodes lists them)");
    const itself = await runToEnd(INP2PC, ["ping", "alpha", "-c", "1", "--config", alpha.config]);
    expect(itself.code).toBe(1);
    expect(itself.output.trim()).toBe("inp2pc: alpha is this node: name another node of this user");
    const denied = await runToEnd(INP2PC, ["ping", "alpha", "-c", "1", "--config", zeta.config], { timeoutMs: COMMAND_TIMEOUT_MS });
    expect(denied.code).toBe(1);
    expect(denied.output.trim()).toBe("inp2pc: the server's ACL denies zeta -> alpha (no rule of user default allows it)");
    const usage = await runToEnd(INP2PC, ["ping", "beta", "-i", "0", "--config", alpha.config]);
    expect(usage.code).toBe(2);
    expect(usage.output).toContain("--interval must be a number from 0.2 to 60");
  }, 30_000);

  it("the status API's actions take only a JSON body, and only for Host loopback (no web page can post one)", async () => {
    const response = await fetch(`http://127.0.0.1:${alpha.statusPort}/api/v1/ping`, { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify({ peer: "beta" }) });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(/send a JSON body with Content-Type: application\/json/);
    const rebound = await runToEnd("curl", ["-sS", "--max-time", "5", "-w", "\n%{http_code}", "-H", "Host: attacker.example", "-H", "Content-Type: application/json", "-d", '{"peer":"beta"}', `http://127.0.0.1:${alpha.statusPort}/api/v1/ping`]);
    expect(rebound.output.trim().split("\n").at(-1)).toBe("403");
    for (const body of ["[]", '{"peer":""}', `{"peer":"${"x".repeat(200)}"}`, "{nope"]) {
      const bad = await fetch(`http://127.0.0.1:${alpha.statusPort}/api/v1/ping`, { method: "POST", headers: { "content-type": "application/json" }, body });
      expect(bad.status, body).toBe(400);
    }
  });

  it("speedtest: both directions over the link, the bytes the serving node counted, --json", async () => {
    const before = beta.proc.output.length;
    const { code, output } = await runToEnd(INP2PC, ["speedtest", "beta", "--seconds", "2", "--json", "--config", alpha.config], { timeoutMs: COMMAND_TIMEOUT_MS });
    expect(code, output).toBe(0);
    const result = JSON.parse(output);
    expect(result).toMatchObject({ peer: "beta", seconds: 2 });
    expect(result.path).toMatch(/^(lan|udp-direct|udp-punch|tcp-direct|tcp-punch|relay-\w+)$/);
    for (const direction of ["upload", "download"] as const) {
      expect(result[direction].mbps, direction).toBeGreaterThan(0);
      expect(result[direction].bytes, direction).toBeGreaterThan(0);
      const served = await beta.proc.waitForOutput(new RegExp(`speedtest served peer=alpha direction=${direction} bytes=(\\d+)`), 10_000);
      expect(beta.proc.output.length).toBeGreaterThan(before);
      expect(Number(served[1]), direction).toBe(result[direction].bytes);
    }
  }, 60_000);

  it("speedtest: a requester that goes away stops the test on both nodes", async () => {
    const before = beta.proc.output.length;
    const requester = run(INP2PC, ["speedtest", "beta", "--seconds", "20", "--config", alpha.config]);
    try {
      await requester.waitForOutput(/upload +[\d.]+ Mbit\/s/, 20_000); // the first progress line: bytes are moving
      const stoppedAt = Date.now();
      await requester.stop("SIGKILL");
      const served = await waitFor(
        "beta to end the upload it was serving",
        () => beta.proc.output.slice(before).match(/speedtest served peer=alpha direction=upload bytes=(\d+)/) ?? undefined,
        10_000,
      );
      expect(Number(served[1])).toBeGreaterThan(0);
      console.log(`the upload ended ${Date.now() - stoppedAt} ms after its requester was killed`);
      expect(Date.now() - stoppedAt).toBeLessThan(5_000); // well before the 10 s upload would end
      expect(beta.proc.output.slice(before)).not.toMatch(/direction=download/);
    } finally {
      await requester.stop();
    }
  }, 60_000);

  it("speedtest: one at a time per peer, and --seconds is bounded", async () => {
    const before = beta.proc.output.length;
    // Long enough that the second request cannot fall between the first's upload and download.
    const first = run(INP2PC, ["speedtest", "beta", "--seconds", "20", "--config", alpha.config]);
    try {
      await first.waitForOutput(/speedtest with beta over/, 20_000);
      await waitFor("beta serving alpha's speedtest", () => beta.proc.output.slice(before).includes("serving a speedtest peer=alpha direction=upload ms=10000"), 10_000);
      const second = await runToEnd(INP2PC, ["speedtest", "beta", "--seconds", "2", "--config", alpha.config], { timeoutMs: COMMAND_TIMEOUT_MS });
      expect(second.code, second.output).toBe(1);
      expect(second.output.trim().split("\n").at(-1)).toBe("inp2pc: beta refused the speedtest (BUSY): beta is running a speedtest for alpha already: one at a time per peer");
    } finally {
      await first.stop();
    }
    await waitFor("beta to end the stopped test", () => beta.proc.output.slice(before).includes("speedtest served peer=alpha direction=upload"), 10_000);
    const tooLong = await runToEnd(INP2PC, ["speedtest", "beta", "--seconds", "31", "--config", alpha.config]);
    expect(tooLong.code).toBe(2);
    expect(tooLong.output.trim()).toBe("inp2pc: --seconds must be a whole number from 2 to 30, not 31 (see inp2pc --help)");
  }, 60_000);

  it("speedtest without a terminal: plain lines, then Mbit/s and bytes each way and the path", async () => {
    const { code, output } = await runToEnd(INP2PC, ["speedtest", "beta", "--seconds", "2", "--config", alpha.config], { timeoutMs: COMMAND_TIMEOUT_MS });
    expect(code, output).toBe(0);
    expect(output).not.toContain("\r"); // no progress bar when stdout is not a terminal
    expect(output).toMatch(/^speedtest with beta over \S+.*: 1 s up, then 1 s down$/m);
    expect(output).toMatch(/^upload +[\d.]+ Mbit\/s +[\d.]+ MiB \(\d+ bytes\) in [\d.]+ s$/m);
    expect(output).toMatch(/^download +[\d.]+ Mbit\/s +[\d.]+ MiB \(\d+ bytes\) in [\d.]+ s$/m);
    expect(output).toMatch(/^path +(lan|udp-direct|udp-punch|tcp-direct|tcp-punch|relay-\w+)/m);
  }, 60_000);
});

describe("doctor's failing layers without a node running", () => {
  it("a config that is not valid TOML: exit 10, the file, line and column, and every layer after it skipped", async () => {
    const config = clientConfig(['server_host = "127.0.0.1"', "[oops", 'node = "x"']);
    const { code, output, report } = await doctor(["--config", config]);
    expect(code, output).toBe(10);
    expect(report.failed).toBe("config");
    const first = layer(report, "config");
    expect(first.status).toBe("fail");
    expect(first.measured).toMatch(new RegExp(`^${config.replace(/[.]/g, "\\.")}:5:\\d+: invalid TOML`));
    expect(first.fix).toBe("correct the TOML at the line and column named above");
    for (const name of ["server", "tls", "login", "nat", "peers", "apps"]) expect(layer(report, name), name).toMatchObject({ status: "skipped", measured: "config is not valid" });
    const text = await runToEnd(INP2PC, ["doctor", "--config", config]);
    console.log(`doctor on a broken config:\n${text.output}`);
    expect(text.code).toBe(10);
    expect(text.output).toContain("first failing layer: config (exit code 10)");
  }, 30_000);

  it("a server that does not answer: exit 11, and the fix names the host and port", async () => {
    const port = await freePort();
    const [udp1, udp2] = await freeUdpPorts(); // nothing answers there either
    const config = clientConfig([
      'server_host = "127.0.0.1"',
      `server_port = ${port}`,
      'node = "x"',
      'token = "1"',
      `status_port = ${await freePort()}`,
      `stun_udp1 = ${udp1}`,
      `stun_udp2 = ${udp2}`,
      `stun_tcp1 = ${await freePort()}`,
      `stun_tcp2 = ${await freePort()}`,
    ]);
    const { code, output, report } = await doctor(["--config", config]);
    expect(code, output).toBe(11);
    expect(report.failed).toBe("server");
    const reach = layer(report, "server");
    expect(reach.measured).toMatch(new RegExp(`^TCP connect to 127\\.0\\.0\\.1:${port} failed: .*ECONNREFUSED`));
    expect(reach.fix).toBe(`start inp2ps on 127.0.0.1, or correct server_host/server_port in [client], or open TCP port ${port} in firewalls between`);
    expect(layer(report, "tls")).toMatchObject({ status: "skipped", measured: "the server is not reachable" });
    expect(layer(report, "login")).toMatchObject({ status: "skipped", measured: "the server is not reachable" });
    // Its STUN ports are silent too: the NAT layer runs on its own, and fails as well (the exit code names the first).
    expect(layer(report, "nat")).toMatchObject({ status: "fail", fix: `allow UDP to 127.0.0.1 ports ${udp1} and ${udp2} (STUN); until then, links need a relay` });
    expect(layer(report, "nat").measured).toMatch(/^udp-blocked/);
    expect(layer(report, "peers").measured).toMatch(/^no inp2pc with node x answers on 127\.0\.0\.1:\d+ \(status_port\)/);
  }, 30_000);

  describe('a node waiting for approval (admission = "approve")', () => {
    let server: ServerHandle;
    let waiting: LinkedClient | undefined;
    beforeAll(async () => {
      server = await startServer({ extraToml: 'admission = "approve"' });
    }, 30_000);
    afterAll(async () => {
      await stopLinkedClient(waiting);
      await server?.stop();
    });

    it("with no inp2pc running, doctor logs in itself, sees it pending: exit 13, and the approve command", async () => {
      const config = clientConfig([
        'server_host = "127.0.0.1"',
        `server_port = ${server.port}`,
        'node = "delta"',
        `token = "${server.token}"`,
        `status_port = ${await freePort()}`,
        ...Object.entries(server.stunPorts).map(([key, port]) => `${key} = ${port}`),
      ]);
      const { code, output, report } = await doctor(["--config", config]);
      expect(code, output).toBe(13);
      expect(report.failed).toBe("login");
      expect(layer(report, "login")).toMatchObject({ status: "fail", measured: "logged in, but delta waits for approval on the server", fix: 'run "inp2ps pairing approve delta" on the server (or an auto_approve rule there)' });
      expect(layer(report, "tls").status).toBe("warn"); // no first-use record yet, and the doctor records none
      expect(layer(report, "nat").status).toBe("ok");
      await server.proc.waitForOutput(/audit event=pending user=default node=delta/, 10_000);
    }, 30_000);

    it("with one running, doctor reads its state: pending, exit 13", async () => {
      waiting = await startLinkedClient(server, "epsilon", "", { ready: /waiting for approval/ });
      const { code, output, report } = await doctor(["--config", waiting.config]);
      expect(code, output).toBe(13);
      expect(layer(report, "login")).toMatchObject({
        status: "fail",
        measured: "the running inp2pc waits for approval: epsilon is pending on the server",
        fix: 'run "inp2ps pairing approve epsilon" on the server (or an auto_approve rule there)',
      });
      expect(layer(report, "peers")).toMatchObject({ status: "skipped", measured: "not logged in" });
    }, 30_000);
  });
});
