import { RECORD_OVERHEAD_BYTES } from "../crypto/index.ts";
import { PIECE_MAX_CHUNK_BYTES } from "../protocol/pieces.ts";
import { KCP_FAST } from "./kcp.ts";

/**
 * How a lan link's KCP packets go:
 * - small: KCP_FAST.mtu, like every other UDP link;
 * - whole: 24 whole IPv4 fragments on a 1500-byte LAN (after the UDP header, the envelope byte and the
 *   record's overhead), 4 frames on a 9000-byte jumbo LAN. One seal, one KCP packet and one system
 *   call then carry 26 times the bytes of a small packet (6 fragments were measured to cost 1.5 times
 *   the CPU per GB; see README, "The KCP app");
 * - pieces: 44 full pieces (protocol/pieces.ts), one GSO run of 64 KB that the peer's pieces socket
 *   receives as one buffer. Pieces cost less than fragments, so packets this large pay where 44
 *   fragments did not.
 */
export type LanPacketSize = "small" | "whole" | "pieces";
const LAN_PACKET_SIZES: readonly LanPacketSize[] = ["small", "whole", "pieces"];

const LAN_WHOLE_PACKET_FRAGMENTS = 24;
const LAN_PIECES_PER_PACKET = 44;
/** KCP's packet size (its mtu) for each way of sending. */
export const LAN_KCP_MTU_BYTES: Record<LanPacketSize, number> = {
  small: KCP_FAST.mtu,
  whole: LAN_WHOLE_PACKET_FRAGMENTS * 1480 - 8 - 1 - RECORD_OVERHEAD_BYTES,
  pieces: LAN_PIECES_PER_PACKET * PIECE_MAX_CHUNK_BYTES - 1 - RECORD_OVERHEAD_BYTES,
};

/**
 * A link uses a larger size only once a ping of that size (padded, sent whole or as pieces) got its
 * pong: a LAN or host firewall that drops IP fragments, or the pieces port, then costs a probe, never
 * data (data in packets the path cannot carry would stall the link: KCP cannot cut a segment again).
 * Probes go LAN_PROBE_ATTEMPTS times at most, LAN_PROBE_TIMEOUT_MS apart.
 */
const LAN_PROBE_ATTEMPTS = 3;
export const LAN_PROBE_TIMEOUT_MS = 2_000;
/**
 * A size whose packets need resending this often (one lost fragment or piece loses a packet: 0.2% of
 * fragments lost is 5% of packets) is given up for the rest of the link's life; judged over every
 * LAN_LOSS_CHECK_SEGMENTS segments sent, or as soon as LAN_LOSS_CHECK_RESENT_SEGMENTS were resent.
 */
const LAN_LOSS_MAX_RESENT_RATIO = 0.05;
const LAN_LOSS_CHECK_SEGMENTS = 128;
const LAN_LOSS_CHECK_RESENT_SEGMENTS = 16;

/** The larger packet sizes a lan link may use, what probed them, and what was lost. */
export class LanPacketSizes {
  size: LanPacketSize = "small";
  /** The peer's pieces port, once it offered one. */
  piecesPort: number | undefined;
  private readonly proven = new Set<LanPacketSize>(["small"]);
  private readonly lost = new Set<LanPacketSize>();
  private readonly probes = new Map<LanPacketSize, { attempts: number; pingId: number; sentAt: number }>();
  private check = { sent: 0, resent: 0 };

  /** `counts`: KCP's segments sent and resent so far (cumulative), for the loss judgement. */
  constructor(private readonly counts: () => { sent: number; resent: number }) {}

  /**
   * The sizes to probe now (none sent, or the last unanswered for LAN_PROBE_TIMEOUT_MS), each counted
   * as sent: `send` sends a ping of that size and gives its id.
   */
  probe(now: number, send: (size: LanPacketSize) => number): void {
    for (const size of ["whole", "pieces"] as const) {
      if (this.proven.has(size) || this.lost.has(size) || (size === "pieces" && this.piecesPort === undefined)) continue;
      const last = this.probes.get(size);
      if (last && now - last.sentAt < LAN_PROBE_TIMEOUT_MS) continue;
      if (last && last.attempts >= LAN_PROBE_ATTEMPTS) {
        this.lost.add(size);
        continue;
      }
      this.probes.set(size, { attempts: (last?.attempts ?? 0) + 1, pingId: send(size), sentAt: now });
    }
  }

  /** A pong came for `pingId`: the size it probed works. Returns the size to use from now on. */
  answered(pingId: number): LanPacketSize {
    for (const [size, probe] of this.probes) {
      if (probe.pingId !== pingId) continue;
      this.probes.delete(size);
      this.proven.add(size);
      this.check = this.counts(); // the new size is judged by its own resends
    }
    return this.best();
  }

  /** The peer offered its pieces port: a new one is probed anew. Returns the size to use from now on. */
  offered(port: number): LanPacketSize {
    if (port !== this.piecesPort) {
      this.piecesPort = port;
      this.proven.delete("pieces");
      this.probes.delete("pieces");
    }
    return this.best();
  }

  /**
   * Judges KCP's resends since the last judgement: a size past its limit is given up. Returns the size
   * to use from now on, and the share resent when the size changed.
   */
  judge(): { size: LanPacketSize; resentPercent?: number } {
    const now = this.counts();
    const sent = now.sent - this.check.sent;
    const resent = now.resent - this.check.resent;
    if (sent < LAN_LOSS_CHECK_SEGMENTS && resent < LAN_LOSS_CHECK_RESENT_SEGMENTS) return { size: this.size };
    this.check = now;
    if (this.size === "small" || resent <= sent * LAN_LOSS_MAX_RESENT_RATIO) return { size: this.size };
    this.lost.add(this.size);
    return { size: this.best(), resentPercent: Math.round((100 * resent) / Math.max(1, sent)) };
  }

  private best(): LanPacketSize {
    return [...LAN_PACKET_SIZES].reverse().find((size) => this.proven.has(size) && !this.lost.has(size))!;
  }
}
