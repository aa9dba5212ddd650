// Pieces (protocol/pieces.ts): cutting a packet, joining it back from any order and from coalesced
// runs, refusing malformed pieces, and bounded memory per remote. Plus a lan link's packet sizes.
import { describe, expect, it } from "vitest";
import { decodePingBody, encodePingBody, PIECE_HEADER_BYTES, PIECE_MAX_BYTES, PIECE_TAG, readPieceHeader } from "../../src/protocol/pieces.ts";
import { LAN_KCP_MTU_BYTES, LAN_PROBE_TIMEOUT_MS, LanPacketSizes } from "../../src/transport/lan-packets.ts";
import { cutIntoPieces, PieceJoiner, PIECES_PARTIAL_PACKETS_MAX, piecesBytes } from "../../src/transport/pieces.ts";
import { prng, randomBytes } from "../helpers/prng.ts";

const REMOTE = "192.0.2.7:4000";

/** The pieces of `packet`, cut as a GSO run and split where the kernel would. */
function cut(packet: Buffer, id: number): Buffer[] {
  const run = Buffer.alloc(piecesBytes(packet));
  const segmentBytes = cutIntoPieces(packet, id, run);
  const pieces: Buffer[] = [];
  for (let at = 0; at < run.length; at += segmentBytes) pieces.push(run.subarray(at, at + segmentBytes));
  return pieces;
}

function shuffled<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe("pieces", () => {
  it("cuts a packet into datagrams of at most 1472 bytes, all as long as the first but the last, each with a valid header", () => {
    const random = prng(1);
    for (const bytes of [1, 1463, 1464, 4000, 35_512, LAN_KCP_MTU_BYTES.pieces + 27]) {
      const pieces = cut(randomBytes(random, bytes), 9);
      expect(pieces.every((piece) => piece.length <= PIECE_MAX_BYTES && piece[0] === PIECE_TAG)).toBe(true);
      expect(pieces.slice(0, -1).every((piece) => piece.length === pieces[0]!.length)).toBe(true);
      expect(pieces.at(-1)!.length).toBeLessThanOrEqual(pieces[0]!.length);
      expect(pieces.reduce((sum, piece) => sum + piece.length - PIECE_HEADER_BYTES, 0)).toBe(bytes);
      expect(pieces.map((piece) => readPieceHeader(piece, 0))).toEqual(pieces.map((_, index) => ({ packetId: 9, index, count: pieces.length, packetBytes: bytes })));
    }
    // 64 KB in 44 full pieces: one GSO run.
    expect(cut(Buffer.alloc(LAN_KCP_MTU_BYTES.pieces + 27), 1)).toHaveLength(44);
  });

  it("joins a packet from its pieces in any order, duplicates ignored, and from a coalesced run in one buffer", () => {
    const random = prng(2);
    const joiner = new PieceJoiner();
    for (let round = 0; round < 20; round++) {
      const packet = randomBytes(random, 1 + Math.floor(random() * 60_000));
      const pieces = cut(packet, round);
      // Shuffled, and the first piece to arrive comes twice.
      const order = shuffled(pieces, random);
      if (order.length > 1) order.splice(1, 0, order[0]!);
      const joined = order.flatMap((piece) => joiner.take(piece, REMOTE));
      expect(joined).toHaveLength(1);
      expect(joined[0]!.equals(packet)).toBe(true);
      // The same run as UDP_GRO hands it over: one buffer.
      const again = joiner.take(Buffer.concat(cut(packet, 1000 + round)), REMOTE);
      expect(again).toHaveLength(1);
      expect(again[0]!.equals(packet)).toBe(true);
    }
    expect(joiner.rejected).toBe(0);
  });

  it("refuses malformed pieces, and pieces at odds with others of their packet, without joining anything", () => {
    const random = prng(3);
    const joiner = new PieceJoiner();
    const packet = randomBytes(random, 5000);
    const pieces = cut(packet, 5);
    const malformed = (edit: (piece: Buffer) => Buffer) => edit(Buffer.from(pieces[0]!));
    const bad = [
      Buffer.alloc(0).fill(0),
      Buffer.from([PIECE_TAG]),
      malformed((piece) => ((piece[0] = 0x00), piece)), // another tag
      malformed((piece) => ((piece[6] = 0), piece)), // 0 pieces
      malformed((piece) => ((piece[5] = piece[6]!), piece)), // index past the count
      malformed((piece) => piece.subarray(0, piece.length - 1)), // cut short
      malformed((piece) => (piece.writeUInt16BE(65_000, 7), piece)), // 4 pieces of 1.4 KB for a 64 KB packet
    ];
    for (const piece of bad) expect(joiner.take(piece, REMOTE)).toEqual([]);
    expect(joiner.rejected).toBe(bad.length);
    // Piece 1 claiming another count than piece 0 of the same packet.
    joiner.take(pieces[0]!, REMOTE);
    const odd = Buffer.from(pieces[1]!);
    odd.writeUInt16BE(4999, 7);
    expect(joiner.take(odd, REMOTE)).toEqual([]);
    expect(readPieceHeader(Buffer.from([1, 2, 3]), 0)).toEqual({ error: "not a piece" });
  });

  it("keeps at most PIECES_PARTIAL_PACKETS_MAX packets of a remote being joined: older ones are dropped, and forget() drops all", () => {
    const random = prng(4);
    const joiner = new PieceJoiner();
    const packets = Array.from({ length: 10 }, () => randomBytes(random, 4000));
    // Every packet's pieces but its last.
    for (const [id, packet] of packets.entries()) for (const piece of cut(packet, id).slice(0, -1)) joiner.take(piece, REMOTE);
    const partials = (joiner as unknown as { partials: Map<string, unknown[]> }).partials;
    expect(partials.get(REMOTE)).toHaveLength(PIECES_PARTIAL_PACKETS_MAX);
    // The oldest were dropped: their last pieces complete nothing; the newest ones complete (newest first,
    // as a last piece of a dropped packet starts it anew and pushes out another).
    const completed = packets.map((packet, id) => ({ id, packet })).reverse().map(({ id, packet }) => joiner.take(cut(packet, id).at(-1)!, REMOTE).length);
    expect(completed.reverse()).toEqual(packets.map((_, id) => (id >= packets.length - PIECES_PARTIAL_PACKETS_MAX ? 1 : 0)));
    joiner.take(cut(packets[0]!, 50)[0]!, REMOTE);
    joiner.forget(REMOTE);
    expect(partials.size).toBe(0);
  });

  it("a ping or pong carries the pieces port after its id, and that the node takes super-packets; an older peer's pong (its echo of our ping) offers none", () => {
    const ping = encodePingBody(77, "ping", 4321);
    expect(decodePingBody(ping, "ping")).toEqual({ id: 77, piecesPort: 4321, takesSuperPackets: true });
    expect(decodePingBody(ping, "pong"), "our ping echoed back").toEqual({ id: 77, piecesPort: undefined, takesSuperPackets: false });
    expect(decodePingBody(encodePingBody(78, "pong", 4321), "pong")).toEqual({ id: 78, piecesPort: 4321, takesSuperPackets: true });
    expect(decodePingBody(encodePingBody(79, "ping", undefined), "ping")).toEqual({ id: 79, piecesPort: undefined, takesSuperPackets: false });
    expect(decodePingBody(Buffer.from([1, 2]), "ping")).toEqual({ id: undefined, piecesPort: undefined, takesSuperPackets: false });
    // An older peer's offer: the port and no flags; it takes no super-packets.
    expect(decodePingBody(ping.subarray(0, 7), "ping")).toEqual({ id: 77, piecesPort: 4321, takesSuperPackets: false });
    // A probe padded with zeros after the offer still says what the offer says.
    const padded = Buffer.alloc(2_000);
    ping.copy(padded);
    expect(decodePingBody(padded, "ping").takesSuperPackets).toBe(true);
  });
});

describe("a lan link's packet sizes", () => {
  const counts = { sent: 0, resent: 0 };
  const sizes = () => new LanPacketSizes(() => ({ ...counts }));

  it("probes whole packets, and pieces once the peer offered a port; uses the largest whose probe was answered", () => {
    const lan = sizes();
    const probes: string[] = [];
    let nextId = 1;
    const send = (size: string) => (probes.push(size), nextId++);
    lan.probe(0, send);
    expect(probes).toEqual(["whole"]);
    lan.offered(5000);
    lan.probe(10, send);
    expect(probes, "the whole probe is still waiting for its pong").toEqual(["whole", "pieces"]);
    expect(lan.answered(2)).toBe("pieces");
    expect(lan.answered(1)).toBe("pieces");
    expect(lan.offered(5000), "the same port again").toBe("pieces");
    expect(lan.offered(6000), "a new port, not probed yet").toBe("whole");
  });

  it("gives a probe up after three unanswered tries, LAN_PROBE_TIMEOUT_MS apart", () => {
    const lan = sizes();
    const probes: number[] = [];
    for (let now = 0; now <= 5 * LAN_PROBE_TIMEOUT_MS; now += LAN_PROBE_TIMEOUT_MS / 4) lan.probe(now, () => (probes.push(now), 0));
    expect(probes).toEqual([0, LAN_PROBE_TIMEOUT_MS, 2 * LAN_PROBE_TIMEOUT_MS]);
  });

  it("a size whose packets are resent more than 5% is given up: pieces, then whole packets", () => {
    counts.sent = counts.resent = 0;
    const lan = sizes();
    lan.offered(5000);
    let id = 0;
    lan.probe(0, () => ++id);
    lan.answered(1);
    lan.size = lan.answered(2);
    expect(lan.size).toBe("pieces");
    counts.sent = 200;
    counts.resent = 5;
    expect(lan.judge(), "2.5% resent").toEqual({ size: "pieces" });
    counts.sent = 210;
    counts.resent = 21; // 16 resends: judged at once
    expect(lan.judge()).toEqual({ size: "whole", resentPercent: 160 });
    lan.size = "whole";
    lan.offered(5000);
    lan.probe(LAN_PROBE_TIMEOUT_MS * 10, () => expect.unreachable("a size given up is not probed again for the same port"));
    counts.sent = 400;
    counts.resent = 40;
    expect(lan.judge()).toEqual({ size: "small", resentPercent: 10 });
  });
});
