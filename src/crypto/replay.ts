// Sliding anti-replay window over packet counters, in the style of RFC 6479 (as WireGuard uses it):
// a ring of 32-bit words instead of one long shifting bitmap, so moving the window forward clears
// whole words and never shifts bits. One word of the ring is always "redundant" (the word being
// filled at the top), so the window guarantees REPLAY_WINDOW_PACKETS = ring bits - 32 of history.
//
// Use: `check(counter)` before decrypting (cheap rejection, changes nothing), `commit(counter)` only
// after the packet authenticated, so forged packets can never move the window.
// Counters must stay below 2^53 (the session caps them at 2^48) for exact arithmetic.

export const REPLAY_RING_BITS = 2048;
const WORD_BITS = 32;
const RING_WORDS = REPLAY_RING_BITS / WORD_BITS;
/** Packets this far behind the highest counter seen are still accepted once. */
export const REPLAY_WINDOW_PACKETS = REPLAY_RING_BITS - WORD_BITS;

export class ReplayWindow {
  private readonly ring = new Uint32Array(RING_WORDS);
  private highest = 0;

  /** True when `counter` is neither a replay nor too old. Does not record it. */
  check(counter: number): boolean {
    if (counter > this.highest) return true;
    if (this.highest - counter > REPLAY_WINDOW_PACKETS) return false;
    const word = Math.floor(counter / WORD_BITS) % RING_WORDS;
    return ((this.ring[word]! >>> counter % WORD_BITS) & 1) === 0;
  }

  /** Records `counter` as seen, moving the window forward when it is the newest yet. */
  commit(counter: number): void {
    if (counter > this.highest) {
      const currentWord = Math.floor(this.highest / WORD_BITS);
      const words = Math.min(Math.floor(counter / WORD_BITS) - currentWord, RING_WORDS);
      for (let i = 1; i <= words; i++) this.ring[(currentWord + i) % RING_WORDS] = 0;
      this.highest = counter;
    }
    const word = Math.floor(counter / WORD_BITS) % RING_WORDS;
    this.ring[word] = this.ring[word]! | (1 << counter % WORD_BITS);
  }
}
