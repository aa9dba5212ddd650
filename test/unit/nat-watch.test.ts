// The NAT watcher's schedule: detect at start-up, retry soon after a failed or inconclusive result,
// detect again as soon as the server answers while the last result was not settled, and re-check
// periodically. A scripted detect() stands in for STUN; the timers are real, with short periods.
import { describe, it } from "vitest";
import { silentLogger } from "../../src/log/index.ts";
import { watchNat, type NatReport } from "../../src/nat/index.ts";
import { waitFor } from "../helpers/processes.ts";

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
  const onResult = (r: NatReport) => results.push(r.natType);
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
});
