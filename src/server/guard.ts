import { limitKey } from "../net/index.ts";
import { ABUSE_PENALTY_MS, MAX_PENALISED_ADDRESSES } from "./constants.ts";

export type AdmitResult = { ok: true } | { ok: false; status: 429; reason: string; retryAfterS: number };

/** Bounds what one client (an address, an IPv6 /64) can make the server hold: open connections, and a penalty for abusers. */
export class AddressGuard {
  private readonly open = new Map<string, number>();
  private readonly penalisedUntil = new Map<string, number>();

  constructor(
    private readonly maxConnectionsPerAddress: number,
    private readonly now: () => number = Date.now,
  ) {}

  admit(client: string): AdmitResult {
    const address = limitKey(client);
    const until = this.penalisedUntil.get(address);
    if (until !== undefined) {
      const remainingMs = until - this.now();
      if (remainingMs > 0)
        return { ok: false, status: 429, reason: "address is slowed down after repeated bad messages", retryAfterS: Math.ceil(remainingMs / 1000) };
      this.penalisedUntil.delete(address);
    }
    const count = this.open.get(address) ?? 0;
    if (count >= this.maxConnectionsPerAddress)
      return { ok: false, status: 429, reason: `too many connections from this address (limit ${this.maxConnectionsPerAddress})`, retryAfterS: 5 };
    this.open.set(address, count + 1);
    return { ok: true };
  }

  release(client: string): void {
    const address = limitKey(client);
    const count = (this.open.get(address) ?? 1) - 1;
    if (count <= 0) this.open.delete(address);
    else this.open.set(address, count);
  }

  penalise(client: string): void {
    const address = limitKey(client);
    if (this.penalisedUntil.size >= MAX_PENALISED_ADDRESSES) {
      const oldest = this.penalisedUntil.keys().next().value;
      if (oldest !== undefined) this.penalisedUntil.delete(oldest);
    }
    this.penalisedUntil.delete(address); // re-insert so the map stays in expiry order
    this.penalisedUntil.set(address, this.now() + ABUSE_PENALTY_MS);
  }
}
