#!/usr/bin/env bun
// Mux throughput and framing overhead over an in-memory channel (no crypto, no network: the mux's own cost).
//
//   node_modules/.bin/bun scripts/bench/mux.ts [--mib 256]
//
// Each row moves --mib MiB client -> server, split evenly over its streams, and counts what crossed the
// channel: frames, wire bytes (headers, WINDOW updates, SYN/FIN included) against payload bytes.
// "first/last done" is when the first and the last stream finished, as a share of the run: with
// round-robin scheduling the streams of a row finish close together.

import { randomBytes } from "node:crypto";
import { createMemoryChannelPair, DEFAULT_MAX_FRAME_PAYLOAD_BYTES, Mux, type MemoryChannelOptions, type MuxStream } from "../../src/mux/index.ts";

const MiB = 1024 * 1024;
const WRITE_CHUNK_BYTES = 64 * 1024;

interface Row {
  streams: number;
  framePayloadBytes: number;
  channel: MemoryChannelOptions;
  label: string;
}

function parseMib(): number {
  const at = process.argv.indexOf("--mib");
  if (at < 0) return 256;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) {
    console.error("--mib takes a positive integer");
    process.exit(2);
  }
  return value;
}

const source = randomBytes(MiB);

async function send(stream: MuxStream, totalBytes: number): Promise<void> {
  for (let sent = 0; sent < totalBytes; sent += WRITE_CHUNK_BYTES) {
    const offset = sent % MiB;
    const chunk = source.subarray(offset, offset + Math.min(WRITE_CHUNK_BYTES, totalBytes - sent));
    if (!stream.write(chunk)) await new Promise((resolve) => stream.once("drain", resolve));
  }
  stream.end();
}

async function runRow(row: Row, totalBytes: number) {
  const [clientChannel, serverChannel] = createMemoryChannelPair(row.channel);
  const init = { maxFramePayloadBytes: row.framePayloadBytes };
  const client = new Mux(clientChannel, { side: "initiator", ...init });
  const server = new Mux(serverChannel, { side: "responder", ...init });
  const perStreamBytes = Math.floor(totalBytes / row.streams);
  const doneAtMs: number[] = [];
  const started = performance.now();
  const received = new Promise<void>((resolve, reject) => {
    server.onStream((stream) => {
      let bytes = 0;
      stream.on("data", (chunk: Buffer) => (bytes += chunk.length));
      stream.on("error", reject);
      stream.on("end", () => {
        stream.end(); // our FIN too, so the stream closes cleanly before the mux does
        if (bytes !== perStreamBytes) reject(new Error(`stream ${stream.id}: ${bytes} bytes, expected ${perStreamBytes}`));
        doneAtMs.push(performance.now() - started);
        if (doneAtMs.length === row.streams) resolve();
      });
    });
  });
  const streams = Array.from({ length: row.streams }, () => client.openStream().resume());
  const closed = Promise.all(streams.map((stream) => new Promise((resolve) => stream.on("close", resolve))));
  await Promise.all(streams.map((stream) => send(stream, perStreamBytes)));
  await received;
  const elapsedMs = performance.now() - started;
  await closed;
  const payloadBytes = perStreamBytes * row.streams;
  const wireBytes = clientChannel.bytesSent + serverChannel.bytesSent;
  const frames = clientChannel.messagesSent + serverChannel.messagesSent;
  client.close("bench done");
  return {
    label: row.label,
    streams: row.streams,
    frameKiB: (row.framePayloadBytes / 1024).toFixed(row.framePayloadBytes % 1024 ? 2 : 0),
    mib: (payloadBytes / MiB).toFixed(0),
    seconds: (elapsedMs / 1000).toFixed(2),
    mbPerSecond: (payloadBytes / 1e6 / (elapsedMs / 1000)).toFixed(0),
    frames,
    usPerFrame: row.channel.bytesPerSecond ? "-" : ((elapsedMs * 1000) / frames).toFixed(2), // CPU-bound rows only
    overhead: `${(((wireBytes - payloadBytes) / payloadBytes) * 100).toFixed(3)} %`,
    spread: row.streams > 1 ? `${((Math.min(...doneAtMs) / elapsedMs) * 100).toFixed(0)}% / 100%` : "-",
  };
}

function printTable(rows: Record<string, string | number>[]): void {
  const headers: Record<string, string> = {
    label: "channel",
    streams: "streams",
    frameKiB: "frame KiB",
    mib: "MiB",
    seconds: "s",
    mbPerSecond: "MB/s",
    frames: "frames",
    usPerFrame: "µs/frame",
    overhead: "wire overhead",
    spread: "first/last done",
  };
  const keys = Object.keys(headers);
  const widths = keys.map((key) => Math.max(headers[key]!.length, ...rows.map((row) => String(row[key]).length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ");
  console.log(line(keys.map((key) => headers[key]!)));
  console.log(line(widths.map((width) => "-".repeat(width))));
  for (const row of rows) console.log(line(keys.map((key) => String(row[key]))));
}

const totalBytes = parseMib() * MiB;
const unlimited = { label: "memory", channel: {} };
const limited = { label: "memory 100 MB/s", channel: { bytesPerSecond: 100e6 } };
// A long fat path: 40 ms round trip at 100 MB/s; one 256 KiB window per round trip would cap a stream at 6.5 MB/s.
const longFat = { label: "memory 100 MB/s 20 ms", channel: { bytesPerSecond: 100e6, latencyMs: 20 } };
const rows: Row[] = [
  { ...unlimited, streams: 1, framePayloadBytes: DEFAULT_MAX_FRAME_PAYLOAD_BYTES },
  { ...unlimited, streams: 16, framePayloadBytes: DEFAULT_MAX_FRAME_PAYLOAD_BYTES },
  { ...unlimited, streams: 1, framePayloadBytes: 65535 },
  { ...unlimited, streams: 16, framePayloadBytes: 65535 },
  { ...unlimited, streams: 1, framePayloadBytes: 1200 }, // about one KCP segment
  { ...limited, streams: 16, framePayloadBytes: DEFAULT_MAX_FRAME_PAYLOAD_BYTES },
  { ...longFat, streams: 1, framePayloadBytes: DEFAULT_MAX_FRAME_PAYLOAD_BYTES },
];
const results = [];
for (const row of rows) {
  // The throughput-limited row moves less so it stays short.
  const bytes = row.channel.bytesPerSecond ? Math.min(totalBytes, 64 * MiB) : row.framePayloadBytes < 4096 ? Math.min(totalBytes, 64 * MiB) : totalBytes;
  results.push(await runRow(row, bytes));
}
printTable(results);
console.log(`\nheader: 7 bytes per frame; WINDOW update: 11 bytes per half window (128 KiB) read; bun ${Bun.version}`);
