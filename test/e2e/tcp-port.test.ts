// The local port of the TCP punch stays ours between refreshes of its mapping, even on a host whose other
// programs open connections from every port the kernel will hand out (a loaded CI host did: the refresh
// found its port taken and moved, so the mapping peers were told was no longer the one a punch used).
// Runs tcp-port-probe.ts in a network namespace whose ephemeral port range is a few ports wide. Needs root
// and iproute2.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BUN, REPO_ROOT } from "../helpers/processes.ts";
import { labSkipReason } from "./helpers.ts";

const NAMESPACE = `inp2p-tcpport-${process.pid}`;
const EPHEMERAL_RANGE: [number, number] = [40_000, 40_007];
const PROBE_TIMEOUT_MS = 30_000;
// Outside the ephemeral range: STUN UDP (2 ports), STUN TCP (2 ports), the endpoint's listener, the others' target.
const FIXED_PORTS = [5_000, 5_010, 5_020, 5_030];

const reason = labSkipReason();
if (reason) console.warn(`TCP port e2e test skipped: ${reason}`);

describe.skipIf(reason)("TCP punch port", () => {
  afterAll(() => {
    execFileSync("ip", ["netns", "del", NAMESPACE], { stdio: "ignore" });
  });

  it("is held between refreshes: connections of others that take every other port never get it", () => {
    execFileSync("ip", ["netns", "add", NAMESPACE]);
    execFileSync("ip", ["-n", NAMESPACE, "link", "set", "lo", "up"]);
    execFileSync("ip", ["netns", "exec", NAMESPACE, "sysctl", "-qw", `net.ipv4.ip_local_port_range=${EPHEMERAL_RANGE.join(" ")}`]);
    const output = execFileSync("ip", ["netns", "exec", NAMESPACE, BUN, join(REPO_ROOT, "test/e2e/tcp-port-probe.ts"), ...FIXED_PORTS.map(String)], {
      cwd: REPO_ROOT,
      timeout: PROBE_TIMEOUT_MS,
      encoding: "utf8",
    });
    const { first, second, otherPorts } = JSON.parse(output.trim().split("\n").at(-1)!) as {
      first: { localPort: number; mapped: string } | null;
      second: { localPort: number; mapped: string } | null;
      otherPorts: number[];
    };
    expect(first?.mapped).toBe(`127.0.0.1:${first?.localPort}`);
    expect(second).toEqual(first);
    // The others did fill the range, all but the held port.
    const [low, high] = EPHEMERAL_RANGE;
    expect(otherPorts.length).toBeGreaterThanOrEqual(high - low - 1);
    expect(otherPorts.every((port) => port >= low && port <= high)).toBe(true);
    expect(otherPorts).not.toContain(first?.localPort);
  }, PROBE_TIMEOUT_MS + 10_000);
});
