/**
 * The event-loop lag (LoopLag) above which logins are admitted more slowly: a heartbeat answered this late
 * is still far inside its interval, and a link plan's start time (COORDINATION_LEAD_MS ahead) still holds.
 */
export const LOGIN_LAG_TARGET_MS = 50;

/**
 * Admits logins at a steady rate: `burst` at once, then one every 1000 / `perSecond` ms (a generic
 * cell rate algorithm). A login beyond that gets the next free turn, later, and is told to log in again
 * then; turns go out in the order logins arrive, so a burst larger than the rate gets in, in order,
 * while the server keeps answering heartbeats and coordinating links. While the event loop lags more
 * than LOGIN_LAG_TARGET_MS (a slower machine, or other work on it), each login told to come back takes
 * turns in proportion (lag 4x the target: 4 turns), so the rate adapts to what the server keeps up
 * with; the burst itself always gets in at once.
 */
export class LoginAdmission {
  /** When the next turn would fall if there were no burst allowance. */
  private theoreticalAt = 0;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
    private readonly lagMs: () => number = () => 0,
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
    const turn = Math.max(now, at - (this.burst - 1) * this.intervalMs);
    // The burst is what the operator lets in at once: lag stretches only the turns given for later.
    const turns = turn === now ? 1 : Math.max(1, this.lagMs() / LOGIN_LAG_TARGET_MS);
    this.theoreticalAt = at + this.intervalMs * turns;
    return turn;
  }

  /** How long `nodes` logins take at the steady rate: the window the server asks reconnecting nodes to spread over. */
  windowMs(nodes: number): number {
    return Math.round(Math.max(0, nodes - this.burst) * this.intervalMs);
  }
}
