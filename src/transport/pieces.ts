import { PIECE_HEADER_BYTES, pieceBytes, pieceChunkBytes, PIECES_MAX_COUNT, piecesFor, readPieceHeader, writePieceHeader, type PieceHeader } from "../protocol/pieces.ts";

/** Packets of one remote being joined at once, at most; a new one pushes out the oldest. */
export const PIECES_PARTIAL_PACKETS_MAX = 4;

/** The bytes `packet` takes once cut into pieces (headers included). */
export const piecesBytes = (packet: Buffer) => packet.length + piecesFor(packet.length) * PIECE_HEADER_BYTES;

/**
 * Cuts `packet` into pieces written one after another into `into` (piecesBytes(packet) long): a GSO
 * run. Returns its segment size, the length of every piece but the last, which may be shorter.
 */
export function cutIntoPieces(packet: Buffer, packetId: number, into: Buffer): number {
  const count = piecesFor(packet.length);
  const chunk = pieceChunkBytes(packet.length, count);
  let at = 0;
  for (let index = 0; index < count; index++) {
    const from = index * chunk;
    const to = Math.min(packet.length, from + chunk);
    writePieceHeader(into, at, { packetId, index, count, packetBytes: packet.length });
    packet.copy(into, at + PIECE_HEADER_BYTES, from, to);
    at += PIECE_HEADER_BYTES + to - from;
  }
  return PIECE_HEADER_BYTES + chunk;
}

interface Partial {
  packetId: number;
  packet: Buffer;
  /** One flag a piece: whether it came. */
  got: Uint8Array;
  missing: number;
}

/**
 * Joins the pieces each remote sends back into packets. A buffer may hold one piece or a run of them
 * coalesced by UDP_GRO (each as long as the first, the last perhaps shorter). Pieces may come out of
 * order, twice, or never: a packet still missing pieces when PIECES_PARTIAL_PACKETS_MAX newer ones
 * started is dropped (KCP resends what it carried). Nothing here is authenticated; the joined packet
 * is opened by its session like any other.
 */
export class PieceJoiner {
  private readonly partials = new Map<string, Partial[]>();
  /** Pieces dropped as malformed, or inconsistent with others of their packet. */
  rejected = 0;

  /** Takes a buffer of pieces from `remote`; returns the packets it completed. */
  take(buffer: Buffer, remote: string): Buffer[] {
    const first = readPieceHeader(buffer, 0);
    if ("error" in first) {
      this.rejected++;
      return [];
    }
    const stride = pieceBytes(first);
    const joined: Buffer[] = [];
    // A run holds PIECES_MAX_COUNT pieces at most (what GSO sends and GRO joins).
    for (let at = 0, pieces = 0; at < buffer.length && pieces < PIECES_MAX_COUNT; at += stride, pieces++) {
      const header = at === 0 ? first : readPieceHeader(buffer, at);
      const length = Math.min(stride, buffer.length - at);
      if ("error" in header || pieceBytes(header) !== length) {
        this.rejected++;
        break; // the rest of a coalesced buffer cannot be told apart either
      }
      const packet = this.add(remote, header, buffer, at + PIECE_HEADER_BYTES, at + length);
      if (packet) joined.push(packet);
    }
    return joined;
  }

  /** Forgets what `remote` sent (its route went). */
  forget(remote: string): void {
    this.partials.delete(remote);
  }

  /** Adds the chunk at buffer[start, end) to its packet; returns the packet once complete. */
  private add(remote: string, header: PieceHeader, buffer: Buffer, start: number, end: number): Buffer | undefined {
    let partials = this.partials.get(remote);
    let partial = partials?.find((p) => p.packetId === header.packetId);
    // The piece count follows from the packet's length (readPieceHeader checks it).
    if (partial && partial.packet.length !== header.packetBytes) {
      this.rejected++;
      return undefined;
    }
    if (!partial) {
      if (header.count === 1) return Buffer.from(buffer.subarray(start, end));
      partial = { packetId: header.packetId, packet: Buffer.allocUnsafe(header.packetBytes), got: new Uint8Array(header.count), missing: header.count };
      if (!partials) this.partials.set(remote, (partials = []));
      if (partials.length >= PIECES_PARTIAL_PACKETS_MAX) partials.shift();
      partials.push(partial);
    }
    if (partial.got[header.index]) return undefined; // a duplicate
    partial.got[header.index] = 1;
    buffer.copy(partial.packet, header.index * pieceChunkBytes(header.packetBytes, header.count), start, end);
    if (--partial.missing > 0) return undefined;
    partials!.splice(partials!.indexOf(partial), 1);
    if (partials!.length === 0) this.partials.delete(remote);
    return partial.packet;
  }
}
