import { cidrMatcher } from "../net/index.ts";
import { CloseCode, type LoginRequest } from "../protocol/index.ts";
import { MAX_PAIRING_ADDRESSES_TRACKED, MAX_PENDING_PER_USER, PAIRING_RATE_WINDOW_MS, PAIRING_REQUESTS_PER_WINDOW } from "./constants.ts";

/** A node waiting for the admin: the name and key it logged in with, and the connection it waits on. */
export interface PairingRequest {
  user: string;
  node: string;
  publicKey: string;
  /** The key approved for this name before, when this request is for a new key. */
  replacesKey?: string;
  /** The client address, as shown to users. */
  address: string;
  since: number;
  expiresAt: number;
  login: LoginRequest;
  /** The connection waiting on it; gone while the node is away (approving it then admits its next login). */
  waiting?: { lastHeartbeat: number; close(code: number, reason: string): void; admit(): void };
}

export type PairingRefusal = { code: "TOO_MANY_PENDING" | "PAIRING_RATE_LIMITED"; reason: string };

const keyOf = (user: string, node: string) => `${user}/${node}`;

/** A client address in `auto_approve` ("local trust"), IPv4-mapped IPv6 taken as IPv4. */
/**
 * Pending pairing requests, one per user and node name (a newer login of the name replaces an older
 * request), capped per user; new requests are rate-limited per client address.
 */
export class PairingBook {
  private readonly requests = new Map<string, PairingRequest>();
  /** Per address: when its recent new requests were made (within PAIRING_RATE_WINDOW_MS). */
  private readonly recent = new Map<string, number[]>();

  constructor(private expiryMs: number) {}

  /** A reloaded config's pairing_expiry_s: requests filed from now on expire after `expiryMs`; those waiting keep their time. */
  setExpiryMs(expiryMs: number): void {
    this.expiryMs = expiryMs;
  }

  get(user: string, node: string): PairingRequest | undefined {
    return this.requests.get(keyOf(user, node));
  }

  list(): PairingRequest[] {
    return [...this.requests.values()].sort((a, b) => a.since - b.since);
  }

  /**
   * Files a request (or finds the same name and key's request again, which keeps its age). Returns a
   * refusal when the user has too many pending or the address asked too often.
   */
  file(request: Omit<PairingRequest, "since" | "expiresAt">, host: string, now = Date.now()): PairingRequest | PairingRefusal {
    const key = keyOf(request.user, request.node);
    const existing = this.requests.get(key);
    if (existing && existing.publicKey === request.publicKey) {
      existing.login = request.login;
      existing.address = request.address;
      return existing;
    }
    const ofUser = this.list().filter((r) => r.user === request.user).length;
    if (!existing && ofUser >= MAX_PENDING_PER_USER)
      return { code: "TOO_MANY_PENDING", reason: `${MAX_PENDING_PER_USER} pairing requests of user "${request.user}" already wait for the admin` };
    const times = (this.recent.get(host) ?? []).filter((t) => now - t < PAIRING_RATE_WINDOW_MS);
    if (times.length >= PAIRING_REQUESTS_PER_WINDOW)
      return { code: "PAIRING_RATE_LIMITED", reason: `more than ${PAIRING_REQUESTS_PER_WINDOW} new pairing requests from ${host} within ${PAIRING_RATE_WINDOW_MS / 1000} s` };
    times.push(now);
    this.recent.delete(host); // re-inserted last: the oldest addresses are dropped first
    this.recent.set(host, times);
    if (this.recent.size > MAX_PAIRING_ADDRESSES_TRACKED) this.recent.delete(this.recent.keys().next().value!);
    existing?.waiting?.close(CloseCode.replaced, "a newer pairing request for this node name, with another key, replaced this one");
    const filed: PairingRequest = { ...request, since: now, expiresAt: now + this.expiryMs };
    this.requests.set(key, filed);
    return filed;
  }

  remove(request: PairingRequest): void {
    if (this.requests.get(keyOf(request.user, request.node)) === request) this.requests.delete(keyOf(request.user, request.node));
  }

  /** Removes and returns the requests older than the expiry. */
  expire(now = Date.now()): PairingRequest[] {
    const expired = this.list().filter((r) => now >= r.expiresAt);
    for (const request of expired) this.remove(request);
    for (const [host, times] of this.recent) if (times.every((t) => now - t >= PAIRING_RATE_WINDOW_MS)) this.recent.delete(host);
    return expired;
  }
}
