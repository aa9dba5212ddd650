// wireguard-go between the lab's public sites a and b, for the benches that measure it beside inp2p
// (sdwan.ts, ping-trace.ts): a userspace wg interface at each end, keys made per run. Needs Debian's
// wireguard-go and wireguard-tools (the benches install them).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Lab } from "../natlab/lab.ts";
import { waitFor } from "../../test/helpers/processes.ts";

const SUBNET_PREFIX = "10.31.0";
const PORT = 51820;
const SOCKET_DIR = "/var/run/wireguard";
const UP_TIMEOUT_MS = 30_000;
const SITES = ["a", "b"] as const;

export interface WireguardPair {
  label: string;
  /** b's address on the wg interface. */
  ip: string;
  pids: number[];
}

/**
 * Starts wireguard-go at a and b (spawned with `spawn`, which the caller stops), keys in `dir`; each
 * interface's UAPI socket goes into `sockets`, for the caller to remove. Resolves once a reaches b.
 */
export async function startWireguard(lab: Lab, dir: string, spawn: (ns: string, argv: string[]) => number, sockets: string[]): Promise<WireguardPair> {
  const hostNs = (site: string) => lab.sites[site]!.hostNs;
  const must = async (ns: string, argv: string[], input?: string) => {
    const result = await lab.exec(ns, argv, { input, timeoutMs: 60_000 });
    if (result.code !== 0) throw new Error(`\`${argv.join(" ")}\` in ${ns} failed (${result.code}): ${result.stderr.trim()}`);
    return result.stdout;
  };
  mkdirSync(dir, { mode: 0o700 });
  const keys = { a: { priv: "", pub: "" }, b: { priv: "", pub: "" } };
  for (const site of SITES) {
    keys[site].priv = (await must(hostNs(site), ["wg", "genkey"])).trim();
    keys[site].pub = (await must(hostNs(site), ["wg", "pubkey"], keys[site].priv)).trim();
    writeFileSync(join(dir, `${site}.key`), keys[site].priv + "\n", { mode: 0o600 });
  }
  const pids: number[] = [];
  for (const [i, site] of SITES.entries()) {
    const other = SITES[1 - i]!;
    // The UAPI socket is /var/run/wireguard/<name>.sock in every namespace: the lab id keeps the name ours.
    const device = `wg${lab.id}${site}`;
    sockets.push(join(SOCKET_DIR, `${device}.sock`));
    pids.push(spawn(hostNs(site), ["wireguard-go", "-f", device]));
    await waitFor(`wireguard-go's ${device}`, async () => (await lab.exec(hostNs(site), ["wg", "show", device])).code === 0 || undefined, UP_TIMEOUT_MS, 200);
    await must(hostNs(site), [
      "wg", "set", device, "listen-port", String(PORT), "private-key", join(dir, `${site}.key`),
      "peer", keys[other].pub, "endpoint", `${lab.sites[other]!.publicIp}:${PORT}`, "allowed-ips", `${SUBNET_PREFIX}.${2 - i}/32`,
    ]);
    await must(hostNs(site), ["ip", "addr", "add", `${SUBNET_PREFIX}.${i + 1}/24`, "dev", device]);
    await must(hostNs(site), ["ip", "link", "set", device, "up"]);
  }
  const ip = `${SUBNET_PREFIX}.2`;
  await waitFor("wireguard-go answering", async () => (await lab.exec(hostNs("a"), ["ping", "-c", "1", "-W", "1", ip])).code === 0 || undefined, UP_TIMEOUT_MS, 300);
  const version = (await lab.exec(hostNs("a"), ["wireguard-go", "--version"])).stdout.match(/v?([\d.]+)/)?.[1];
  return { label: `wireguard-go${version ? ` ${version}` : ""}`, ip, pids };
}
