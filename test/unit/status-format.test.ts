// `inp2pc status` as a person reads it: every column of the peer and app tables starts where its
// heading starts, however long the values are.
import { describe, expect, it } from "vitest";
import { formatStatus, type ClientStatus } from "../../src/client/index.ts";

type Peer = ClientStatus["peers"][string];

function peer(fields: Partial<Peer>): Peer {
  return {
    online: true,
    state: "linked",
    link: null,
    relay: null,
    punchMs: null,
    remote: null,
    rttMs: null,
    bytesIn: 0,
    bytesOut: 0,
    since: null,
    error: null,
    rejected: { auth: 0, replay: 0, malformed: 0 },
    ...fields,
  };
}

const SINCE = "2026-12-01T23:00:00.000Z";

const status: ClientStatus = {
  node: "edge-1",
  version: "0.1.0",
  pid: 1,
  upgrade: null,
  server: { address: "127.0.0.1:27183", state: "online", approval: null, user: "default", rttMs: 3, clockOffsetMs: 0 },
  nat: null,
  peers: {
    a: peer({ link: "udp-direct", rttMs: 1, bytesIn: 10, bytesOut: 2048, since: SINCE }),
    "a-node-name-longer-than-twenty-characters": peer({ link: "relay-server", relay: "server", rttMs: 20, bytesIn: 5 * 1024 ** 3, bytesOut: 1, since: SINCE }),
    c: peer({ link: "relay-private", relay: "default/a-relay-with-a-long-name", rttMs: 12345, since: SINCE }),
    d: peer({ online: false, state: null }),
  },
  apps: [
    { name: "an-app-name-longer-than-sixteen", protocol: "tcp", listen: "[2001:db8::1234:5678:9abc:def0]:65535", peer: "a-node-name-longer-than-twenty-characters", target: "127.0.0.1:22", state: "listening", connections: 1, totalConnections: 1, problem: null },
    { name: "dns", protocol: "udp", listen: "127.0.0.1:53", peer: "a", target: "10.0.0.1:53", state: "failed", error: "address in use", connections: 0, totalConnections: 0, problem: null },
  ],
  sdwan: null,
};

/** The rows of the table whose heading starts with `first`, up to the blank line after it. */
function table(text: string, first: string): string[] {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.startsWith(first + " "));
  expect(start, `a table headed ${first}`).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((l, i) => i > start && l === "");
  return lines.slice(start, end < 0 ? undefined : end);
}

/** Checks that each row holds `cells[i]` exactly where heading `headings[i]` starts, followed by padding or the row's end. */
function expectAligned(rows: string[], headings: string[], cells: string[][]): void {
  const [header, ...body] = rows;
  const starts = headings.map((h) => header!.search(new RegExp(`(?<=^|\\s)${h}(?=\\s|$)`)));
  for (const [i, s] of starts.entries()) expect(s, `heading ${headings[i]} in ${header}`).toBeGreaterThanOrEqual(0);
  expect(body).toHaveLength(cells.length);
  body.forEach((row, r) =>
    cells[r]!.forEach((cell, c) => {
      const at = starts[c]!;
      const next = starts[c + 1];
      expect(row.slice(at, at + cell.length), `row ${JSON.stringify(row)}, column ${headings[c]}`).toBe(cell);
      if (next !== undefined) expect(row.slice(at + cell.length, next).trim(), `row ${JSON.stringify(row)}: ${headings[c]} runs into ${headings[c + 1]}`).toBe("");
      if (c > 0) expect(row[at - 1], `row ${JSON.stringify(row)}: no gap before ${headings[c]}`).toBe(" ");
    }),
  );
}

describe("formatStatus", () => {
  const text = formatStatus(status);

  it("keeps the peer table's columns aligned with long names, link kinds and relay names", () => {
    expectAligned(table(text, "PEER"), ["PEER", "LINK", "RTT", "IN", "OUT", "SINCE"], [
      ["a", "udp-direct", "1 ms", "10 B", "2.0 KiB", SINCE],
      ["a-node-name-longer-than-twenty-characters", "relay-server via server", "20 ms", "5.00 GiB", "1 B", SINCE],
      ["c", "relay-private via default/a-relay-with-a-long-name", "12345 ms", "0 B", "0 B", SINCE],
      ["d", "offline", "-", "0 B", "0 B", "-"],
    ]);
  });

  it("keeps the app table's columns aligned with long names and addresses", () => {
    expectAligned(table(text, "APP"), ["APP", "PROTO", "LISTEN", "PEER", "STATE", "CONNS"], [
      ["an-app-name-longer-than-sixteen", "tcp", "[2001:db8::1234:5678:9abc:def0]:65535", "a-node-name-longer-than-twenty-characters", "listening", "1"],
      ["dns", "udp", "127.0.0.1:53", "a", "failed", "0  address in use"],
    ]);
  });

  it("says what a node waiting for approval waits for, and nothing of it otherwise", () => {
    const pending = formatStatus({ ...status, server: { ...status.server, state: "pending", approval: "inp2ps pairing approve edge-1 --user bob" } });
    expect(pending).toMatch(/^server +127\.0\.0\.1:27183 +pending/m);
    expect(pending).toContain('waiting for approval: run "inp2ps pairing approve edge-1 --user bob" on the server');
    expect(text).not.toContain("waiting for approval");
  });

  it("shows below the app table what a peer refused, and what to change where", () => {
    const refusal = 'app ssh: beta refused 127.0.0.1:22 (not exposed there): add "127.0.0.1:22" to expose in [client] on node beta';
    const ssh = { name: "ssh", protocol: "tcp", listen: "127.0.0.1:2222", peer: "beta", target: "127.0.0.1:22", state: "listening", connections: 0, totalConnections: 3, problem: refusal } as const;
    const lines = formatStatus({ ...status, apps: [...status.apps, ssh] }).split("\n");
    expect(lines.filter((line) => line.includes("refused"))).toEqual([refusal]);
    expect(lines.indexOf(refusal)).toBeGreaterThan(lines.findIndex((line) => line.startsWith("ssh ")));
    expect(text).not.toContain("refused");
  });

  it("says so when there are no peers and no apps", () => {
    const empty = formatStatus({ ...status, peers: {}, apps: [] });
    expect(empty).toContain("(no peers online)");
    expect(empty).toContain("(no apps configured)");
  });
});
