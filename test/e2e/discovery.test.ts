// LAN discovery over Bonjour/mDNS in the NAT lab, with real inp2ps and inp2pc processes. The public
// bridge is one L2 segment: the server and two public hosts on it (pub-a, pub-b); "far" sits behind
// its own router on another segment; lan-a and lan-b share one LAN behind two different NAT routers;
// multi-a and multi-b sit behind their own routers and also share a side LAN on a second interface.
// Checked: `inp2pc discover` lists the server with its fingerprint on its segment and nothing
// elsewhere; server_host = "auto" joins (and --newconfig stores the choice); two nodes on the
// server's segment and two behind different routers on one LAN link as `lan`; a host on a side LAN
// beside the uplink to its router is found on that LAN; with advertising off
// nothing is found; a forged advertisement with a wrong fingerprint is refused at the TLS handshake.
// Every program here runs in the lab's namespaces: nothing multicasts on this host's own LAN.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ClientStatus } from "../../src/client/status.ts";
import { cleanupStaleLabs, labUp, type Lab } from "../../scripts/natlab/lab.ts";
import { encodeNodeTxt, encodeServerTxt, userHash } from "../../src/protocol/discovery.ts";
import { BUN, INP2PC, INP2PS, REPO_ROOT, waitFor, type Proc } from "../helpers/processes.ts";
import { inNamespace, labSkipReason, listening, spawnIn, STUN_UDP1, TOKEN, WS_PORT } from "./helpers.ts";

const STATUS_PORT = 27190;
const LINK_TIMEOUT_MS = 20_000;
const LOGIN_TIMEOUT_MS = 15_000;
/** Programs started here must advertise: the test runner turns Bonjour off for everything else. */
const WITH_BONJOUR = ["env", "-u", "INP2P_DISABLE_BONJOUR"];
const DISCOVER_SECONDS = "2";
const ROGUE_UDP_PORT = 40_999;

type Listed = { kind: string; name: string; host: string; port: number; tlsSha256?: string; node?: string };

const reason = labSkipReason();
if (reason) console.warn(`discovery e2e tests skipped: ${reason}`);

describe.skipIf(reason)("LAN discovery (Bonjour) in the NAT lab", () => {
  let lab: Lab;
  let workDir: string;
  let emptyDir: string;
  let server: Proc | undefined;
  let fingerprint: string;
  const procs = new Map<string, Proc>();

  const hostOf = (site: string) => lab.sites[site]!.hostNs;
  const inNs = (ns: string, argv: string[], timeoutMs?: number) => inNamespace(lab, ns, emptyDir, argv, { timeoutMs });

  async function startServer(env: string[] = WITH_BONJOUR): Promise<Proc> {
    const dir = join(workDir, "server");
    mkdirSync(dir, { recursive: true });
    const config = join(dir, "inp2ps.toml");
    writeFileSync(
      config,
      ['role = "server"', "[server]", `token = "${TOKEN}"`, `listen = "${lab.server.ip}"`, `stun_alt_ip = "${lab.server.altIp}"`, `data_dir = "${join(dir, "data")}"`].join("\n") + "\n",
      { mode: 0o600 },
    );
    const proc = spawnIn(lab, lab.server.ns, dir, [...env, BUN, INP2PS, "--config", config]);
    procs.set("server", proc);
    await listening(lab, lab.server.ns, "-u", `${lab.server.altIp}:${STUN_UDP1}`, 15_000);
    await listening(lab, lab.server.ns, "-t", `${lab.server.ip}:${WS_PORT}`, 15_000);
    return proc;
  }

  async function discover(site: string): Promise<Listed[]> {
    const result = await inNs(hostOf(site), [...WITH_BONJOUR, BUN, INP2PC, "discover", "--json", "--timeout", DISCOVER_SECONDS]);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as Listed[];
  }

  /** A client config in `dir`; `server` lines say how it finds the server. */
  function clientConfig(name: string, server: string[], appPeer?: string): string {
    const dir = join(workDir, name);
    mkdirSync(dir, { recursive: true });
    const path = join(dir, "inp2pc.toml");
    const lines = ['role = "client"', "[client]", ...server, `node = "${name}"`, `token = "${TOKEN}"`, `status_port = ${STATUS_PORT}`];
    if (appPeer) lines.push("", "[[client.apps]]", 'name = "probe"', 'protocol = "tcp"', 'listen = "127.0.0.1:10000"', `peer = "${appPeer}"`, 'target = "127.0.0.1:9"');
    writeFileSync(path, lines.join("\n") + "\n", { mode: 0o600 });
    return path;
  }

  async function startClient(name: string, site: string, config: string): Promise<Proc> {
    const proc = spawnIn(lab, hostOf(site), join(workDir, name), [...WITH_BONJOUR, BUN, INP2PC, "--config", config]);
    procs.set(name, proc);
    await proc.waitForOutput(/logged in/, LOGIN_TIMEOUT_MS);
    return proc;
  }

  /** A rogue advertiser in the server's namespace: publishes `txt` as `kind`'s service, named `name`. */
  async function forge(kind: "server" | "node", name: string, port: number, txt: Record<string, string>): Promise<Proc> {
    const script = join(workDir, "forger.ts");
    writeFileSync(
      script,
      `import { Mdns } from "${REPO_ROOT}/src/discovery/index.ts";
       import { NODE_SERVICE, SERVER_SERVICE } from "${REPO_ROOT}/src/protocol/discovery.ts";
       import { createLogger } from "${REPO_ROOT}/src/log/index.ts";
       const [kind, name, port, txt] = [process.argv[2], process.argv[3], Number(process.argv[4]), JSON.parse(process.argv[5])];
       const mdns = new Mdns({ logger: createLogger(), address: "${lab.server.ip}" });
       mdns.publish({ ...(kind === "server" ? SERVER_SERVICE : NODE_SERVICE), name, port, txt });
       console.log("advertising");`,
    );
    const rogue = spawnIn(lab, lab.server.ns, emptyDir, [BUN, script, kind, name, String(port), JSON.stringify(txt)]);
    procs.set(`forger ${name}`, rogue);
    await rogue.waitForOutput(/advertising/);
    return rogue;
  }

  async function status(site: string): Promise<ClientStatus> {
    const result = await inNs(hostOf(site), [BUN, INP2PC, "status", "--json", "--status-port", String(STATUS_PORT)]);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as ClientStatus;
  }

  /** The kind of the link from the node in `site` to `peer`, once there is one. */
  /**
   * The kind of the link from `site` to `peer` once it is `kind`, or whatever it is when LINK_TIMEOUT_MS
   * runs out: a link may start on the relay and move to the LAN path a moment later (a fresh-clone run
   * looked in between).
   */
  const linkBecomes = (site: string, peer: string, kind: string) =>
    waitFor(`the link from ${site} to ${peer} to be ${kind}`, async () => ((await status(site)).peers[peer]?.link === kind ? kind : undefined), LINK_TIMEOUT_MS, 250).catch(
      async () => (await status(site)).peers[peer]?.link,
    );

  beforeAll(async () => {
    await cleanupStaleLabs();
    workDir = mkdtempSync(join(tmpdir(), "inp2p-e2e-discovery-"));
    emptyDir = join(workDir, "cwd");
    mkdirSync(emptyDir);
    lab = await labUp({
      sites: [
        { name: "pub-a", nat: "none" },
        { name: "pub-b", nat: "none" },
        { name: "far", nat: "port-restricted-cone" },
        { name: "lan-a", nat: "port-restricted-cone" },
        { name: "lan-b", nat: "symmetric", shareLanWith: "lan-a" },
        { name: "multi-a", nat: "port-restricted-cone" },
        { name: "multi-b", nat: "port-restricted-cone" },
      ],
      sideLan: ["multi-a", "multi-b"],
    });
    server = await startServer();
    fingerprint = (await server.waitForOutput(/SHA-256:\s+(\S+)/))[1]!;
  }, 60_000);

  afterEach((context) => {
    if (context.task.result?.state !== "fail") return;
    for (const [name, proc] of procs) console.log(`--- ${name} (last lines) ---\n${proc.output.slice(-2000)}`);
  });

  afterAll(async () => {
    await lab?.down();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it("discover lists the server with its fingerprint on the server's segment, and nothing behind a router; nat --serverhost auto uses it", async () => {
    const natAuto = inNs(hostOf("pub-b"), [...WITH_BONJOUR, BUN, INP2PC, "nat", "--json", "--serverhost", "auto"]);
    const [a, b, far] = await Promise.all(["pub-a", "pub-b", "far"].map(discover));
    for (const listed of [a, b]) expect(listed).toEqual([expect.objectContaining({ kind: "server", host: lab.server.ip, port: WS_PORT, tlsSha256: fingerprint })]);
    expect(far).toEqual([]);
    // inp2pc nat finds the server the same way (and its STUN ports from the advertisement).
    const nat = await natAuto;
    expect(nat.code, nat.stderr).toBe(0);
    expect(JSON.parse(nat.stdout)).toMatchObject({ natType: "public", publicAddress: expect.stringMatching(new RegExp(`^${lab.sites["pub-b"]!.hostIp.replace(/\./g, "\\.")}:`)) });
    const table = await inNs(hostOf("pub-a"), [...WITH_BONJOUR, BUN, INP2PC, "discover", "--timeout", DISCOVER_SECONDS]);
    expect(table.stdout).toMatch(new RegExp(`^server\\s+\\S+\\s+${lab.server.ip.replace(/\./g, "\\.")}\\s+${WS_PORT}\\s+${fingerprint}\\s+\\S+$`, "m"));
  }, 30_000);

  it('server_host = "auto" joins the one server found, its fingerprint pinned, and --newconfig stores the choice', async () => {
    const dir = join(workDir, "a");
    mkdirSync(dir, { recursive: true });
    const config = join(dir, "inp2pc.toml");
    const proc = spawnIn(lab, hostOf("pub-a"), dir, [
      ...WITH_BONJOUR, BUN, INP2PC, "--config", config, "--newconfig", "--serverhost", "auto", "--node", "a", "--token", TOKEN, "--status-port", String(STATUS_PORT),
    ]);
    procs.set("a", proc);
    await proc.waitForOutput(/logged in/, LOGIN_TIMEOUT_MS);
    expect(proc.output).toMatch(new RegExp(`using the inp2ps found on this LAN.* server=${lab.server.ip}:${WS_PORT} sha256=${fingerprint}`));
    const stored = readFileSync(config, "utf8");
    expect(stored).toContain(`server_host = "${lab.server.ip}"`);
    expect(stored).toContain(`tls_fingerprint = "${fingerprint}"`);
    expect((await status("pub-a")).server).toMatchObject({ address: `${lab.server.ip}:${WS_PORT}`, state: "online" });
    await proc.stop();
  }, 30_000);

  it("two nodes on the server's segment link as lan, and so do two LAN nodes behind different NAT routers", async () => {
    // A rogue on the segment replays node a's user hash with an address of its own: b tries it, and the
    // handshake (a's registered key) fails there while the real LAN path wins.
    const rogue = await forge("node", "a-rogue", ROGUE_UDP_PORT, encodeNodeTxt({ role: "node", version: "9.9.9", node: "a", user: userHash(TOKEN), udpPort: ROGUE_UDP_PORT, tcpPort: 0 }));
    await startClient("a", "pub-a", clientConfig("a", ['server_host = "auto"']));
    await startClient("b", "pub-b", clientConfig("b", ['server_host = "auto"'], "a"));
    const pinned = [`server_host = "${lab.server.ip}"`, `tls_fingerprint = "${fingerprint}"`];
    await startClient("lan-a", "lan-a", clientConfig("lan-a", pinned));
    await startClient("lan-b", "lan-b", clientConfig("lan-b", pinned, "lan-a"));
    expect({ b: await linkBecomes("pub-b", "a", "lan"), a: await linkBecomes("pub-a", "b", "lan") }).toEqual({ b: "lan", a: "lan" });
    expect((await status("pub-b")).peers.a?.remote).toMatch(new RegExp(`^${lab.sites["pub-a"]!.hostIp.replace(/\./g, "\\.")}:`));
    await rogue.stop();
    expect({ "lan-b": await linkBecomes("lan-b", "lan-a", "lan"), "lan-a": await linkBecomes("lan-a", "lan-b", "lan") }).toEqual({ "lan-b": "lan", "lan-a": "lan" });
    // The public addresses the server sees differ: the LAN path is not the one it reported.
    const [natA, natB] = await Promise.all([status("lan-a"), status("lan-b")]);
    expect(natA.nat?.publicAddress?.split(":")[0]).toBe(lab.sites["lan-a"]!.publicIp);
    expect(natB.nat?.publicAddress?.split(":")[0]).toBe(lab.sites["lan-b"]!.publicIp);
    await Promise.all(["a", "b", "lan-a", "lan-b"].map((name) => procs.get(name)!.stop()));
  }, 60_000);

  it("a multi-homed host asks and answers on each interface: a node on the side LAN is found there, not only out of the default route", async () => {
    const pinned = [`server_host = "${lab.server.ip}"`, `tls_fingerprint = "${fingerprint}"`];
    const proc = await startClient("ma", "multi-a", clientConfig("ma", pinned));
    const listed = await discover("multi-b");
    expect(listed.filter((entry) => entry.kind === "node")).toEqual([expect.objectContaining({ node: "ma", host: lab.sites["multi-a"]!.sideIp })]);
    await proc.stop();
  }, 30_000);

  it("a node with no peer UDP socket (peer_paths = [\"relay\"]) runs with Bonjour on: nothing to advertise, no crash", async () => {
    const proc = await startClient("relay-only", "pub-a", clientConfig("relay-only", [`server_host = "${lab.server.ip}"`, `tls_fingerprint = "${fingerprint}"`, 'peer_paths = ["relay"]']));
    expect((await status("pub-a")).server.state).toBe("online");
    await proc.stop();
    expect(proc.exitCode).toBe(0);
  }, 30_000);

  it("with advertising off nothing is found, and a forged advertisement with a wrong fingerprint is refused at the TLS handshake", async () => {
    await server!.stop();
    server = await startServer(["env", "INP2P_DISABLE_BONJOUR=1"]);
    expect((await discover("pub-b")).filter((entry) => entry.kind === "server")).toEqual([]);

    // A rogue advertiser on the server's host names the real server's port with a fingerprint of its own.
    const wrong = fingerprint.split(":").reverse().join(":");
    expect(wrong).not.toBe(fingerprint);
    const txt = encodeServerTxt({ role: "server", version: "9.9.9", wsPort: WS_PORT, tls: true, tlsSha256: wrong, stunUdp: [27182, 27183], stunTcp: [27180, 27181], lanHost: "rogue.local" });
    const rogue = await forge("server", "rogue", WS_PORT, txt);
    expect(await discover("pub-b")).toContainEqual(expect.objectContaining({ kind: "server", name: "rogue", tlsSha256: wrong }));

    const victim = spawnIn(lab, hostOf("pub-b"), emptyDir, [...WITH_BONJOUR, BUN, INP2PC, "--serverhost", "auto", "--node", "victim", "--token", TOKEN, "--status-port", String(STATUS_PORT + 1)]);
    procs.set("victim", victim);
    await victim.waitForOutput(/does not match the pinned tls_fingerprint/, LOGIN_TIMEOUT_MS);
    expect(victim.output).toContain(`expected ${wrong}, got ${fingerprint}`);
    expect(victim.output).not.toMatch(/logged in/);
    await victim.stop();
    await rogue.stop();
  }, 60_000);

  it("multicast trouble is one clear log line, never a crash: a namespace without multicast, and port 5353 taken", async () => {
    const bonjourLines = (output: string) => output.split("\n").filter((line) => /\[bonjour\]/.test(line));
    const serve = async (ns: string, name: string, wrap: string[]) => {
      const dir = join(workDir, name);
      mkdirSync(dir, { recursive: true });
      const config = join(dir, "inp2ps.toml");
      writeFileSync(config, ['role = "server"', "[server]", `token = "${TOKEN}"`, 'tls = "off"', "relay = false"].join("\n") + "\n", { mode: 0o600 });
      const proc = spawnIn(lab, ns, dir, [...wrap, ...WITH_BONJOUR, BUN, INP2PS, "--config", config]);
      procs.set(name, proc);
      await proc.waitForOutput(/listening on/, 15_000);
      return proc;
    };

    // A network namespace of its own with loopback only: no interface can multicast.
    const alone = await serve(hostOf("far"), "alone", ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]);
    await alone.waitForOutput(/\[bonjour\]/);
    await alone.stop();
    expect(alone.exitCode).toBe(0);
    expect(bonjourLines(alone.output)).toEqual([expect.stringMatching(/WARN\s+\[bonjour\] Bonjour: no network interface that is up supports multicast; LAN discovery is off$/)]);

    // Another program holds UDP 5353 without sharing it: Bonjour is off on that interface, inp2ps serves on.
    const holder = join(workDir, "hold5353.ts");
    writeFileSync(holder, `import { createSocket } from "node:dgram"; const s = createSocket({ type: "udp4", reuseAddr: false }); s.bind(5353, "0.0.0.0", () => console.log("holding"));`);
    const hold = spawnIn(lab, hostOf("far"), emptyDir, [BUN, holder]);
    procs.set("hold5353", hold);
    await hold.waitForOutput(/holding/);
    const taken = await serve(hostOf("far"), "taken", []);
    await taken.waitForOutput(/no interface left/);
    const health = await inNs(hostOf("far"), [BUN, "-e", `console.log((await fetch("http://127.0.0.1:${WS_PORT}/api/v1/health")).status)`]);
    expect(health.stdout.trim()).toBe("200");
    await taken.stop();
    await hold.stop();
    expect(taken.exitCode).toBe(0);
    expect(bonjourLines(taken.output).filter((line) => / (WARN|ERROR) /.test(line))).toEqual([
      expect.stringMatching(/Bonjour off on eth0 \(\S+\): EADDRINUSE/),
      expect.stringMatching(/Bonjour: no interface left; LAN discovery is off$/),
    ]);
  }, 60_000);
});
