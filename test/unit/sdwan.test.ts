import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cidrContains, ipToNumber, ipv4Addresses, parseCidr } from "../../src/sdwan/index.ts";
import { AddressBook } from "../../src/server/sdwan.ts";

const HOUR_MS = 3_600_000;
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));
const storeFile = () => {
  const dir = mkdtempSync(join(tmpdir(), "inp2p-sdwan-"));
  dirs.push(dir);
  return join(dir, "store.db");
};

describe("CIDR blocks and IPv4 headers", () => {
  it("parses blocks and matches addresses by prefix", () => {
    const lan = parseCidr("192.168.5.0/24");
    expect(cidrContains(lan, ipToNumber("192.168.5.77"))).toBe(true);
    expect(cidrContains(lan, ipToNumber("192.168.6.1"))).toBe(false);
    expect(cidrContains(parseCidr("0.0.0.0/0"), ipToNumber("8.8.8.8"))).toBe(true);
    expect(cidrContains(parseCidr("10.0.0.7/32"), ipToNumber("10.0.0.7"))).toBe(true);
  });

  it.each([
    ["10.10.0.1/24", /host bits set \(did you mean 10\.10\.0\.0\/24\?\)/],
    ["10.10.0.0/33", /not an IPv4 CIDR/],
    ["fd00::/8", /not an IPv4 CIDR/],
    ["10.10.0.0", /not an IPv4 CIDR/],
  ])("refuses %s, saying why", (text, message) => {
    expect(() => parseCidr(text)).toThrow(message);
  });

  it("reads source and destination of an IPv4 packet, and nothing from anything else", () => {
    const packet = Buffer.alloc(28);
    packet[0] = 0x45;
    Buffer.from([10, 10, 0, 2]).copy(packet, 12);
    Buffer.from([10, 10, 0, 3]).copy(packet, 16);
    expect(ipv4Addresses(packet)).toEqual({ source: ipToNumber("10.10.0.2"), destination: ipToNumber("10.10.0.3") });
    const v6 = Buffer.alloc(40);
    v6[0] = 0x60;
    expect(ipv4Addresses(v6)).toBeUndefined();
    expect(ipv4Addresses(Buffer.from([0x45, 0, 0]))).toBeUndefined();
  });
});

describe("SDWAN address book", () => {
  const init = { subnet: "10.10.0.0/29", static: { gateway: "10.10.0.1" }, reserve_hours: 1 };

  it("gives static addresses by name, the lowest free ones to the rest, and the same ones after a restart", () => {
    const file = storeFile();
    const book = new AddressBook(file, init);
    expect(book.assign("alice", "a")).toBe("10.10.0.2");
    expect(book.assign("alice", "b")).toBe("10.10.0.3");
    expect(book.assign("alice", "gateway")).toBe("10.10.0.1");
    expect(book.assign("bob", "x"), "users have address spaces of their own").toBe("10.10.0.2");
    book.close();
    const reopened = new AddressBook(file, init);
    expect([reopened.assign("alice", "b"), reopened.assign("alice", "a")]).toEqual(["10.10.0.3", "10.10.0.2"]);
    reopened.close();
  });

  it("keeps a departed node's address reserved, and reuses it only after the reservation ends", () => {
    const book = new AddressBook(storeFile(), init);
    const t0 = 1_000_000_000_000;
    expect(book.assign("alice", "a", t0)).toBe("10.10.0.2");
    book.touch("alice", "a", t0 + HOUR_MS / 2);
    expect(book.assign("alice", "c", t0 + HOUR_MS), "while a's reservation runs").toBe("10.10.0.3");
    const online = new Set(["10.10.0.3"]); // c is still online, though it joined more than the reservation ago
    expect(book.assign("alice", "d", t0 + 2 * HOUR_MS, online), "after a's reservation ran out").toBe("10.10.0.2");
    expect(book.assign("alice", "a", t0 + 2 * HOUR_MS, new Set(["10.10.0.2", "10.10.0.3"])), "a, back after its reservation ended, gets another").toBe("10.10.0.4");
    book.close();
  });

  it("says so when the subnet is full (network and broadcast addresses are never given)", () => {
    const book = new AddressBook(storeFile(), { subnet: "10.10.0.0/30", static: {}, reserve_hours: 1 });
    expect(book.assign("alice", "a")).toBe("10.10.0.1");
    expect(book.assign("alice", "b")).toBe("10.10.0.2");
    expect(() => book.assign("alice", "c")).toThrow(/no free address left in 10\.10\.0\.0\/30/);
    book.close();
  });
});
