import { Counter, Gauge } from "prom-client";
import { AUTH_FAILURE_REASONS, SERVER_RATE_LIMITS, UNKNOWN_NAT, type AuthFailureReason, type ServerRateLimit } from "./constants.ts";
import { ProgramMetrics, type RelayCounts } from "./registry.ts";

export interface ServerMetricsInit {
  /** Every user's name: each has a nodes-online series, zero included. */
  users: readonly string[];
  /** The nodes online now, read at each scrape. */
  online(): Iterable<{ user: string }>;
  /** The server relay's counts (undefined until it runs); absent when it runs none. */
  relay?(): RelayCounts | undefined;
}

/** The login refusal codes of the signalling protocol, as reasons; any other code counts as "other". */
const REASON_OF_CODE: Readonly<Record<string, AuthFailureReason>> = {
  BAD_TOKEN: "bad_token",
  BAD_SIGNATURE: "bad_signature",
  KEY_MISMATCH: "key_mismatch",
  NODE_REVOKED: "revoked",
  RATE_LIMITED: "rate_limited",
  PAIRING_RATE_LIMITED: "rate_limited",
};

export function authFailureReason(code: string): AuthFailureReason {
  return REASON_OF_CODE[code] ?? "other";
}

/** inp2ps's metrics. Gauges are read from the registry at scrape time; counters count where events happen. */
export class ServerMetrics extends ProgramMetrics {
  private readonly logins: Counter;
  private readonly authFailures: Counter<"reason">;
  private readonly plans: Counter<"path" | "requester_nat" | "peer_nat">;
  private readonly rateLimited: Counter<"limit">;

  constructor(init: ServerMetricsInit) {
    super();
    const registers = [this.registry];
    new Gauge({
      name: "inp2p_nodes_online",
      help: "Nodes logged in now, by user.",
      labelNames: ["user"],
      registers,
      collect() {
        const counts = new Map(init.users.map((user) => [user, 0]));
        for (const node of init.online()) counts.set(node.user, (counts.get(node.user) ?? 0) + 1);
        this.reset();
        for (const [user, count] of counts) this.set({ user }, count);
      },
    });
    this.logins = new Counter({ name: "inp2p_logins_total", help: "Logins admitted (a pending node counts once the admin approves it).", registers });
    this.authFailures = this.counterOver("inp2p_auth_failures_total", "Logins refused or held back, by reason.", "reason", AUTH_FAILURE_REASONS);
    this.plans = new Counter({
      name: "inp2p_link_plans_total",
      help: "Link plans the server made: direct (punch) or a relay tier, by the requester's and the peer's NAT type.",
      labelNames: ["path", "requester_nat", "peer_nat"],
      registers,
    });
    this.rateLimited = this.counterOver("inp2p_rate_limited_total", "Requests refused by a limit, by limit.", "limit", SERVER_RATE_LIMITS);
    if (init.relay) this.registerRelay(init.relay);
  }

  login(): void {
    this.logins.inc();
  }

  authFailure(reason: AuthFailureReason): void {
    this.authFailures.inc({ reason });
  }

  /** A plan made: `path` is "direct" or "relay-<tier>"; NAT types as the nodes reported them. */
  plan(path: "direct" | `relay-${string}`, requesterNat: string | undefined, peerNat: string | undefined): void {
    this.plans.inc({ path, requester_nat: requesterNat ?? UNKNOWN_NAT, peer_nat: peerNat ?? UNKNOWN_NAT });
  }

  limited(limit: ServerRateLimit): void {
    this.rateLimited.inc({ limit });
  }
}
