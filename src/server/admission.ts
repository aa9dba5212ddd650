/**
 * Admits logins at a steady rate: `burst` at once, then one every 1000 / `perSecond` ms (a generic
 * cell rate algorithm). A login beyond that gets the next free turn, later, and is told to log in again
 * then; turns go out in the order logins arrive, so a burst larger than the rate gets in, in order,
 * while the server keeps answering heartbeats and coordinating links.
 */
export class LoginAdmission {
  /** When the next turn would fall if there were no burst allowance. */
  private theoreticalAt = 0;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** How long one login's turn lasts, in ms. */
  get intervalMs(): number {
    return 1000 / this.perSecond;
  }

  /**
   * The turn of a login arriving at `now`: `now` itself (admit it), or the time it should log in again.
   * The caller passes the time it compares the turn with: a second reading of the clock could fall a
   * millisecond later and defer a login by nothing.
   */
  take(now: number = this.now()): number {
    const at = Math.max(this.theoreticalAt, now);
    this.theoreticalAt = at + this.intervalMs;
    return Math.max(now, at - (this.burst - 1) * this.intervalMs);
  }

  /** How long `nodes` logins take at the steady rate: the window the server asks reconnecting nodes to spread over. */
  windowMs(nodes: number): number {
    return Math.round(Math.max(0, nodes - this.burst) * this.intervalMs);
  }
}
