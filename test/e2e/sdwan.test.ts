// SDWAN across the NAT lab (issue 7): inp2ps with [server.sdwan], an inp2pc with [client.sdwan] at a
// public site, a full-cone site (which also routes its LAN for the others), and two symmetric sites
// (their pair can only be relayed). Real TUN devices, real ping and iperf3.
// Needs root, iproute2, nftables, iperf3 and ping.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupStaleLabs, labUp, type Lab, type SiteSpec } from "../../scripts/natlab/lab.ts";
import { ADDRESS_CHECK_INTERVAL_MS } from "../../src/nat/index.ts";
import { waitFor, type Proc } from "../helpers/processes.ts";
import { DIRECT_LINK_KINDS, labClientStatus, labSkipReason, startLabClient, startLabServer, writeClientConfig } from "./helpers.ts";

const STATUS_PORT = 27190;
const SUBNET = "10.10.0.0/24";
const PUBLIC_STATIC_IP = "10.10.0.100";
const SITES: SiteSpec[] = [
  { name: "public", nat: "none" },
  { name: "full-cone", nat: "full-cone" },
  { name: "symmetric", nat: "symmetric" },
  { name: "symmetric-2", nat: "symmetric" },
];
const ROUTER_SITE = "full-cone";
const lanOf = (hostIp: string) => `${hostIp.split(".").slice(0, 3).join(".")}.0/24`;
/** The first ping may wait for a link (symmetric pairs: a 6 s direct attempt, then a relay). */
const FIRST_PING_WITHIN_MS = 20_000;
const IPERF_SECONDS = 3;

const reason = labSkipReason([
  ["iperf3", "iperf3"],
  ["ping", "iputils-ping"],
]);
if (reason) console.warn(`SDWAN e2e tests skipped: ${reason}`);

describe.skipIf(reason)("SDWAN in the NAT lab", () => {
  let lab: Lab;
  let workDir: string;
  let emptyDir: string;
  let serverDir: string;
  let server: Proc | undefined;
  const clients = new Map<string, Proc>();
  const figures: string[] = [];

  const hostOf = (site: string) => lab.sites[site]!.hostNs;
  const status = (site: string) => labClientStatus(lab, hostOf(site), emptyDir, STATUS_PORT);
  const addressOf = async (site: string): Promise<string> => (await status(site)).sdwan.address;
  const startServer = () => startLabServer(lab, serverDir, ["[server.sdwan]", `subnet = "${SUBNET}"`, `static = { public = "${PUBLIC_STATIC_IP}" }`]);

  async function startClient(site: string, node = site): Promise<void> {
    const routes = site === ROUTER_SITE ? [lanOf(lab.sites[site]!.hostIp)] : [];
    const config = writeClientConfig(lab, join(workDir, "clients", node), {
      node,
      statusPort: STATUS_PORT,
      extra: ["[client.sdwan]", "enabled = true", `routes = ${JSON.stringify(routes)}`],
    });
    clients.set(site, await startLabClient(lab, hostOf(site), config, emptyDir));
    await waitFor(`${node}'s SDWAN address`, async () => (await status(site)).sdwan?.address ?? undefined, 10_000, 200);
  }

  /** `ping` from one site's host to an address: the replies received out of `count`, and the average RTT. */
  async function ping(site: string, ip: string, count: number, intervalS = 0.2): Promise<{ received: number; avgMs: number | null }> {
    const result = await lab.exec(hostOf(site), ["ping", "-n", "-q", "-c", String(count), "-i", String(intervalS), "-W", "1", ip], { timeoutMs: count * 2_000 + 5_000 });
    const received = Number(result.stdout.match(/(\d+) received/)?.[1] ?? 0);
    const avg = result.stdout.match(/= [\d.]+\/([\d.]+)\//)?.[1];
    return { received, avgMs: avg ? Number(avg) : null };
  }

  async function firstPing(site: string, ip: string): Promise<number> {
    const started = Date.now();
    while (Date.now() - started < FIRST_PING_WITHIN_MS) if ((await ping(site, ip, 1)).received === 1) return Date.now() - started;
    throw new Error(`no ping reply from ${ip} at ${site} within ${FIRST_PING_WITHIN_MS / 1000} s`);
  }

  /** iperf3 TCP from `site` to `ip` (a server already running there); received bits per second. */
  async function iperf(site: string, ip: string): Promise<number> {
    const result = await lab.exec(hostOf(site), ["iperf3", "-c", ip, "-t", String(IPERF_SECONDS), "-J"], { timeoutMs: (IPERF_SECONDS + 15) * 1000 });
    let report: any;
    try {
      report = JSON.parse(result.stdout);
    } catch {
      throw new Error(`iperf3 to ${ip} from ${site} failed (${result.code}): ${result.stderr.trim() || result.stdout.slice(-300)}`);
    }
    if (report.error) throw new Error(`iperf3 to ${ip} from ${site}: ${report.error}`);
    return report.end.sum_received.bits_per_second as number;
  }

  beforeAll(async () => {
    await cleanupStaleLabs();
    workDir = mkdtempSync(join(tmpdir(), "inp2p-e2e-sdwan-"));
    emptyDir = join(workDir, "cwd");
    serverDir = join(workDir, "server");
    mkdirSync(emptyDir);
    lab = await labUp({ sites: SITES });
    server = await startServer();
    // The full-cone site's host routes its LAN for the overlay; its router sends overlay replies back to it.
    const router = lab.sites[ROUTER_SITE]!;
    await lab.exec(router.hostNs, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    await lab.exec(router.routerNs, ["ip", "route", "add", SUBNET, "via", router.hostIp]);
    for (const site of SITES) lab.spawn(hostOf(site.name), ["iperf3", "-s"]);
    lab.spawn(router.routerNs, ["iperf3", "-s"]);
    for (const site of SITES) await startClient(site.name);
  }, 120_000);

  afterAll(async () => {
    for (const proc of clients.values()) await proc.stop();
    await server?.stop();
    await lab?.down();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    if (figures.length) console.log(["SDWAN e2e figures:", ...figures.map((f) => `  ${f}`)].join("\n"));
  });

  it("every node gets an address in the subnet (the static one where configured), all different", async () => {
    const addresses = await Promise.all(SITES.map((s) => addressOf(s.name)));
    expect(addresses[0]).toBe(PUBLIC_STATIC_IP);
    expect(new Set(addresses).size).toBe(SITES.length);
    for (const ip of addresses) expect(ip).toMatch(/^10\.10\.0\.\d+$/);
    const map = (await status("public")).sdwan;
    expect(map.members, "the other members the public node knows").toBe(SITES.length - 1);
  });

  it("ping between every pair of virtual IPs, direct and relayed pairs", async () => {
    const addresses = new Map(await Promise.all(SITES.map(async (s) => [s.name, await addressOf(s.name)] as const)));
    for (const [i, a] of SITES.entries()) {
      for (const b of SITES.slice(i + 1)) {
        const firstMs = await firstPing(a.name, addresses.get(b.name)!);
        const { received, avgMs } = await ping(a.name, addresses.get(b.name)!, 5);
        const link = (await status(a.name)).peers[b.name]?.link;
        figures.push(`ping ${a.name} -> ${b.name}: first reply after ${firstMs} ms, then ${received}/5, avg ${avgMs} ms over ${link}`);
        expect(received, `${a.name} -> ${b.name}: replies out of 5`).toBeGreaterThanOrEqual(4);
        if (a.name === "symmetric" && b.name === "symmetric-2") expect(link).toMatch(/^relay-/);
        if (a.name === "public" && b.name === "full-cone") expect(DIRECT_LINK_KINDS as readonly string[]).toContain(link);
      }
    }
  }, 180_000);

  it("iperf3 TCP across the overlay: a direct pair, a relayed pair, and a LAN subnet routed by a node", async () => {
    const direct = await iperf("full-cone", await addressOf("public"));
    const relayed = await iperf("symmetric", await addressOf("symmetric-2"));
    const routerLanIp = lab.sites[ROUTER_SITE]!.hostIp.replace(/\.\d+$/, ".1");
    const routed = await iperf("symmetric", routerLanIp);
    figures.push(`iperf3 (${IPERF_SECONDS} s): direct ${(direct / 1e6).toFixed(0)} Mbit/s, relayed ${(relayed / 1e6).toFixed(0)} Mbit/s, routed LAN ${(routed / 1e6).toFixed(0)} Mbit/s`);
    for (const [what, bps] of [["direct", direct], ["relayed", relayed], ["routed", routed]] as const) expect(bps, `${what} iperf3 bits per second`).toBeGreaterThan(1e6);
  }, 90_000);

  it("a server restart: established overlay traffic keeps flowing, every node keeps its address, and no node takes its own SDWAN address for a new local address", async () => {
    const before = await addressOf("full-cone");
    const logFrom = new Map([...clients].map(([site, proc]) => [site, proc.output.length]));
    const target = await addressOf("public");
    const pings = ping("full-cone", target, 40, 0.25);
    await new Promise((r) => setTimeout(r, 2_000));
    await server!.stop();
    await new Promise((r) => setTimeout(r, 3_000));
    server = await startServer();
    const { received } = await pings;
    figures.push(`server restart: ${received}/40 pings full-cone -> public answered across it`);
    expect(received, "pings answered out of 40 while the server restarted").toBeGreaterThanOrEqual(36);
    await waitFor("full-cone back on the virtual network", async () => ((await status("full-cone")).server.state === "online" ? true : undefined), 30_000, 500);
    await waitFor("the same address after the server restart", async () => ((await addressOf("full-cone")) === before ? true : undefined), 15_000, 500);
    for (const site of SITES) await waitFor(`${site.name} back on the virtual network`, async () => ((await status(site.name)).server.state === "online" ? true : undefined), 30_000, 500);
    // The nodes joined the virtual network again (their devices' addresses set again): wait past their next local address checks.
    await new Promise((r) => setTimeout(r, ADDRESS_CHECK_INTERVAL_MS + 2_000));
    for (const [site, proc] of clients) expect(proc.output.slice(logFrom.get(site)), `${site}'s log since the server restart`).not.toMatch(/local addresses changed/);
  }, 120_000);

  it("a node restart gets the same address back; a node that leaves drops from every map and its address is not reused", async () => {
    const before = await addressOf("symmetric-2");
    await clients.get("symmetric-2")!.stop();
    await waitFor("symmetric-2 gone from every map", async () => {
      const counts = await Promise.all(["public", "full-cone", "symmetric"].map(async (s) => (await status(s)).sdwan.members));
      return counts.every((n) => n === SITES.length - 2) ? true : undefined;
    }, 15_000, 500);
    await startClient("symmetric-2");
    expect(await addressOf("symmetric-2"), "address after the node's restart").toBe(before);
    await clients.get("symmetric-2")!.stop();
    await startClient("symmetric-2", "newcomer");
    const newcomer = await addressOf("symmetric-2");
    expect(newcomer, "a new node's address while the departed node's is reserved").not.toBe(before);
    expect(await firstPing("public", newcomer)).toBeLessThan(FIRST_PING_WITHIN_MS);
  }, 120_000);
});
