// Peer links across the NAT lab's real NATs, with real inp2ps and inp2pc processes: a public site, a
// site behind each NAT kind, a NAT site whose router drops all UDP (so only TCP direct can work), and
// two hosts on one LAN behind different routers (different public IPs). Each NATed client forwards a
// TCP app to a sha256 sink and a UDP app to an echo in the public host. Checked: 64 MiB intact with
// half-close, UDP echo, the link kind in `inp2pc status --json`, 64 MiB through 5% UDP loss, `lan`
// between the shared-LAN hosts, no plaintext on the wire, and links surviving a killed peer (the app
// comes back by itself) and a killed server. Needs root, iproute2, nftables, socat and tcpdump.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ClientStatus } from "../../src/client/status.ts";
import { cleanupStaleLabs, labUp, type Lab, type NatKind } from "../../scripts/natlab/lab.ts";
import { BUN, INP2PC, waitFor, type Proc } from "../helpers/processes.ts";
import { inNamespace, labSkipReason, listening, spawnIn, startLabClient, startLabServer, writeClientConfig, LAB_SCRIPTS } from "./helpers.ts";

const MiB = 1024 * 1024;
const BIG_BYTES = 64 * MiB;
const MARKER_BYTES = 8 * MiB;
const MARKER = "INP2P-PLAINTEXT-MARKER";
const LOSS_PERCENT = 5;
const STATUS_PORT = 27190;
const SINK = "127.0.0.1:9000"; // in the public host (and in the shared LAN's first host)
const ECHO = "127.0.0.1:9001";
const TCP_APP = "127.0.0.1:10000"; // in every client that forwards
const UDP_APP = "127.0.0.1:10001";
const TRANSFER_TIMEOUT_MS = 90_000;
/** Link kinds that run over UDP (KCP): 5% UDP loss only touches these. */
const UDP_KINDS = ["lan", "udp-direct", "udp-punch"];
const NAT_SITES: NatKind[] = ["full-cone", "restricted-cone", "port-restricted-cone", "symmetric"];
/** A NAT site whose router drops all UDP: the only way to the public peer is TCP direct. */
const TCP_ONLY = "tcp-only";
const LAN_A = "lan-a";
const LAN_B = "lan-b";
const LOSSY = "full-cone";

// Small programs run inside the namespaces (bun, so they need nothing else).
const SCRIPTS: Record<string, string> = {
  // sha256 of everything a connection sends; answers "<hex> <bytes>" once the sender half-closes.
  "sink.ts": LAB_SCRIPTS["sink.ts"]!,
  "echo.ts": `import { createSocket } from "node:dgram";
    const [host, port] = process.argv[2].split(":");
    const s = createSocket("udp4"); s.on("message", (m, from) => s.send(m, from.port, from.address)); s.bind(Number(port), host);`,
  // Sends N bytes (random, or the marker repeated), hashing them, half-closes, prints the sink's answer.
  "send.ts": `import { connect } from "node:net"; import { createHash, randomBytes } from "node:crypto";
    const [address, bytesText, mode, timeoutText] = process.argv.slice(2);
    const [host, port] = address.split(":"); const total = Number(bytesText);
    const marker = Buffer.from(${JSON.stringify(MARKER)}.repeat(48_000));
    const hash = createHash("sha256"); let sent = 0; let reply = ""; let started = 0;
    const finish = (error) => { console.log(JSON.stringify({ sha: hash.digest("hex"), sent, reply: reply.trim(), ms: Math.round(performance.now() - started), error })); process.exit(0); };
    setTimeout(() => finish("timed out"), Number(timeoutText));
    const socket = connect({ host, port: Number(port), allowHalfOpen: true });
    socket.on("data", (d) => (reply += d));
    socket.on("error", (e) => finish(e.message));
    socket.on("end", () => finish());
    socket.on("close", () => finish("closed before the answer"));
    const pump = () => { while (sent < total) {
      const n = Math.min(marker.length, total - sent);
      const chunk = mode === "marker" ? marker.subarray(0, n) : randomBytes(n);
      hash.update(chunk); sent += n;
      if (!socket.write(chunk)) return socket.once("drain", pump);
    } socket.end(); };
    socket.on("connect", () => { started = performance.now(); pump(); });`,
  // Sends COUNT datagrams one by one, each resent until echoed; prints how many came back.
  "udpping.ts": `import { createSocket } from "node:dgram";
    const [address, countText, timeoutText] = process.argv.slice(2); const [host, port] = address.split(":");
    const s = createSocket("udp4"); let i = 0; const count = Number(countText);
    const done = () => { console.log(JSON.stringify({ echoed: i, count })); process.exit(0); };
    setTimeout(done, Number(timeoutText));
    const send = () => s.send("ping-" + i, Number(port), host);
    s.on("message", (m) => { if (m.toString() === "ping-" + i && ++i === count) done(); else send(); });
    s.bind(0, "127.0.0.1", () => { send(); setInterval(send, 300); });`,
  // Polls the local status API for DURATION ms; prints how many answers came and the slowest one.
  "statusprobe.ts": `const [port, durationText] = process.argv.slice(2); const end = Date.now() + Number(durationText);
    let maxMs = 0, answers = 0;
    while (Date.now() < end) {
      const t = Date.now();
      try { await (await fetch("http://127.0.0.1:" + port + "/api/v1/status", { signal: AbortSignal.timeout(end - t + 1000) })).json(); answers++; } catch {}
      maxMs = Math.max(maxMs, Date.now() - t);
      await new Promise((r) => setTimeout(r, 200));
    }
    console.log(JSON.stringify({ maxMs, answers }));`,
  // Keeps a connection busy (1 KiB every 50 ms) until killed.
  "trickle.ts": `import { connect } from "node:net";
    const [host, port] = process.argv[2].split(":"); const chunk = Buffer.alloc(1024, 7);
    const s = connect({ host, port: Number(port) }); s.on("error", () => {});
    setInterval(() => s.write(chunk), 50);`,
};

type SendResult = { sha: string; sent: number; reply: string; ms: number; error?: string };

const reason = labSkipReason([
  ["socat", "socat"],
  ["tcpdump", "tcpdump"],
]);
if (reason) console.warn(`peer link e2e tests skipped: ${reason}`);

describe.skipIf(reason)("peer links in the NAT lab", () => {
  let lab: Lab;
  let workDir: string;
  let emptyDir: string;
  let server: Proc;
  const clients = new Map<string, { proc: Proc; config: string; ns: string }>();
  const figures: string[] = [];

  const script = (name: string) => join(workDir, "scripts", name);
  const inNs = (ns: string, argv: string[], timeoutMs?: number) => inNamespace(lab, ns, emptyDir, argv, { timeoutMs });
  const hostOf = (site: string) => lab.sites[site]!.hostNs;

  async function send(site: string, bytes: number, mode: "random" | "marker" = "random", timeoutMs = TRANSFER_TIMEOUT_MS): Promise<SendResult> {
    const result = await inNs(hostOf(site), [BUN, script("send.ts"), TCP_APP, String(bytes), mode, String(timeoutMs)], timeoutMs + 5_000);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as SendResult;
  }

  /** The sink's answer must be the sender's own sha256 and byte count. */
  function expectIntact(result: SendResult, bytes: number): void {
    expect(result.error).toBeUndefined();
    expect(result.sent).toBe(bytes);
    expect(result.reply).toBe(`${result.sha} ${bytes}`);
  }

  async function status(site: string): Promise<ClientStatus> {
    const result = await inNs(hostOf(site), [BUN, INP2PC, "status", "--json", "--status-port", String(STATUS_PORT)]);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as ClientStatus;
  }

  const linkKind = async (site: string, peer: string) => (await status(site)).peers[peer]?.link ?? null;

  async function startClient(site: string, node: string, apps: { peer: string; tcpTarget?: string; udpTarget?: string }[] = [], expose: string[] = []) {
    const dir = join(workDir, "clients", node);
    const config = writeClientConfig(lab, dir, {
      node,
      expose,
      statusPort: STATUS_PORT,
      logLevel: process.env.PEER_LINKS_LOG_LEVEL ?? "info",
      apps: apps.flatMap(({ peer, tcpTarget, udpTarget }) => [
        ...(tcpTarget ? [{ name: `tcp-${peer}`, protocol: "tcp" as const, listen: TCP_APP, peer, target: tcpTarget }] : []),
        ...(udpTarget ? [{ name: `udp-${peer}`, protocol: "udp" as const, listen: UDP_APP, peer, target: udpTarget }] : []),
      ]),
    });
    const proc = await startLabClient(lab, hostOf(site), config, emptyDir);
    clients.set(node, { proc, config, ns: hostOf(site) });
    return proc;
  }

  const mbps = (bytes: number, ms: number) => ((bytes / MiB) / (ms / 1000)).toFixed(1);

  beforeAll(async () => {
    await cleanupStaleLabs();
    workDir = mkdtempSync(join(tmpdir(), "inp2p-e2e-links-"));
    emptyDir = join(workDir, "cwd");
    mkdirSync(join(workDir, "scripts"), { recursive: true });
    mkdirSync(emptyDir);
    for (const [name, text] of Object.entries(SCRIPTS)) writeFileSync(script(name), text);
    lab = await labUp({
      sites: [
        { name: "pub", nat: "none" },
        ...NAT_SITES.map((nat) => ({ name: nat, nat })),
        { name: TCP_ONLY, nat: "port-restricted-cone", blockUdp: true },
        { name: LAN_A, nat: "port-restricted-cone" },
        { name: LAN_B, nat: "symmetric", shareLanWith: LAN_A },
      ],
    });
    server = await startLabServer(lab, join(workDir, "server"));

    for (const site of ["pub", LAN_A]) {
      lab.spawn(hostOf(site), [BUN, script("sink.ts"), SINK]);
      await listening(lab, hostOf(site), "-t", SINK);
    }
    lab.spawn(hostOf("pub"), [BUN, script("echo.ts"), ECHO]);
    await listening(lab, hostOf("pub"), "-u", ECHO);

    await startClient("pub", "pub", [], [SINK, ECHO]);
    await startClient(LAN_A, LAN_A, [], [SINK]);
    await Promise.all([
      ...[...NAT_SITES, TCP_ONLY].map((site) => startClient(site, site, [{ peer: "pub", tcpTarget: SINK, udpTarget: ECHO }])),
      startClient(LAN_B, LAN_B, [{ peer: LAN_A, tcpTarget: SINK }]),
    ]);
    // Clients link to their apps' peers by themselves once both are online.
    const linkedMs = Date.now();
    await Promise.all(
      [...[...NAT_SITES, TCP_ONLY].map((site) => [site, "pub"]), [LAN_B, LAN_A]].map(([site, peer]) =>
        waitFor(`${site}'s link to ${peer}`, async () => (await linkKind(site!, peer!)) !== null, 20_000, 250),
      ),
    );
    figures.push(`all links up ${Date.now() - linkedMs} ms after the clients logged in`);
  }, 60_000);

  afterEach((context) => {
    if (context.task.result?.state !== "fail") return;
    for (const [node, { proc }] of clients) console.log(`--- inp2pc ${node} (last lines) ---\n${proc.output.slice(-1500)}`);
    console.log(`--- inp2ps (last lines) ---\n${server?.output.slice(-1500)}`);
  });

  afterAll(async () => {
    const logDir = process.env.PEER_LINKS_LOG_DIR; // keep every process's full output for a post-mortem
    if (logDir) {
      mkdirSync(logDir, { recursive: true });
      for (const [node, { proc }] of clients) writeFileSync(join(logDir, `${node}.log`), proc.output);
      if (server) writeFileSync(join(logDir, "inp2ps.log"), server.output);
    }
    if (figures.length) console.log(`peer links, measured:\n  ${figures.join("\n  ")}`);
    await lab?.down();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it("each NAT kind (and a UDP-blocked site) to the public site: 64 MiB intact with half-close, UDP echo, link kind in status", async () => {
    // One site at a time: a clean per-kind figure (the next test loads them all at once).
    const results = [];
    for (const site of [...NAT_SITES, TCP_ONLY]) {
      const echo = JSON.parse((await inNs(hostOf(site), [BUN, script("udpping.ts"), UDP_APP, "5", "10000"])).stdout || "{}");
      const transfer = await send(site, BIG_BYTES);
      const [mine, theirs] = [await linkKind(site, "pub"), await linkKind("pub", site)];
      figures.push(`${site.padEnd(21)} link ${mine} (pub sees ${theirs})  64 MiB in ${transfer.ms} ms = ${mbps(BIG_BYTES, transfer.ms)} MiB/s`);
      results.push({ site, echo, transfer, mine, theirs });
    }
    for (const { site, echo, transfer } of results) {
      expect({ site, echo }).toEqual({ site, echo: { echoed: 5, count: 5 } });
      expectIntact(transfer, BIG_BYTES);
    }
    // A NATed node reaches a public peer directly, over UDP unless its site drops UDP; both ends say so.
    const expected = (site: string) => (site === TCP_ONLY ? "tcp-direct" : "udp-direct");
    expect(Object.fromEntries(results.map(({ site, mine, theirs }) => [site, { [site]: mine, pub: theirs }]))).toEqual(
      Object.fromEntries(results.map(({ site }) => [site, { [site]: expected(site), pub: expected(site) }])),
    );
  }, 120_000);

  it("all NAT kinds at once: every transfer intact, the TCP link survives, and the public client keeps answering", async () => {
    const sites = [...NAT_SITES, TCP_ONLY];
    const since = await Promise.all(sites.map(async (site) => (await status(site)).peers.pub?.since));
    const startedMs = Date.now();
    // While the public client carries all five, its status API (a TCP socket too) must keep answering.
    const probe = inNs(hostOf("pub"), [BUN, script("statusprobe.ts"), String(STATUS_PORT), "15000"], 25_000);
    const results = await Promise.all(sites.map((site) => send(site, BIG_BYTES)));
    const wallMs = Date.now() - startedMs;
    const latency = JSON.parse((await probe).stdout || "{}") as { maxMs: number; answers: number };
    sites.forEach((site, i) => figures.push(`concurrent: ${site.padEnd(21)} 64 MiB in ${results[i]!.ms} ms = ${mbps(BIG_BYTES, results[i]!.ms)} MiB/s${results[i]!.error ? ` (${results[i]!.error})` : ""}`));
    figures.push(`concurrent: ${sites.length} x 64 MiB in ${wallMs} ms wall = ${mbps(sites.length * BIG_BYTES, wallMs)} MiB/s aggregate; public client's status API: ${latency.answers} answers, slowest ${latency.maxMs} ms`);
    const after = await Promise.all(sites.map(async (site) => (await status(site)).peers.pub?.since));
    sites.forEach((site, i) => {
      expect.soft({ site, error: results[i]!.error }).toEqual({ site, error: undefined });
      expect.soft({ site, reply: results[i]!.reply }).toEqual({ site, reply: `${results[i]!.sha} ${BIG_BYTES}` });
      expect.soft({ site, sameLink: after[i] }).toEqual({ site, sameLink: since[i] }); // no link was dropped and rebuilt
    });
    expect.soft(latency.maxMs, "slowest status answer from the busy public client (ms)").toBeLessThan(3_000);
  }, 120_000);

  it(`${LOSS_PERCENT}% random UDP loss on a UDP path: 64 MiB still arrives intact`, async () => {
    const kind = await linkKind(LOSSY, "pub");
    const theirs = await linkKind("pub", LOSSY);
    expect(UDP_KINDS, `the link of ${LOSSY} runs over ${kind}, not UDP`).toContain(kind);
    expect(UDP_KINDS).toContain(theirs);
    await lab.setLoss(LOSSY, LOSS_PERCENT);
    try {
      const transfer = await send(LOSSY, BIG_BYTES);
      figures.push(`${LOSS_PERCENT}% UDP loss (${LOSSY}, link ${kind} / pub sees ${theirs}): 64 MiB in ${transfer.ms} ms = ${mbps(BIG_BYTES, transfer.ms)} MiB/s`);
      expectIntact(transfer, BIG_BYTES);
      expect(await linkKind(LOSSY, "pub")).toBe(kind); // the same kind of link carried it all
    } finally {
      await lab.setLoss(LOSSY, 0);
    }
  }, 120_000);

  it("two hosts on one LAN behind different routers: public addresses differ, and they link over lan", async () => {
    // The lab itself: B reaches A's LAN address un-NATed, while their public mappings differ.
    const a = lab.sites[LAN_A]!;
    const b = lab.sites[LAN_B]!;
    expect(a.sharedLan?.subnet).toBe(b.sharedLan?.subnet);
    const nat = await Promise.all([a, b].map(async (s) => JSON.parse((await inNs(s.hostNs, [BUN, INP2PC, "nat", "--json", "-serverhost", lab.server.ip])).stdout)));
    expect(nat.map((n) => n.publicAddress.split(":")[0])).toEqual([a.publicIp, b.publicIp]);
    expect(a.publicIp).not.toBe(b.publicIp);
    lab.spawn(a.hostNs, ["socat", `TCP-LISTEN:9100,bind=${a.hostIp},reuseaddr`, "SYSTEM:echo $SOCAT_PEERADDR"]);
    await listening(lab, a.hostNs, "-t", `${a.hostIp}:9100`);
    const seen = await inNs(b.hostNs, ["socat", "-T", "3", "-", `TCP:${a.hostIp}:9100,connect-timeout=3`], 5_000);
    expect(seen.stdout.trim(), "A sees B by its LAN address (no NAT between them)").toBe(b.hostIp);

    const bytes = 16 * MiB;
    const transfer = await send(LAN_B, bytes);
    expectIntact(transfer, bytes);
    figures.push(`shared LAN (${LAN_B} -> ${LAN_A}): 16 MiB in ${transfer.ms} ms = ${mbps(bytes, transfer.ms)} MiB/s`);
    const [mine, theirs] = [await status(LAN_B), await status(LAN_A)];
    expect(mine.peers[LAN_A]).toMatchObject({ link: "lan", remote: expect.stringMatching(new RegExp(`^${a.hostIp.replace(/\./g, "\\.")}:`)) });
    expect(theirs.peers[LAN_B]).toMatchObject({ link: "lan", remote: expect.stringMatching(new RegExp(`^${b.hostIp.replace(/\./g, "\\.")}:`)) });
  }, 60_000);

  it("the wire carries no plaintext: markers through a UDP and a TCP link never show in a capture at the public host", async () => {
    const pcap = join(workDir, "public.pcap");
    const capture = spawnIn(lab, hostOf("pub"), emptyDir, ["tcpdump", "-i", "eth0", "-n", "-s", "0", "-U", "-Z", "root", "-w", pcap]);
    await capture.waitForOutput(/listening on eth0/, 10_000);
    const viaUdp = await send("restricted-cone", MARKER_BYTES, "marker");
    const viaTcp = await send(TCP_ONLY, MARKER_BYTES, "marker");
    await new Promise((r) => setTimeout(r, 300)); // the last packets reach the capture
    capture.child.kill("SIGINT");
    await capture.exited;
    // The far side got the markers (the sink's sha256 of what arrived equals the sender's).
    expectIntact(viaUdp, MARKER_BYTES);
    expectIntact(viaTcp, MARKER_BYTES);
    const raw = readFileSync(pcap);
    figures.push(`capture at the public host: ${(raw.length / MiB).toFixed(1)} MiB of pcap for 2 x ${MARKER_BYTES / MiB} MiB of markers (${capture.output.match(/(\d+) packets captured/)?.[1]} packets)`);
    // Everything went through the captured interface, from both sites...
    expect(raw.length).toBeGreaterThan(2 * MARKER_BYTES);
    for (const site of ["restricted-cone", TCP_ONLY]) expect(raw.includes(Buffer.from(lab.sites[site]!.publicIp.split(".").map(Number)))).toBe(true);
    // ...and not one marker (nor half of one) in the clear.
    expect(raw.includes(Buffer.from(MARKER))).toBe(false);
    expect(raw.includes(Buffer.from("PLAINTEXT-MARKER"))).toBe(false);
  }, 60_000);

  it("a killed and restarted peer: the app comes back by itself; a killed server: the established link still carries new connections", async () => {
    const site = "port-restricted-cone";
    const pub = clients.get("pub")!;
    expect(await linkKind(site, "pub")).not.toBeNull();
    // An app connection in use when the peer dies.
    const busy = lab.spawn(hostOf(site), [BUN, script("trickle.ts"), TCP_APP]);
    try {
      await new Promise((r) => setTimeout(r, 1_000));
      pub.proc.child.kill("SIGKILL");
      await pub.proc.exited;
      const killedMs = Date.now();
      const restarted = await startLabClient(lab, pub.ns, pub.config, emptyDir);
      clients.set("pub", { ...pub, proc: restarted });
      const restartedMs = Date.now();
      // New connections through the app, until one carries data end to end again.
      let attempts = 0;
      await waitFor(
        "the app to work again after the peer restarted",
        async () => {
          attempts++;
          const probe = await send(site, 64 * 1024, "random", 3_000);
          return !probe.error && probe.reply === `${probe.sha} ${64 * 1024}`;
        },
        20_000,
        200,
      );
      figures.push(`peer SIGKILLed and restarted (${restartedMs - killedMs} ms to log in again): app works again ${Date.now() - restartedMs} ms after the restart (${attempts} attempts)`);
      expect(Date.now() - restartedMs).toBeLessThan(17_000);
    } finally {
      busy.kill("SIGKILL");
    }

    // A direct link: right after the restart (pub's NAT not yet known) the first link goes through the
    // server's relay while the punch runs, and a server-relayed link cannot outlive the server.
    const before = await waitFor("a direct link to the restarted peer", async () => {
      const now = await status(site);
      return now.peers.pub?.link && !now.peers.pub.link.startsWith("relay-") ? now : undefined;
    }, 10_000, 250);
    server.child.kill("SIGKILL");
    await server.exited;
    await waitFor("the client to notice the server is gone", async () => (await status(site)).server.state !== "online", 15_000, 250);
    const transfer = await send(site, 4 * MiB);
    expectIntact(transfer, 4 * MiB);
    const after = await status(site);
    expect(after.peers.pub).toMatchObject({ link: before.peers.pub!.link, since: before.peers.pub!.since });
    figures.push(`server SIGKILLed: a new app connection over the existing ${after.peers.pub!.link} link carried 4 MiB intact (client's server state: ${after.server.state})`);
  }, 60_000);
});
