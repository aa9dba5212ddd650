// Fast relay, then direct (issue 10), across the NAT lab's real NATs with real inp2ps and inp2pc
// processes. Two pairs whose punch is uncertain, each a TCP app toward an echo target behind the
// "symmetric" site: port-restricted-cone -> symmetric (the birthday technique: a direct path exists,
// found in seconds) and symmetric-2 -> symmetric (no direct path at all). The requesters run first,
// each with a "trickle" connecting to its app again and again; then the peer starts. Checked:
// - the first byte comes back through each app within 2 s of the peer's login, through the server's
//   relay (the punch runs beside it, it does not wait for the punch to fail);
// - port-restricted-cone: the link moves to a direct path while the trickle's stream, started on the
//   relay, keeps going; the relayed link stays until that stream is done; every byte comes back intact;
// - symmetric-2: stays relayed, every byte intact.
// Needs root, iproute2 and nftables. FAST_RELAY_E2E_LOG_DIR: keep every process's log there.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupStaleLabs, labUp, type Lab, type SiteSpec } from "../../scripts/natlab/lab.ts";
import { BUN, waitFor, type Proc } from "../helpers/processes.ts";
import { DIRECT_LINK_KINDS, inNamespace, labClientStatus, labSkipReason, listening, logTime, spawnIn, startLabClient, startLabServer, writeClientConfig } from "./helpers.ts";

const STATUS_PORT = 27190;
const ECHO = "127.0.0.1:9000";
const PEER = "symmetric";
/** The first byte back through an app after the peer's login, at most. */
const FIRST_BYTE_WITHIN_MS = 2_000;
/** How long each trickle keeps its stream going after its first byte: the direct path comes meanwhile. */
const TRICKLE_MS = 12_000;
/** A trickle gives up if no first byte came by then. */
const TRICKLE_DEADLINE_MS = 30_000;

const SITES: SiteSpec[] = [
  { name: PEER, nat: "symmetric" },
  { name: "port-restricted-cone", nat: "port-restricted-cone" },
  { name: "symmetric-2", nat: "symmetric" },
];
const PAIRS = [
  { from: "port-restricted-cone", app: "127.0.0.1:10000", direct: true },
  { from: "symmetric-2", app: "127.0.0.1:10001", direct: false },
];

/**
 * trickle.ts HOST:PORT TRICKLE_MS DEADLINE_MS: connects to the app again and again (every 100 ms)
 * until a connection echoes its first byte, then keeps sending 4 KiB every 50 ms on that same
 * connection for TRICKLE_MS, half-closes and checks that everything came back. Prints JSON
 * { firstByteAt, writesDoneAt, sent, echoed, intact, attempts, error? } (epoch ms).
 */
const TRICKLE = `import { connect } from "node:net"; import { createHash, randomBytes } from "node:crypto";
const [address, trickleText, deadlineText] = process.argv.slice(2); const [host, port] = address.split(":");
const deadline = Date.now() + Number(deadlineText); let attempts = 0;
let finished = false;
const done = (r) => { if (finished) return; finished = true; process.stdout.write(JSON.stringify({ attempts, ...r }) + "\\n", () => process.exit(0)); };
const attempt = () => {
  if (Date.now() > deadline) return done({ error: "no first byte by the deadline" });
  attempts++;
  const sent = createHash("sha256"), echoed = createHash("sha256");
  let sentBytes = 0, echoedBytes = 0, firstByteAt = 0, writesDoneAt = 0, timer;
  const socket = connect({ host, port: Number(port), allowHalfOpen: true });
  const write = () => { const chunk = randomBytes(4096); sent.update(chunk); sentBytes += chunk.length; socket.write(chunk); };
  socket.on("connect", write);
  socket.on("data", (d) => {
    echoed.update(d); echoedBytes += d.length;
    if (firstByteAt) return;
    firstByteAt = Date.now();
    timer = setInterval(() => {
      if (Date.now() - firstByteAt < Number(trickleText)) return write();
      clearInterval(timer); writesDoneAt = Date.now(); socket.end();
    }, 50);
  });
  socket.on("error", () => {});
  socket.on("end", () => { if (!firstByteAt) socket.destroy(); }); // the app gave up on this one: try again
  socket.on("close", () => {
    clearInterval(timer);
    if (!firstByteAt) return void setTimeout(attempt, 100);
    const [a, b] = [sent.digest("hex"), echoed.digest("hex")];
    done({ firstByteAt, writesDoneAt, sent: sentBytes, echoed: echoedBytes, intact: writesDoneAt > 0 && a === b && sentBytes === echoedBytes });
  });
};
attempt();`;
const ECHO_SERVER = `import { createServer } from "node:net"; const [host, port] = process.argv[2].split(":");
createServer({ allowHalfOpen: true }, (s) => { s.on("error", () => s.destroy()); s.pipe(s); }).listen(Number(port), host);`;

interface Trickle {
  firstByteAt?: number;
  writesDoneAt?: number;
  sent?: number;
  echoed?: number;
  intact?: boolean;
  attempts: number;
  error?: string;
}

const reason = labSkipReason();
if (reason) console.warn(`fast-relay e2e tests skipped: ${reason}`);

describe.skipIf(reason)("fast relay, then direct (NAT lab)", () => {
  let lab: Lab;
  let workDir: string;
  let emptyDir: string;
  const procs = new Map<string, Proc>();
  const trickles = new Map<string, Trickle>();
  let peerLoginAt = 0;
  const figures: string[] = [];
  const hostOf = (site: string) => lab.sites[site]!.hostNs;

  beforeAll(async () => {
    await cleanupStaleLabs();
    workDir = mkdtempSync(join(tmpdir(), "inp2p-e2e-fastrelay-"));
    emptyDir = join(workDir, "cwd");
    mkdirSync(emptyDir);
    const scripts = join(workDir, "scripts");
    mkdirSync(scripts);
    writeFileSync(join(scripts, "trickle.ts"), TRICKLE);
    writeFileSync(join(scripts, "echo.ts"), ECHO_SERVER);
    lab = await labUp({ sites: SITES });
    procs.set("server", await startLabServer(lab, join(workDir, "server")));
    procs.set("echo", spawnIn(lab, hostOf(PEER), emptyDir, [BUN, join(scripts, "echo.ts"), ECHO]));
    await listening(lab, hostOf(PEER), "-t", ECHO);
    const start = async (site: string, apps: { name: string; protocol: "tcp"; listen: string; peer: string; target: string }[], expose: string[] = []) => {
      const config = writeClientConfig(lab, join(workDir, "clients", site), { node: site, statusPort: STATUS_PORT, apps, logLevel: "debug", expose });
      procs.set(site, await startLabClient(lab, hostOf(site), config, emptyDir));
    };
    await Promise.all(PAIRS.map((p) => start(p.from, [{ name: "to-peer", protocol: "tcp", listen: p.app, peer: PEER, target: ECHO }])));
    // The trickles knock on their apps before the peer is there, so the first byte is timed from its login.
    const running = PAIRS.map(async (p) => {
      const result = await inNamespace(lab, hostOf(p.from), emptyDir, [BUN, join(scripts, "trickle.ts"), p.app, String(TRICKLE_MS), String(TRICKLE_DEADLINE_MS)], { timeoutMs: TRICKLE_DEADLINE_MS + TRICKLE_MS + 10_000 });
      let parsed: Trickle;
      try {
        parsed = JSON.parse(result.stdout) as Trickle;
      } catch {
        parsed = { attempts: 0, error: `trickle.ts failed (${result.code}): ${result.stderr.trim().slice(-500)}` };
      }
      trickles.set(p.from, parsed);
    });
    await Promise.all(PAIRS.map((p) => listening(lab, hostOf(p.from), "-t", p.app)));
    // Requesters that have run a while know their NAT; the peer is the one that just started.
    await Promise.all(PAIRS.map((p) => procs.get(p.from)!.waitForOutput(/NAT type:/, 15_000)));
    await start(PEER, [], [ECHO]);
    peerLoginAt = logTime(procs.get(PEER)!.output, /logged in/)!;
    await Promise.all(running);
  }, 90_000);

  afterAll(async () => {
    for (const proc of procs.values()) await proc.stop();
    const logDir = process.env.FAST_RELAY_E2E_LOG_DIR;
    if (logDir) {
      mkdirSync(logDir, { recursive: true });
      for (const [name, proc] of procs) writeFileSync(join(logDir, `${name}.log`), proc.output);
    }
    await lab?.down();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    if (figures.length) console.log(["fast-relay e2e figures:", ...figures.map((f) => `  ${f}`)].join("\n"));
  });

  /** `node`'s log lines about `peer` matching `pattern`: when, and the path. */
  const logLines = (node: string, peer: string, pattern: RegExp) =>
    procs
      .get(node)!
      .output.split("\n")
      .filter((line) => line.includes(` peer=${peer} `) && pattern.test(line))
      .map((line) => ({ at: logTime(line, /./)!, path: line.match(/path=(\S+)/)![1]!, line }));
  /** Both sides' log lines about each other, and each one's NAT detection: why a direct path did not come. */
  const pairLog = (from: string) =>
    [
      ...procs.get(from)!.output.split("\n").filter((line) => line.includes(` peer=${PEER} `) || line.includes("NAT type:")),
      ...procs.get(PEER)!.output.split("\n").filter((line) => line.includes(` peer=${from} `) || line.includes("NAT type:")),
      ...procs.get("server")!.output.split("\n").filter((line) => line.includes(from) && line.includes(PEER)),
    ]
      .sort()
      .join("\n");
  /** Relayed links closed on purpose (a direct path took over), on either side of the pair. */
  const relayRetired = (from: string) =>
    [...logLines(from, PEER, /peer link closed .*path=relay-.*moved to a direct path/), ...logLines(PEER, from, /peer link closed .*path=relay-.*moved to a direct path/)].sort((a, b) => a.at - b.at);

  for (const pair of PAIRS) {
    it(`${pair.from} -> ${PEER}: the first byte within ${FIRST_BYTE_WITHIN_MS / 1000} s of the peer's login, through the relay${pair.direct ? "; then a direct path while the relayed stream finishes intact" : ""}`, async () => {
      const trickle = trickles.get(pair.from)!;
      const log = procs.get(pair.from)!.output;
      expect(trickle.error, `trickle through ${pair.from}'s app`).toBeUndefined();
      const firstByteMs = trickle.firstByteAt! - peerLoginAt;
      const linked = logLines(pair.from, PEER, / INFO +peer linked /);
      figures.push(`${pair.from} -> ${PEER}: first byte ${firstByteMs} ms after the peer's login; links: ${linked.map((l) => `${l.path} +${l.at - peerLoginAt} ms`).join(", ")}`);
      expect(firstByteMs, "ms from the peer's login to the first byte back").toBeLessThanOrEqual(FIRST_BYTE_WITHIN_MS);
      expect(linked[0]?.path, `the first link (${pair.from}'s log)`).toMatch(/^relay-/);
      expect(linked[0]!.at, "the relayed link came before the first byte").toBeLessThanOrEqual(trickle.firstByteAt!);
      expect(trickle.intact, `every byte of the trickle back intact: ${JSON.stringify(trickle)}`).toBe(true);
      const status = (await labClientStatus(lab, hostOf(pair.from), emptyDir, STATUS_PORT)).peers[PEER];
      if (!pair.direct) {
        expect(status.link).toMatch(/^relay-/);
        return;
      }
      const direct = linked.find((l) => (DIRECT_LINK_KINDS as readonly string[]).includes(l.path));
      expect(direct, `a direct link after the relayed one; what both sides logged of each other:\n${pairLog(pair.from)}`).toBeDefined();
      expect(direct!.at, "the direct link came while the relayed stream was still going").toBeLessThan(trickle.writesDoneAt!);
      expect(DIRECT_LINK_KINDS as readonly string[]).toContain(status.link);
      // The relayed link is let go (by whichever side looks first) only once the stream that began on
      // it is done; with no stream on it, that would be about a second after the move.
      const closed = await waitFor("the relayed link let go on either side", () => relayRetired(pair.from)[0], 5_000);
      expect(closed.at, `the relayed link stayed until its stream was done: ${closed.line}`).toBeGreaterThanOrEqual(trickle.writesDoneAt!);
      figures.push(`${pair.from} -> ${PEER}: ${direct!.path} ${direct!.at - trickle.firstByteAt!} ms after the first byte; the relayed link closed ${closed!.at - trickle.writesDoneAt!} ms after its stream's last write`);
    });
  }
});
