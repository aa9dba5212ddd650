import { existsSync, readFileSync } from "node:fs";
import { writeSecretFile } from "../crypto/index.ts";

export const TRUSTED_RELAYS_FILE = "inp2ps.relays.json";

/** Where an approval comes from: `trusted_relays` in [server] of the config, or `inp2ps relays approve`. */
export type RelayApprovalSource = "config" | "admin";

export class UnknownRelayUserError extends Error {
  readonly code = "UNKNOWN_USER";
  override name = "UnknownRelayUserError";

  constructor(readonly user: string) {
    super(`this server has no user "${user}" (add it to [[server.users]] first)`);
  }
}

export type RevokeResult = "revoked" | "not-approved" | "configured";

/**
 * The super relays the admin trusts to serve users other than their own, by "user/node": the
 * config's list, and approvals made at run time, kept in a JSON file (0600) in the data dir so they
 * outlive a restart.
 */
export class TrustedRelays {
  private configured: ReadonlySet<string>;
  private readonly approved: Set<string>;

  /** `users`: the users this server knows; a relay of another user cannot be approved (undefined: any). */
  constructor(
    private readonly file: string | null,
    configured: readonly string[] = [],
    private readonly users?: readonly string[],
  ) {
    this.configured = new Set(configured);
    this.approved = new Set(file && existsSync(file) ? readApprovals(file) : []);
  }

  /** The config's list anew (a reloaded config); links already on a relay no longer listed stay until they close. */
  setConfigured(configured: readonly string[]): void {
    this.configured = new Set(configured);
  }

  source(relay: string): RelayApprovalSource | undefined {
    return this.configured.has(relay) ? "config" : this.approved.has(relay) ? "admin" : undefined;
  }

  has(relay: string): boolean {
    return this.source(relay) !== undefined;
  }

  /** Approves a relay "user/node"; false when it was approved already. Throws UnknownRelayUserError for a user this server does not know. */
  approve(relay: string): boolean {
    const user = relay.split("/")[0]!;
    if (this.users && !this.users.includes(user)) throw new UnknownRelayUserError(user);
    if (this.has(relay)) return false;
    this.approved.add(relay);
    this.save();
    return true;
  }

  /** Withdraws an approval made with `approve`; one from the config stays until the config changes. */
  revoke(relay: string): RevokeResult {
    if (this.configured.has(relay)) return "configured";
    if (!this.approved.delete(relay)) return "not-approved";
    this.save();
    return "revoked";
  }

  /** Every approved relay with where its approval comes from, sorted by name. */
  list(): { relay: string; source: RelayApprovalSource }[] {
    const names = [...new Set([...this.configured, ...this.approved])].sort();
    return names.map((relay) => ({ relay, source: this.source(relay)! }));
  }

  private save(): void {
    if (this.file) writeSecretFile(this.file, JSON.stringify({ approved: [...this.approved].sort() }, null, 2) + "\n");
  }
}

function readApprovals(file: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`cannot read the approved relays in ${file}: ${(err as Error).message} (fix or delete the file, then approve the relays again)`);
  }
  const approved = (parsed as { approved?: unknown })?.approved;
  if (!Array.isArray(approved) || !approved.every((name) => typeof name === "string"))
    throw new Error(`cannot read the approved relays in ${file}: expected {"approved": ["user/node", ...]} (fix or delete the file, then approve the relays again)`);
  return approved;
}
