// inp2pc against a real inp2ps: TLS trust (pin, first use, changed certificate), plain ws, reconnects,
// refused logins, heartbeats. Every test has its own server and port, so they run concurrently.
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type ExpectStatic } from "vitest";
import { RECONNECT_JITTER_FRACTION } from "../../src/client/constants.ts";
import {
  api,
  freePort,
  freeUdpPorts,
  onlineNodes,
  startClient,
  startServer,
  tempDir,
  waitFor,
  type ClientOptions,
  type Proc,
  type ServerHandle,
  type ServerOptions,
} from "../helpers/processes.ts";

const HEARTBEAT_INTERVAL_MS = 500;

type OnFinished = (fn: () => Promise<void>) => void;

/** Servers, clients and temp dirs of one test: processes stopped, then dirs removed, when it ends, pass or fail. */
function scope(onTestFinished: OnFinished) {
  const stops: (() => Promise<void>)[] = [];
  const dirs: string[] = [];
  onTestFinished(async () => {
    await Promise.allSettled(stops.map((stop) => stop()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return {
    async server(options: ServerOptions = {}): Promise<ServerHandle> {
      const handle = await startServer(options);
      stops.push(async () => {
        handle.proc.child.kill("SIGCONT"); // in case a test left it stopped
        await handle.stop();
      });
      return handle;
    },
    client(options: ClientOptions): Proc & { dir: string } {
      const proc = startClient(options);
      if (!options.dir) dirs.push(proc.dir);
      stops.push(() => proc.stop("SIGKILL"));
      return proc;
    },
    dir(prefix: string): string {
      const d = tempDir(prefix);
      dirs.push(d);
      return d;
    },
  };
}

/** The server's node list, or undefined while it cannot answer (restarting). */
async function nodes(s: ServerHandle): Promise<string[] | undefined> {
  try {
    return await onlineNodes(s);
  } catch {
    return undefined;
  }
}

async function listed(s: ServerHandle, name: string, timeoutMs = 10_000): Promise<void> {
  await waitFor(`${name} listed on the server`, async () => (await nodes(s))?.includes(name), timeoutMs, 100);
}

/** Polls the server for `ms` and fails if `name` shows up at any point. */
async function neverListed(expect: ExpectStatic, s: ServerHandle, name: string, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    expect(await nodes(s), `${name} must not be listed`).not.toContain(name);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Reconnect delays are printed with one decimal. */
const PRINTED_DELAY_STEP_S = 0.1;
/** The waits a client announced before each reconnect ("retrying in 1.5 s"), in seconds. */
const retryDelays = (output: string) => [...output.matchAll(/retrying in ([\d.]+) s/g)].map((m) => Number(m[1]));

/** Writes an inp2pc.toml with short reconnect delays into `dir` and returns the flags that load it. */
function shortBackoff(dir: string, baseMs: number, maxMs: number): string[] {
  writeFileSync(join(dir, "inp2pc.toml"), `role = "client"\n[client]\nreconnect_base_delay_ms = ${baseMs}\nreconnect_max_delay_ms = ${maxMs}\n`, { mode: 0o600 });
  return ["--config", join(dir, "inp2pc.toml")];
}

/** Each delay at least the one before (the jitter cannot undo a 1.5x step), from about `base` to `max`. */
function expectGrowingDelays(expect: ExpectStatic, delays: number[], baseS: number, maxS: number): void {
  for (let i = 1; i < delays.length; i++) expect(delays[i], `delays ${delays.join(", ")}`).toBeGreaterThanOrEqual(delays[i - 1]!);
  expect(delays[0]).toBeLessThanOrEqual(firstDelayAtMostS(baseS));
  // The delays are printed to 0.1 s: allow half of that (a run printed 0.4 ... 1.2 against 0.4 x 3 = 1.2000000000000002).
  expect(delays.at(-1), `delays ${delays.join(", ")}`).toBeGreaterThanOrEqual(Math.min(maxS, delays[0]! * 3) - PRINTED_DELAY_STEP_S / 2);
  expect(Math.max(...delays)).toBeLessThanOrEqual(maxS);
}

/** The longest first wait a client may announce: the base with the most jitter, as printed (to 0.1 s). */
const firstDelayAtMostS = (baseS: number) => baseS * (1 + RECONNECT_JITTER_FRACTION) + 0.05;

const count = (text: string, pattern: RegExp) => text.match(new RegExp(pattern.source, "g"))?.length ?? 0;
const lowerNoColons = (fp: string) => fp.replace(/:/g, "").toLowerCase();

describe.concurrent("TLS trust", () => {
  it("first use: accepts a self-signed server, records the printed fingerprint, logs in", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const s = await server();
    expect(s.fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const c = client({ node: "tofu", port: s.port, token: s.token });
    await c.waitForOutput(/logged in/);
    expect(c.output).toMatch(/server certificate accepted \(first use: recorded\)/);
    expect(c.output).toContain(s.fingerprint!);
    const known = JSON.parse(readFileSync(join(c.dir, "inp2pc.known_servers.json"), "utf8"));
    expect(known).toEqual({ [`127.0.0.1:${s.port}`]: s.fingerprint });
    await listed(s, "tofu");
  });

  it("pinned fingerprint that matches: logs in (as printed, and lowercase without colons)", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const s = await server();
    const a = client({ node: "pin-upper", port: s.port, token: s.token, extraArgs: ["-tls-fingerprint", s.fingerprint!] });
    const b = client({ node: "pin-lower", port: s.port, token: s.token, extraArgs: ["-tls-fingerprint", lowerNoColons(s.fingerprint!)] });
    await Promise.all([a.waitForOutput(/logged in/), b.waitForOutput(/logged in/)]);
    expect(a.output).toMatch(/server certificate accepted \(pinned\)/);
    expect(b.output).toMatch(/server certificate accepted \(pinned\)/);
    await listed(s, "pin-upper");
    await listed(s, "pin-lower");
  });

  it("pinned fingerprint that does not match: refuses, never logs in", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const s = await server();
    const other = s.fingerprint!.split(":").map((b) => (b === "AA" ? "BB" : "AA")).join(":");
    const c = client({ node: "pin-wrong", port: s.port, token: s.token, extraArgs: ["-tls-fingerprint", other] });
    await c.waitForOutput(/does not match the pinned tls_fingerprint/);
    expect(c.output).toContain(`expected ${other}, got ${s.fingerprint}`);
    await neverListed(expect, s, "pin-wrong");
    expect(c.output).not.toMatch(/logged in/);
    expect(c.exitCode).toBeNull();
  });

  it("first use then a different certificate on the same host:port: SERVER CERTIFICATE CHANGED, no login", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const port = await freePort();
    const a = await server({ port });
    const clientDir = dir("inp2pc-tofu-");
    const first = client({ node: "victim", port, token: a.token, dir: clientDir });
    await first.waitForOutput(/logged in/);
    await first.stop();
    await a.stop();

    const b = await server({ port }); // new data dir => new self-signed certificate
    expect(b.fingerprint).not.toBe(a.fingerprint);
    const again = client({ node: "victim", port, token: b.token, dir: clientDir });
    await again.waitForOutput(/SERVER CERTIFICATE CHANGED/);
    expect(again.output).toContain(`expected ${a.fingerprint}, got ${b.fingerprint}`);
    await neverListed(expect, b, "victim");
    expect(again.output).not.toMatch(/logged in/);
    // The recorded fingerprint was not overwritten by the impostor.
    expect(JSON.parse(readFileSync(join(clientDir, "inp2pc.known_servers.json"), "utf8"))).toEqual({ [`127.0.0.1:${port}`]: a.fingerprint });
  });

  it('tls = "off": --insecure logs in over ws://; without --insecure the client says it cannot connect and keeps retrying', async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const s = await server({ tls: "off" });
    expect(s.fingerprint).toBeUndefined();
    const plain = client({ node: "plain", port: s.port, token: s.token, insecure: true });
    const tls = client({ node: "wants-tls", port: s.port, token: s.token });
    await plain.waitForOutput(/logged in/);
    expect(plain.output).toMatch(/--insecure/);
    await listed(s, "plain");
    await tls.waitForOutput(/cannot reach the server: .*; retrying in \d/);
    // It keeps retrying: a second attempt (after the ~5 s first backoff) fails the same way, no crash.
    await waitFor("a second failed attempt", () => count(tls.output, /cannot reach the server: .*; retrying in \d/) >= 2, 20_000, 100);
    expect(tls.exitCode).toBeNull();
    expect(tls.output).not.toMatch(/logged in/);
    expect(await nodes(s)).toEqual(["plain"]);
  });
});

describe.concurrent("TLS mismatch, in words", () => {
  it("--insecure against a TLS server: says the server speaks TLS and to drop --insecure; TLS against tls = \"off\": says to use --insecure", async ({ expect, onTestFinished }) => {
    const { server, client } = scope(onTestFinished);
    const [tls, plain] = await Promise.all([server(), server({ tls: "off" })]);
    const insecure = client({ node: "insecure", port: tls.port, token: tls.token, insecure: true });
    const wantsTls = client({ node: "wants-tls", port: plain.port, token: plain.token });
    const [insecureLine] = await insecure.waitForOutput(/cannot reach the server: .*retrying in/);
    expect(insecureLine).toMatch(/if it speaks TLS on this port, as it does unless tls = "off", drop --insecure/);
    const [tlsLine] = await wantsTls.waitForOutput(/cannot reach the server: .*retrying in/);
    expect(tlsLine).toMatch(/the server does not speak TLS on this port; if it runs with tls = "off", use --insecure/);
  });
});

describe.concurrent("sessions", () => {
  it("server SIGKILLed and restarted on the same port and data dir: 3 clients back online within 15 s", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const port = await freePort();
    const dataDir = dir("inp2ps-restart-");
    let s = await server({ port, dir: dataDir });
    const names = ["r1", "r2", "r3"];
    const clients = names.map((node) => client({ node, port, token: s.token }));
    await Promise.all(clients.map((c) => c.waitForOutput(/logged in/)));
    for (const name of names) await listed(s, name);

    await s.proc.stop("SIGKILL");
    const killedAt = Date.now();
    s = await server({ port, dir: dataDir });
    const restartMs = Date.now() - killedAt;
    const back: Record<string, number> = {};
    await waitFor(
      "all clients back online",
      async () => {
        const list = (await nodes(s)) ?? [];
        for (const name of names) if (list.includes(name) && back[name] === undefined) back[name] = Date.now() - killedAt;
        return Object.keys(back).length === names.length;
      },
      20_000,
      100,
    );
    console.log(`server restart: listening again after ${restartMs} ms; clients back online after (ms): ${JSON.stringify(back)}`);
    for (const name of names) expect(back[name], name).toBeLessThan(15_000);
    // Same data dir => same certificate: the clients' first-use records still match.
    for (const c of clients) expect(c.output).not.toMatch(/SERVER CERTIFICATE CHANGED/);
    // The server lists a node when it answers the login; the client logs "logged in" a moment later.
    for (const c of clients) await waitFor("the client's second login line", () => count(c.output, /logged in/) >= 2, 5_000);
    for (const c of clients) expect(count(c.output, /logged in/)).toBe(2);
  }, 40_000);

  it("a server that restarts again and again: each time the client comes back after the first delay, not a growing one", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const port = await freePort();
    const dataDir = dir("inp2ps-restarts-");
    const clientDir = dir("inp2pc-restarts-");
    let s = await server({ port, dir: dataDir });
    const c = client({ node: "steady", port, token: s.token, dir: clientDir, extraArgs: shortBackoff(clientDir, 300, 2_400) });
    const restarts = 4;
    for (let i = 1; i <= restarts; i++) {
      await waitFor(`login #${i}`, () => count(c.output, /logged in/) >= i, 10_000, 50);
      await s.stop();
      s = await server({ port, dir: dataDir });
    }
    await waitFor(`login #${restarts + 1}`, () => count(c.output, /logged in/) > restarts, 10_000, 50);
    const delays = retryDelays(c.output);
    expect(delays.length, `delays ${delays.join(", ")}`).toBeGreaterThanOrEqual(restarts);
    // Each outage after a login that worked is a new one: its first wait is the base delay (with jitter).
    const firsts = c.output.split(/logged in/).slice(1, -1).map((afterLogin) => retryDelays(afterLogin)[0]);
    for (const first of firsts) expect(first, `first waits after each restart: ${firsts.join(", ")}`).toBeLessThanOrEqual(firstDelayAtMostS(0.3));
  }, 60_000);

  it("client SIGKILLed and restarted with the same identity dir: back online, listed once", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const s = await server({ heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS });
    const clientDir = dir("inp2pc-restart-");
    const first = client({ node: "phoenix", port: s.port, token: s.token, dir: clientDir });
    await first.waitForOutput(/logged in/);
    await listed(s, "phoenix");
    await first.stop("SIGKILL");

    const second = client({ node: "phoenix", port: s.port, token: s.token, dir: clientDir });
    await second.waitForOutput(/logged in/);
    expect(second.output).not.toMatch(/created this node's identity key/);
    await listed(s, "phoenix");
    // Two heartbeats later (in the server's view) the node is still there, exactly once, and nothing was refused.
    await waitFor(
      "two heartbeats from the restarted phoenix",
      async () => {
        const { body } = await api(s, "/api/v1/nodes", s.adminToken);
        const entry = (body.nodes as { name: string; onlineSince: string; lastHeartbeat: string }[]).find((n) => n.name === "phoenix");
        return entry && Date.parse(entry.lastHeartbeat) - Date.parse(entry.onlineSince) >= 2 * HEARTBEAT_INTERVAL_MS;
      },
      10_000,
      100,
    );
    expect(await nodes(s)).toEqual(["phoenix"]);
    expect(s.proc.output).not.toMatch(/KEY_MISMATCH|registered to a different identity key/);
    expect(count(s.proc.output, /node online node=phoenix/)).toBe(2);
    expect(s.proc.output).not.toMatch(/closing its older session/);
  });

  it("wrong token: the client logs the refusal and keeps running; the server logs it", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const s = await server();
    const c = client({ node: "badtoken", port: s.port, token: "42" });
    await c.waitForOutput(/login refused \(BAD_TOKEN\)/);
    await s.proc.waitForOutput(/login refused: bad token node=badtoken/);
    await c.waitForOutput(/retrying in \d/);
    expect(c.exitCode).toBeNull();
    expect(c.output).not.toMatch(/logged in/);
    expect(await nodes(s)).toEqual([]);
  });

  it("heartbeat unanswered (server SIGSTOPped): the client reconnects and logs in again", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const s = await server({ heartbeatIntervalMs: 500, heartbeatTimeoutMs: 2_000 });
    const c = client({ node: "hb", port: s.port, token: s.token });
    await c.waitForOutput(/logged in/);
    s.proc.child.kill("SIGSTOP");
    try {
      await c.waitForOutput(/heartbeat went unanswered; reconnecting/, 5_000);
    } finally {
      s.proc.child.kill("SIGCONT");
    }
    await waitFor("a second login", () => count(c.output, /logged in/) >= 2, 12_000);
    await listed(s, "hb");
    expect(c.output).toMatch(/lost the server: .*retrying in/);
  }, 25_000);
});

describe.concurrent("churn and refusals", () => {
  it("started while the server is down: once it is up, the client and the server show the real NAT type (public on loopback)", async ({ expect, onTestFinished }) => {
    const { server, client } = scope(onTestFinished);
    const token = "1234567890123456789";
    const port = await freePort();
    const [udp1, udp2] = await freeUdpPorts();
    const stun = { stun_udp1: udp1, stun_udp2: udp2, stun_tcp1: await freePort(), stun_tcp2: await freePort() };
    const statusPort = await freePort();
    const stunFlags = Object.entries(stun).flatMap(([key, value]) => [`--${key.replace("_", "-")}`, String(value)]);
    const c = client({ node: "early", port, token, extraArgs: [...stunFlags, "--status-port", String(statusPort)] });
    await c.waitForOutput(/NAT type: udp-blocked|NAT detection failed/, 15_000);
    const status = async () => (await fetch(`http://127.0.0.1:${statusPort}/api/v1/status`, { signal: AbortSignal.timeout(3_000) })).json() as Promise<any>;
    expect((await status()).nat?.natType ?? "none").not.toBe("public");

    const s = await server({ port, token, extraToml: Object.entries(stun).map(([key, value]) => `${key} = ${value}`).join("\n") });
    const upAt = Date.now();
    await c.waitForOutput(/logged in/, 20_000);
    await waitFor("the client's status to show NAT type public", async () => (await status()).nat?.natType === "public", 20_000, 200);
    await waitFor(
      "the server to list early with NAT type public",
      async () => ((await api(s, "/api/v1/nodes", s.adminToken)).body.nodes as { name: string; natType: string | null }[]).some((n) => n.name === "early" && n.natType === "public"),
      10_000,
      200,
    );
    console.log(`NAT type public on both sides ${Date.now() - upAt} ms after the server listened`);
  }, 60_000);

  it("wrong token: says in words that the token is wrong and where to fix it, and backs off to the cap", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const s = await server();
    const clientDir = dir("inp2pc-badtoken-");
    const c = client({ node: "badtoken", port: s.port, token: "42", dir: clientDir, extraArgs: shortBackoff(clientDir, 300, 2_400) });
    await waitFor("8 retries", () => retryDelays(c.output).length >= 8, 30_000, 100);
    expect(c.output).toMatch(/the server does not accept this node's token/);
    expect(c.output).toMatch(/check `token`/);
    expectGrowingDelays(expect, retryDelays(c.output), 0.3, 2.4);
    expect(retryDelays(c.output).at(-1)).toBe(2.4);
    expect(c.output).not.toMatch(/logged in/);
    // The server slows the guessing address down, and the client says what that may mean.
    expect(c.output).toMatch(/429 \(the server slows this address down after failed logins.*check this node's token\)/);
  }, 45_000);

  it("a name pinned to another key: says so in words, with what to do (another name, or inp2ps forget)", async ({ expect, onTestFinished }) => {
    const { server, client } = scope(onTestFinished);
    const s = await server();
    const first = client({ node: "taken", port: s.port, token: s.token });
    await first.waitForOutput(/logged in/);
    await first.stop();
    const second = client({ node: "taken", port: s.port, token: s.token }); // its own directory: a new identity key
    await second.waitForOutput(/retrying in/);
    expect(second.output).toMatch(/the server knows node "taken" by a different identity key/);
    expect(second.output).toMatch(/give this node another `node` name, or, if it replaces the old machine, run "inp2ps forget taken" on the server/);
  });

  it("two machines with one name and key: each says another machine runs as this node, and their retries slow down", async ({ expect, onTestFinished }) => {
    const { server, client, dir } = scope(onTestFinished);
    const s = await server();
    const [dirA, dirB] = [dir("inp2pc-twin-a-"), dir("inp2pc-twin-b-")];
    const a = client({ node: "twin", port: s.port, token: s.token, dir: dirA, extraArgs: shortBackoff(dirA, 300, 2_400) });
    await a.waitForOutput(/logged in/);
    copyFileSync(join(dirA, "inp2pc.key"), join(dirB, "inp2pc.key"));
    copyFileSync(join(dirA, "inp2pc.known_servers.json"), join(dirB, "inp2pc.known_servers.json"));
    const b = client({ node: "twin", port: s.port, token: s.token, dir: dirB, extraArgs: shortBackoff(dirB, 300, 2_400) });
    await waitFor("5 retries on each side", () => retryDelays(a.output).length >= 5 && retryDelays(b.output).length >= 5, 40_000, 100);
    for (const [name, c] of [["a", a], ["b", b]] as const) {
      expect(c.output, name).toMatch(/another machine runs as this node/);
      expectGrowingDelays(expect, retryDelays(c.output).slice(0, 5), 0.3, 2.4);
    }
  }, 60_000);
});
