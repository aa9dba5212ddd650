// What inp2ps applies on SIGHUP: the ACL, admission (mode, auto_approve, pairing_expiry_s) and relay
// trust (trusted_relays, prefer_super_relays), who may scrape /metrics (metrics_allow) and the newest
// release nodes are told of (latest_version); the log level is config/reload.ts's. Node sessions and
// the links between nodes are left alone: the new rules decide the next link request, relay choice
// and login.
import type { AclRuleConfig, ReloadPlan } from "../config/index.ts";
import { cidrMatcher } from "../net/index.ts";
import type { AuditLog } from "./audit.ts";
import type { RelayBroker } from "./broker.ts";
import type { PairingBook } from "./pairing.ts";
import type { TrustedRelays } from "./relay-trust.ts";
import type { SignalHub } from "./signal.ts";
import type { Fleet } from "./fleet.ts";

export interface ServerPolicy {
  acl: readonly AclRuleConfig[];
  admission: "token" | "approve";
  auto_approve: readonly string[];
  pairing_expiry_s: number;
  trusted_relays: readonly string[];
  prefer_super_relays: boolean;
  metrics_allow: readonly string[];
  latest_version?: string;
}

/** The running server's parts a reload changes; index.ts hands them over. */
export interface ReloadableServer {
  hub: Pick<SignalHub, "setPolicy">;
  broker: Pick<RelayBroker, "setPreferSuperRelays">;
  pairing: Pick<PairingBook, "setExpiryMs">;
  trustedRelays: Pick<TrustedRelays, "setConfigured">;
  audit: Pick<AuditLog, "record">;
  setMetricsAllow(allowed: (address: string) => boolean): void;
  fleet: Pick<Fleet, "setConfigured">;
}

/**
 * Applies the policy of a reloaded config and audits the reload. A node waiting for approval keeps
 * waiting when admission turns to "token" (the admin approves or rejects it as before), and keeps its
 * expiry time. Returns what changed, in words: the changed keys of [server].
 */
export function applyServerReload(server: ReloadableServer, policy: ServerPolicy, plan: Pick<ReloadPlan, "changed" | "restartOnly">): string[] {
  const changed = (key: keyof ServerPolicy) => plan.changed.includes(`server.${key}`);
  if (changed("acl") || changed("admission") || changed("auto_approve"))
    server.hub.setPolicy({ acl: policy.acl, admission: policy.admission, autoApprove: cidrMatcher(policy.auto_approve) });
  if (changed("pairing_expiry_s")) server.pairing.setExpiryMs(policy.pairing_expiry_s * 1000);
  if (changed("trusted_relays")) server.trustedRelays.setConfigured(policy.trusted_relays);
  if (changed("prefer_super_relays")) server.broker.setPreferSuperRelays(policy.prefer_super_relays);
  if (changed("metrics_allow")) server.setMetricsAllow(cidrMatcher(policy.metrics_allow));
  if (changed("latest_version")) server.fleet.setConfigured(policy.latest_version);
  server.audit.record("config-reloaded", { changed: plan.changed, notApplied: plan.restartOnly });
  return plan.changed.filter((path) => path.startsWith("server.")).map((path) => path.slice("server.".length));
}
