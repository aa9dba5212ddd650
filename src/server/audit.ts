import type { Logger } from "../log/index.ts";

/** Audit entries kept in memory for GET /api/v1/audit; older ones remain in the log only. */
export const MAX_AUDIT_ENTRIES = 1_000;
/** A decision a node can make the server repeat (a denied link, a refused target) is listed once per key in this long. */
export const AUDIT_REPEAT_MS = 60_000;
/** Keys whose last entry is remembered for AUDIT_REPEAT_MS, at most. */
export const MAX_AUDIT_REPEAT_KEYS = 4_096;

/** What the server decided about who is in and what may reach what. */
export type AuditEvent =
  | "admitted"
  | "pending"
  | "approved"
  | "rejected"
  | "expired"
  | "revoked"
  | "tagged"
  | "upgrade-asked"
  | "acl-denied"
  | "target-refused"
  | "relay-approved"
  | "relay-revoked"
  | "key-forgotten"
  | "config-reloaded";

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
  private readonly lastByKey = new Map<string, number>();

  constructor(private readonly logger: Logger) {}

  record(event: AuditEvent, fields: Record<string, unknown> = {}): void {
    const entry: AuditEntry = { time: new Date().toISOString(), event, ...fields };
    this.entries.push(entry);
    if (this.entries.length > MAX_AUDIT_ENTRIES) this.entries.shift();
    this.logger.info("audit", { event, ...fields });
  }

  /**
   * Records a decision a node can make the server repeat at will, once per `key` in AUDIT_REPEAT_MS,
   * so that asking again and again cannot flush the bounded list.
   */
  recordOnce(key: string, event: AuditEvent, fields: Record<string, unknown> = {}): void {
    const now = Date.now();
    if ((this.lastByKey.get(key) ?? -Infinity) > now - AUDIT_REPEAT_MS) return;
    if (this.lastByKey.size >= MAX_AUDIT_REPEAT_KEYS) for (const [old, at] of this.lastByKey) if (at <= now - AUDIT_REPEAT_MS) this.lastByKey.delete(old);
    if (this.lastByKey.size >= MAX_AUDIT_REPEAT_KEYS) this.lastByKey.clear();
    this.lastByKey.set(key, now);
    this.record(event, fields);
  }

  /** The newest entries, oldest first. */
  list(): readonly AuditEntry[] {
    return this.entries;
  }
}
