// The REST API of a real inp2ps, and the `inp2ps nodes` CLI that reads it, with real inp2pc nodes.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NAT_TYPES } from "../../src/protocol/index.ts";
import { api, INP2PS, REPO_ROOT, runToEnd, startClient, startServer, tempDir, waitFor, type Proc, type ServerHandle } from "../helpers/processes.ts";

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;
const WAIT_MS = 10_000;
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** inp2pc processes started by these tests; stopped and their directories removed in afterAll. */
const clients: (Proc & { dir: string })[] = [];

function node(server: ServerHandle, name: string): Proc & { dir: string } {
  const client = startClient({ node: name, port: server.port, token: server.token });
  clients.push(client);
  return client;
}

async function stopClient(client: Proc & { dir: string }): Promise<void> {
  await client.stop();
  rmSync(client.dir, { recursive: true, force: true });
}

async function healthNodes(server: ServerHandle): Promise<number> {
  const { status, body } = await api(server, "/api/v1/health");
  expect(status).toBe(200);
  return body.nodes;
}

afterAll(async () => {
  await Promise.all(clients.map(stopClient));
});

describe("REST API", () => {
  let server: ServerHandle;
  let one: Proc & { dir: string };
  /** rest-1 as the server lists it once its NAT detection has reported, so no test races the report. */
  let listed: { name: string; natType: string | null };
  beforeAll(async () => {
    server = await startServer();
    expect(await api(server, "/api/v1/health")).toEqual({ status: 200, body: { status: "ok", version: VERSION, nodes: 0 } });
    one = node(server, "rest-1");
    listed = await waitFor(
      "rest-1 listed with its NAT type",
      async () => ((await api(server, "/api/v1/nodes", server.adminToken)).body.nodes as (typeof listed)[]).find((n) => n.name === "rest-1" && n.natType !== null),
      WAIT_MS,
    );
  });
  afterAll(async () => server?.stop());

  it("health reports ok, the version, and the number of online nodes", async () => {
    expect(await api(server, "/api/v1/health")).toEqual({ status: 200, body: { status: "ok", version: VERSION, nodes: 1 } });
    const two = node(server, "rest-2");
    await waitFor("2 nodes in health", async () => (await healthNodes(server)) === 2, WAIT_MS);
    await stopClient(two);
    await waitFor("1 node in health after rest-2 stopped", async () => (await healthNodes(server)) === 1, WAIT_MS);
    expect(one.exitCode).toBeNull();
  });

  it("nodes needs the admin credential: 401 without, 403 for a user token or a wrong one, each saying where it is", async () => {
    const without = await api(server, "/api/v1/nodes");
    expect(without.status).toBe(401);
    expect(without.body.error).toMatch(/admin credential required/);
    const user = await api(server, "/api/v1/nodes", server.token);
    expect(user.status).toBe(403);
    expect(user.body.error).toContain(`that is a user token, which grants nothing on this API but health; send the admin credential (in ${join(server.dir, "inp2ps.admin")})`);
    const wrong = await api(server, "/api/v1/nodes", "42");
    expect(wrong.status).toBe(403);
    expect(wrong.body.error).toMatch(/not valid/);
  });

  it("nodes lists each online node with its details", async () => {
    const { status, body } = await api(server, "/api/v1/nodes", server.adminToken);
    expect(status).toBe(200);
    expect(body.nodes).toHaveLength(1);
    const [entry] = body.nodes;
    expect(entry).toMatchObject({ name: "rest-1", user: "default", version: VERSION });
    // What rest-1's NAT detection reported (its value is tested in nat-detect.test.ts).
    expect(NAT_TYPES).toContain(entry.natType);
    expect(entry.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(Number(entry.address.split(":")[1])).not.toBe(server.port);
    for (const field of ["onlineSince", "lastHeartbeat"]) {
      expect(new Date(entry[field]).toISOString(), field).toBe(entry[field]);
      expect(Math.abs(Date.parse(entry[field]) - Date.now()), field).toBeLessThan(60_000);
    }
    expect(Date.parse(entry.lastHeartbeat)).toBeGreaterThanOrEqual(Date.parse(entry.onlineSince));
  });

  it("an unknown API path is a 404 JSON error naming the path for the admin, a 401 for anyone else", async () => {
    const { status, body } = await api(server, "/api/v1/no-such-thing", server.adminToken);
    expect(status).toBe(404);
    expect(body.error).toContain("/api/v1/no-such-thing");
    expect((await api(server, "/api/v1/no-such-thing")).status).toBe(401);
    expect((await api(server, "/no-such-thing")).status).toBe(404);
  });

  it("nodes lists a known node that went away as offline, with when and where it was last seen", async () => {
    const gone = node(server, "rest-gone");
    const online = await waitFor(
      "rest-gone online with its NAT type",
      async () => (await api(server, "/api/v1/nodes", server.adminToken)).body.nodes.find((n: { name: string; natType: string | null }) => n.name === "rest-gone" && n.natType !== null),
      WAIT_MS,
    );
    const before = Date.now();
    await stopClient(gone);
    const { body } = await api(server, "/api/v1/nodes", server.adminToken);
    expect(body.nodes.map((n: { name: string }) => n.name)).toEqual(["rest-1"]);
    const entry = body.offline.find((n: { name: string }) => n.name === "rest-gone");
    // As it was when last seen.
    expect(entry).toMatchObject({ user: "default", state: "offline", address: online.address, natType: online.natType, allocation: online.allocation, version: VERSION, lastSeen: expect.stringMatching(ISO_TIME) });
    expect(Date.parse(entry.lastSeen)).toBeGreaterThanOrEqual(before - 1_000);
    expect(body.pending).toEqual([]);
  });

  it("inp2ps nodes prints a table of the online and the offline nodes, every column aligned", async () => {
    const result = await runToEnd(INP2PS, ["nodes", "--config", server.configPath]);
    expect(result.code, result.output).toBe(0);
    const lines = result.output.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+USER\s+STATE\s+ADDRESS\s+NAT\s+ALLOCATION\s+VERSION\s+TAGS\s+ONLINE SINCE\s+LAST SEEN$/);
    const row = lines.find((l) => l.startsWith("rest-1 "))?.split(/\s+/);
    expect(row).toEqual(["rest-1", "default", "online", expect.stringMatching(/^127\.0\.0\.1:\d+$/), listed.natType, expect.any(String), VERSION, "-", expect.stringMatching(ISO_TIME), "now"]);
    const gone = lines.find((l) => l.startsWith("rest-gone "))?.split(/\s+/);
    expect(gone).toEqual(["rest-gone", "default", "offline", expect.stringMatching(/^127\.0\.0\.1:\d+$/), listed.natType, expect.any(String), VERSION, "-", "-", expect.stringMatching(ISO_TIME)]);
    // Each column starts at the same place on every line: where the heading's word starts.
    const starts = (line: string) => [...line.matchAll(/(?<=^|\s{2})\S/g)].map((m) => m.index);
    const heading = [...lines[0]!.matchAll(/(?<=^|\s{2})\S/g)].map((m) => m.index);
    for (const line of lines.slice(1)) expect(starts(line), line).toEqual(heading);
  });

  it("inp2ps nodes --json prints the nodes as JSON, online ones first", async () => {
    const result = await runToEnd(INP2PS, ["nodes", "--json", "--config", server.configPath]);
    expect(result.code, result.output).toBe(0);
    const nodes = JSON.parse(result.output) as { name: string; user: string; address: string; state: string }[];
    expect(nodes[0]).toMatchObject({ name: "rest-1", state: "online", user: "default", version: VERSION, natType: listed.natType });
    expect(nodes.slice(1).map((n) => n.state)).toEqual(nodes.slice(1).map(() => "offline"));
  });
});

describe("REST API with a separate admin token", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ extraToml: 'admin_token = "999"' });
  });
  afterAll(async () => server?.stop());

  it("accepts the admin token and refuses the user token", async () => {
    const client = node(server, "admin-1");
    await waitFor("admin-1 online", async () => (await healthNodes(server)) === 1, WAIT_MS);
    const admin = await api(server, "/api/v1/nodes", "999");
    expect(admin.status).toBe(200);
    expect(admin.body.nodes.map((n: { name: string }) => n.name)).toEqual(["admin-1"]);
    const user = await api(server, "/api/v1/nodes", server.token);
    expect(user.status).toBe(403);
    expect(user.body.error).toMatch(/user token.*admin_token in \[server\]/);
    // The CLI uses admin_token from the config.
    const cli = await runToEnd(INP2PS, ["nodes", "--json", "--config", server.configPath]);
    expect(cli.code, cli.output).toBe(0);
    expect(JSON.parse(cli.output).map((n: { name: string }) => n.name)).toEqual(["admin-1"]);
    await stopClient(client);
  });
});

describe("inp2ps nodes with the server down", () => {
  it("fails with exit code 1 and says it cannot reach inp2ps", async () => {
    const dir = tempDir("inp2ps-down-");
    try {
      const server = await startServer({ dir });
      await server.stop();
      const result = await runToEnd(INP2PS, ["nodes", "--config", server.configPath]);
      expect(result.code).toBe(1);
      expect(result.output).toMatch(/cannot reach inp2ps at https:\/\/127\.0\.0\.1:\d+/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
