import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/log/index.ts";
import { FAILED_LOGIN_FIRST_DELAY_MS, FAILED_LOGIN_MAX_DELAY_MS, FAILED_LOGIN_MEMORY_MS, FREE_FAILED_LOGINS } from "../../src/server/constants.ts";
import { FailedLogins } from "../../src/server/failed-logins.ts";

function setup() {
  const clock = { now: 5_000_000 };
  const lines: string[] = [];
  const logins = new FailedLogins(createLogger({ write: (line) => lines.push(line) }), () => clock.now);
  return { clock, lines, logins };
}

describe("FailedLogins", () => {
  it("lets the first failures pass, then doubles the wait per failure up to the maximum, logging each wait with its count", () => {
    const { lines, logins } = setup();
    const waits: number[] = [];
    for (let i = 0; i < FREE_FAILED_LOGINS + 10; i++) {
      logins.failed("198.51.100.7", `name-${i}`);
      waits.push(logins.addressWait("198.51.100.7")?.waitMs ?? 0);
    }
    expect(waits.slice(0, FREE_FAILED_LOGINS)).toEqual(new Array(FREE_FAILED_LOGINS).fill(0));
    expect(waits[FREE_FAILED_LOGINS]).toBe(FAILED_LOGIN_FIRST_DELAY_MS);
    expect(waits[FREE_FAILED_LOGINS + 1]).toBe(2 * FAILED_LOGIN_FIRST_DELAY_MS);
    expect(waits.at(-1)).toBe(FAILED_LOGIN_MAX_DELAY_MS);
    const logged = lines.filter((line) => line.includes("slowing down failed logins from an address"));
    expect(logged).toHaveLength(10);
    expect(logged[0]).toMatch(new RegExp(`address=198\\.51\\.100\\.7 failures=${FREE_FAILED_LOGINS + 1} waitS=1`));
    // Names each failed once: none is slowed.
    expect(lines.some((line) => line.includes("as a node name"))).toBe(false);
  });

  it("slows a name tried from many addresses, and an address for every name; others are free", () => {
    const { logins } = setup();
    for (let i = 0; i <= FREE_FAILED_LOGINS; i++) logins.failed(`203.0.113.${i}`, "victim");
    expect(logins.loginWait("192.0.2.1", "victim")?.reason).toMatch(/as node "victim"/);
    expect(logins.loginWait("192.0.2.1", "other")).toBeUndefined();
    expect(logins.addressWait("203.0.113.0")).toBeUndefined();
  });

  it("counts an IPv6 /64 as one address", () => {
    const { logins } = setup();
    for (let i = 0; i <= FREE_FAILED_LOGINS; i++) logins.failed(`2001:db8:5:6::${i + 1}`, `n${i}`);
    expect(logins.addressWait("2001:db8:5:6:ffff::1")?.waitMs).toBe(FAILED_LOGIN_FIRST_DELAY_MS);
    expect(logins.addressWait("2001:db8:5:7::1")).toBeUndefined();
  });

  it("ends a wait when it has run out, and forgets failures after a quiet while", () => {
    const { clock, logins } = setup();
    for (let i = 0; i <= FREE_FAILED_LOGINS; i++) logins.failed("198.51.100.7", "x");
    clock.now += FAILED_LOGIN_FIRST_DELAY_MS;
    expect(logins.loginWait("198.51.100.7", "x")).toBeUndefined();
    clock.now += FAILED_LOGIN_MEMORY_MS;
    logins.failed("198.51.100.7", "x");
    expect(logins.loginWait("198.51.100.7", "x")).toBeUndefined(); // a first failure again, free
  });
});
