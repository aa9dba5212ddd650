import { describe, expect, it } from "vitest";
import type { PresenceDelta } from "../../src/protocol/index.ts";
import { LOGIN_LAG_TARGET_MS, LoginAdmission } from "../../src/server/admission.ts";
import { Presence } from "../../src/server/presence.ts";
import { Registry, type NodeSession } from "../../src/server/registry.ts";

/** A node of user "u" whose sent presence deltas are kept. */
function node(name: string, instance = "AAAAAAAAAAAAAAAA", user = "u") {
  const deltas: PresenceDelta[] = [];
  const session: NodeSession = {
    user,
    name,
    publicKey: "k",
    instance,
    address: "127.0.0.1:1",
    host: "127.0.0.1",
    version: "t",
    onlineSince: 1,
    lastHeartbeat: 1,
    send: (text) => {
      const message = JSON.parse(text);
      if (message.type === "presence") deltas.push(message);
    },
    close: () => {},
  };
  return { session, deltas };
}

describe("Presence", () => {
  // A batch window no test waits out: stop() flushes what was gathered.
  const NEVER_MS = 3_600_000;

  it("gathers a peer's changes into one delta per watcher, with the peer's latest state, and none to the others", () => {
    const registry = new Registry();
    const presence = new Presence(registry, NEVER_MS);
    const [watcher, other, bystander] = [node("watcher"), node("other-watcher"), node("bystander")];
    for (const n of [watcher, other, bystander]) registry.add(n.session);
    presence.watch(watcher.session, ["peer", "gone"]);
    presence.watch(other.session, ["peer"]);
    presence.watch(bystander.session, ["elsewhere"]);
    const gone = node("gone");
    registry.add(gone.session);
    presence.stop();
    expect(watcher.deltas).toHaveLength(1);

    // Within one window: peer comes, goes, comes back as a new run; gone is revoked.
    const first = node("peer", "AAAAAAAAAAAAAAAA");
    registry.add(first.session);
    registry.remove(first.session);
    registry.add(node("peer", "BBBBBBBBBBBBBBBB").session);
    registry.remove(gone.session, "revoked");
    presence.stop();

    expect(watcher.deltas).toHaveLength(2);
    expect(watcher.deltas[1]).toEqual({ type: "presence", online: [expect.objectContaining({ name: "peer", instance: "BBBBBBBBBBBBBBBB" })], offline: [{ name: "gone", reason: "revoked" }] });
    expect(other.deltas).toEqual([{ type: "presence", online: [expect.objectContaining({ name: "peer", instance: "BBBBBBBBBBBBBBBB" })], offline: [] }]);
    expect(bystander.deltas).toEqual([]);
    expect(presence.watchersOf("u", "peer").sort()).toEqual(["other-watcher", "watcher"]);
  });

  it("answers a watch with the peers online now, never the watcher itself nor another user's node", () => {
    const registry = new Registry();
    const presence = new Presence(registry, NEVER_MS);
    const [me, up, stranger] = [node("me"), node("up"), node("up-too", undefined, "someone-else")];
    for (const n of [me, up, stranger]) registry.add(n.session);
    expect(presence.watch(me.session, ["me", "up", "up-too", "down"]).map((p) => p.name)).toEqual(["up"]);
  });

  it("forgets what a node watched when it goes offline", () => {
    const registry = new Registry();
    const presence = new Presence(registry, NEVER_MS);
    const watcher = node("watcher");
    registry.add(watcher.session);
    presence.watch(watcher.session, ["peer"]);
    expect(presence.watchersOf("u", "peer")).toEqual(["watcher"]);
    registry.remove(watcher.session);
    expect(presence.watchersOf("u", "peer")).toEqual([]);
  });

  it("refuses more watched peers than a node may have, naming the limit", () => {
    const registry = new Registry();
    const presence = new Presence(registry, NEVER_MS);
    const watcher = node("watcher");
    registry.add(watcher.session);
    const names = Array.from({ length: 4096 }, (_, i) => `p${i}`);
    presence.watch(watcher.session, names);
    expect(() => presence.watch(watcher.session, ["one-more"])).toThrow(/watches 4096 peers already; at most 4096/);
    presence.watch(watcher.session, ["p1"]); // already watched: no more
  });
});

describe("LoginAdmission", () => {
  it("admits a burst at once, then gives later logins turns one interval apart, in arrival order", () => {
    let now = 10_000;
    const admission = new LoginAdmission(10, 3, () => now);
    const turns = Array.from({ length: 6 }, () => admission.take() - now);
    expect(turns).toEqual([0, 0, 0, 100, 200, 300]);
    // Later, the spent burst has refilled at the rate: 1 s after the last turn, three get in at once again.
    now += 1_300;
    expect([admission.take(), admission.take(), admission.take(), admission.take()].map((t) => t - now)).toEqual([0, 0, 0, 100]);
  });

  it("admits a burst at the moment the caller read, even when the clock ticks on meanwhile (a login was told to come back in 0.0 s)", () => {
    let now = 10_000;
    const tick = () => now++;
    const admission = new LoginAdmission(400, 200, tick);
    for (let i = 0; i < 200; i++) {
      const readAt = tick();
      expect(admission.take(readAt), `login ${i}`).toBe(readAt);
    }
  });

  it("spaces turns further apart while the event loop lags behind, still in arrival order", () => {
    const now = 10_000;
    let lagMs = 0;
    const admission = new LoginAdmission(10, 1, () => now, () => lagMs);
    expect([admission.take(), admission.take()].map((t) => t - now)).toEqual([0, 100]);
    // Timers run 4x the target late: each login now takes four turns' worth of the rate.
    lagMs = 4 * LOGIN_LAG_TARGET_MS;
    expect([admission.take(), admission.take(), admission.take()].map((t) => t - now)).toEqual([200, 600, 1000]);
    // The loop has caught up: one interval apart again, after those already given.
    lagMs = LOGIN_LAG_TARGET_MS / 2;
    expect([admission.take(), admission.take()].map((t) => t - now)).toEqual([1400, 1500]);
  });

  it("admits the whole burst at once even while the event loop lags; only the turns after it spread out (CI: burst-2 of 3 was told to come back)", () => {
    const now = 10_000;
    const admission = new LoginAdmission(1, 3, () => now, () => 4 * LOGIN_LAG_TARGET_MS);
    expect(Array.from({ length: 5 }, () => admission.take() - now)).toEqual([0, 0, 0, 1000, 5000]);
  });

  it("suggests a reconnect window as long as the fleet takes to get in beyond the burst", () => {
    const admission = new LoginAdmission(400, 200);
    expect(admission.windowMs(100)).toBe(0);
    expect(admission.windowMs(10_200)).toBe(25_000);
  });
});
