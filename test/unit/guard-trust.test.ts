import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { decideTrust, KnownServers } from "../../src/client/index.ts";
import { ABUSE_PENALTY_MS } from "../../src/server/constants.ts";
import { AddressGuard } from "../../src/server/guard.ts";

describe("AddressGuard", () => {
  it("bounds connections per address and frees slots on release", () => {
    const guard = new AddressGuard(2);
    expect(guard.admit("10.0.0.1").ok).toBe(true);
    expect(guard.admit("10.0.0.1").ok).toBe(true);
    const third = guard.admit("10.0.0.1");
    expect(third.ok).toBe(false);
    if (!third.ok) expect(third.reason).toMatch(/too many connections.*\(limit 2\)/);
    expect(guard.admit("10.0.0.2").ok).toBe(true);
    guard.release("10.0.0.1");
    expect(guard.admit("10.0.0.1").ok).toBe(true);
  });

  it("refuses a penalised address until the penalty expires", () => {
    let now = 1_000_000;
    const guard = new AddressGuard(10, () => now);
    guard.penalise("10.0.0.9");
    const refused = guard.admit("10.0.0.9");
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.retryAfterS).toBe(ABUSE_PENALTY_MS / 1000);
    now += ABUSE_PENALTY_MS + 1;
    expect(guard.admit("10.0.0.9").ok).toBe(true);
  });
});

describe("server certificate trust", () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const facts = (fingerprint256: string, authorized = false) => ({ authorized, fingerprint256 });

  it("records on first use, accepts the same later, refuses a change loudly", () => {
    dir = mkdtempSync(join(tmpdir(), "trust-"));
    const known = new KnownServers(join(dir, "known.json"));
    expect(decideTrust(facts("AA"), "h:1", undefined, known)).toEqual({ ok: true, how: "first use: recorded" });
    expect(JSON.parse(readFileSync(join(dir, "known.json"), "utf8"))).toEqual({ "h:1": "AA" });
    const reloaded = new KnownServers(join(dir, "known.json"));
    expect(decideTrust(facts("AA"), "h:1", undefined, reloaded).ok).toBe(true);
    const changed = decideTrust(facts("BB"), "h:1", undefined, reloaded);
    expect(changed.ok).toBe(false);
    if (!changed.ok) expect(changed.reason).toMatch(/SERVER CERTIFICATE CHANGED.*expected AA, got BB/);
  });

  it("a pin wins over the system CAs, and a CA-verified server needs no record", () => {
    dir = mkdtempSync(join(tmpdir(), "trust-"));
    const known = new KnownServers(join(dir, "known.json"));
    expect(decideTrust(facts("AA", true), "h:1", "BB", known).ok).toBe(false);
    expect(decideTrust(facts("BB"), "h:1", "BB", known)).toEqual({ ok: true, how: "pinned" });
    expect(decideTrust(facts("CC", true), "h:2", undefined, known)).toEqual({ ok: true, how: "system CA" });
    expect(known.get("h:2")).toBeUndefined();
  });
});
