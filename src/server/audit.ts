import type { Logger } from "../log/index.ts";

/** Audit entries kept in memory for GET /api/v1/audit; older ones remain in the log only. */
export const MAX_AUDIT_ENTRIES = 1_000;

/** What the server decided about who is in and what may reach what. */
export type AuditEvent =
  | "admitted"
  | "pending"
  | "approved"
  | "rejected"
  | "expired"
  | "revoked"
  | "tagged"
  | "acl-denied"
  | "target-refused"
  | "relay-approved"
  | "relay-revoked"
  | "key-forgotten";

export interface AuditEntry {
  time: string;
  event: AuditEvent;
  [field: string]: unknown;
}

/**
 * Admissions, approvals, rejections, revocations and refusals: each is one structured log line
 * (`audit` with an `event` field, so a log shipper can pick them out) and an entry in a bounded list.
 */
export class AuditLog {
  private readonly entries: AuditEntry[] = [];

  constructor(private readonly logger: Logger) {}

  record(event: AuditEvent, fields: Record<string, unknown> = {}): void {
    const entry: AuditEntry = { time: new Date().toISOString(), event, ...fields };
    this.entries.push(entry);
    if (this.entries.length > MAX_AUDIT_ENTRIES) this.entries.shift();
    this.logger.info("audit", { event, ...fields });
  }

  /** The newest entries, oldest first. */
  list(): readonly AuditEntry[] {
    return this.entries;
  }
}
