// The NAT watcher's schedule: detect at start-up, retry soon after a failed or inconclusive result,
// detect again as soon as the server answers while the last result was not settled, and re-check
// periodically. A scripted detect() stands in for STUN; the timers are real, with short periods.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, it } from "vitest";
import { createLogger, silentLogger } from "../../src/log/index.ts";
import { NatCache, natInfoOf, watchNat, type NatReport } from "../../src/nat/index.ts";
import type { NatInfo } from "../../src/protocol/index.ts";
import { tempDir, waitFor } from "../helpers/processes.ts";

function report(natType: NatReport["natType"], mapping: NatReport["mapping"] = natType === "udp-blocked" ? "unknown" : "endpoint-independent"): NatReport {
  return {
    natType,
    mapping,
    filtering: natType === "udp-blocked" ? "unknown" : "endpoint-independent",
    publicAddress: natType === "udp-blocked" ? null : "127.0.0.1:40000",
    portPreserved: natType !== "udp-blocked",
    hairpinning: null,
    tcp: true,
    tcpPublicAddress: null,
    localAddress: "127.0.0.1:40000",
    durationMs: 1,
    notes: [],
  };
}

/** A detect() that answers from `script` in turn (the last entry repeats), or throws for an Error entry; counts its calls. */
function scripted(script: (NatReport | Error)[]) {
  const calls: number[] = [];
  const results: string[] = [];
  const detect = async () => {
    const next = script[Math.min(calls.length, script.length - 1)]!;
    calls.push(Date.now());
    if (next instanceof Error) throw next;
    return next;
  };
  const onResult = (r: NatInfo) => results.push(r.natType);
  return { calls, results, detect, onResult };
}

const LONG_MS = 600_000;

describe("watchNat", () => {
  it("re-checks a settled result every recheckIntervalMs, and hands on only changes", async ({ expect, onTestFinished }) => {
    const s = scripted([report("public"), report("public"), report("full-cone")]);
    const watcher = watchNat({ detect: s.detect, onResult: s.onResult, logger: silentLogger, recheckIntervalMs: 50, retryBaseDelayMs: LONG_MS });
    onTestFinished(() => watcher.stop());
    await waitFor("4 detections", () => s.calls.length >= 4, 10_000, 10);
    expect(s.results).toEqual(["public", "full-cone"]);
  });

  it("retries soon while the result stays udp-blocked, failed or with an unknown mapping, and stops retrying once settled", async ({ expect, onTestFinished }) => {
    const s = scripted([report("udp-blocked"), new Error("network down"), report("symmetric", "unknown"), report("public")]);
    const watcher = watchNat({ detect: s.detect, onResult: s.onResult, logger: silentLogger, recheckIntervalMs: LONG_MS, retryBaseDelayMs: 20 });
    onTestFinished(() => watcher.stop());
    await waitFor("a settled result", () => s.results.includes("public"), 10_000, 10);
    expect(s.results).toEqual(["udp-blocked", "symmetric", "public"]);
    // Retries wait longer each time (20, 40, 80 ms), then the settled result waits for the long period.
    expect(s.calls).toHaveLength(4);
    const waits = s.calls.slice(1).map((t, i) => t - s.calls[i]!);
    for (let i = 1; i < waits.length; i++) expect(waits[i], `waits ${waits.join(", ")}`).toBeGreaterThanOrEqual(waits[i - 1]!);
    const settledAt = s.calls.length;
    await new Promise((r) => setTimeout(r, 300)); // several retry periods: none may come
    expect(s.calls).toHaveLength(settledAt);
  });

  it("detects again as soon as the server answers after a udp-blocked result, and not after a settled one", async ({ expect, onTestFinished }) => {
    const s = scripted([report("udp-blocked"), report("public")]);
    const watcher = watchNat({ detect: s.detect, onResult: s.onResult, logger: silentLogger, recheckIntervalMs: LONG_MS, retryBaseDelayMs: LONG_MS });
    onTestFinished(() => watcher.stop());
    await waitFor("the first result", () => s.results.length === 1, 10_000, 10);
    expect(s.results).toEqual(["udp-blocked"]);
    watcher.serverReachable();
    await waitFor("a second detection", () => s.results.length === 2, 10_000, 10);
    expect(s.results).toEqual(["udp-blocked", "public"]);
    watcher.serverReachable();
    watcher.serverReachable();
    expect(s.calls).toHaveLength(2);
  });

  it("the server answering during a detection that ends udp-blocked: detects again right after it", async ({ expect, onTestFinished }) => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const s = scripted([report("udp-blocked"), report("public")]);
    const detect = async () => {
      if (s.calls.length === 0) await gate;
      return s.detect();
    };
    const watcher = watchNat({ detect, onResult: s.onResult, logger: silentLogger, recheckIntervalMs: LONG_MS, retryBaseDelayMs: LONG_MS });
    onTestFinished(() => watcher.stop());
    watcher.serverReachable(); // while the start-up detection still runs
    release();
    await waitFor("a second detection", () => s.results.length === 2, 10_000, 10);
    expect(s.results).toEqual(["udp-blocked", "public"]);
  });

  it("after stop(), no detection starts and no result is handed on", async ({ expect }) => {
    const s = scripted([report("udp-blocked")]);
    const watcher = watchNat({ detect: s.detect, onResult: s.onResult, logger: silentLogger, recheckIntervalMs: 20, retryBaseDelayMs: 20 });
    watcher.stop();
    watcher.serverReachable();
    await new Promise((r) => setTimeout(r, 200));
    expect(s.results).toEqual([]);
    expect(s.calls.length).toBeLessThanOrEqual(1); // the start-up one may have begun before stop()
  });

  it("a result whose TCP probe got no answer counts as unsettled: retried soon, and at once when the server answers", async ({ expect, onTestFinished }) => {
    const noTcp = { ...report("public"), tcp: false };
    const s = scripted([noTcp, noTcp, report("public")]);
    const watcher = watchNat({ detect: s.detect, onResult: s.onResult, logger: silentLogger, recheckIntervalMs: LONG_MS, retryBaseDelayMs: 20 });
    onTestFinished(() => watcher.stop());
    await waitFor("a retry after tcp=false", () => s.calls.length >= 2, 10_000, 10);
    await waitFor("the TCP path found", () => s.calls.length >= 3, 10_000, 10);
    expect(s.results).toEqual(["public", "public"]); // tcp false, then true: both handed on

    const t = scripted([noTcp, report("public")]);
    const other = watchNat({ detect: t.detect, onResult: t.onResult, logger: silentLogger, recheckIntervalMs: LONG_MS, retryBaseDelayMs: LONG_MS });
    onTestFinished(() => other.stop());
    await waitFor("the first result", () => t.results.length === 1, 10_000, 10);
    other.serverReachable();
    await waitFor("a detection when the server answers", () => t.calls.length === 2, 10_000, 10);
  });

  it("addresses of the overlay (on its TUN device, or in its subnet) appearing are no reason to detect again; another address is", async ({ expect, onTestFinished }) => {
    const lan = { device: "eth0", address: "192.168.1.5" };
    let addresses = [lan];
    const s = scripted([report("public")]);
    const watcher = watchNat({
      detect: s.detect,
      onResult: s.onResult,
      logger: silentLogger,
      recheckIntervalMs: LONG_MS,
      retryBaseDelayMs: LONG_MS,
      addressCheckIntervalMs: 10,
      addresses: () => addresses,
      tunnelled: ({ device, address }) => device === "sdwan0" || address.startsWith("10.9."),
    });
    onTestFinished(() => watcher.stop());
    await waitFor("the start-up detection", () => s.calls.length === 1, 10_000, 10);
    addresses = [{ device: "sdwan0", address: "10.9.0.2" }, { device: "sdwan0", address: "fe80::5" }, lan];
    await new Promise((r) => setTimeout(r, 200)); // many address checks: none may detect again
    expect(s.calls).toHaveLength(1);
    addresses = [{ device: "sdwan0", address: "10.9.0.2" }, { ...lan, address: "192.168.1.6" }];
    await waitFor("a detection after a real address change", () => s.calls.length === 2, 10_000, 10);
  });
});

describe("the NAT result of the last run (NatCache)", () => {
  const server = { serverHost: "stun.example.net", udpPorts: [3478, 3479] as [number, number], tcpPorts: [3478, 3479] as [number, number] };
  const symmetric = natInfoOf({ ...report("symmetric", "address-and-port-dependent"), allocation: { kind: "sequential", delta: 2 } });

  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  /** A cache file path in a new directory, removed after the test. */
  function cacheFile(): string {
    const dir = tempDir();
    dirs.push(dir);
    return join(dir, "inp2pc.nat.json");
  }

  function capture() {
    const lines: string[] = [];
    return { lines, logger: createLogger({ level: "debug", write: (line) => lines.push(line) }) };
  }

  it("at start-up, a cached result for the same server and addresses is handed on at once, and the detection still runs", async ({ expect, onTestFinished }) => {
    const file = cacheFile();
    new NatCache(file, server, silentLogger).save("192.168.1.5", symmetric);
    const log = capture();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const s = scripted([report("full-cone")]);
    const detect = async () => (await gate, s.detect());
    const watcher = watchNat({ detect, onResult: s.onResult, logger: log.logger, recheckIntervalMs: LONG_MS, retryBaseDelayMs: LONG_MS, addresses: () => [{ device: "eth0", address: "192.168.1.5" }], cache: new NatCache(file, server, log.logger) });
    onTestFinished(() => watcher.stop());
    expect(s.results).toEqual(["symmetric"]); // before any detection finished
    expect(log.lines.join("\n")).toMatch(/INFO +NAT type: symmetric \(from the last run; checking again\)/);
    release();
    await waitFor("the detected result", () => s.results.length === 2, 10_000, 10);
    expect(s.results).toEqual(["symmetric", "full-cone"]);
    // The new result replaces the cached one.
    expect(new NatCache(file, server, silentLogger).load("192.168.1.5")?.natType).toBe("full-cone");
  });

  it("a detection that confirms the cached result is not handed on twice", async ({ expect, onTestFinished }) => {
    const file = cacheFile();
    const detected = { ...report("symmetric", "address-and-port-dependent"), allocation: { kind: "sequential" as const, delta: 2 } };
    new NatCache(file, server, silentLogger).save("192.168.1.5", natInfoOf(detected));
    const s = scripted([detected]);
    const watcher = watchNat({ detect: s.detect, onResult: s.onResult, logger: silentLogger, recheckIntervalMs: LONG_MS, retryBaseDelayMs: LONG_MS, addresses: () => [{ device: "eth0", address: "192.168.1.5" }], cache: new NatCache(file, server, silentLogger) });
    onTestFinished(() => watcher.stop());
    await waitFor("the start-up detection", () => s.calls.length === 1, 10_000, 10);
    await new Promise((r) => setTimeout(r, 50));
    expect(s.results).toEqual(["symmetric"]);
  });

  it("a cache from another server, other STUN ports, other local addresses, or too old is not used", ({ expect }) => {
    const file = cacheFile();
    let now = 1_000_000;
    new NatCache(file, server, silentLogger, () => now).save("192.168.1.5", symmetric);
    expect(new NatCache(file, server, silentLogger, () => now).load("192.168.1.5")).toEqual(symmetric); // the control
    expect(new NatCache(file, { ...server, serverHost: "other.example.net" }, silentLogger, () => now).load("192.168.1.5")).toBeUndefined();
    expect(new NatCache(file, { ...server, udpPorts: [3478, 3480] }, silentLogger, () => now).load("192.168.1.5")).toBeUndefined();
    expect(new NatCache(file, { ...server, tcpPorts: [3470, 3479] }, silentLogger, () => now).load("192.168.1.5")).toBeUndefined();
    expect(new NatCache(file, server, silentLogger, () => now).load("192.168.1.6")).toBeUndefined();
    now += 25 * 3_600_000;
    expect(new NatCache(file, server, silentLogger, () => now).load("192.168.1.5")).toBeUndefined();
  });

  it("does not keep a result that says nothing about the NAT (udp-blocked, unknown mapping)", ({ expect }) => {
    const file = cacheFile();
    const cache = new NatCache(file, server, silentLogger);
    cache.save("a", symmetric);
    cache.save("a", natInfoOf(report("udp-blocked")));
    cache.save("a", natInfoOf(report("symmetric", "unknown")));
    expect(cache.load("a")).toEqual(symmetric);
  });

  it("a corrupt or missing cache file is ignored with a line in the log, never an exception", ({ expect }) => {
    const file = cacheFile();
    const log = capture();
    expect(new NatCache(file, server, log.logger).load("a")).toBeUndefined(); // missing: quietly nothing
    for (const content of ["{not json", JSON.stringify({ key: "x" }), JSON.stringify({ version: 1, key: { serverHost: "stun.example.net" }, savedAt: 1, nat: { natType: "weird" } }), ""]) {
      writeFileSync(file, content);
      log.lines.length = 0;
      expect(new NatCache(file, server, log.logger).load("a")).toBeUndefined();
      expect(log.lines.join("\n"), content).toMatch(/(DEBUG|WARN) +ignoring the NAT result of the last run.*nat\.json/);
    }
    // A save over a corrupt file replaces it.
    new NatCache(file, server, log.logger).save("a", symmetric);
    expect(JSON.parse(readFileSync(file, "utf8")).nat).toEqual(symmetric);
  });
});
