// The TUN device (src/sdwan/tun.ts) on a real device in a network namespace of its own: what the kernel
// answers to a packet written (here an echo reply) is read at once, without waiting for a wake-up (that
// was ~100 us of every idle ping's RTT); packets the kernel sends on its own (ping's) wake the reader, by
// the transmit tap, also after the interface went down and up (the tap opened again by the next read,
// the one right after a write too); a burst of 64 KB and 1 KB packets up to the largest IPv4 packet,
// queued at once, is read whole and in order, and so is a queue of 3,000 that the tap's wake-ups alone
// would leave partly unread; with the tap open no thread waits in poll(); close() takes the interface
// and the tap away. Needs root, iproute2 and ping.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TUN_DEVICE_PATH } from "../../src/sdwan/index.ts";
import { BUN, REPO_ROOT } from "../helpers/processes.ts";
import { labSkipReason } from "./helpers.ts";

const NAMESPACE = `inp2p-tuntest-${process.pid}`;
const PROBE_TIMEOUT_MS = 60_000;

const reason = labSkipReason([["ping", "iputils-ping"]]) ?? (existsSync(TUN_DEVICE_PATH) ? undefined : `${TUN_DEVICE_PATH} is missing`);
if (reason) console.warn(`TUN e2e tests skipped: ${reason}`);

describe.skipIf(reason)("TUN device", () => {
  afterAll(() => {
    execFileSync("ip", ["netns", "del", NAMESPACE], { stdio: "ignore" });
  });

  it("reads the kernel's answer to a written packet before any other I/O event, what the kernel sends unprompted (woken by the transmit tap, again after the interface went down and up), a burst whole and in order, and a queue of 3,000 in full; no thread in poll() beside the tap; lets go of the interface and the tap on close", () => {
    execFileSync("ip", ["netns", "add", NAMESPACE]);
    const output = execFileSync("ip", ["netns", "exec", NAMESPACE, BUN, join(REPO_ROOT, "test/e2e/tun-probe.ts")], { cwd: REPO_ROOT, timeout: PROBE_TIMEOUT_MS, encoding: "utf8" });
    const lines = output.trim().split("\n").map((line) => JSON.parse(line));
    const results = lines.slice(0, -2) as { sequence: number; atOnce: boolean; replied: boolean }[];
    const { pings, afterDownUp, tapsAfterDownUp, tapsAfterWrite, afterDownUpAndWrite } = lines.at(-2);
    expect(pings.requestsRead).toEqual([1, 2, 3]);
    expect(afterDownUp.requestsRead).toEqual([1, 2, 3]);
    expect(afterDownUpAndWrite.requestsRead).toEqual([1, 2, 3]);
    // While the tap is open the worker holds no poll(). The interface going down closes the tap, which
    // hands poll() back to the worker: after the interface came up, the first packet is the worker's, and
    // its read opens the tap again.
    expect(pings.wokenByTap).toBeGreaterThanOrEqual(2);
    expect(afterDownUp.wokenByTap).toBeGreaterThanOrEqual(1);
    // The interface going down closed the tap; the read right after a write opened it again.
    expect([tapsAfterDownUp, tapsAfterWrite]).toEqual([0, 1]);
    expect(afterDownUpAndWrite.wokenByTap).toBeGreaterThanOrEqual(2);
    const ipBytes = (icmpPayload: number) => icmpPayload + 28;
    expect(lines.at(-1)).toEqual({
      burstSizes: [[ipBytes(65_000), 3], [ipBytes(1_000), 150], [ipBytes(65_000), 2], [ipBytes(1_000), 60], [65_535, 3]],
      wholeReads: true,
      heldFloodRead: 3_000,
      idlePollWakes: null, // no thread waits in poll() while the tap is open: a packet wakes the JS thread alone
      interfaceGone: true,
      packetSocketsLeft: 0,
    });
    expect(results.map((result) => result.sequence)).toEqual([1, 2, 3, 4, 5]);
    expect(results.filter((result) => !result.replied)).toEqual([]);
    expect(results.filter((result) => !result.atOnce)).toEqual([]);
  }, PROBE_TIMEOUT_MS + 10_000);
});
