import { closeSync, constants, openSync, readFileSync, writevSync } from "node:fs";
import { FfiUnavailableError, LIBC_SONAME, loadDeviceRead, loadKoffi, O_CLOEXEC } from "./ffi.ts";
import { TUN_DEVICE_PATH } from "./doctor.ts";
import { Coalescer, OffloadError, splitRead, VNET_HEADER_BYTES, type SegmentHandler } from "./offload.ts";
import { openTransmitTap, type TransmitTap } from "./transmit-tap.ts";

// A Linux TUN device through koffi: open /dev/net/tun (non-blocking), ioctl(TUNSETIFF) with IFF_TUN |
// IFF_NO_PI | IFF_VNET_HDR (IP packets behind a virtio_net_hdr, with the TSO and checksum offloads of
// offload.ts: super-packets in, segments out, and back). Reading: poll() runs on koffi's worker thread, and
// when the device is readable the loop drains every queued packet with plain non-blocking reads, so
// one thread hop serves a whole burst. (An asynchronous fs.read per packet managed ~3k packets/s;
// this, ~160k: scripts/bench/tun-loop.ts.) Once the interface is up, its transmit tap (transmit-tap.ts)
// wakes the loop from the JS thread's own event loop instead, and the worker is given no poll() while the
// tap is open: each tap wake-up is followed by one more look at the device a little later, for what the
// tap missed. Writes are synchronous and never block; a full queue drops.

const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const TUNSETOFFLOAD = 0x400454d0;
const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;
const IFNAMSIZ = 16;
const IFREQ_BYTES = 40;
const EPERM = 1;
const EBUSY = 16;
/** Largest packet read from the device (a TCP super-packet) and its virtio_net_hdr. */
const READ_BUFFER_BYTES = 65_536 + VNET_HEADER_BYTES;
const POLLIN = 0x0001;
const POLLFD_BYTES = 8;
/**
 * poll() also waits on a pipe that close() closes, so that the worker lets go of the device at once
 * (while poll() holds it, the interface stays), and an idle device wakes no thread. Where no pipe could
 * be made, poll() times out this often to notice close().
 */
const POLL_TIMEOUT_WITHOUT_PIPE_MS = 250;
const POLL_NO_TIMEOUT = -1;
/**
 * Reads from the device in one turn of the event loop at most. Under a flood the device never runs dry,
 * and a loop that reads until it does holds the JS thread for as long as the flood lasts: the link's
 * received packets (a TCP connection's ACKs) and timers (the flow allowances' of fairness.ts) wait.
 * 256 reads are 256 packets of a flood, or up to 16 MB of TCP super-packets.
 */
const DEVICE_READS_PER_TURN = 256;
/** How often a transmit tap that could not be opened, or closed (the interface went down), is tried again, at most. */
const TAP_RETRY_MS = 1_000;
/**
 * With the tap open, how long after a tap wake-up the loop looks at the device again: the longest a packet
 * waits that the tap's wake-up missed (it sees a packet just before the device queues it, so a reader
 * running on another CPU can look too soon), or that a drain stopped at DEVICE_READS_PER_TURN left.
 * One look is due at a time; one that finds packets makes the next due.
 */
const TAP_MISS_LOOK_DELAY_MS = 2;

export type TunErrorCode = "TUN_UNAVAILABLE" | "TUN_NOT_PERMITTED" | "TUN_FAILED";

export class TunError extends Error {
  constructor(
    readonly code: TunErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface TunDevice {
  readonly name: string;
  /**
   * Starts the read loop: `onPacket` gets each IP packet of at most the MTU (its buffer is reused: copy to
   * keep it; the byte before it is spare, for a header), and whether its TCP/UDP checksum is left
   * partial (see offload.ts). `onSuperPacket`, when given, is offered each TCP super-packet first, with
   * its segment size (3 bytes before it are spare); when it declines, the segments go to `onPacket`.
   */
  start(onPacket: SegmentHandler, onSuperPacket?: (packet: Buffer, gsoSize: number) => boolean): void;
  /** Queues a TCP super-packet (checksum partial, segments of `gsoSize`) to be written as it is; false: not one. */
  writeSuperPacket(packet: Buffer, gsoSize: number): boolean;
  /** Queues a packet for the device: what is written in one turn of the event loop goes at its end, runs of a TCP flow as one. */
  write(packet: Buffer, checksumPartial: boolean): void;
  /** Packets the kernel dropped at the device's queue so far (the node read too slowly), or 0 if unknown. */
  queueDrops(): number;
  /**
   * The read loop's wake-ups so far that found packets: by the transmit tap (transmit-tap.ts), and by
   * its backstop (the worker's poll() while no tap is open, the look after a tap wake-up while one is).
   */
  readWakes(): { tap: number; backstop: number };
  close(): void;
}

interface TunCalls {
  ioctl(fd: number, request: number, type: string, arg: Buffer | number): number;
  /** poll() on a worker thread; calls back with its result. */
  pollAsync(fds: Buffer, count: number, timeoutMs: number, done: (err: unknown, result: number) => void): void;
  /** pipe2(): 0 and the two ends in `fds`, or -1. */
  pipe(fds: Int32Array, flags: number): number;
}
let calls: TunCalls | undefined;

function tunCalls(): TunCalls {
  if (calls) return calls;
  const libc = loadKoffi().load(LIBC_SONAME);
  const ioctl = libc.func("int ioctl(int fd, unsigned long request, ...)");
  const poll = libc.func("int poll(uint8_t *fds, unsigned long nfds, int timeout)");
  const pipe2 = libc.func("int pipe2(_Out_ int *fds, int flags)");
  calls = {
    ioctl: (fd, request, type, arg) => ioctl(fd, request, type, arg) as number,
    pollAsync: (fds, count, timeoutMs, done) => poll.async(fds, count, timeoutMs, done),
    pipe: (fds, flags) => pipe2(fds, flags) as number,
  };
  return calls;
}

/** Creates (or attaches to) the TUN interface `name`; throws TunError saying exactly what is missing. */
export function openTun(name: string): TunDevice {
  if (Buffer.byteLength(name) >= IFNAMSIZ) throw new TunError("TUN_FAILED", `interface name "${name}" is longer than ${IFNAMSIZ - 1} bytes`);
  let fd: number;
  try {
    fd = openSync(TUN_DEVICE_PATH, constants.O_RDWR | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new TunError("TUN_UNAVAILABLE", `${TUN_DEVICE_PATH} does not exist (load the tun kernel module, or give the container the device)`);
    if (code === "EACCES" || code === "EPERM") throw new TunError("TUN_NOT_PERMITTED", `cannot open ${TUN_DEVICE_PATH}: permission denied (run as root, or with CAP_NET_ADMIN)`);
    throw new TunError("TUN_UNAVAILABLE", `cannot open ${TUN_DEVICE_PATH}: ${(err as Error).message}`);
  }
  const request = Buffer.alloc(IFREQ_BYTES);
  request.write(name);
  request.writeUInt16LE(IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, IFNAMSIZ);
  let result: number;
  try {
    result = tunCalls().ioctl(fd, TUNSETIFF, "uint8_t *", request);
  } catch (err) {
    closeSync(fd);
    if (err instanceof FfiUnavailableError) throw new TunError("TUN_UNAVAILABLE", err.message);
    throw err;
  }
  if (result < 0) {
    const errno = loadKoffi().errno();
    closeSync(fd);
    if (errno === EPERM) throw new TunError("TUN_NOT_PERMITTED", `creating TUN interface ${name} needs CAP_NET_ADMIN (run as root, or grant the capability)`);
    if (errno === EBUSY) throw new TunError("TUN_FAILED", `TUN interface ${name} is in use by another process`);
    throw new TunError("TUN_FAILED", `ioctl(TUNSETIFF) for ${name} failed with errno ${errno}`);
  }
  const actualName = request.subarray(0, IFNAMSIZ).toString("utf8").replace(/\0.*$/s, "");
  // Without the offloads (an old kernel) the device still speaks virtio_net_hdr, just never hands over a super-packet.
  tunCalls().ioctl(fd, TUNSETOFFLOAD, "unsigned long", TUN_F_CSUM | TUN_F_TSO4);
  return deviceOnFd(fd, actualName, { transmitTap: true });
}

/**
 * The read loop and writes of a TUN device on `fd` (non-blocking), which closes with it. Any fd that
 * keeps message boundaries serves: the start-up warm-up (warm-up.ts) runs this code on a socket pair.
 * With `transmitTap`, the interface `name`'s transmit tap wakes the read loop too, once the interface is up.
 */
export function deviceOnFd(fd: number, name: string, options: { transmitTap?: boolean } = {}): TunDevice {
  let closed = false;
  let tap: TransmitTap | undefined;
  /**
   * Whether the tap is open, as a plain boolean: drain() reads it on every packet's path, and the start-up
   * warm-up's devices (socket pairs) have no tap. Code the warm-up never ran (a `tap?.open` finding a tap)
   * is compiled to leave the optimised code when reached, which each idle packet then paid for.
   */
  let tapOpen = false;
  let tapTriedAt = -Infinity;
  /** The look at the device due after a tap wake-up (TAP_MISS_LOOK_DELAY_MS). */
  let tapMissLook: ReturnType<typeof setTimeout> | undefined;
  const wakes = { tap: 0, backstop: 0 };
  const coalescer = new Coalescer((parts) => {
    try {
      writevSync(fd, parts);
    } catch {
      // the interface is down or the packet was refused: IP is best-effort, drop it
    }
  });
  let flushQueued = false;
  const flushSoon = () => {
    if (flushQueued) return;
    flushQueued = true;
    queueMicrotask(flush);
  };
  /** Reads what the device holds now (up to DEVICE_READS_PER_TURN packets); set by start(). */
  let drainDevice: (() => void) | undefined;
  /** The pipe whose closing wakes the worker's poll(); set by start(). */
  let stopPipe: Int32Array | undefined;
  /** poll() is with the worker (running, or queued: Bun's pool runs two at once): its completion is due. */
  let polling = false;
  const releaseFds = () => {
    closeSync(fd);
    if (stopPipe) closeSync(stopPipe[0]!);
  };
  const flush = () => {
    flushQueued = false;
    if (closed) return;
    coalescer.flush();
    // What the kernel answers to a packet written (an echo reply, a TCP ACK) is often queued on the
    // device before the write returns: reading it now saves a wake-up (the tap's, or the worker's and its
    // hand-off where no tap is open).
    drainDevice?.();
  };
  return {
    name,
    start(onPacket, onSuperPacket) {
      const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
      const scratch = Buffer.allocUnsafe(READ_BUFFER_BYTES);
      const pipe = new Int32Array(2);
      if (tunCalls().pipe(pipe, O_CLOEXEC) === 0) stopPipe = pipe;
      const pollFd = Buffer.alloc(POLLFD_BYTES * 2);
      pollFd.writeInt32LE(fd, 0);
      pollFd.writeInt16LE(POLLIN, 4);
      pollFd.writeInt32LE(stopPipe?.[0] ?? -1, POLLFD_BYTES); // a negative fd: poll() skips the entry
      pollFd.writeInt16LE(POLLIN, POLLFD_BYTES + 4);
      const pollTimeoutMs = stopPipe ? POLL_NO_TIMEOUT : POLL_TIMEOUT_WITHOUT_PIPE_MS;
      const read = loadDeviceRead();
      /** Reads what the device holds now; true if it held anything. */
      const drain = (): boolean => {
        for (let reads = 0; reads < DEVICE_READS_PER_TURN; reads++) {
          const bytes = read(fd, buffer);
          if (bytes <= 0) {
            if (reads > 0 && !tapOpen) openTapIfDue();
            return reads > 0; // the queue is empty (or the device is gone)
          }
          try {
            splitRead(buffer.subarray(0, bytes), scratch, onPacket, onSuperPacket);
          } catch (err) {
            if (!(err instanceof OffloadError)) throw err; // the kernel sent what we did not ask for: drop it
          }
          if (closed) return true;
        }
        return true;
      };
      // A packet read (by any drain, also the one after a write) means the interface is up: the tap can
      // be bound (a down interface closes it).
      const openTapIfDue = () => {
        if (!options.transmitTap || tapOpen || closed) return;
        const now = performance.now();
        if (now - tapTriedAt < TAP_RETRY_MS) return;
        tapTriedAt = now;
        tap = openTransmitTap(
          name,
          () => {
            if (closed) return;
            if (drain()) wakes.tap++;
            tapMissLook ??= setTimeout(lookForMissed, TAP_MISS_LOOK_DELAY_MS);
          },
          () => {
            tapOpen = false;
            queueMicrotask(wait); // the interface went down: the worker watches until a tap opens again
          },
        );
        tapOpen = tap?.open === true;
      };
      const lookForMissed = () => {
        tapMissLook = undefined;
        if (closed || !drain()) return;
        wakes.backstop++;
        if (tapOpen) tapMissLook = setTimeout(lookForMissed, TAP_MISS_LOOK_DELAY_MS);
      };
      // Only while no tap is open: a worker waiting beside the tap is woken by every packet the tap reports
      // too, on the CPU of the program that sent it, whose turn (and a ping's round trip) that wake-up lengthens.
      const wait = () => {
        if (polling || closed || tapOpen) return;
        polling = true;
        tunCalls().pollAsync(pollFd, 2, pollTimeoutMs, () => {
          polling = false;
          if (closed) return releaseFds();
          if (drain()) wakes.backstop++;
          // After the microtasks: the packets just read leave (the endpoint sends in one) before poll() is handed to the worker.
          queueMicrotask(wait);
        });
      };
      drainDevice = drain;
      openTapIfDue();
      wait();
    },
    writeSuperPacket(packet, gsoSize) {
      if (closed) return true;
      if (!coalescer.addSuperPacket(packet, gsoSize)) return false;
      flushSoon();
      return true;
    },
    write(packet, checksumPartial) {
      if (closed) return;
      coalescer.add(packet, checksumPartial);
      flushSoon();
    },
    readWakes: () => ({ ...wakes }),
    queueDrops() {
      try {
        return Number(readFileSync(`/sys/class/net/${name}/statistics/tx_dropped`, "latin1"));
      } catch {
        return 0; // no sysfs here: the drops go unseen
      }
    },
    close() {
      if (closed) return;
      closed = true;
      tap?.close();
      tapOpen = false;
      clearTimeout(tapMissLook);
      // The write end's closing wakes poll() (POLLHUP on the read end), or makes one still queued return at
      // once. The device and the read end go when it has returned: a poll() queued behind others must not
      // find their numbers given to something else meanwhile, and wait on that, holding a pool thread for good.
      if (stopPipe) closeSync(stopPipe[1]!);
      if (!polling) releaseFds();
    },
  };
}
