// What inp2ps applies on SIGHUP: the ACL, admission, auto_approve and trusted_relays (the log level is
// config/reload.ts's). Node sessions and the links between nodes are left alone: the new rules decide
// the next link request and the next login.
import type { AclRuleConfig, ReloadPlan, SettingPath } from "../config/index.ts";
import { cidrMatcher } from "../net/index.ts";
import type { AuditLog } from "./audit.ts";
import type { TrustedRelays } from "./relay-trust.ts";
import type { SignalHub } from "./signal.ts";

/** What inp2ps can apply while running; every other changed setting (ports, TLS, data dir, users...) waits for a restart. */
export const SERVER_RELOADABLE: readonly SettingPath[] = ["log_level", "server.acl", "server.admission", "server.auto_approve", "server.trusted_relays"];

export interface ServerPolicy {
  acl: readonly AclRuleConfig[];
  admission: "token" | "approve";
  auto_approve: readonly string[];
  trusted_relays: readonly string[];
}

export interface ReloadableServer {
  hub: SignalHub;
  trustedRelays: TrustedRelays;
  audit: AuditLog;
}

/**
 * Applies the policy of a reloaded config and audits the reload. A node waiting for approval keeps
 * waiting when admission turns to "token" (the admin approves or rejects it as before). Returns what
 * changed, in words.
 */
export function applyServerReload(server: ReloadableServer, policy: ServerPolicy, plan: Pick<ReloadPlan, "changed" | "restartOnly">): string[] {
  const changed = (key: string) => plan.changed.includes(`server.${key}`);
  if (changed("acl") || changed("admission") || changed("auto_approve"))
    server.hub.setPolicy({ acl: policy.acl, admission: policy.admission, autoApprove: cidrMatcher(policy.auto_approve) });
  if (changed("trusted_relays")) server.trustedRelays.setConfigured(policy.trusted_relays);
  server.audit.record("config-reloaded", { changed: plan.changed, notApplied: plan.restartOnly });
  return plan.changed.filter((path) => path.startsWith("server.")).map((path) => path.slice("server.".length));
}
