import { existsSync, readFileSync } from "node:fs";
import { writeSecretFile } from "../crypto/index.ts";

/** Server certificate fingerprints recorded on first contact (trust on first use), by host:port. */
export class KnownServers {
  private readonly entries: Map<string, string>;

  constructor(readonly file: string) {
    this.entries = new Map(existsSync(file) ? Object.entries(JSON.parse(readFileSync(file, "utf8")) as Record<string, string>) : []);
  }

  get(hostPort: string): string | undefined {
    return this.entries.get(hostPort);
  }

  remember(hostPort: string, fingerprint256: string): void {
    this.entries.set(hostPort, fingerprint256);
    writeSecretFile(this.file, JSON.stringify(Object.fromEntries(this.entries), null, 2) + "\n");
  }
}

export interface PeerCertificateFacts {
  /** Whether the chain verified against the system CAs and matched the host name. */
  authorized: boolean;
  authorizationError?: string;
  fingerprint256: string;
}

export type TrustDecision =
  | { ok: true; how: "pinned" | "system CA" | "known (first seen earlier)" | "first use: recorded" }
  | { ok: false; reason: string };

/** Decides whether to talk to a server: a pinned fingerprint, else the system CAs, else trust on first use. */
export function decideTrust(
  facts: PeerCertificateFacts,
  hostPort: string,
  pinned: string | undefined,
  known: KnownServers,
): TrustDecision {
  if (pinned) {
    if (facts.fingerprint256 === pinned) return { ok: true, how: "pinned" };
    return {
      ok: false,
      reason: `server certificate does not match the pinned tls_fingerprint: expected ${pinned}, got ${facts.fingerprint256}`,
    };
  }
  if (facts.authorized) return { ok: true, how: "system CA" };
  const recorded = known.get(hostPort);
  if (recorded === facts.fingerprint256) return { ok: true, how: "known (first seen earlier)" };
  if (recorded)
    return {
      ok: false,
      reason:
        `SERVER CERTIFICATE CHANGED for ${hostPort}: expected ${recorded}, got ${facts.fingerprint256}. ` +
        `Someone may be intercepting the connection. If the server's certificate was replaced on purpose, ` +
        `remove "${hostPort}" from ${known.file} or set tls_fingerprint in [client].`,
    };
  known.remember(hostPort, facts.fingerprint256);
  return { ok: true, how: "first use: recorded" };
}
