import { describe, expect, it } from "vitest";
import { addressScope, candidatesProblem, withoutLoopback, type Candidates } from "../../src/protocol/index.ts";

const none: Candidates = { udpLan: [], tcpLan: [], udpPublic: null, tcpPublic: null };

describe("candidate addresses", () => {
  it("tells loopback, unreachable, private and public addresses apart, IPv4-mapped ones as IPv4", () => {
    const table: [string, ReturnType<typeof addressScope>][] = [
      ["127.0.0.1", "loopback"],
      ["127.9.9.9", "loopback"],
      ["::1", "loopback"],
      ["::ffff:127.0.0.1", "loopback"],
      ["0.0.0.0", "unreachable"],
      ["224.0.0.251", "unreachable"],
      ["239.255.255.250", "unreachable"],
      ["255.255.255.255", "unreachable"],
      ["::", "unreachable"],
      ["ff02::1", "unreachable"],
      ["10.0.0.1", "private"],
      ["172.31.255.1", "private"],
      ["192.168.10.2", "private"],
      ["100.64.0.1", "private"],
      ["169.254.1.1", "private"],
      ["fd00::1", "private"],
      ["fe80::1", "private"],
      ["::ffff:192.168.1.1", "private"],
      ["172.32.0.1", "public"],
      ["198.51.100.20", "public"],
      ["8.8.8.8", "public"],
      ["2001:db8::1", "public"],
      ["300.1.1.1", undefined],
      ["example.com", undefined],
    ];
    expect(table.map(([ip]) => [ip, addressScope(ip)])).toEqual(table);
  });

  it("loopback candidates only from a node on the server's own host", () => {
    const loopback = { ...none, udpLan: ["127.0.0.1:4000"], udpPublic: "127.0.0.1:4000" };
    expect(candidatesProblem(loopback, true)).toBeUndefined();
    expect(candidatesProblem(loopback, false)).toBe("udpLan[0]: 127.0.0.1 is a loopback address; only a node on the server's own host may offer one");
    expect(candidatesProblem({ ...none, tcpPunch: "[::1]:5000" }, false)).toMatch(/^tcpPunch: ::1 is a loopback address/);
  });

  it("public addresses as public candidates, private ones anywhere", () => {
    expect(candidatesProblem({ udpLan: ["10.0.0.5:1"], tcpLan: ["[fd12::5]:2"], udpPublic: "203.0.113.9:3", tcpPublic: "192.168.1.1:4", tcpPunch: "203.0.113.9:5" }, false)).toBeUndefined();
    expect(candidatesProblem({ ...none, tcpLan: ["203.0.113.9:2"] }, false)).toMatch(/^tcpLan\[0\]: 203\.0\.113\.9 is not in a private range/);
  });

  it("withoutLoopback leaves out loopback addresses and keeps the rest", () => {
    const candidates = { udpLan: ["127.0.0.1:1", "10.0.0.1:1"], tcpLan: ["[::1]:2"], udpPublic: "127.0.0.1:1", tcpPublic: "198.51.100.1:2", tcpPunch: "127.0.0.1:3" };
    expect(withoutLoopback(candidates)).toEqual({ udpLan: ["10.0.0.1:1"], tcpLan: [], udpPublic: null, tcpPublic: "198.51.100.1:2", tcpPunch: null });
    expect(withoutLoopback({ ...none, udpPublic: "198.51.100.1:2" })).toEqual({ ...none, udpPublic: "198.51.100.1:2" });
  });
});
