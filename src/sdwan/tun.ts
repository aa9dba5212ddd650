import { closeSync, openSync, read, writeSync } from "node:fs";
import { FfiUnavailableError, loadKoffi } from "./ffi.ts";
import { TUN_DEVICE_PATH } from "./doctor.ts";

// A Linux TUN device through koffi: open /dev/net/tun, ioctl(TUNSETIFF) with IFF_TUN | IFF_NO_PI (bare
// IP packets, no 4-byte header). Reads go through node:fs's thread pool (one outstanding read at a
// time, a packet each); writes are synchronous (a TUN write does not block).

const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFNAMSIZ = 16;
const IFREQ_BYTES = 40;
const EPERM = 1;
const EBUSY = 16;
/** Largest packet read from the device: the interface MTU is far below this. */
const READ_BUFFER_BYTES = 65_536;

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
  /** Starts the read loop: `onPacket` gets each IP packet (its buffer is reused: copy to keep it). */
  start(onPacket: (packet: Buffer) => void): void;
  write(packet: Uint8Array): void;
  close(): void;
}

let ioctl: ((fd: number, request: number, type: string, arg: Buffer) => number) | undefined;

function tunIoctl(): NonNullable<typeof ioctl> {
  if (ioctl) return ioctl;
  const koffi = loadKoffi();
  const func = koffi.load("libc.so.6").func("int ioctl(int fd, unsigned long request, ...)");
  ioctl = (fd, request, type, arg) => func(fd, request, type, arg) as number;
  return ioctl;
}

/** Creates (or attaches to) the TUN interface `name`; throws TunError saying exactly what is missing. */
export function openTun(name: string): TunDevice {
  if (Buffer.byteLength(name) >= IFNAMSIZ) throw new TunError("TUN_FAILED", `interface name "${name}" is longer than ${IFNAMSIZ - 1} bytes`);
  let fd: number;
  try {
    fd = openSync(TUN_DEVICE_PATH, "r+");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new TunError("TUN_UNAVAILABLE", `${TUN_DEVICE_PATH} does not exist (load the tun kernel module, or give the container the device)`);
    if (code === "EACCES" || code === "EPERM") throw new TunError("TUN_NOT_PERMITTED", `cannot open ${TUN_DEVICE_PATH}: permission denied (run as root, or with CAP_NET_ADMIN)`);
    throw new TunError("TUN_UNAVAILABLE", `cannot open ${TUN_DEVICE_PATH}: ${(err as Error).message}`);
  }
  const request = Buffer.alloc(IFREQ_BYTES);
  request.write(name);
  request.writeUInt16LE(IFF_TUN | IFF_NO_PI, IFNAMSIZ);
  let result: number;
  try {
    result = tunIoctl()(fd, TUNSETIFF, "uint8_t *", request);
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
  let closed = false;
  return {
    name: actualName,
    start(onPacket) {
      const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
      const next = () =>
        read(fd, buffer, 0, buffer.length, null, (err, bytes) => {
          if (closed) return;
          if (err) return setTimeout(next, 10); // EAGAIN/EINTR-like hiccups: try again shortly
          if (bytes > 0) onPacket(buffer.subarray(0, bytes));
          next();
        });
      next();
    },
    write(packet) {
      if (closed) return;
      try {
        writeSync(fd, packet);
      } catch {
        // the interface is down or the packet was refused: IP is best-effort, drop it
      }
    },
    close() {
      if (closed) return;
      closed = true;
      closeSync(fd);
    },
  };
}
