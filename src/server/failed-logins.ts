import type { Logger } from "../log/index.ts";
import { limitKey } from "../net/index.ts";
import {
  FAILED_LOGIN_FIRST_DELAY_MS,
  FAILED_LOGIN_MAX_DELAY_MS,
  FAILED_LOGIN_MEMORY_MS,
  FREE_FAILED_LOGINS,
  MAX_FAILED_LOGIN_KEYS,
} from "./constants.ts";

interface Failures {
  count: number;
  lastAt: number;
  blockedUntil: number;
}

/** Failed logins of one kind of key (client address or node name), in last-failure order, bounded. */
class FailureBook {
  private readonly byKey = new Map<string, Failures>();

  constructor(private readonly now: () => number) {}

  /** How long `key` must still wait before its next login is looked at (0: not at all). */
  waitMs(key: string): number {
    const entry = this.byKey.get(key);
    return entry ? Math.max(0, entry.blockedUntil - this.now()) : 0;
  }

  /** Counts a failure; returns the count and the wait it brings (0 for the first FREE_FAILED_LOGINS). */
  fail(key: string): { count: number; waitMs: number } {
    const now = this.now();
    const old = this.byKey.get(key);
    const entry = old && now - old.lastAt < FAILED_LOGIN_MEMORY_MS ? old : { count: 0, lastAt: now, blockedUntil: 0 };
    entry.count++;
    entry.lastAt = now;
    const over = entry.count - FREE_FAILED_LOGINS;
    const waitMs = over > 0 ? Math.min(FAILED_LOGIN_MAX_DELAY_MS, FAILED_LOGIN_FIRST_DELAY_MS * 2 ** Math.min(over - 1, 30)) : 0;
    entry.blockedUntil = now + waitMs;
    this.byKey.delete(key);
    if (this.byKey.size >= MAX_FAILED_LOGIN_KEYS) this.byKey.delete(this.byKey.keys().next().value!);
    this.byKey.set(key, entry);
    return { count: entry.count, waitMs };
  }
}

export type LoginWait = { waitMs: number; reason: string };

/**
 * The price of a wrong token: after FREE_FAILED_LOGINS failures, each further one makes its client
 * address (an IPv6 /64) and the node name it tried wait twice as long as the last time, up to
 * FAILED_LOGIN_MAX_DELAY_MS. While either waits, its logins are refused unexamined, so a guesser
 * learns nothing faster by rotating addresses at one name, or names from one address.
 */
export class FailedLogins {
  private readonly addresses: FailureBook;
  private readonly names: FailureBook;

  constructor(
    private readonly logger: Logger,
    now: () => number = Date.now,
  ) {
    this.addresses = new FailureBook(now);
    this.names = new FailureBook(now);
  }

  /** The wait of a client address, to refuse its connections before they are upgraded. */
  addressWait(address: string): LoginWait | undefined {
    const waitMs = this.addresses.waitMs(limitKey(address));
    return waitMs > 0 ? { waitMs, reason: "too many failed logins from this address" } : undefined;
  }

  /** The wait a login of `node` from `address` must sit out first, if any. */
  loginWait(address: string, node: string): LoginWait | undefined {
    const byName = this.names.waitMs(node);
    if (byName > 0) return { waitMs: byName, reason: `too many failed logins as node "${node}"` };
    return this.addressWait(address);
  }

  /** Counts a wrong token; a failure that brings a wait is logged, with the count (one line per wait). */
  failed(address: string, node: string): void {
    const key = limitKey(address);
    const byAddress = this.addresses.fail(key);
    const byName = this.names.fail(node);
    if (byAddress.waitMs > 0)
      this.logger.warn("slowing down failed logins from an address", { address: key, failures: byAddress.count, waitS: byAddress.waitMs / 1000 });
    if (byName.waitMs > 0) this.logger.warn("slowing down failed logins as a node name", { node, failures: byName.count, waitS: byName.waitMs / 1000 });
  }

  /** Counts a wrong admin credential (the web console's login): only its address pays, so no stranger can lock the admin out. */
  failedAdmin(address: string): void {
    const key = limitKey(address);
    const byAddress = this.addresses.fail(key);
    if (byAddress.waitMs > 0) this.logger.warn("slowing down failed console logins from an address", { address: key, failures: byAddress.count, waitS: byAddress.waitMs / 1000 });
  }
}

/** Whole seconds for a Retry-After header or a message: never 0 while there is a wait. */
export const waitSeconds = (wait: LoginWait) => Math.max(1, Math.ceil(wait.waitMs / 1000));
