import { existsSync, readFileSync } from "node:fs";
import { writeSecretFile } from "../crypto/index.ts";
import { NODE_NAME_PATTERN } from "../protocol/index.ts";

/** Changes are written to disk at most this often, so a burst of first logins is one write. */
export const NODE_STORE_SAVE_DELAY_MS = 1_000;
/** Tags one node may carry. */
export const MAX_TAGS_PER_NODE = 32;
/** The store's file format; files without it are the older pins file: {"user/node": "key"}. */
const NODE_STORE_FORMAT = 2;

/** approved: its key may log in; revoked: refused until the admin approves it again. */
export type NodeState = "approved" | "revoked";

export interface NodeRecord {
  /** The node's approved Ed25519 identity key (base64url). */
  key: string;
  state: NodeState;
  tags: string[];
  /** When the node was last online (ISO time), and what it was then; set when it goes offline and now and then while online. */
  lastSeen?: string;
  lastAddress?: string;
  lastVersion?: string;
  lastNat?: { natType: string; allocation: string | null };
}

/** What the store remembers of a node's last time online. */
export interface Sighting {
  address: string;
  version: string;
  nat: { natType: string; allocation: string | null } | null;
}

interface StoreFile {
  format: typeof NODE_STORE_FORMAT;
  nodes: Record<string, NodeRecord>;
}

export class NodeStoreError extends Error {
  override readonly name = "NodeStoreError";
  constructor(
    readonly code: "BAD_TAG" | "TOO_MANY_TAGS" | "UNKNOWN_NODE" | "BAD_FILE",
    message: string,
  ) {
    super(message);
  }
}

const keyOf = (user: string, node: string) => `${user}/${node}`;

function parseFile(file: string): Map<string, NodeRecord> {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new NodeStoreError("BAD_FILE", `${file}: cannot read the node records: ${(err as Error).message}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) throw new NodeStoreError("BAD_FILE", `${file}: expected a JSON object`);
  const record = data as Record<string, unknown>;
  if (record.format === NODE_STORE_FORMAT) return new Map(Object.entries((record as unknown as StoreFile).nodes ?? {}));
  // The older pins file: every pinned key was trusted on first use, so each is an approved node.
  return new Map(Object.entries(record).filter((e): e is [string, string] => typeof e[1] === "string").map(([k, key]) => [k, { key, state: "approved", tags: [] }]));
}

/**
 * Per user and node name: the approved identity key, whether the node is approved or revoked, and
 * its tags (for the ACL). Kept in a JSON file, mode 0600, so a restarted server still refuses an
 * impostor and a revoked node.
 */
export class NodeStore {
  private readonly records: Map<string, NodeRecord>;
  private saveTimer?: ReturnType<typeof setTimeout>;

  constructor(private readonly file: string | null) {
    this.records = file && existsSync(file) ? parseFile(file) : new Map();
  }

  get(user: string, node: string): NodeRecord | undefined {
    return this.records.get(keyOf(user, node));
  }

  /** The approved key of a node, if it has one and is not revoked. */
  approvedKey(user: string, node: string): string | undefined {
    const record = this.get(user, node);
    return record?.state === "approved" ? record.key : undefined;
  }

  /** Approves `key` for the node (a new key replaces the old one; tags stay). */
  approve(user: string, node: string, key: string): void {
    const record = this.get(user, node);
    this.records.set(keyOf(user, node), { ...record, key, state: "approved", tags: record?.tags ?? [] });
    this.save();
  }

  /** Marks the node revoked; returns false when it has no record. */
  revoke(user: string, node: string): boolean {
    const record = this.get(user, node);
    if (!record) return false;
    record.state = "revoked";
    this.flush();
    return true;
  }

  /** Sets the node's tags (none clears them). Throws NodeStoreError naming a bad tag or an unknown node. */
  setTags(user: string, node: string, tags: string[]): string[] {
    const record = this.get(user, node);
    if (!record) throw new NodeStoreError("UNKNOWN_NODE", `no node "${node}" of user "${user}" is known to this server`);
    const bad = tags.find((tag) => !NODE_NAME_PATTERN.test(tag));
    if (bad !== undefined) throw new NodeStoreError("BAD_TAG", `tag ${JSON.stringify(bad)} is not a name of 1-63 letters, digits, '.', '_' or '-'`);
    const unique = [...new Set(tags)];
    if (unique.length > MAX_TAGS_PER_NODE) throw new NodeStoreError("TOO_MANY_TAGS", `${unique.length} tags; a node may carry at most ${MAX_TAGS_PER_NODE}`);
    record.tags = unique;
    this.flush();
    return unique;
  }

  /** The node's tags; none for an unknown node. (The ACL's view of a node.) */
  tagsOf(user: string, node: string): string[] {
    return this.get(user, node)?.tags ?? [];
  }

  /** Notes that the node was online at `at`, and how; written with the next save, not at once (no write per heartbeat). */
  seen(user: string, node: string, sighting: Sighting, at = Date.now()): void {
    const record = this.get(user, node);
    if (!record) return;
    record.lastSeen = new Date(at).toISOString();
    record.lastAddress = sighting.address;
    record.lastVersion = sighting.version;
    if (sighting.nat) record.lastNat = sighting.nat;
    this.save();
  }

  /** Every record, sorted by user and name. */
  list(): { user: string; name: string; record: NodeRecord }[] {
    return [...this.records]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, record]) => {
        const slash = k.indexOf("/");
        return { user: k.slice(0, slash), name: k.slice(slash + 1), record };
      });
  }

  forget(user: string, node: string): boolean {
    const existed = this.records.delete(keyOf(user, node));
    if (existed) this.flush();
    return existed;
  }

  /** Writes the records now (also on shutdown). */
  flush(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    const data: StoreFile = { format: NODE_STORE_FORMAT, nodes: Object.fromEntries(this.records) };
    if (this.file) writeSecretFile(this.file, JSON.stringify(data, null, 2) + "\n");
  }

  private save(): void {
    this.saveTimer ??= setTimeout(() => this.flush(), NODE_STORE_SAVE_DELAY_MS);
  }
}
