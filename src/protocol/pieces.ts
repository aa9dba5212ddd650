// Pieces: a sealed packet larger than one datagram, cut into datagrams that each fit a 1500-byte
// LAN, sent to the peer's pieces socket as one UDP segmentation (GSO) run. That socket has UDP_GRO
// on, so a run that arrives whole is handed over as one buffer (one system call, one skb through
// every hop) instead of as IP fragments reassembled at each namespace or host on the way.
//
//   piece  = tag 0xc4 | packet id u32 | index u8 | count u8 | packet bytes u16 | chunk
//
// count is the fewest pieces of at most 1472 bytes that hold the packet, and every chunk but the
// last is ceil(packet bytes / count) long, so each piece's length follows from its header, and a
// buffer of coalesced pieces (all as long as the first, the last perhaps shorter) is split without
// any other length on the wire. The packet id is the sender's, per socket; the
// joined packet is an ordinary sealed packet, authenticated when opened.
//
// A node offers its pieces port in the pings and pongs of a lan link (a trailer after the 4-byte id;
// older peers read only the id, and echo a ping's trailer in their pong, hence one tag each way):
//
//   ping / pong body = id u32 [| 0x50 (ping) or 0x51 (pong) | pieces port u16 [| flags u8]]
//
// flags (older peers send none, and read none): 0x01, the node takes SDWAN TCP super-packets
// (DatagramType.ipSuperPacket, protocol/apps.ts) in datagrams sent as pieces.

export const PIECE_TAG = 0xc4;
export const PIECE_HEADER_BYTES = 9;
/** A piece is at most what one IPv4 UDP datagram carries on a 1500-byte LAN. */
export const PIECE_MAX_BYTES = 1472;
export const PIECE_MAX_CHUNK_BYTES = PIECE_MAX_BYTES - PIECE_HEADER_BYTES;
/** Pieces of one packet at most (the kernel's smallest limit on a GSO run's segments). */
export const PIECES_MAX_COUNT = 64;

export interface PieceHeader {
  packetId: number;
  index: number;
  count: number;
  packetBytes: number;
}

/** How long the chunks of a packet of `packetBytes` in `count` pieces are (all but the last). */
export const pieceChunkBytes = (packetBytes: number, count: number) => Math.ceil(packetBytes / count);

/** Pieces a packet of `packetBytes` is cut into. */
export const piecesFor = (packetBytes: number) => Math.ceil(packetBytes / PIECE_MAX_CHUNK_BYTES);

/** The full length of piece `index` (header included). */
export function pieceBytes(header: PieceHeader): number {
  const chunk = pieceChunkBytes(header.packetBytes, header.count);
  const last = header.packetBytes - chunk * (header.count - 1);
  return PIECE_HEADER_BYTES + (header.index < header.count - 1 ? chunk : last);
}

/** Writes the header of a piece at `at`. */
export function writePieceHeader(into: Buffer, at: number, header: PieceHeader): void {
  into[at] = PIECE_TAG;
  into.writeUInt32BE(header.packetId >>> 0, at + 1);
  into[at + 5] = header.index;
  into[at + 6] = header.count;
  into.writeUInt16BE(header.packetBytes, at + 7);
}

/** The header of the piece at `at`, or why it is not one. */
export function readPieceHeader(buffer: Buffer, at: number): PieceHeader | { error: string } {
  if (buffer.length - at < PIECE_HEADER_BYTES || buffer[at] !== PIECE_TAG) return { error: "not a piece" };
  const header = { packetId: buffer.readUInt32BE(at + 1), index: buffer[at + 5]!, count: buffer[at + 6]!, packetBytes: buffer.readUInt16BE(at + 7) };
  if (header.count < 1 || header.count > PIECES_MAX_COUNT || header.index >= header.count) return { error: `piece ${header.index} of ${header.count}` };
  // A packet is cut into as few pieces as hold it (piecesFor): no piece is much smaller than the
  // packet's share, so a small piece never makes its receiver set aside memory for a large packet.
  if (header.packetBytes < 1 || header.count !== piecesFor(header.packetBytes)) return { error: `${header.packetBytes} bytes in ${header.count} pieces` };
  return header;
}

const PIECES_OFFER_IN_PING = 0x50;
const PIECES_OFFER_IN_PONG = 0x51;
const PING_ID_BYTES = 4;
const OFFER_BYTES = 3;
const TAKES_SUPER_PACKETS = 0x01;
/** The largest packet pieces carry (the packet length in their header is 16 bits). */
export const PIECES_PACKET_MAX_BYTES = 0xffff;

/** A ping's or pong's body: its id, and this node's pieces port when it has one to offer (with its flags: it takes super-packets). */
export function encodePingBody(id: number, kind: "ping" | "pong", piecesPort: number | undefined): Buffer {
  const body = Buffer.allocUnsafe(piecesPort === undefined ? PING_ID_BYTES : PING_ID_BYTES + OFFER_BYTES + 1);
  body.writeUInt32BE(id >>> 0, 0);
  if (piecesPort !== undefined) {
    body[PING_ID_BYTES] = kind === "ping" ? PIECES_OFFER_IN_PING : PIECES_OFFER_IN_PONG;
    body.writeUInt16BE(piecesPort, PING_ID_BYTES + 1);
    body[PING_ID_BYTES + OFFER_BYTES] = TAKES_SUPER_PACKETS;
  }
  return body;
}

/** The id of a ping or pong (undefined when too short), the pieces port it offers, if any, and whether the peer takes super-packets. */
export function decodePingBody(body: Buffer, kind: "ping" | "pong"): { id: number | undefined; piecesPort: number | undefined; takesSuperPackets: boolean } {
  const id = body.length >= PING_ID_BYTES ? body.readUInt32BE(0) : undefined;
  const tag = kind === "ping" ? PIECES_OFFER_IN_PING : PIECES_OFFER_IN_PONG;
  const offered = body.length >= PING_ID_BYTES + OFFER_BYTES && body[PING_ID_BYTES] === tag ? body.readUInt16BE(PING_ID_BYTES + 1) : 0;
  const flags = offered > 0 && body.length > PING_ID_BYTES + OFFER_BYTES ? body[PING_ID_BYTES + OFFER_BYTES]! : 0;
  return { id, piecesPort: offered > 0 ? offered : undefined, takesSuperPackets: (flags & TAKES_SUPER_PACKETS) !== 0 };
}
