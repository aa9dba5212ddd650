import { describe, expect, it } from "vitest";
import { cidrMatcher, clientAddress, limitKey } from "../../src/net/index.ts";
import { isLoopbackAddress } from "../../src/protocol/index.ts";

describe("limitKey: the client an address counts as", () => {
  it("is the address itself for IPv4, also written as IPv4-mapped IPv6", () => {
    expect(limitKey("198.51.100.7")).toBe("198.51.100.7");
    expect(limitKey("::ffff:198.51.100.7")).toBe("198.51.100.7");
    expect(limitKey("198.51.100.8")).not.toBe(limitKey("198.51.100.7"));
  });

  it("is the /64 for IPv6: every address of one /64 counts as one, the next /64 does not", () => {
    const key = limitKey("2001:db8:1:2::1");
    expect(key).toBe("2001:db8:1:2::/64");
    for (const same of ["2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:0DB8:0001:0002:abcd::9", "2001:db8:1:2:0:0:1.2.3.4", "2001:db8:1:2::1%eth0"])
      expect(limitKey(same), same).toBe(key);
    expect(limitKey("2001:db8:1:3::1")).toBe("2001:db8:1:3::/64");
    expect(limitKey("::1")).toBe("0:0:0:0::/64");
    expect(limitKey("fe80::1")).toBe("fe80:0:0:0::/64");
  });
});

describe("isLoopbackAddress", () => {
  it("is true for 127.0.0.0/8 and ::1 only", () => {
    for (const address of ["127.0.0.1", "127.1.2.3", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"]) expect(isLoopbackAddress(address), address).toBe(true);
    for (const address of ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "::2", "fe80::1", "2001:db8::1"]) expect(isLoopbackAddress(address), address).toBe(false);
  });
});

describe("clientAddress: the client behind a trusted proxy", () => {
  const trusted = cidrMatcher(["10.0.0.0/8", "fd00::/8"]);

  it("is the direct peer when that is no trusted proxy, whatever X-Forwarded-For says", () => {
    expect(clientAddress("203.0.113.5", "198.51.100.7", trusted)).toEqual({ address: "203.0.113.5", forwarded: false });
    expect(clientAddress("::ffff:203.0.113.5", "10.1.1.1", trusted)).toEqual({ address: "203.0.113.5", forwarded: false });
  });

  it("is the right-most X-Forwarded-For entry that is not a trusted proxy", () => {
    expect(clientAddress("10.0.0.2", "198.51.100.7", trusted)).toEqual({ address: "198.51.100.7", forwarded: true });
    // The client wrote 1.2.3.4 itself; the proxies appended what they saw.
    expect(clientAddress("10.0.0.2", "1.2.3.4, 198.51.100.7, 10.0.0.9", trusted)).toEqual({ address: "198.51.100.7", forwarded: true });
    expect(clientAddress("fd00::2", "2001:db8::7,fd00::3", trusted)).toEqual({ address: "2001:db8::7", forwarded: true });
    // Every hop a trusted proxy: the left-most is as near the client as we can know.
    expect(clientAddress("10.0.0.2", "10.0.0.3, 10.0.0.4", trusted)).toEqual({ address: "10.0.0.3", forwarded: true });
  });

  it("is the proxy itself when it forwards no header", () => {
    expect(clientAddress("10.0.0.2", undefined, trusted)).toEqual({ address: "10.0.0.2", forwarded: false });
    expect(clientAddress("10.0.0.2", "", trusted)).toEqual({ address: "10.0.0.2", forwarded: false });
  });

  it("is an error naming the entry when a trusted hop forwarded something that is no IP address", () => {
    expect(clientAddress("10.0.0.2", "1.2.3.4, unknown", trusted)).toEqual({ error: 'X-Forwarded-For entry "unknown" (from trusted proxy 10.0.0.2) is not an IP address' });
    expect(clientAddress("10.0.0.2", "198.51.100.7:4567", trusted)).toMatchObject({ error: expect.stringContaining('"198.51.100.7:4567"') });
  });

  it("trusts nothing with no trusted proxies", () => {
    expect(clientAddress("10.0.0.2", "198.51.100.7", cidrMatcher([]))).toEqual({ address: "10.0.0.2", forwarded: false });
  });
});
