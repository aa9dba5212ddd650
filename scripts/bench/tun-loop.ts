#!/usr/bin/env bun
// The TUN device loop alone (what src/sdwan/tun.ts does for the overlay), without any peer link: how
// many packets a second it reads from the kernel and writes back. Needs root; run it in a scratch
// network namespace (scripts/bench/sdwan.ts does):
//
//   node_modules/.bin/bun scripts/bench/tun-loop.ts [--seconds 3] [--bytes 1400]
//
// Read: a UDP socket floods 10.99.0.2 (routed into the TUN device); the loop counts what it reads.
// Write: the loop writes IPv4/UDP packets to 10.99.0.1 (this host) into the device; a UDP socket counts
// what arrives. Prints one JSON line: { readPps, readMbps, writePps, writeMbps }.

import { createSocket } from "node:dgram";
import { parseArgs } from "node:util";
import { configureInterface } from "../../src/sdwan/netconf.ts";
import { openTun } from "../../src/sdwan/tun.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "3" }, bytes: { type: "string", default: "1400" } } });
const SECONDS = Number(values.seconds);
const PAYLOAD_BYTES = Number(values.bytes) - 28;
const DEVICE = "tunbench0";
const SINK_PORT = 9999;

const tun = openTun(DEVICE);
await configureInterface(DEVICE, "10.99.0.1", 24, 1500);

// Read path.
let read = 0;
tun.start(() => read++);
const sender = createSocket("udp4");
const payload = Buffer.alloc(PAYLOAD_BYTES, 7);
const readUntil = performance.now() + SECONDS * 1000;
await new Promise<void>((done) => {
  const burst = () => {
    for (let i = 0; i < 64; i++) sender.send(payload, 9, "10.99.0.2");
    if (performance.now() < readUntil) setImmediate(burst);
    else done();
  };
  burst();
});
const readPps = read / SECONDS;

// Write path: hand-made IPv4/UDP packets from 10.99.0.2 to 10.99.0.1:SINK_PORT (UDP checksum 0 = none).
const sink = createSocket("udp4");
let received = 0;
sink.on("message", () => received++);
await new Promise<void>((done) => sink.bind(SINK_PORT, "10.99.0.1", done));
const packet = Buffer.alloc(28 + PAYLOAD_BYTES);
packet.fill(7, 28);
packet.writeUInt8(0x45, 0);
packet.writeUInt16BE(packet.length, 2);
packet.writeUInt8(64, 8);
packet.writeUInt8(17, 9);
Buffer.from([10, 99, 0, 2, 10, 99, 0, 1]).copy(packet, 12);
let sum = 0;
for (let i = 0; i < 20; i += 2) sum += packet.readUInt16BE(i);
while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
packet.writeUInt16BE(~sum & 0xffff, 10);
packet.writeUInt16BE(40000, 20);
packet.writeUInt16BE(SINK_PORT, 22);
packet.writeUInt16BE(8 + PAYLOAD_BYTES, 24);
packet.writeUInt16BE(0, 26);
const writeUntil = performance.now() + SECONDS * 1000;
await new Promise<void>((done) => {
  const burst = () => {
    for (let i = 0; i < 64; i++) tun.write(packet, false);
    if (performance.now() < writeUntil) setImmediate(burst);
    else setTimeout(done, 200);
  };
  burst();
});
const writePps = received / SECONDS;
const mbps = (pps: number) => Math.round((pps * (28 + PAYLOAD_BYTES) * 8) / 1e6);
console.log(JSON.stringify({ readPps: Math.round(readPps), readMbps: mbps(readPps), writePps: Math.round(writePps), writeMbps: mbps(writePps) }));
sender.close();
sink.close();
tun.close();
process.exit(0);
