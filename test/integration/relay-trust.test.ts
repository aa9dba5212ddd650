// Relays the admin trusts (issue 11): user bob runs a super relay with a huge capacity. The test plays
// bob's relay itself: a node of bob logged in through the real client session code, reporting a super
// relay offer, and a listener on 127.0.0.1 that records each hello (what bob can read) before handing
// the connection to a real relay with bob's ticket key. The default user's "near" (relays only) links to
// "far" through whatever relay the server picks; real inp2ps and inp2pc processes on 127.0.0.1.
import { rmSync, statSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { KnownServers } from "../../src/client/trust.ts";
import { ServerSession } from "../../src/client/session.ts";
import { generateIdentity, relayTicketKey } from "../../src/crypto/index.ts";
import { createLogger, silentLogger } from "../../src/log/index.ts";
import { startRelay, type RunningRelay } from "../../src/relay/index.ts";
import { TRUSTED_RELAYS_FILE } from "../../src/server/relay-trust.ts";
import { appComesBack, startEcho } from "../helpers/echo.ts";
import { appToml, exposeToml, api, freePort, INP2PS, linkedClientStatus, onlineNodes, startLinkedClient, startServer, stopLinkedClient, runToEnd, tempDir, waitFor, type LinkedClient, type ServerHandle } from "../helpers/processes.ts";

const BOB_TOKEN = "987654321987654321";
const BOB_RELAY_NODE = "relay1";
const BOB_RELAY = `bob/${BOB_RELAY_NODE}`;
/** Far more than the server's own relay offers: a broker that ranks by capacity alone would take it. */
const BOB_RELAY_BW_MBPS = 1_000_000;
const LINK_WITHIN_MS = 20_000;
/** One key for bob's relay node: the server pins a node name to the first key it logs in with. */
const BOB_IDENTITY = generateIdentity();

/** Bob's relay as bob sees it: every hello it was sent, and every line its relay logged. */
interface BobRelay {
  hellos: Record<string, unknown>[];
  logLines: string[];
  stop(): Promise<void>;
}

async function startBobRelay(server: ServerHandle): Promise<BobRelay> {
  const hellos: Record<string, unknown>[] = [];
  const logLines: string[] = [];
  const dir = tempDir("inp2p-bob-");
  const session = new ServerSession({
    host: "127.0.0.1",
    port: server.port,
    insecure: false,
    tlsFingerprint: server.fingerprint,
    knownServers: new KnownServers(join(dir, "known.json")),
    node: BOB_RELAY_NODE,
    token: BOB_TOKEN,
    identity: BOB_IDENTITY,
    version: "test-0",
    logger: silentLogger,
  });
  const relay: RunningRelay = await startRelay({
    host: "127.0.0.1",
    port: 0,
    name: BOB_RELAY,
    key: relayTicketKey(BOB_TOKEN, BOB_RELAY_NODE),
    serverNow: () => session.serverNow(),
    bwMbps: 1_000,
    logger: createLogger({ level: "debug", write: (line) => logLines.push(line) }),
  });
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
  };
  // Reads the hello frame (u32 length | JSON), keeps a copy, then splices the connection to the real relay.
  const listener: Server = createServer((socket) => {
    track(socket);
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 4 || buffered.length < 4 + buffered.readUInt32BE(0)) return;
      socket.off("data", onData);
      hellos.push(JSON.parse(buffered.subarray(4, 4 + buffered.readUInt32BE(0)).toString("utf8")));
      const upstream = connect({ host: "127.0.0.1", port: relay.port }, () => upstream.write(buffered));
      track(upstream);
      upstream.on("close", () => socket.destroy());
      socket.on("close", () => upstream.destroy());
      upstream.pipe(socket);
      socket.pipe(upstream);
    };
    socket.on("data", onData);
  });
  await new Promise<void>((done) => listener.listen(0, "127.0.0.1", done));
  const port = (listener.address() as { port: number }).port;
  session.start();
  await waitFor("bob's relay node to log in", () => session.state === "online", 10_000);
  await session.request("report", { relay: { port, super: true, bwMbps: BOB_RELAY_BW_MBPS, loadMbps: 0, sessions: 0 } });
  return {
    hellos,
    logLines,
    async stop() {
      session.stop();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((done) => listener.close(() => done()));
      await relay.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Bob's relay's hellos as bob reads them: each ticket's payload, decoded (bob can; it is base64url JSON). */
function ticketPayloads(bob: BobRelay): { text: string; fields: Record<string, unknown> }[] {
  return bob.hellos.map((hello) => {
    const text = Buffer.from(String(hello.ticket).split(".")[0]!, "base64url").toString("utf8");
    return { text, fields: JSON.parse(text) };
  });
}

/** Runs `inp2ps relays ...` against the test's server, with its config (and so its admin token). */
function relaysCli(server: ServerHandle, ...args: string[]) {
  return runToEnd(INP2PS, ["relays", ...args, "--config", server.configPath]);
}

/**
 * The test network: inp2ps with user bob (`serverToml` inside [server]), far, and per test a fresh
 * near and (when the test starts it) bob's relay, both gone before the next test.
 */
function useNetwork(serverToml = "") {
  const net = {} as {
    server: ServerHandle;
    echo: Awaited<ReturnType<typeof startEcho>>;
    far: LinkedClient;
    near?: LinkedClient;
    bob?: BobRelay;
    round: number;
    /** Starts near (relays only, an app to far's echo service), waits until the app works, returns near's link to far. */
    startNear(): Promise<{ link: string; relay?: string }>;
  };
  net.round = 0;
  net.startNear = async () => {
    const appPort = await freePort();
    net.near = await startLinkedClient(
      net.server,
      `near${net.round}`,
      ['peer_paths = ["relay"]', appToml({ name: "echo", listen: appPort, peer: "far", target: net.echo.port })].join("\n"),
      { logLevel: "info" },
    );
    await appComesBack(appPort, LINK_WITHIN_MS);
    return (await linkedClientStatus(net.near)).peers.far;
  };

  beforeAll(async () => {
    net.server = await startServer({ extraToml: serverToml, tail: `[[server.users]]\nname = "bob"\ntoken = "${BOB_TOKEN}"` });
    net.echo = await startEcho();
    net.far = await startLinkedClient(net.server, "far", exposeToml(`127.0.0.1:${net.echo.port}`), { logLevel: "info" });
  }, 30_000);

  beforeEach(() => {
    net.round++;
  });

  afterEach(async () => {
    const gone = net.near;
    await stopLinkedClient(net.near);
    net.near = undefined;
    await net.bob?.stop();
    net.bob = undefined;
    await waitFor(
      "the server to see the test's nodes go",
      async () => {
        const online = await onlineNodes(net.server);
        return ((!gone || !online.includes(gone.node)) && !online.includes(BOB_RELAY_NODE)) || undefined;
      },
      15_000,
    );
  }, 30_000);

  afterAll(async () => {
    await stopLinkedClient(net.far);
    net.echo?.server.close();
    await net.server?.stop();
  });

  return net;
}

/** Starts bob's relay; the server has its offer once this resolves (it answered the report). */
async function bobOffers(net: ReturnType<typeof useNetwork>): Promise<BobRelay> {
  net.bob = await startBobRelay(net.server);
  return net.bob;
}

describe("another user's super relay (real processes)", () => {
  const net = useNetwork();

  it("an unapproved super relay of bob never gets the default user's session: the server relays it", async () => {
    const bob = await bobOffers(net);
    const link = await net.startNear();
    expect(bob.hellos).toEqual([]);
    expect({ link: link.link, relay: link.relay }).toEqual({ link: "relay-server", relay: "server" });
    const hints = net.server.proc.output.split("\n").filter((line) => line.includes(`super relay ${BOB_RELAY} serves only user bob's nodes`));
    expect(hints).toHaveLength(1);
    expect(hints[0]).toContain(`run "inp2ps relays approve ${BOB_RELAY}", or add "${BOB_RELAY}" to trusted_relays in [server]`);
  }, 60_000);

  it("approved with the CLI, it still comes after the server's own relay; list and revoke show and undo the approval", async () => {
    await bobOffers(net);
    const approved = await relaysCli(net.server, "approve", BOB_RELAY_NODE, "--user", "bob");
    expect(approved).toMatchObject({ code: 0 });
    expect(approved.output).toContain(`approved relay ${BOB_RELAY}`);
    const listed = await relaysCli(net.server, "list", "--json");
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.output)).toEqual([
      expect.objectContaining({ name: BOB_RELAY, online: true, super: true, approved: true, approvedBy: "admin", serves: "every user", bwMbps: BOB_RELAY_BW_MBPS }),
    ]);
    const table = await relaysCli(net.server, "list");
    expect(table.output).toMatch(/^RELAY\s+ONLINE\s+KIND\s+APPROVED\s+SERVES/m);
    expect(table.output).toMatch(new RegExp(`^${BOB_RELAY}\\s+yes\\s+super\\s+yes \\(admin\\)\\s+every user\\s+127\\.0\\.0\\.1:\\d+\\s`, "m"));
    expect(statSync(join(net.server.dir, TRUSTED_RELAYS_FILE)).mode & 0o777).toBe(0o600);
    expect(net.server.proc.output).toMatch(new RegExp(`audit event=relay-approved relay=${BOB_RELAY}`));

    const link = await net.startNear();
    expect({ link: link.link, relay: link.relay }).toEqual({ link: "relay-server", relay: "server" });
    expect(net.bob!.hellos).toEqual([]);

    const revoked = await relaysCli(net.server, "revoke", BOB_RELAY);
    expect(revoked).toMatchObject({ code: 0 });
    expect(revoked.output).toContain(`revoked relay ${BOB_RELAY}`);
    expect(net.server.proc.output).toMatch(new RegExp(`audit event=relay-revoked relay=${BOB_RELAY}`));
    const again = await relaysCli(net.server, "revoke", BOB_RELAY);
    expect(again.code).not.toBe(0);
    expect(again.output).toContain(`${BOB_RELAY} is not approved`);
    const after = JSON.parse((await relaysCli(net.server, "list", "--json")).output);
    expect(after).toEqual([expect.objectContaining({ name: BOB_RELAY, approved: false, approvedBy: null, serves: "own user" })]);
  }, 60_000);

  it("the relays API is the admin's: no token, no list", async () => {
    expect((await api(net.server, "/api/v1/relays")).status).toBe(401);
    expect((await api(net.server, "/api/v1/relays", "12345")).status).toBe(403);
    expect((await api(net.server, "/api/v1/relays", net.server.token)).status, "with a user token").toBe(403);
    expect((await api(net.server, "/api/v1/relays", net.server.adminToken)).body).toEqual({ relays: [] });
  });

  it("inp2ps relays says what is wrong with a relay name", async () => {
    for (const [args, message] of [
      [["approve"], 'give the relay: "inp2ps relays approve USER/NODE", or NODE with --user USER'],
      [["approve", "a/b/c"], '"a/b/c" is not a relay: give USER/NODE, or NODE with --user USER'],
      [["approve", "bob/r1", "--user", "bob"], '"bob/r1" already names the user: drop --user, or give NODE alone'],
      [["revoke", "r1", "--user", "b@d"], `"b@d" is not a user name`],
      [["bless", "bob/r1"], 'unknown relays action "bless": use list, approve, revoke'],
      [["approve", "eve/r1"], 'server answered 404: cannot approve eve/r1: this server has no user "eve" (add it to [[server.users]] first)'],
      [["revoke", "bob/r1"], "server answered 404: bob/r1 is not approved"],
    ] as const) {
      const result = await relaysCli(net.server, ...args);
      expect(result.code, args.join(" ")).toBe(1);
      expect(result.output).toContain(message);
    }
  }, 30_000);
});

describe("another user's super relay, preferred (prefer_super_relays = true; real processes)", () => {
  const net = useNetwork("prefer_super_relays = true");

  it("unapproved, it still never gets the default user's session", async () => {
    const bob = await bobOffers(net);
    const link = await net.startNear();
    expect(bob.hellos).toEqual([]);
    expect({ link: link.link, relay: link.relay }).toEqual({ link: "relay-server", relay: "server" });
  }, 60_000);

  it("approved, it carries the session, and neither the hellos it reads nor its log name a node", async () => {
    const bob = await bobOffers(net);
    expect(await relaysCli(net.server, "approve", BOB_RELAY)).toMatchObject({ code: 0 });
    const link = await net.startNear();
    expect({ link: link.link, relay: link.relay }).toEqual({ link: "relay-super", relay: BOB_RELAY });

    const payloads = ticketPayloads(bob);
    expect(payloads.map((p) => p.fields.side).sort()).toEqual(["a", "b"]);
    const sessions = new Set(payloads.map((p) => String(p.fields.session)));
    expect(sessions.size).toBe(1);
    const [session] = [...sessions];
    for (const { text, fields } of payloads) {
      expect(Object.keys(fields).sort()).toEqual(["expiresAt", "relay", "session", "side", "tier"]);
      expect(fields).toMatchObject({ relay: BOB_RELAY, tier: "super" });
      // Everything but the random session id is fixed text: no endpoint's name, user or address.
      const rest = text.replace(session!, "");
      for (const revealing of [net.near!.node, "far", "default", "127.0.0.1"]) expect(rest).not.toContain(revealing);
    }
    const relayLog = bob.logLines.join("\n").replaceAll(session!, "<session>");
    expect(relayLog).toContain("relaying a session session=<session> tier=super");
    for (const name of [net.near!.node, "far", "default/"]) expect(relayLog).not.toContain(name);
  }, 60_000);
});
