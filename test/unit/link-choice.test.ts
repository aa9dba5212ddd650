import { describe, expect, it } from "vitest";
import { keepsExistingLink, LINK_RACE_WINDOW_MS } from "../../src/client/peers.ts";
import type { Link } from "../../src/transport/index.ts";

// Which of two links to one peer a node keeps. Both sides must pick the same one, or each closes
// the link the other chose.
const link = (kind: Link["kind"], since: number, sessionKey: string) => ({ kind, since, sessionKey });

describe("choosing between two links to one peer", () => {
  it("a link made long after the one held wins: the peer asked anew, so it lost the older one (seen after a NAT flush: the stale relayed link won every time, for 5 s)", () => {
    const held = link("relay-private", 0, "AAAA");
    const newer = link("relay-server", 60_000, "zzzz");
    expect(keepsExistingLink(held, newer, false)).toBe(false);
  });

  it("links made at once (both sides asked together) are decided by session id, the same way on both sides", () => {
    const one = link("relay-server", 1_000, "AAAA");
    const two = link("relay-private", 1_000 + LINK_RACE_WINDOW_MS - 1, "zzzz");
    expect(keepsExistingLink(one, two, false)).toBe(true);
    expect(keepsExistingLink(two, one, false)).toBe(false);
  });

  it("a direct link beats a relayed one, whichever came first", () => {
    const relayed = link("relay-server", 0, "AAAA");
    const direct = link("udp-direct", 60_000, "zzzz");
    expect(keepsExistingLink(direct, relayed, false)).toBe(true);
    expect(keepsExistingLink(relayed, direct, false)).toBe(false);
  });

  it("two direct links are told apart by the server's plan times, which both sides share, not by when each side finished its handshake", () => {
    // The plans went out 300 ms apart; a busy node finished one handshake 1.2 s after the other, its peer 0.2 s.
    const plannedAt = { first: 50_000, second: 50_300 };
    const atA = { first: { ...link("udp-direct", 0, "AAAA"), plannedAt: plannedAt.first }, second: { ...link("udp-direct", 1_200, "zzzz"), plannedAt: plannedAt.second } };
    const atB = { first: { ...link("udp-direct", 0, "AAAA"), plannedAt: plannedAt.first }, second: { ...link("udp-direct", 200, "zzzz"), plannedAt: plannedAt.second } };
    const keptAtA = keepsExistingLink(atA.first, atA.second, false) ? "first" : "second";
    const keptAtB = keepsExistingLink(atB.first, atB.second, false) ? "first" : "second";
    expect(keptAtA).toBe(keptAtB);
  });

  it("a link to an earlier run of the peer never wins", () => {
    expect(keepsExistingLink(link("udp-direct", 0, "AAAA"), link("relay-server", 10, "zzzz"), true)).toBe(false);
  });
});
