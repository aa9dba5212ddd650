// The admin credential of a real inp2ps: a user token grants nothing on the REST API beyond health.
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_CREDENTIAL_FILE, HEALTH_PATH, WS_PATH, type RunningServer } from "../../src/server/index.ts";
import { startInProcessServer, type InProcessServer } from "../helpers/in-process-server.ts";
import {
  api,
  freePort,
  INP2PC,
  INP2PS,
  onlineNodes,
  REPO_ROOT,
  run,
  runToEnd,
  startClient,
  startServer,
  tempDir,
  waitFor,
  type Proc,
  type ServerHandle,
} from "../helpers/processes.ts";

const WAIT_MS = 10_000;
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const BOB_TOKEN = "42";
const BOB_USER = `[[server.users]]\nname = "bob"\ntoken = "${BOB_TOKEN}"`;

/** inp2pc processes started by a test; stopped and their directories removed after it. */
const clients: (Proc & { dir: string })[] = [];

function node(server: ServerHandle, name: string, token = server.token): Proc & { dir: string } {
  const client = startClient({ node: name, port: server.port, token });
  clients.push(client);
  return client;
}

async function onlineCount(server: ServerHandle): Promise<number> {
  return (await api(server, "/api/v1/health")).body.nodes;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map(async (c) => {
    await c.stop();
    rmSync(c.dir, { recursive: true, force: true });
  }));
});

describe("node takeover with a user token (issue 11)", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    // Only user tokens configured, no admin_token: the setup that let any node be an admin.
    server = await startServer({ tail: BOB_USER });
  });
  afterAll(async () => server?.stop());

  it("refuses the user token on every admin route, so beta cannot be replaced", async () => {
    const beta = node(server, "beta");
    await beta.waitForOutput(/logged in/, WAIT_MS);
    const bob = node(server, "bob-1", BOB_TOKEN);
    await bob.waitForOutput(/logged in/, WAIT_MS);

    const forgetBeta = await api(server, "/api/v1/nodes/beta/key", server.token, "DELETE");
    expect(forgetBeta.status, JSON.stringify(forgetBeta.body)).toBe(403);
    expect(forgetBeta.body.error).toMatch(/user token/);
    const list = await api(server, "/api/v1/nodes", server.token);
    expect(list.status, JSON.stringify(list.body)).toBe(403);
    expect(list.body.nodes).toBeUndefined();
    const forgetBob = await api(server, "/api/v1/nodes/bob-1/key?user=bob", server.token, "DELETE");
    expect(forgetBob.status, JSON.stringify(forgetBob.body)).toBe(403);
    const ownForget = await api(server, "/api/v1/nodes/bob-1/key?user=bob", BOB_TOKEN, "DELETE");
    expect(ownForget.status, JSON.stringify(ownForget.body)).toBe(403);

    // The impostor: the same name with a fresh identity key, as the attacker would log in next.
    const impostor = node(server, "beta");
    await impostor.waitForOutput(/KEY_MISMATCH/, WAIT_MS);
    expect(beta.exitCode).toBeNull();
    expect(beta.output).not.toMatch(/KEY_MISMATCH|replaced/);
    await waitFor("beta and bob-1 online", async () => (await onlineCount(server)) === 2, WAIT_MS);
  });
});

describe("REST auth on every route", () => {
  /** Routes anyone may call: health, and the client WebSocket (whose login is its own authentication). */
  const PUBLIC_ROUTES = new Set([`GET ${HEALTH_PATH}`, `GET ${WS_PATH}`]);
  const USER_TOKEN = "1234567890123456789";
  let inProcess: InProcessServer;
  let dir: string;
  let server: RunningServer;
  let base: string;

  beforeAll(async () => {
    // In this process, so the test can read the app's own route table: routes added later are walked too.
    inProcess = await startInProcessServer({ token: USER_TOKEN, users: [{ name: "bob", token: BOB_TOKEN }], admission: "approve" });
    ({ server, dir } = inProcess);
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(async () => {
    await inProcess?.stop();
  });

  it("refuses every route but health without the admin credential: 401 without, 403 for a user token, served with it", async () => {
    const routes = new Map<string, { method: string; path: string }>();
    const consoleRoutes: { method: string; path: string }[] = [];
    for (const route of server.routes) {
      // "ALL" entries are middleware (the auth check itself), not endpoints.
      if (route.method === "ALL" || PUBLIC_ROUTES.has(`${route.method} ${route.path}`)) continue;
      // The web console's routes go by its session cookie, not by the bearer credential: checked below.
      if (route.path === "/" || route.path.startsWith("/console/")) {
        consoleRoutes.push({ method: route.method, path: route.path.replace(/:\w+/g, "route-walk") });
        continue;
      }
      // Path parameters and wildcards get a value that names nothing, so no route changes real state.
      const path = route.path.replace(/:\w+(\{[^}]*\})?/g, "route-walk").replace(/\*/g, "route-walk");
      routes.set(`${route.method} ${path}`, { method: route.method, path });
    }
    // Today's admin routes at least: the walk cannot pass on an empty table.
    expect([...routes.keys()]).toEqual(expect.arrayContaining(["GET /api/v1/nodes", "DELETE /api/v1/nodes/route-walk/key", "GET /api/v1/audit"]));
    const call = async (route: { method: string; path: string }, token?: string) => {
      const response = await fetch(base + route.path, { method: route.method, headers: token ? { authorization: `Bearer ${token}` } : {} });
      return { status: response.status, text: await response.text() };
    };
    for (const [name, route] of routes) {
      const anonymous = await call(route);
      expect(anonymous.status, `${name} without a credential: ${anonymous.text}`).toBe(401);
      for (const token of [USER_TOKEN, BOB_TOKEN]) {
        const user = await call(route, token);
        expect(user.status, `${name} with a user token: ${user.text}`).toBe(403);
        expect(user.text, name).toContain(`that is a user token, which grants nothing on this API but health; send the admin credential (in ${join(dir, ADMIN_CREDENTIAL_FILE)})`);
      }
      const wrong = await call(route, "not-the-admin-credential");
      expect(wrong.status, `${name} with a wrong credential: ${wrong.text}`).toBe(403);
      const admin = await call(route, server.admin.secret);
      expect([401, 403], `${name} with the admin credential: ${admin.status} ${admin.text}`).not.toContain(admin.status);
    }
    const health = await fetch(base + HEALTH_PATH);
    expect(health.status).toBe(200);
    // Without a console session: the page is the login form, its script is public, everything else is refused.
    expect(consoleRoutes.length).toBeGreaterThanOrEqual(5);
    for (const route of consoleRoutes) {
      const response = await fetch(base + route.path, { method: route.method, headers: { authorization: `Bearer ${server.admin.secret}` } });
      const text = await response.text();
      if (route.path === "/") expect(text, "GET / without a session").toContain("Admin credential");
      else if (route.path.endsWith(".js")) expect(response.status).toBe(200);
      else expect([401, 403], `${route.method} ${route.path} without a session: ${response.status} ${text}`).toContain(response.status);
    }
  });

  it("keeps the generated credential 0600 in the data dir, 43 base64url characters (no uint64 token)", () => {
    const file = join(dir, ADMIN_CREDENTIAL_FILE);
    expect(server.admin).toEqual({ secret: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), file, created: true });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, "utf8").trim()).toBe(server.admin.secret);
  });
});

describe("the admin credential file", () => {
  it("is refused at start when it holds a user token, or nothing", async () => {
    const dir = tempDir("inp2ps-badadmin-");
    try {
      const config = join(dir, "inp2ps.toml");
      writeFileSync(config, `role = "server"\n[server]\nlisten = "127.0.0.1"\nws_port = ${await freePort()}\ntoken = "77"\ntls = "off"\nrelay = false\n${BOB_USER}\n`);
      const file = join(dir, ADMIN_CREDENTIAL_FILE);
      writeFileSync(file, `${BOB_TOKEN}\n`, { mode: 0o600 });
      const asUser = await runToEnd(INP2PS, ["--config", config]);
      expect(asUser.code).not.toBe(0);
      expect(asUser.output).toContain(`the admin credential in ${file} equals a user token, and an admin credential must never be one: delete the file and restart inp2ps to make a new one`);
      expect(asUser.output).not.toMatch(/listening on/);
      writeFileSync(file, "\n", { mode: 0o600 });
      const empty = await runToEnd(INP2PS, ["--config", config]);
      expect(empty.code).not.toBe(0);
      expect(empty.output).toContain(`the admin credential file ${file} is empty: delete it and restart inp2ps to make a new one`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("inp2ps audit and the CLI's admin credential", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => server?.stop());

  it("GET /api/v1/audit lists decisions for the admin only; inp2ps forget is one, and inp2ps audit prints it", async () => {
    const before = await api(server, "/api/v1/audit", server.adminToken);
    expect(before).toEqual({ status: 200, body: { entries: [] } });
    expect((await api(server, "/api/v1/audit", server.token)).status).toBe(403);

    const beta = node(server, "beta");
    await beta.waitForOutput(/logged in/, WAIT_MS);
    const forget = await runToEnd(INP2PS, ["forget", "beta", "--config", server.configPath]);
    expect(forget.code, forget.output).toBe(0);
    expect(forget.output).toContain("forgot the identity key of node beta");

    const after = await api(server, "/api/v1/audit", server.adminToken);
    // beta's first login pinned its key (token admission), then the admin forgot it.
    expect(after.body.entries).toEqual([
      { time: expect.stringMatching(ISO_TIME), event: "admitted", user: "default", node: "beta", by: "token", from: expect.stringMatching(/^127\.0\.0\.1:\d+$/) },
      { time: expect.stringMatching(ISO_TIME), event: "key-forgotten", user: "default", node: "beta" },
    ]);
    expect(server.proc.output).toMatch(/audit.*event=key-forgotten/);

    const json = await runToEnd(INP2PS, ["audit", "--json", "--config", server.configPath]);
    expect(json.code, json.output).toBe(0);
    expect(JSON.parse(json.output)).toEqual(after.body.entries);
    const table = await runToEnd(INP2PS, ["audit", "--config", server.configPath]);
    expect(table.code, table.output).toBe(0);
    const lines = table.output.trim().split("\n");
    expect(lines[0]).toMatch(/^TIME\s+EVENT\s+DETAILS$/);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^\S+\s+admitted\s+user=default node=beta from=127\.0\.0\.1:\d+ by=token$/),
      expect.stringMatching(new RegExp(`^${after.body.entries[1].time.replace(/\./g, "\\.")}\\s+key-forgotten\\s+user=default node=beta$`)),
    ]);
  });

  it("inp2ps nodes says what is missing when the server never made its credential", async () => {
    const dir = tempDir("inp2ps-nocred-");
    try {
      const config = join(dir, "inp2ps.toml");
      writeFileSync(config, `role = "server"\n[server]\nlisten = "127.0.0.1"\nws_port = ${server.port}\ntoken = "77"\ntls = "off"\n`);
      const result = await runToEnd(INP2PS, ["nodes", "--config", config]);
      expect(result.code).toBe(1);
      expect(result.output).toContain(`no admin credential: admin_token is not set in [server] and ${join(dir, ADMIN_CREDENTIAL_FILE)} does not exist: has this inp2ps started once with this config?`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("token_file", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => server?.stop());

  it("a client logs in with its token read from token_file, and the token is not on its command line", async () => {
    const dir = tempDir("inp2pc-tokenfile-");
    try {
      writeFileSync(join(dir, "token"), `${server.token}\n`, { mode: 0o600 });
      const config = join(dir, "inp2pc.toml");
      writeFileSync(
        config,
        [
          'role = "client"',
          "[client]",
          'server_host = "127.0.0.1"',
          `server_port = ${server.port}`,
          'node = "from-file"',
          'token_file = "token"',
          `status_port = ${await freePort()}`,
          'peer_bind = "127.0.0.1"',
          ...Object.entries(server.stunPorts).map(([key, port]) => `${key} = ${port}`),
        ].join("\n"),
        { mode: 0o600 },
      );
      // From another directory: token_file is relative to the config file, not to the working directory.
      const client = run(INP2PC, ["--config", config], { cwd: REPO_ROOT });
      clients.push(Object.assign(client, { dir }));
      await client.waitForOutput(/logged in/, WAIT_MS);
      expect(await onlineNodes(server)).toEqual(["from-file"]);
      // What `ps` shows any local user.
      const cmdline = readFileSync(`/proc/${client.child.pid}/cmdline`, "utf8").split("\0").join(" ");
      expect(cmdline).toContain(config);
      expect(cmdline).not.toContain(server.token);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
