// Large KCP packets of a lan link go as pieces to the peer's pieces socket (UDP_GRO on): real sockets
// and real links on 127.0.0.1.
import { randomBytes as cryptoRandomBytes } from "node:crypto";
import { afterEach, describe, expect, it, vi } from "vitest";
import { generateIdentity } from "../../src/crypto/index.ts";
import { createLogger, silentLogger, type Logger } from "../../src/log/index.ts";
import type { MuxStream } from "../../src/mux/index.ts";
import { PIECE_MAX_BYTES, PIECE_TAG } from "../../src/protocol/pieces.ts";
import { Connector, PeerEndpoint, type Link } from "../../src/transport/index.ts";
import { cutIntoPieces, piecesBytes } from "../../src/transport/pieces.ts";
import { prng, randomBytes } from "../helpers/prng.ts";
import { waitFor } from "../helpers/processes.ts";

const SEED = 26;
const MiB = 1024 * 1024;
const TRANSFER_TIMEOUT_MS = 20_000;

const open: { endpoints: PeerEndpoint[]; links: Link[] } = { endpoints: [], links: [] };
afterEach(() => {
  open.links.splice(0).forEach((link) => link.close("test over"));
  open.endpoints.splice(0).forEach((endpoint) => endpoint.close());
});

/** Two endpoints linked on 127.0.0.1; `beforeLink` runs once both have started. */
async function lanLink(loggerA: Logger = silentLogger, beforeLink?: (ea: PeerEndpoint, eb: PeerEndpoint) => void): Promise<{ ea: PeerEndpoint; eb: PeerEndpoint; a: Link; b: Link }> {
  const [ea, eb] = [new PeerEndpoint({ logger: loggerA, host: "127.0.0.1" }), new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1" })];
  open.endpoints.push(ea, eb);
  await Promise.all([ea.start(), eb.start()]);
  beforeLink?.(ea, eb);
  const [ia, ib] = [generateIdentity(), generateIdentity()];
  const connector = (endpoint: PeerEndpoint, identity: typeof ia, logger: Logger) => new Connector({ endpoint, identity, logger, localTimeOf: (t) => t });
  const sessionId = cryptoRandomBytes(16).toString("base64url");
  const startAt = Date.now() + 20;
  const [a, b] = await Promise.all([
    connector(ea, ia, loggerA).run({ sessionId, startAt, role: "initiator", peer: { name: "b", publicKey: ib.publicKey, nat: null, candidates: eb.candidates() } }),
    connector(eb, ib, silentLogger).run({ sessionId, startAt, role: "responder", peer: { name: "a", publicKey: ia.publicKey, nat: null, candidates: ea.candidates() } }),
  ]);
  open.links.push(a, b);
  expect(a.kind).toBe("lan");
  return { ea, eb, a, b };
}

const piecesSocketOf = (endpoint: PeerEndpoint) => (endpoint as unknown as { piecesSocket: { close(): void } }).piecesSocket;
const lanSizeOf = (link: Link) => (link as unknown as { lan: { size: string } }).lan.size;

/** Sends `data` from `from` to `to` over one stream; resolves with what arrived. */
async function transfer(from: Link, to: Link, data: Buffer): Promise<Buffer> {
  const accepted = new Promise<MuxStream>((resolve) => to.mux.onStream(resolve));
  const stream = from.mux.openStream();
  stream.on("error", () => {});
  const written = (async () => {
    for (let offset = 0; offset < data.length; offset += 256 * 1024) {
      if (!stream.write(data.subarray(offset, offset + 256 * 1024))) await new Promise((resolve) => stream.once("drain", resolve));
    }
    stream.end();
  })();
  const receiver = await accepted;
  const chunks: Buffer[] = [];
  const received = new Promise<Buffer>((resolve, reject) => {
    receiver.on("data", (chunk: Buffer) => chunks.push(chunk));
    receiver.on("end", () => resolve(Buffer.concat(chunks)));
    receiver.on("error", reject);
  });
  await written;
  return received;
}

/** What an endpoint's sockets hand over, as it queues them: [bytes, first byte]. */
function watchReceived(endpoint: PeerEndpoint): { bytes: number; tag: number }[] {
  const seen: { bytes: number; tag: number }[] = [];
  const internals = endpoint as unknown as { enqueue: (packet: Buffer, port: number, address: string) => void };
  const enqueue = internals.enqueue.bind(endpoint);
  vi.spyOn(internals, "enqueue").mockImplementation((packet, port, address) => {
    seen.push({ bytes: packet.length, tag: packet[0]! });
    enqueue(packet, port, address);
  });
  return seen;
}

describe("pieces on a lan link", () => {
  it("each node has a pieces port; large packets go there as pieces, a run of them arriving as one buffer; 16 MiB each way arrive intact", async () => {
    const { ea, eb, a, b } = await lanLink();
    expect(ea.piecesPort).toBeGreaterThan(0);
    expect(eb.piecesPort).toBeGreaterThan(0);
    // Each side sends pieces once its probe of them got a pong (whole packets may go until then).
    await waitFor("both sides send pieces", () => (lanSizeOf(a) === "pieces" && lanSizeOf(b) === "pieces" ? true : undefined), TRANSFER_TIMEOUT_MS);
    const atB = watchReceived(eb);
    const random = prng(SEED);
    const there = randomBytes(random, 16 * MiB);
    const back = randomBytes(random, 16 * MiB);
    const [arrived, returned] = await Promise.all([transfer(a, b, there), transfer(b, a, back)]);
    expect(arrived.equals(there)).toBe(true);
    expect(returned.equals(back)).toBe(true);
    const coalesced = atB.filter((packet) => packet.tag === PIECE_TAG && packet.bytes > PIECE_MAX_BYTES);
    // Runs of pieces arrive as one buffer (UDP_GRO); on a busy box some may go piece by piece (the
    // kernel would not take a run at once), or the link may step back to whole packets after losses.
    expect(coalesced.length, "runs of pieces received as one buffer").toBeGreaterThan(0);
    // While it still sends pieces, only a's probes of whole packets (3 at most) arrived whole.
    if (lanSizeOf(a) === "pieces") expect(atB.filter((packet) => packet.tag !== PIECE_TAG && packet.bytes > PIECE_MAX_BYTES).length, "large packets received whole").toBeLessThanOrEqual(3);
  }, 30_000);

  it("when the pieces port is blocked from the start, the link sends its large packets whole, never data as pieces", async () => {
    const lines: string[] = [];
    // As a firewall would: nothing reaches b's pieces port, which b still offers.
    const { a, b } = await lanLink(createLogger({ level: "info", write: (line) => lines.push(line) }), (_ea, eb) => piecesSocketOf(eb).close());
    const data = randomBytes(prng(SEED + 1), 8 * MiB);
    const arrived = await transfer(a, b, data);
    expect(arrived.equals(data)).toBe(true);
    await waitFor("a sends whole packets", () => (lanSizeOf(a) === "whole" ? true : undefined), TRANSFER_TIMEOUT_MS);
    // Never given up for losses: no data went as pieces, only the probe.
    expect(lines.filter((line) => line.includes("lan link loses"))).toEqual([]);
  }, 30_000);

  it("when pieces are lost once the link uses them (a firewall rule added), it sends its large packets whole instead, and the data still arrives", async () => {
    const lines: string[] = [];
    const { eb, a, b } = await lanLink(createLogger({ level: "info", write: (line) => lines.push(line) }));
    await waitFor("a sends pieces", () => (lanSizeOf(a) === "pieces" ? true : undefined), TRANSFER_TIMEOUT_MS);
    piecesSocketOf(eb).close();
    const data = randomBytes(prng(SEED + 1), 8 * MiB);
    const arrived = await transfer(a, b, data);
    expect(arrived.equals(data)).toBe(true);
    expect(lines.some((line) => line.includes("lan link loses pieces: large packets go whole"))).toBe(true);
    expect(lanSizeOf(a), "pieces given up").not.toBe("pieces");
  }, 30_000);

  it("pieces from an address with no link are never joined, and garbage at the pieces port disturbs no link", async () => {
    const { eb, a, b } = await lanLink();
    const joiner = (eb as unknown as { joiner: { partials: Map<string, unknown> } }).joiner;
    const random = prng(SEED + 2);
    const stranger = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, binaryType: "buffer" });
    try {
      for (let i = 0; i < 200; i++) {
        // The first of 3 pieces of a packet that never completes, and random bytes behind the tag.
        const packet = randomBytes(random, 4000);
        const run = Buffer.alloc(piecesBytes(packet));
        const segmentBytes = cutIntoPieces(packet, i, run);
        stranger.send(run.subarray(0, segmentBytes), eb.piecesPort!, "127.0.0.1");
        const garbage = randomBytes(random, 1 + Math.floor(random() * 1400));
        garbage[0] = PIECE_TAG;
        stranger.send(garbage, eb.piecesPort!, "127.0.0.1");
      }
      const data = randomBytes(random, 4 * MiB);
      const arrived = await transfer(a, b, data);
      expect(arrived.equals(data)).toBe(true);
      expect(joiner.partials.size, "remotes with packets being joined").toBe(0);
    } finally {
      stranger.close();
    }
  }, 30_000);
});
