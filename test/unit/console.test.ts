// The console's server-side sessions and its live push (src/console/): bounded, expiring, and a slow
// browser holds one fragment at most.
import { describe, expect, it } from "vitest";
import { CONSOLE_KEEPALIVE_MS, LiveView, MAX_CONSOLE_STREAMS } from "../../src/console/live.ts";
import { CONSOLE_SESSION_TTL_MS, ConsoleSessions, MAX_CONSOLE_SESSIONS } from "../../src/console/sessions.ts";

describe("ConsoleSessions", () => {
  it("gives each login a random id and CSRF token, checks the token, and ends sessions on logout and at expiry", () => {
    let now = 1_000;
    const sessions = new ConsoleSessions(() => now);
    const one = sessions.create();
    const two = sessions.create();
    expect(one.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(new Set([one.id, two.id, one.csrf, two.csrf]).size).toBe(4);
    expect(sessions.checkCsrf(one, one.csrf)).toBe(true);
    expect(sessions.checkCsrf(one, two.csrf)).toBe(false);
    expect(sessions.checkCsrf(one, undefined)).toBe(false);
    sessions.end(two.id);
    expect(sessions.get(two.id)).toBeUndefined();
    now += CONSOLE_SESSION_TTL_MS - 1;
    expect(sessions.get(one.id)).toBe(one);
    now += 1;
    expect(sessions.get(one.id)).toBeUndefined();
    expect(sessions.get(undefined)).toBeUndefined();
  });

  it("keeps at most MAX_CONSOLE_SESSIONS: a login beyond it ends the oldest", () => {
    const sessions = new ConsoleSessions();
    const made = Array.from({ length: MAX_CONSOLE_SESSIONS + 5 }, () => sessions.create());
    expect(sessions.size).toBe(MAX_CONSOLE_SESSIONS);
    expect(sessions.get(made[0]!.id)).toBeUndefined();
    expect(sessions.get(made.at(-1)!.id)).toBe(made.at(-1));
  });
});

describe("LiveView", () => {
  const decode = (chunk: Uint8Array | undefined) => new TextDecoder().decode(chunk);

  it("sends the current fragment, then only changes; a reader that does not read holds the newest one, never a queue", async () => {
    let version = 0;
    const live = new LiveView(() => `<p>state ${version}</p>`);
    const stream = live.stream(() => true)!;
    const reader = stream.getReader();
    expect(decode((await reader.read()).value)).toBe(`data: ${JSON.stringify("<p>state 0</p>")}\n\n`);
    // A thousand changes while the browser reads nothing.
    for (version = 1; version <= 1_000; version++) live.refresh();
    expect(decode((await reader.read()).value)).toBe(`data: ${JSON.stringify("<p>state 1000</p>")}\n\n`);
    // Nothing changed since: the next read waits (for a change or the keep-alive).
    const next = reader.read();
    const waited = await Promise.race([next.then(() => "read"), new Promise((r) => setTimeout(() => r("waiting"), 100))]);
    expect(waited).toBe("waiting");
    version = 2_000;
    live.refresh();
    expect(decode((await next).value)).toContain("state 2000");
    await reader.cancel();
  });

  it("ends a stream whose session ended, telling the page to log in again", async () => {
    let valid = true;
    let version = 0;
    const live = new LiveView(() => `v${version}`);
    const reader = live.stream(() => valid)!.getReader();
    await reader.read();
    valid = false;
    version++;
    live.refresh();
    expect(decode((await reader.read()).value)).toBe("event: logout\ndata: {}\n\n");
    expect((await reader.read()).done).toBe(true);
  });

  it(`refuses more than MAX_CONSOLE_STREAMS watchers at once, and takes new ones when some leave (keep-alive every ${CONSOLE_KEEPALIVE_MS} ms)`, async () => {
    const live = new LiveView(() => "x");
    const streams = Array.from({ length: MAX_CONSOLE_STREAMS }, () => live.stream(() => true));
    expect(streams.every(Boolean)).toBe(true);
    expect(live.stream(() => true)).toBeUndefined();
    await streams[0]!.cancel();
    const again = live.stream(() => true);
    expect(again).toBeDefined();
    await Promise.all([again, ...streams.slice(1)].map((s) => s!.cancel()));
  });
});
