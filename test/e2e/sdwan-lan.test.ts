// The SDWAN over a lan link that carries pieces: TCP over the overlay goes as whole super-packets (one
// datagram per TSO super-packet of the sender's TUN device, written whole to the receiver's), and the
// bytes arrive intact. Two hosts on one LAN, each behind its own NAT router.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupStaleLabs, labUp, type Lab } from "../../scripts/natlab/lab.ts";
import { BUN, Proc, waitFor } from "../helpers/processes.ts";
import { isIntact, labClientStatus, labSkipReason, sendThrough, startLabClient, startLabServer, writeClientConfig, writeLabScripts } from "./helpers.ts";

const SUBNET = "10.10.0.0/24";
const STATUS_PORT = 27190;
const SINK_PORT = 5201;
const TRANSFER_BYTES = 64 * 1024 * 1024;
const TRANSFER_TIMEOUT_MS = 60_000;

const reason = labSkipReason();
if (reason) console.warn(`SDWAN lan e2e tests skipped: ${reason}`);

describe.skipIf(reason)("SDWAN over a lan link", () => {
  let lab: Lab;
  let workDir: string;
  let emptyDir: string;
  let script: ReturnType<typeof writeLabScripts>;
  const procs: Proc[] = [];
  const hostOf = (site: string) => lab.sites[site]!.hostNs;
  const status = (site: string) => labClientStatus(lab, hostOf(site), emptyDir, STATUS_PORT);

  beforeAll(async () => {
    await cleanupStaleLabs();
    workDir = mkdtempSync(join(tmpdir(), "inp2p-e2e-sdwan-lan-"));
    emptyDir = join(workDir, "cwd");
    mkdirSync(emptyDir);
    script = writeLabScripts(join(workDir, "scripts"));
    lab = await labUp({ sites: [{ name: "a", nat: "port-restricted-cone" }, { name: "b", nat: "symmetric", shareLanWith: "a" }] });
    procs.push(await startLabServer(lab, join(workDir, "server"), ["[server.sdwan]", `subnet = "${SUBNET}"`]));
    for (const site of ["a", "b"]) {
      const config = writeClientConfig(lab, join(workDir, site), { node: site, statusPort: STATUS_PORT, extra: ["[client.sdwan]", "enabled = true"] });
      procs.push(await startLabClient(lab, hostOf(site), config, emptyDir));
    }
  }, 120_000);

  afterAll(async () => {
    for (const proc of procs.reverse()) await proc.stop();
    await lab?.down();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it("64 MiB over TCP arrive intact, sent and taken as whole super-packets", async () => {
    const ip = await waitFor("b's SDWAN address", async () => (await status("b")).sdwan?.address ?? undefined, 15_000, 200);
    await waitFor("the overlay answering", async () => (await lab.exec(hostOf("a"), ["ping", "-c", "1", "-W", "1", ip])).code === 0 || undefined, 30_000, 300);
    let kind: string | undefined;
    await waitFor("a lan link from a to b", async () => ((kind = (await status("a")).peers.b?.link) === "lan") || undefined, 30_000, 300).catch((err: Error) => {
      throw new Error(`${err.message}; a's link to b: ${kind}`);
    });
    procs.push(new Proc(lab.spawn(hostOf("b"), [BUN, script("sink.ts"), `${ip}:${SINK_PORT}`])));
    const result = await waitFor(
      "the sink listening and the transfer done",
      async () => {
        const sent = await sendThrough(lab, hostOf("a"), emptyDir, script("send.ts"), `${ip}:${SINK_PORT}`, TRANSFER_BYTES, TRANSFER_TIMEOUT_MS);
        return sent.error?.includes("ECONNREFUSED") ? undefined : sent;
      },
      TRANSFER_TIMEOUT_MS * 2,
      300,
    );
    expect(isIntact(result, TRANSFER_BYTES), JSON.stringify(result)).toBe(true);
    const [a, b] = [(await status("a")).sdwan, (await status("b")).sdwan];
    expect(a.superPacketsOut, "super-packets a sent").toBeGreaterThan(0);
    expect(b.superPacketsIn, "super-packets b took").toBeGreaterThan(0);
    expect(b.dropped.refused, "packets b refused").toBe(0);
  }, 180_000);
});
