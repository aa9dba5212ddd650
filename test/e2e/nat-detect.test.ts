// inp2p's NAT detection across the lab's real NATs: inp2ps runs in the lab's server namespace with an
// alternate IP; from each site `inp2pc nat --json` must report the NAT the lab built, and Debian's
// independent `stun` client, pointed at inp2ps, must agree. Needs root and the lab's packages.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupStaleLabs, labUp, type Lab, type NatKind } from "../../scripts/natlab/lab.ts";
import { BUN, INP2PC, waitFor } from "../helpers/processes.ts";
import { inNamespace as inNamespaceAt, labAdminCredential, labSkipReason, startLabServer, STUN_UDP1, TOKEN, WS_PORT } from "./helpers.ts";

const EXPECTED_NAT_TYPE: Record<NatKind, string> = {
  none: "public",
  "full-cone": "full-cone",
  "restricted-cone": "restricted-cone",
  "port-restricted-cone": "port-restricted-cone",
  symmetric: "symmetric",
  "symmetric-sequential": "symmetric",
};
// How each router picks ports for new mappings: cone NATs keep the host's port (one host each),
// "symmetric" picks at random, "symmetric-sequential" counts up by one.
const EXPECTED_ALLOCATION: Record<NatKind, { kind: string; delta?: number }> = {
  none: { kind: "preserving" },
  "full-cone": { kind: "preserving" },
  "restricted-cone": { kind: "preserving" },
  "port-restricted-cone": { kind: "preserving" },
  symmetric: { kind: "random" },
  "symmetric-sequential": { kind: "sequential", delta: 1 },
};
// What Debian's stun client (0.97) prints for each NAT (see natlab.test.ts, where it runs against stund).
const STUN_CLIENT_VERDICT: Record<NatKind, RegExp> = {
  none: /^Primary: Open/m,
  "full-cone": /^Primary: Independent Mapping, Independent Filter/m,
  "restricted-cone": /^Primary: Independent Mapping, Address Dependent Filter/m,
  "port-restricted-cone": /^Primary: Independent Mapping, Port Dependent Filter/m,
  symmetric: /^Primary: Dependent Mapping/m,
  "symmetric-sequential": /^Primary: Dependent Mapping/m,
};
const KINDS = Object.keys(EXPECTED_NAT_TYPE) as NatKind[];

const reason = labSkipReason([["stun", "stun-client"]]);
if (reason) console.warn(`NAT detection e2e tests skipped: ${reason}`);

describe.skipIf(reason)("NAT detection in the NAT lab", () => {
  let lab: Lab;
  let workDir: string;
  const detectionMs: Record<string, number> = {};

  const inNamespace = (ns: string, argv: string[]) => inNamespaceAt(lab, ns, workDir, argv);

  async function natJson(site: string) {
    const result = await inNamespace(lab.sites[site]!.hostNs, [BUN, INP2PC, "nat", "--json", "-serverhost", lab.server.ip]);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as { natType: string; mapping: string; filtering: string; publicAddress: string | null; tcp: boolean; durationMs: number; allocation?: { kind: string; delta?: number } };
  }

  beforeAll(async () => {
    await cleanupStaleLabs();
    workDir = mkdtempSync(join(tmpdir(), "inp2p-e2e-nat-"));
    lab = await labUp({
      sites: [...KINDS.map((nat) => ({ name: nat, nat })), { name: "blocked", nat: "port-restricted-cone", blockUdp: true }],
    });
    await startLabServer(lab, join(workDir, "server"));
  }, 60_000);

  afterAll(async () => {
    console.log(`NAT detection time per type (ms): ${JSON.stringify(detectionMs)}`);
    await lab?.down();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it.each(KINDS)("site %s: inp2pc nat reports the NAT the lab built, with its public address and port allocation", async (kind) => {
    const report = await natJson(kind);
    detectionMs[kind] = report.durationMs;
    expect(report.natType).toBe(EXPECTED_NAT_TYPE[kind]);
    expect(report.allocation).toEqual(EXPECTED_ALLOCATION[kind]);
    expect(report.publicAddress?.split(":")[0]).toBe(lab.sites[kind]!.publicIp);
    expect(report.tcp).toBe(true);
    expect(report.durationMs).toBeLessThan(3_500);
  });

  it.each(KINDS)("site %s: Debian's stun client, pointed at inp2ps, agrees", async (kind) => {
    const result = await inNamespace(lab.sites[kind]!.hostNs, ["stun", `${lab.server.ip}:${STUN_UDP1}`, "-v"]);
    expect(result.stdout + result.stderr).toMatch(STUN_CLIENT_VERDICT[kind]);
  });

  it("UDP blocked: udp-blocked within about 3 s, TCP still reachable, and the client still logs in", async () => {
    const report = await natJson("blocked");
    detectionMs.blocked = report.durationMs;
    expect(report.natType).toBe("udp-blocked");
    expect(report.tcp).toBe(true);
    expect(report.durationMs).toBeLessThan(3_500);

    const client = lab.spawn(lab.sites.blocked!.hostNs, [
      "sh", "-c", `cd "${workDir}" && exec "$@"`, "sh",
      BUN, INP2PC, "-serverhost", lab.server.ip, "-serverport", String(WS_PORT), "-node", "behind-blocked-udp", "-token", TOKEN, "-insecure",
      "--newconfig", "--config", join(workDir, "blocked-client", "inp2pc.toml"),
    ]);
    let output = "";
    client.stdout?.on("data", (d) => (output += d));
    client.stderr?.on("data", (d) => (output += d));
    await waitFor("login over TCP from the UDP-blocked site", () => output.includes("logged in"), 15_000);
    await waitFor("its NAT type reported", () => output.includes("NAT type: udp-blocked"), 10_000);
    client.kill();
  });

  it("detects again when the host's addresses change, and reports it to the server", async () => {
    const site = lab.sites["full-cone"]!;
    const client = lab.spawn(site.hostNs, [
      "sh", "-c", `cd "${workDir}" && exec "$@"`, "sh",
      BUN, INP2PC, "-serverhost", lab.server.ip, "-node", "moving", "-token", TOKEN, "-insecure",
      "--newconfig", "--config", join(workDir, "moving-client", "inp2pc.toml"),
    ]);
    let output = "";
    client.stdout?.on("data", (d) => (output += d));
    client.stderr?.on("data", (d) => (output += d));
    try {
      await waitFor("first detection", () => output.includes("NAT type: full-cone"), 15_000);
      const extraAddress = site.hostIp.replace(/\.2$/, ".3");
      const added = await lab.exec(site.hostNs, ["ip", "addr", "add", `${extraAddress}/24`, "dev", "eth0"]);
      expect(added.code, added.stderr).toBe(0);
      // The watcher compares addresses every 10 s.
      await waitFor("detection after the address change", () => /NAT type: full-cone.*local addresses changed/.test(output), 25_000);
      const nodes = await lab.exec(lab.server.ns, [
        BUN, "-e",
        `const r = await fetch("http://${lab.server.ip}:${WS_PORT}/api/v1/nodes", { headers: { authorization: "Bearer ${labAdminCredential(join(workDir, "server"))}" } }); console.log(await r.text());`,
      ]);
      const moving = (JSON.parse(nodes.stdout).nodes as { name: string; natType: string; publicAddress: string }[]).find((n) => n.name === "moving");
      expect(moving).toMatchObject({ natType: "full-cone" });
      expect(moving!.publicAddress.split(":")[0]).toBe(site.publicIp);
    } finally {
      client.kill();
    }
  }, 40_000);
});
