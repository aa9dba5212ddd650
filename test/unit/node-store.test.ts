// The server's node records: approved keys, revocations and tags, in a 0600 JSON file that also
// reads the older pins file ({"user/node": "key"}).
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_TAGS_PER_NODE, NodeStore, NodeStoreError } from "../../src/server/nodes.ts";
import { cidrMatcher } from "../../src/net/index.ts";

const dirs: string[] = [];
function file(): string {
  const dir = mkdtempSync(join(tmpdir(), "inp2p-nodes-"));
  dirs.push(dir);
  return join(dir, "inp2ps.keys.json");
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("NodeStore", () => {
  it("reads the older pins file: every pinned key is an approved node without tags", () => {
    const path = file();
    writeFileSync(path, JSON.stringify({ "default/edge-1": "KEY1", "alice/edge-2": "KEY2" }));
    const store = new NodeStore(path);
    expect(store.get("default", "edge-1")).toEqual({ key: "KEY1", state: "approved", tags: [] });
    expect(store.approvedKey("alice", "edge-2")).toBe("KEY2");
    expect(store.list().map((n) => `${n.user}/${n.name}`)).toEqual(["alice/edge-2", "default/edge-1"]);
  });

  it("keeps keys, revocations and tags across a restart, in a 0600 file", () => {
    const path = file();
    const store = new NodeStore(path);
    store.approve("default", "a", "KEYA");
    store.approve("default", "b", "KEYB");
    expect(store.setTags("default", "a", ["db", "prod", "db"])).toEqual(["db", "prod"]);
    expect(store.revoke("default", "b")).toBe(true);
    store.flush();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const again = new NodeStore(path);
    expect(again.tagsOf("default", "a")).toEqual(["db", "prod"]);
    expect(again.get("default", "b")?.state).toBe("revoked");
    expect(again.approvedKey("default", "b")).toBeUndefined();
    // Approving a new key keeps the tags.
    again.approve("default", "a", "KEYA2");
    expect(again.get("default", "a")).toEqual({ key: "KEYA2", state: "approved", tags: ["db", "prod"] });
    expect(JSON.parse(readFileSync(path, "utf8")).format).toBe(2);
  });

  it("refuses bad tags, too many tags and unknown nodes, naming what was wrong", () => {
    const store = new NodeStore(null);
    store.approve("default", "a", "KEYA");
    expect(() => store.setTags("default", "a", ["ok", "not ok"])).toThrow(/tag "not ok" is not a name/);
    const many = Array.from({ length: MAX_TAGS_PER_NODE + 1 }, (_, i) => `t${i}`);
    expect(() => store.setTags("default", "a", many)).toThrow(new RegExp(`at most ${MAX_TAGS_PER_NODE}`));
    expect(() => store.setTags("default", "nobody", [])).toThrow(NodeStoreError);
    expect(store.tagsOf("default", "nobody")).toEqual([]);
    expect(store.setTags("default", "a", [])).toEqual([]);
  });

  it("names the file when it cannot be read", () => {
    const path = file();
    writeFileSync(path, "{not json");
    expect(() => new NodeStore(path)).toThrow(new RegExp(`${path}: cannot read the node records`));
  });
});

describe("auto_approve (cidrMatcher)", () => {
  it("matches IPv4 and IPv6 CIDRs, IPv4-mapped addresses as IPv4, and nothing when empty", () => {
    const trusted = cidrMatcher(["127.0.0.1/32", "192.168.1.0/24", "fd00::/8"]);
    expect(["127.0.0.1", "192.168.1.77", "::ffff:192.168.1.5", "fd12::1"].filter(trusted)).toEqual(["127.0.0.1", "192.168.1.77", "::ffff:192.168.1.5", "fd12::1"]);
    expect(["127.0.0.2", "192.168.2.1", "fe80::1", "::1"].filter(trusted)).toEqual([]);
    expect(cidrMatcher([])("127.0.0.1")).toBe(false);
  });

  it("remembers when and how a node was last seen, written with the next save rather than at once", () => {
    const path = file();
    const store = new NodeStore(path);
    store.approve("default", "a", "KEYA");
    store.flush();
    store.seen("default", "a", { address: "192.0.2.7:4000", version: "1.2.3", nat: { natType: "symmetric", allocation: "sequential +1" } }, Date.parse("2026-01-02T03:04:05Z"));
    store.seen("default", "unknown", { address: "192.0.2.8:4000", version: "1", nat: null });
    expect(readFileSync(path, "utf8")).not.toContain("lastSeen");
    store.flush();
    const again = new NodeStore(path);
    expect(again.get("default", "a")).toMatchObject({ key: "KEYA", lastSeen: "2026-01-02T03:04:05.000Z", lastAddress: "192.0.2.7:4000", lastVersion: "1.2.3", lastNat: { natType: "symmetric", allocation: "sequential +1" } });
    expect(again.get("default", "unknown")).toBeUndefined();
    // A new approval (a new key) keeps what was seen.
    again.approve("default", "a", "KEYA2");
    expect(again.get("default", "a")).toMatchObject({ key: "KEYA2", lastSeen: "2026-01-02T03:04:05.000Z" });
  });
});
