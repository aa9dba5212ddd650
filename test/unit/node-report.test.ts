// The link table a node reports (protocol/node-report.ts) and what the server keeps of it (server/node-reports.ts).
import { describe, expect, it } from "vitest";
import { refusal } from "../helpers/refusal.ts";
import { MAX_REPORTED_APPS, MAX_REPORTED_LINKS, parseClientMessage, type LinksRequest } from "../../src/protocol/index.ts";
import { nodeReport } from "../../src/server/node-reports.ts";

const link = (peer: string, bytes = 0) => ({ peer, kind: "udp-punch", relay: null, rttMs: 1.5, bytesIn: bytes, bytesOut: bytes * 2 });
const app = (name: string) => ({ name, protocol: "tcp", peer: "beta", state: "listening", connections: 2 });
const message = (fields: Record<string, unknown>) => JSON.stringify({ type: "links", id: 5, links: [], apps: [], ...fields });


describe("links report validation", () => {
  it("accepts a report of links of every kind and apps", () => {
    const kinds = ["lan", "udp-direct", "udp-punch", "tcp-direct", "tcp-punch", "relay-private", "relay-super", "relay-server"];
    const links = kinds.map((kind, i) => ({ ...link(`n${i}`), kind, relay: kind.startsWith("relay") ? (kind === "relay-server" ? "server" : "u/r1") : null }));
    const parsed = parseClientMessage(message({ links, apps: [app("ssh")] })) as LinksRequest;
    expect(parsed.links.map((l) => l.kind)).toEqual(kinds);
    expect(parsed.apps[0]).toEqual(app("ssh"));
  });

  it.each([
    ["too many links", { links: Array.from({ length: MAX_REPORTED_LINKS + 1 }, (_, i) => link(`n${i}`)) }, /links: .*256/],
    ["too many apps", { apps: Array.from({ length: MAX_REPORTED_APPS + 1 }, (_, i) => app(`a${i}`)) }, /apps: .*64/],
    ["an unknown link kind", { links: [{ ...link("beta"), kind: "carrier-pigeon" }] }, /links\.0\.kind/],
    ["a bad peer name", { links: [{ ...link("beta"), peer: "no spaces" }] }, /links\.0\.peer: a name/],
    ["a negative byte count", { links: [{ ...link("beta"), bytesIn: -1 }] }, /links\.0\.bytesIn/],
    ["a bad relay name", { links: [{ ...link("beta"), relay: "<script>" }] }, /links\.0\.relay/],
    ["an unknown app state", { apps: [{ ...app("ssh"), state: "on fire" }] }, /apps\.0\.state/],
    ["an unknown field", { extra: 1 }, /unknown field "extra"/],
  ])("refuses %s, naming the field", (_what, fields, pattern) => {
    const err = refusal(message(fields));
    expect(err.code).toBe("BAD_MESSAGE");
    expect(err.id).toBe(5);
    expect(err.message).toMatch(pattern);
  });
});

describe("the server's view of a node's report", () => {
  const request = (links: ReturnType<typeof link>[]) => parseClientMessage(message({ links, apps: [app("ssh")] })) as LinksRequest;

  it("derives throughput from two reports' byte totals, and has none for a link's first report", () => {
    const first = nodeReport(undefined, request([link("beta", 1_000)]), 10_000);
    expect(first.links[0]).toMatchObject({ peer: "beta", inBitsPerS: null, outBitsPerS: null });
    const second = nodeReport(first, request([link("beta", 11_000), link("gamma", 500)]), 15_000);
    // 10 000 bytes in over 5 s: 16 000 bit/s; out is twice that.
    expect(second.links[0]).toMatchObject({ peer: "beta", inBitsPerS: 16_000, outBitsPerS: 32_000 });
    expect(second.links[1]).toMatchObject({ peer: "gamma", inBitsPerS: null });
    expect(second.bytes).toBe(Buffer.byteLength(JSON.stringify(request([link("beta", 11_000), link("gamma", 500)]))));
  });

  it("has no throughput for a link made anew (its totals went down)", () => {
    const first = nodeReport(undefined, request([link("beta", 9_000)]), 0);
    const second = nodeReport(first, request([link("beta", 100)]), 5_000);
    expect(second.links[0]!.inBitsPerS).toBeNull();
  });
});
