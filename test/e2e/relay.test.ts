// Relays across the NAT lab's real NATs (issue 6), with real inp2ps and inp2pc processes. A public
// site hosts a private relay node ("relay1", relay = true), another a super relay of another user
// ("bob/super1", super = true, trusted by the server's config and preferred to its own relay);
// inp2ps relays too (the last tier).
// - symmetric -> symmetric-2 (no direct path) links through relay1 and carries 64 MiB of a marker
//   text intact; a capture of everything through the relay's port holds the traffic but no marker;
// - the UDP-blocked site -> symmetric (TCP punch cannot pass a symmetric NAT) links through relay1, 64 MiB intact;
// - cone-a -> cone-b, with a rule on cone-a's router dropping all traffic between the two, links
//   through a relay; once the rule is lifted the link moves to a direct path by itself;
// - killing relay1 while the apps stay up: new connections work through the super relay within 10 s;
//   killing that too: through the server within 10 s.
// Needs root, iproute2, nftables and tcpdump.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupStaleLabs, labUp, type Lab, type SiteSpec } from "../../scripts/natlab/lab.ts";
import type { Proc } from "../helpers/processes.ts";
import { waitFor } from "../helpers/processes.ts";
import {
  DIRECT_LINK_KINDS,
  isIntact,
  labClientStatus,
  labSkipReason,
  listening,
  sendThrough,
  spawnIn,
  startLabClient,
  startLabServer,
  UDP_BLOCKED_SITE,
  writeClientConfig,
  writeLabScripts,
  type LabApp,
} from "./helpers.ts";
import { BUN } from "../helpers/processes.ts";

const MiB = 1024 * 1024;
const BIG_BYTES = 64 * MiB;
const STATUS_PORT = 27190;
const RELAY_PORT = 27185;
const BOB_TOKEN = "987654321987654321";
const SINK = "127.0.0.1:9000";
const MARKER = "PLAINTEXT-MARKER-7f3a";
const TRANSFER_TIMEOUT_MS = 90_000;
/** The direct attempt (6 s) fails, then the relay: the link is up well within this. */
const RELAYED_LINK_WITHIN_MS = 20_000;
/** After the rule is lifted: the first background retry (15 s) plus a punch. */
const UPGRADE_WITHIN_MS = 40_000;
const FAILOVER_WITHIN_MS = 10_000;
/** Bytes captured per packet: enough for the marker to show if it crossed in the clear. */
const CAPTURE_SNAPLEN = 256;

const SITES: SiteSpec[] = [
  { name: "relayhost", nat: "none" },
  { name: "superhost", nat: "none" },
  { name: "symmetric", nat: "symmetric" },
  { name: "symmetric-2", nat: "symmetric" },
  { name: UDP_BLOCKED_SITE, nat: "port-restricted-cone", blockUdp: true },
  { name: "cone-a", nat: "full-cone" },
  { name: "cone-b", nat: "port-restricted-cone" },
];
/** Requester site -> [peer site, app port]. */
const PAIRS = [
  { from: "symmetric", to: "symmetric-2", app: "127.0.0.1:10000" },
  { from: UDP_BLOCKED_SITE, to: "symmetric", app: "127.0.0.1:10001" },
  { from: "cone-a", to: "cone-b", app: "127.0.0.1:10002" },
];
const pairOf = (from: string) => PAIRS.find((p) => p.from === from)!;
const RELAYED = ["relay-private", "relay-super", "relay-server"];

const reason = labSkipReason([["tcpdump", "tcpdump"]]);
if (reason) console.warn(`relay e2e tests skipped: ${reason}`);

describe.skipIf(reason)("relays in the NAT lab", () => {
  let lab: Lab;
  let workDir: string;
  let emptyDir: string;
  let script: ReturnType<typeof writeLabScripts>;
  const procs = new Map<string, Proc>();
  const figures: string[] = [];

  const hostOf = (site: string) => lab.sites[site]!.hostNs;
  const peerStatus = async (from: string, to: string) => (await labClientStatus(lab, hostOf(from), emptyDir, STATUS_PORT)).peers[to];
  const blockRule = (verb: "add" | "delete") => {
    const other = lab.sites["cone-b"]!.publicIp;
    const script =
      verb === "add"
        ? `add table ip blockpeer\nadd chain ip blockpeer f { type filter hook forward priority -10; }\nadd rule ip blockpeer f ip daddr ${other} drop\nadd rule ip blockpeer f ip saddr ${other} drop\n`
        : "delete table ip blockpeer\n";
    return lab.exec(lab.sites["cone-a"]!.routerNs, ["nft", "-f", "-"], { input: script });
  };

  async function startClient(site: string, extra: string[] = [], token?: string): Promise<void> {
    const apps: LabApp[] = PAIRS.filter((p) => p.from === site).map((p) => ({ name: `to-${p.to}`, protocol: "tcp", listen: p.app, peer: p.to, target: SINK }));
    const node = site === "relayhost" ? "relay1" : site === "superhost" ? "super1" : site;
    const expose = PAIRS.some((p) => p.to === site) ? [SINK] : [];
    const config = writeClientConfig(lab, join(workDir, "clients", site), { node, statusPort: STATUS_PORT, apps, extra, token, expose });
    procs.set(site, await startLabClient(lab, hostOf(site), config, emptyDir));
  }

  beforeAll(async () => {
    await cleanupStaleLabs();
    workDir = mkdtempSync(join(tmpdir(), "inp2p-e2e-relay-"));
    emptyDir = join(workDir, "cwd");
    mkdirSync(emptyDir);
    script = writeLabScripts(join(workDir, "scripts"));
    lab = await labUp({ sites: SITES });
    expect((await blockRule("add")).code, "blocking rule on cone-a's router").toBe(0);
    procs.set("server", await startLabServer(lab, join(workDir, "server"), ["relay_bw = 2000", "prefer_super_relays = true", 'trusted_relays = ["bob/super1"]', "[[server.users]]", 'name = "bob"', `token = "${BOB_TOKEN}"`]));
    for (const site of new Set(PAIRS.map((p) => p.to))) lab.spawn(hostOf(site), [BUN, script("sink.ts"), SINK]);
    for (const site of new Set(PAIRS.map((p) => p.to))) await listening(lab, hostOf(site), "-t", SINK);
    await startClient("relayhost", ["relay = true", `relay_port = ${RELAY_PORT}`, "bw = 2000"]);
    await startClient("superhost", ["super = true", `relay_port = ${RELAY_PORT}`, "bw = 2000"], BOB_TOKEN);
    for (const host of ["relayhost", "superhost"]) await procs.get(host)!.waitForOutput(/relaying for/, 10_000);
    const server = procs.get("server")!;
    await waitFor("both relay offers at the server", () => (/offers to relay node=relay1/.test(server.output) && /offers to relay node=super1/.test(server.output)) || undefined, 10_000);
    await Promise.all(SITES.filter((s) => !["relayhost", "superhost"].includes(s.name)).map((s) => startClient(s.name)));
  }, 120_000);

  afterAll(async () => {
    for (const proc of procs.values()) await proc.stop();
    await lab?.down();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    if (figures.length) console.log(["relay e2e figures:", ...figures.map((f) => `  ${f}`)].join("\n"));
  });

  it("symmetric -> symmetric-2 links through the private relay; 64 MiB intact; the relay sees no plaintext", async () => {
    const pair = pairOf("symmetric");
    const link = await waitFor("a relayed link", async () => ((await peerStatus(pair.from, pair.to))?.link ? peerStatus(pair.from, pair.to) : undefined), RELAYED_LINK_WITHIN_MS, 250);
    expect({ link: link.link, relay: link.relay }).toEqual({ link: "relay-private", relay: "default/relay1" });

    const pcap = join(workDir, "relay.pcap");
    const capture = spawnIn(lab, hostOf("relayhost"), emptyDir, ["tcpdump", "-i", "any", "-s", String(CAPTURE_SNAPLEN), "-U", "-w", pcap, "tcp", "port", String(RELAY_PORT)]);
    await capture.waitForOutput(/listening on/, 10_000);
    const t = await sendThrough(lab, hostOf(pair.from), emptyDir, script("send.ts"), pair.app, BIG_BYTES, TRANSFER_TIMEOUT_MS, MARKER);
    await new Promise((r) => setTimeout(r, 500));
    capture.child.kill("SIGINT");
    await capture.exited;
    expect(isIntact(t, BIG_BYTES), `64 MiB through the relay: ${JSON.stringify(t)}`).toBe(true);
    figures.push(`symmetric -> symmetric-2 via relay-private: 64 MiB in ${t.ms} ms = ${(BIG_BYTES / MiB / (t.ms / 1000)).toFixed(1)} MiB/s`);
    const captured = readFileSync(pcap);
    // Each data packet is in the capture (up to the snap length): at least one MiB's worth of packets.
    expect(captured.length, "bytes captured at the relay").toBeGreaterThan(MiB);
    expect(captured.includes(Buffer.from(MARKER)), "the marker text in the relay's capture").toBe(false);
    expect(captured.includes(Buffer.from(MARKER.slice(0, 8))), "a part of the marker in the relay's capture").toBe(false);
  }, 150_000);

  it("the UDP-blocked site links to a symmetric peer through the private relay, 64 MiB intact", async () => {
    const pair = pairOf(UDP_BLOCKED_SITE);
    const link = await waitFor("a relayed link", async () => ((await peerStatus(pair.from, pair.to))?.link ? peerStatus(pair.from, pair.to) : undefined), RELAYED_LINK_WITHIN_MS, 250);
    expect({ link: link.link, relay: link.relay }).toEqual({ link: "relay-private", relay: "default/relay1" });
    const t = await sendThrough(lab, hostOf(pair.from), emptyDir, script("send.ts"), pair.app, BIG_BYTES, TRANSFER_TIMEOUT_MS);
    expect(isIntact(t, BIG_BYTES), `64 MiB through the relay: ${JSON.stringify(t)}`).toBe(true);
    figures.push(`udp-blocked -> symmetric via relay-private: 64 MiB in ${t.ms} ms = ${(BIG_BYTES / MiB / (t.ms / 1000)).toFixed(1)} MiB/s`);
  }, 150_000);

  it("a link that started relayed moves to a direct path when the blocking rule is lifted", async () => {
    const pair = pairOf("cone-a");
    const relayed = await waitFor("a link", async () => ((await peerStatus(pair.from, pair.to))?.link ? peerStatus(pair.from, pair.to) : undefined), RELAYED_LINK_WITHIN_MS, 250);
    expect(relayed.link, "the first link, with all traffic between the sites dropped").toBeOneOf(RELAYED);
    expect((await blockRule("delete")).code, "lifting the rule").toBe(0);
    const liftedAt = Date.now();
    const direct = await waitFor("a direct link", async () => {
      const now = await peerStatus(pair.from, pair.to);
      return (DIRECT_LINK_KINDS as readonly string[]).includes(now?.link) ? now : undefined;
    }, UPGRADE_WITHIN_MS, 500);
    figures.push(`cone-a -> cone-b: ${relayed.link} until the rule was lifted, then ${direct.link} ${Date.now() - liftedAt} ms later`);
    const t = await sendThrough(lab, hostOf(pair.from), emptyDir, script("send.ts"), pair.app, 8 * MiB, 30_000);
    expect(isIntact(t, 8 * MiB), `8 MiB over the direct link: ${JSON.stringify(t)}`).toBe(true);
  }, 90_000);

  it("killing the relay: new connections work through the next tier within 10 s, the super relay, then the server", async () => {
    const pair = pairOf("symmetric");
    for (const [host, next] of [
      ["relayhost", { link: "relay-super", relay: "bob/super1" }],
      ["superhost", { link: "relay-server", relay: "server" }],
    ] as const) {
      procs.get(host)!.child.kill("SIGKILL");
      const killedAt = Date.now();
      let last: unknown;
      let ok = false;
      while (!ok && Date.now() - killedAt < FAILOVER_WITHIN_MS) {
        const t = await sendThrough(lab, hostOf(pair.from), emptyDir, script("send.ts"), pair.app, MiB, 4_000);
        ok = isIntact(t, MiB);
        last = t;
      }
      const tookMs = Date.now() - killedAt;
      expect(ok, `a new connection through the app within ${FAILOVER_WITHIN_MS / 1000} s of killing ${host} (last: ${JSON.stringify(last)})`).toBe(true);
      expect(await peerStatus(pair.from, pair.to)).toMatchObject(next);
      figures.push(`${host} killed: symmetric -> symmetric-2 works again through ${next.link} after ${tookMs} ms`);
    }
  }, 60_000);
});
