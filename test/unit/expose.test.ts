import { describe, expect, it } from "vitest";
import { ExposePolicy, type Lookup } from "../../src/client/expose.ts";

/** A resolver that answers from a table and counts the questions. */
function fakeDns(table: Record<string, string>): Lookup & { asked: string[] } {
  const asked: string[] = [];
  const lookup = async (name: string) => {
    asked.push(name);
    const address = table[name.toLowerCase()]; // as DNS: names are case-insensitive
    if (!address) throw new Error(`getaddrinfo ENOTFOUND ${name}`);
    return address;
  };
  return Object.assign(lookup, { asked });
}

describe("ExposePolicy", () => {
  it("exposes nothing without entries", async () => {
    const policy = new ExposePolicy([]);
    for (const target of ["127.0.0.1:22", "[::1]:53", "10.0.0.1:80"]) expect(await policy.decide(target), target).toEqual({ ok: false, code: "NOT_EXPOSED", error: `${target} is not exposed` });
  });

  it("matches addresses by network and port range, IPv4 and IPv6", async () => {
    const policy = new ExposePolicy(["127.0.0.1:22", "192.168.1.0/24:80-443", "[::1]:53", "[fd00::/8]:*"]);
    const allowed = { "127.0.0.1:22": "127.0.0.1", "192.168.1.77:80": "192.168.1.77", "192.168.1.1:443": "192.168.1.1", "[::1]:53": "::1", "[fd12::9]:7": "fd12::9" };
    for (const [target, host] of Object.entries(allowed)) expect((await policy.decide(target)), target).toMatchObject({ ok: true, host });
    for (const target of ["127.0.0.1:23", "127.0.0.2:22", "192.168.1.77:444", "192.168.2.1:80", "[::1]:54", "[fe80::1]:53", "10.0.0.1:53"])
      expect((await policy.decide(target)).ok, target).toBe(false);
  });

  it('"*:*" exposes every address and port', async () => {
    const policy = new ExposePolicy(["*:*"]);
    for (const target of ["127.0.0.1:1", "10.9.8.7:65535", "[::1]:22"]) expect((await policy.decide(target)).ok, target).toBe(true);
  });

  it("lets a host name entry match a target of that name, and connects to the address it resolved once", async () => {
    const dns = fakeDns({ "db.lan": "10.0.0.5" });
    const policy = new ExposePolicy(["db.lan:5432"], dns);
    expect(await policy.decide("DB.Lan:5432")).toEqual({ ok: true, host: "10.0.0.5", port: 5432 });
    expect(dns.asked).toEqual(["DB.Lan"]);
    // The address the name stands for is not itself exposed, nor another port of the name.
    expect((await policy.decide("10.0.0.5:5432")).ok).toBe(false);
    expect((await policy.decide("db.lan:22")).ok).toBe(false);
    expect(dns.asked).toEqual(["DB.Lan"]);
  });

  it("checks the address a host name target resolves to against address entries, and connects to that address", async () => {
    const dns = fakeDns({ "ok.lan": "192.168.1.9", "rebound.example": "127.0.0.1" });
    const policy = new ExposePolicy(["192.168.1.0/24:80"], dns);
    expect(await policy.decide("ok.lan:80")).toEqual({ ok: true, host: "192.168.1.9", port: 80 });
    expect(await policy.decide("rebound.example:80")).toEqual({ ok: false, code: "NOT_EXPOSED", error: "rebound.example:80 (127.0.0.1) is not exposed" });
    expect(await policy.decide("gone.lan:80")).toEqual({ ok: false, code: "UNREACHABLE", error: "cannot resolve gone.lan: getaddrinfo ENOTFOUND gone.lan" });
  });

  it("does not look a name up when no entry could let it through", async () => {
    const dns = fakeDns({ "db.lan": "10.0.0.5" });
    const policy = new ExposePolicy(["db.lan:5432", "10.0.0.0/8:80"], dns);
    for (const target of ["peer-chosen.example:5432", "db.lan:22", "anything.example:443"]) expect(await policy.decide(target), target).toMatchObject({ ok: false, code: "NOT_EXPOSED" });
    expect(dns.asked).toEqual([]);
  });
});
