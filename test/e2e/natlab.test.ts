// The NAT lab is what it claims, checked without inp2p's code: Debian's RFC 3489 `stun` client
// against Debian's `stund`, plus socat for loss and TCP. Needs root, iproute2, nftables, stun-client,
// stun-server and socat (scripts/natlab/deps.sh installs them); skipped with the reason otherwise.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { ChildProcess } from "node:child_process";
import { cleanupStaleLabs, hasCommand, labSupport, labUp, listNamespaces, run, LAB_PREFIX, type Lab, type NatKind } from "../../scripts/natlab/lab.ts";
import { BUN, waitFor } from "../helpers/processes.ts";

const LAB_TS = resolve(import.meta.dirname, "../../scripts/natlab/lab.ts");
const STUN_TIMEOUT_MS = 15_000;
const LOSS_PERCENT = 30;
const PACKET_COUNT = 200;
const UDP_SINK_PORT = 9000;
const TCP_ECHO_PORT = 9001;

// What the stun client (0.97) prints and exits with for each NAT; the exit code encodes the type.
const STUN_VERDICTS: Record<NatKind | "blocked", { line: string; code: number }> = {
  none: { line: "Open", code: 0x01 },
  "full-cone": { line: "Independent Mapping, Independent Filter, preserves ports, no hairpin", code: 0x13 },
  "restricted-cone": { line: "Independent Mapping, Address Dependent Filter, preserves ports, no hairpin", code: 0x15 },
  "port-restricted-cone": { line: "Independent Mapping, Port Dependent Filter, preserves ports, no hairpin", code: 0x17 },
  symmetric: { line: "Dependent Mapping, random port, no hairpin", code: 0x18 },
  // The stun client's own port-prediction check does not see the counter (it says "random port" too).
  "symmetric-sequential": { line: "Dependent Mapping, random port, no hairpin", code: 0x18 },
  blocked: { line: "Blocked or could not reach STUN server", code: 0x1c },
};
const KINDS: NatKind[] = ["none", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric"];

function skipReason(): string | undefined {
  const support = labSupport();
  if (!support.ok) return support.reason;
  for (const [command, pkg] of [["stun", "stun-client"], ["stund", "stun-server"], ["socat", "socat"]]) {
    if (!hasCommand(command!)) return `\`${command}\` missing (apt package ${pkg}; run scripts/natlab/deps.sh)`;
  }
  return undefined;
}
const reason = skipReason();
if (reason) console.warn(`natlab e2e tests skipped: ${reason}`);

function isAlive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

describe.skipIf(reason)("NAT lab", () => {
  let lab: Lab;
  let udpSink: ChildProcess;
  let udpSinkOutput = "";

  const listening = (ns: string, proto: "-u" | "-t", address: string) =>
    waitFor(`${address} listening in ${ns}`, async () => (await lab.exec(ns, ["ss", "-Hln", proto])).stdout.includes(address), 5_000);

  async function stun(site: string) {
    const result = await lab.exec(lab.sites[site]!.hostNs, ["stun", lab.server.ip, "-v"], { timeoutMs: STUN_TIMEOUT_MS });
    const output = result.stdout + result.stderr; // -v writes the decoded messages to stderr
    return {
      line: output.match(/^Primary: (.*?)\s*$/m)?.[1],
      code: result.code,
      mappedIp: output.match(/^MappedAddress = ([\d.]+):/m)?.[1],
    };
  }

  async function sendUdp(site: string, payload: string): Promise<void> {
    const script = `const s = require("node:dgram").createSocket("udp4"); let n = 0;
      const t = setInterval(() => { s.send(${JSON.stringify(payload)}, ${UDP_SINK_PORT}, "${lab.server.ip}");
        if (++n === ${PACKET_COUNT}) { clearInterval(t); setTimeout(() => s.close(), 100); } }, 1);`;
    const result = await lab.exec(lab.sites[site]!.hostNs, [BUN, "-e", script], { timeoutMs: 10_000 });
    expect(result.code, result.stderr).toBe(0);
  }

  const received = (payload: string) => udpSinkOutput.split(payload).length - 1;

  beforeAll(async () => {
    await cleanupStaleLabs();
    const startedMs = Date.now();
    lab = await labUp({
      sites: [
        ...KINDS.map((nat) => ({ name: nat, nat })),
        { name: "lossy", nat: "full-cone", lossPercent: LOSS_PERCENT },
        { name: "blocked", nat: "port-restricted-cone", blockUdp: true },
      ],
    });
    console.log(`natlab: lab ${lab.id} up in ${Date.now() - startedMs} ms`);
    const srv = lab.server.ns;
    lab.spawn(srv, ["stund", "-h", lab.server.ip, "-a", lab.server.altIp]);
    udpSink = lab.spawn(srv, ["socat", "-u", `UDP-RECV:${UDP_SINK_PORT},bind=${lab.server.ip}`, "STDOUT"]);
    udpSink.stdout!.on("data", (d) => (udpSinkOutput += d));
    lab.spawn(srv, ["socat", `TCP-LISTEN:${TCP_ECHO_PORT},bind=${lab.server.ip},reuseaddr,fork`, "EXEC:cat"]);
    await listening(srv, "-u", `${lab.server.altIp}:3479`);
    await listening(srv, "-u", `${lab.server.ip}:${UDP_SINK_PORT}`);
    await listening(srv, "-t", `${lab.server.ip}:${TCP_ECHO_PORT}`);
  });

  afterAll(async () => {
    await lab?.down();
  });

  it("each site's NAT is classified by the stun client as the kind it was built as", async () => {
    const results = await Promise.all(KINDS.map(stun));
    KINDS.forEach((kind, i) => {
      expect({ kind, ...results[i] }).toEqual({ kind, line: STUN_VERDICTS[kind].line, code: STUN_VERDICTS[kind].code, mappedIp: lab.sites[kind]!.publicIp });
    });
  });

  it(`a site with ${LOSS_PERCENT}% loss loses about that much UDP, and none once loss is set to 0`, async () => {
    await sendUdp("lossy", "a\n");
    await lab.setLoss("lossy", 0);
    await sendUdp("lossy", "b\n");
    // One path, one sink, in order: once the b batch is in, every "a" that made it is in too.
    await waitFor("the lossless batch at the sink", () => received("b\n") >= PACKET_COUNT - 2, 10_000);
    console.log(`natlab: ${received("a\n")} of ${PACKET_COUNT} datagrams through ${LOSS_PERCENT}% loss`);
    const expected = PACKET_COUNT * (1 - LOSS_PERCENT / 100);
    expect(received("a\n")).toBeGreaterThan(expected - 40);
    expect(received("a\n")).toBeLessThan(expected + 40);
  });

  it("a site with UDP blocked gets no UDP through while TCP works, until unblocked", async () => {
    expect(await stun("blocked")).toMatchObject({ line: STUN_VERDICTS.blocked.line, code: STUN_VERDICTS.blocked.code });
    const echo = await lab.exec(lab.sites.blocked!.hostNs, ["socat", "-T", "3", "-", `TCP:${lab.server.ip}:${TCP_ECHO_PORT},connect-timeout=3`], {
      input: "hello over tcp\n",
      timeoutMs: 5_000,
    });
    expect(echo.stdout).toBe("hello over tcp\n");

    await lab.setBlockUdp("blocked", false);
    expect(await stun("blocked")).toMatchObject(STUN_VERDICTS["port-restricted-cone"]);
  });

  it("labUp is idempotent for an id, and cleanupStaleLabs removes a lab whose process died (and only that)", async () => {
    const id = `stale${lab.id}`;
    const dir = mkdtempSync(join(tmpdir(), "natlab-"));
    try {
      const script = join(dir, "orphan.ts");
      writeFileSync(
        script,
        `import { labUp } from ${JSON.stringify(LAB_TS)};
        await labUp({ id: "${id}", sites: [{ name: "a", nat: "symmetric" }] });
        const lab = await labUp({ id: "${id}", sites: [{ name: "a", nat: "symmetric" }] });
        lab.spawn(lab.sites.a.hostNs, ["sleep", "60"], { stdio: "ignore" }).unref();
        console.log(lab.namespaces.join(" "));
        process.exit(0);`,
      );
      const orphan = await run([BUN, script], { timeoutMs: 10_000 });
      expect(orphan.code, orphan.stderr).toBe(0);
      const namespaces = orphan.stdout.trim().split(" ");
      expect((await listNamespaces(`${LAB_PREFIX}${id}-`)).sort()).toEqual([...namespaces].sort());
      const sleeper = Number((await run(["ip", "netns", "pids", `${LAB_PREFIX}${id}-h0`])).stdout.trim());
      expect(isAlive(sleeper)).toBe(true);

      const removed = await cleanupStaleLabs();
      expect(removed.sort()).toEqual([...namespaces].sort());
      expect(await listNamespaces(`${LAB_PREFIX}${id}-`)).toEqual([]);
      expect(isAlive(sleeper)).toBe(false);
      expect((await listNamespaces(`${LAB_PREFIX}${lab.id}-`)).sort()).toEqual([...lab.namespaces].sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await cleanupStaleLabs(`${LAB_PREFIX}${id}-`, { all: true });
    }
  });

  it("down removes every namespace and process of the lab, and can be called twice", async () => {
    const stund = Number((await run(["ip", "netns", "pids", lab.server.ns])).stdout.trim().split(/\s+/)[0]);
    expect(isAlive(stund)).toBe(true);
    const startedMs = Date.now();
    await lab.down();
    console.log(`natlab: lab ${lab.id} down in ${Date.now() - startedMs} ms`);
    expect(await listNamespaces(`${LAB_PREFIX}${lab.id}-`)).toEqual([]);
    expect(isAlive(stund)).toBe(false);
    await lab.down();
  });
});
