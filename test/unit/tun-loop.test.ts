// The TUN device's read loop (src/sdwan/tun.ts) on a socket pair, which keeps message boundaries as a
// TUN device does: packets are read whether they come in bursts or one at a time after idle spells
// (when the loop waits for poll() on koffi's worker thread), each device is woken for its own, and
// the others go on when one is closed. And both ways of reading one packet (bun:ffi's read(2), node:fs's
// readSync as the fallback): the packet whole, then -1 when none is queued.
import { closeSync, writeSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { loadDeviceRead, loadLibc, readSyncOrNone } from "../../src/sdwan/ffi.ts";
import { VNET_HEADER_BYTES } from "../../src/sdwan/offload.ts";
import { deviceOnFd, type TunDevice } from "../../src/sdwan/tun.ts";
import { waitFor } from "../helpers/processes.ts";

const IPV4_HEADER_BYTES = 20;
const PACKET_BYTES = 64;
const WAIT_MS = 5_000;
/** More devices than this, each with a poll() on koffi's pool, and the pool is taken to have no limit. */
const POOL_THREADS_MAX = 64;
/** A packet not read in this long: the device's poll() has not run (a running one wakes in microseconds). */
const QUEUED_AFTER_MS = 300;

/** A device read: a virtio_net_hdr (no offload) and an IPv4 packet carrying `sequence`. */
function deviceRead(sequence: number): Buffer {
  const frame = Buffer.alloc(VNET_HEADER_BYTES + PACKET_BYTES);
  const packet = frame.subarray(VNET_HEADER_BYTES);
  packet[0] = 0x45;
  packet.writeUInt16BE(PACKET_BYTES, 2);
  packet[9] = 17;
  packet.writeUInt32BE(sequence, IPV4_HEADER_BYTES);
  return frame;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("TUN read loop", () => {
  const opened: { device: TunDevice; hostFd: number }[] = [];
  afterEach(() => {
    for (const { device, hostFd } of opened.splice(0)) {
      device.close();
      closeSync(hostFd);
    }
  });

  function openPair(): { device: TunDevice; hostFd: number; received: number[] } {
    const pair = loadLibc().seqpacketPair();
    if (!pair) throw new Error("socketpair() failed");
    const device = deviceOnFd(pair[0], "loop-test");
    const received: number[] = [];
    device.start((withHeadroom) => received.push(withHeadroom.readUInt32BE(1 + IPV4_HEADER_BYTES)));
    opened.push({ device, hostFd: pair[1] });
    return { device, hostFd: pair[1], received };
  }

  it("reads packets that come one at a time after idle spells of 0-20 ms, and bursts, in order", async () => {
    const { hostFd, received } = openPair();
    const sent: number[] = [];
    let sequence = 0;
    for (let round = 0; round < 30; round++) {
      const burst = round % 3 === 0 ? 100 : 1;
      for (let i = 0; i < burst; i++) {
        writeSync(hostFd, deviceRead(++sequence));
        sent.push(sequence);
      }
      await waitFor(`packet ${sequence} read`, () => received.length === sent.length, WAIT_MS, 1);
      await sleep(round % 7 === 0 ? 20 : round % 4); // 0-3 ms: often just as the loop goes back to waiting
    }
    expect(received).toEqual(sent);
  });

  it("wakes each device for its own packets, and goes on for the others when one is closed", async () => {
    const first = openPair();
    const second = openPair();
    writeSync(first.hostFd, deviceRead(1));
    await waitFor("first device's packet read", () => first.received.length === 1, WAIT_MS, 1);
    writeSync(second.hostFd, deviceRead(2));
    await waitFor("second device's packet read", () => second.received.length === 1, WAIT_MS, 1);
    expect(first.received).toEqual([1]);

    first.device.close();
    const third = openPair();
    for (const [i, { hostFd }] of [second, third].entries()) writeSync(hostFd, deviceRead(3 + i));
    await waitFor("the open devices' packets read", () => second.received.length === 2 && third.received.length === 1, WAIT_MS, 1);
    expect([first.received, second.received, third.received]).toEqual([[1], [2, 3], [4]]);
  });

  // koffi's asynchronous calls run on a pool of a few threads (two on a 2-core box): a device's poll()
  // may wait there while others hold every thread. Closed meanwhile, its fd numbers must not be given
  // out again before that poll() runs: it would wait on whatever got them, holding a thread for good.
  it("a device closed while its poll() is still queued gives its pool thread back", async () => {
    const idle: number[] = [];
    try {
      // Devices with a poll() each, until one's packet is not read: every pool thread is held, its poll() queued.
      let queued: ReturnType<typeof openPair> | undefined;
      for (let count = 0; count < POOL_THREADS_MAX + 1 && !queued; count++) {
        const pair = openPair();
        writeSync(pair.hostFd, deviceRead(count));
        const deadline = Date.now() + QUEUED_AFTER_MS;
        while (pair.received.length === 0 && Date.now() < deadline) await sleep(5);
        if (pair.received.length === 0) queued = pair;
      }
      if (!queued) throw new Error(`${POOL_THREADS_MAX + 1} devices' poll() calls all ran at once: no pool to fill`);
      const holders = opened.filter(({ device }) => device !== queued.device);
      queued.device.close();
      // Whatever opens next gets the lowest free fd numbers: idle sockets no one writes to.
      for (let i = 0; i < 2; i++) idle.push(...(loadLibc().seqpacketPair() ?? []));
      holders[0]!.device.close(); // a pool thread comes free: the closed device's poll() runs now
      const next = openPair();
      writeSync(next.hostFd, deviceRead(99));
      await waitFor("a new device's packet read", () => next.received.length === 1, WAIT_MS, 1);
    } finally {
      // With the defect, a poll() waits on these: wake it, then close them.
      for (const fd of idle) writeSync(fd, Buffer.from([0]));
      await sleep(50);
      idle.forEach((fd) => closeSync(fd));
    }
  });
});

describe("device reads", () => {
  // Both ways of reading the device: bun:ffi's read(2), and node:fs's readSync where bun:ffi cannot load libc.
  for (const [name, read] of [
    ["bun:ffi read(2)", loadDeviceRead()],
    ["readSync fallback", readSyncOrNone],
  ] as const) {
    it(`${name}: a message whole, into a buffer's start, then -1 when none is queued`, () => {
      const pair = loadLibc().seqpacketPair();
      if (!pair) throw new Error("socketpair() failed");
      const [deviceFd, hostFd] = pair;
      let hostOpen = true;
      try {
        if (name.startsWith("bun:ffi")) expect(read).not.toBe(readSyncOrNone); // libc loaded: not the fallback under another name
        const buffer = Buffer.alloc(2_048, 0xee);
        for (const bytes of [84, 1_400, 1]) {
          const sent = Buffer.alloc(bytes, bytes & 0xff);
          writeSync(hostFd, sent);
          expect(read(deviceFd, buffer)).toBe(bytes);
          expect(buffer.subarray(0, bytes).equals(sent)).toBe(true);
          expect(read(deviceFd, buffer)).toBe(-1);
        }
        closeSync(hostFd);
        hostOpen = false;
        expect(read(deviceFd, buffer)).toBeLessThanOrEqual(0); // the other end closed: end of file, not a packet
      } finally {
        closeSync(deviceFd);
        if (hostOpen) closeSync(hostFd);
      }
    });
  }
});
