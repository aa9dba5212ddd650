// Loading koffi so that it works under `bun run` and inside a `bun build --compile` executable.
// The `koffi` package's own loader searches the filesystem for its prebuilt binary, which is not
// there inside a compiled executable, and `import` of a `.node` file fails in Bun. A `require()` of
// the prebuilt by a literal path is seen by the bundler, which embeds the file in the executable.
// The device's read, on the per-packet path, goes through Bun's own FFI instead (bun:ffi, at the end
// of this file): a cheaper call, and no exception for EAGAIN.

import { type ConvertFns, dlopen, type FFIFunction, ptr } from "bun:ffi";
import { readSync } from "node:fs";
import type * as Koffi from "koffi";

export type KoffiModule = typeof Koffi;

/** The platforms koffi is embedded for (each in a glibc and a musl build, see scripts/build.ts). */
export const SUPPORTED_PLATFORMS = ["linux-x64", "linux-arm64"] as const;
export const LIBC_SONAME = "libc.so.6";
/** open(2)'s and pipe2(2)'s close-on-exec flag; socket(2) takes the same value in its type (SOCK_CLOEXEC). */
export const O_CLOEXEC = 0o2000000;

/**
 * Set by scripts/build.ts (`bun build --define`) to the koffi prebuilt of the target being compiled,
 * e.g. "musl_arm64"; not defined under `bun run` and in tests.
 */
declare const INP2P_KOFFI_PREBUILT: string;

export class FfiUnavailableError extends Error {
  readonly code = "FFI_UNAVAILABLE";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "FfiUnavailableError";
  }
}

export function currentPlatform(): string {
  return `${process.platform}-${process.arch}`;
}

/** koffi's name for this process's platform: linux_x64, musl_x64, linux_arm64 or musl_arm64. */
function runningPrebuilt(): string {
  const report = (process as { report?: { getReport(): { header?: { glibcVersionRuntime?: string } } } }).report;
  const glibc = report?.getReport().header?.glibcVersionRuntime !== undefined;
  return `${glibc ? "linux" : "musl"}_${process.arch}`;
}

function requireNative(): unknown {
  if (typeof INP2P_KOFFI_PREBUILT === "undefined") {
    // `bun run`: this checkout's node_modules holds the prebuilt for the machine it was installed on.
    return require(`../../node_modules/@koromix/koffi-${currentPlatform()}/${runningPrebuilt()}/koffi.node`);
  }
  // A compiled executable: the bundler folds these comparisons and embeds the one file that matches.
  // The paths must stay literals; scripts/build.ts fetches the packages a cross build needs.
  if (INP2P_KOFFI_PREBUILT === "linux_x64") return require("../../node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node");
  if (INP2P_KOFFI_PREBUILT === "musl_x64") return require("../../node_modules/@koromix/koffi-linux-x64/musl_x64/koffi.node");
  if (INP2P_KOFFI_PREBUILT === "linux_arm64") return require("../../node_modules/@koromix/koffi-linux-arm64/linux_arm64/koffi.node");
  if (INP2P_KOFFI_PREBUILT === "musl_arm64") return require("../../node_modules/@koromix/koffi-linux-arm64/musl_arm64/koffi.node");
  throw new FfiUnavailableError(`this executable was built without a koffi module (target ${INP2P_KOFFI_PREBUILT})`);
}

let koffi: KoffiModule | undefined;

export function loadKoffi(): KoffiModule {
  if (koffi) return koffi;
  const platform = currentPlatform();
  if (!(SUPPORTED_PLATFORMS as readonly string[]).includes(platform)) {
    throw new FfiUnavailableError(
      `FFI (koffi) is only supported on ${SUPPORTED_PLATFORMS.join(" and ")}; this platform is ${platform}`,
    );
  }
  let native: KoffiModule;
  try {
    native = requireNative() as KoffiModule;
  } catch (err) {
    if (err instanceof FfiUnavailableError) throw err;
    throw new FfiUnavailableError(
      `cannot load the koffi native module for ${platform} (a compiled binary writes it to $TMPDIR or /tmp first; it needs libstdc++.so.6 and libgcc_s.so.1): ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (typeof native?.load !== "function") {
    throw new FfiUnavailableError("the koffi native module loaded but has no load() function");
  }
  koffi = native;
  return koffi;
}

export interface Libc {
  getpid(): number;
  /** Index of a network interface, 0 when there is no such interface. */
  if_nametoindex(name: string): number;
  /** setsockopt with an int value; 0 on success, -1 on failure. */
  setsockoptInt(fd: number, level: number, name: number, value: number): number;
  /** Two connected non-blocking AF_UNIX SOCK_SEQPACKET sockets (a write is one message, as on a TUN device); undefined on failure. */
  seqpacketPair(): [number, number] | undefined;
}

let libc: Libc | undefined;

export function loadLibc(): Libc {
  if (libc) return libc;
  const k = loadKoffi();
  let lib: Koffi.LibraryHandle;
  try {
    lib = k.load(LIBC_SONAME);
  } catch (err) {
    throw new FfiUnavailableError(`cannot open ${LIBC_SONAME}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const getpid = lib.func("int getpid()");
  const ifNameToIndex = lib.func("unsigned int if_nametoindex(const char *ifname)");
  const setsockopt = lib.func("int setsockopt(int fd, int level, int optname, const int *optval, uint32_t optlen)");
  const socketpair = lib.func("int socketpair(int domain, int type, int protocol, _Out_ int *sv)");
  const INT_BYTES = 4;
  const AF_UNIX = 1;
  const SOCK_SEQPACKET_NONBLOCK_CLOEXEC = 5 | 0o4000 | O_CLOEXEC;
  libc = {
    getpid: () => getpid() as number,
    if_nametoindex: (name: string) => ifNameToIndex(name) as number,
    setsockoptInt: (fd, level, name, value) => setsockopt(fd, level, name, [value], INT_BYTES) as number,
    seqpacketPair: () => {
      const fds = new Int32Array(2);
      return socketpair(AF_UNIX, SOCK_SEQPACKET_NONBLOCK_CLOEXEC, 0, fds) === 0 ? [fds[0]!, fds[1]!] : undefined;
    },
  };
  return libc;
}

/**
 * libc's `functions` through bun:ffi, opened on the first call of the getter returned and kept; null where
 * bun:ffi cannot open libc (a musl system: the caller does without).
 */
export function lazyLibc<Functions extends Record<string, FFIFunction>>(functions: Functions): () => ConvertFns<Functions> | null {
  let symbols: ConvertFns<Functions> | null | undefined;
  return () => {
    if (symbols !== undefined) return symbols;
    try {
      symbols = dlopen(LIBC_SONAME, functions).symbols;
    } catch {
      symbols = null;
    }
    return symbols;
  };
}

/** Reads one message (a TUN device's packet) from a non-blocking fd into `buffer`: its bytes, or -1 when there is none (or on any error). */
export type DeviceRead = (fd: number, buffer: Buffer) => number;

let deviceRead: DeviceRead | undefined;
const libcRead = lazyLibc({ read: { args: ["i32", "ptr", "u64"], returns: "i32" } }); // ssize_t: its low 32 bits hold any packet size, and -1

/**
 * read(2) through Bun's own FFI (bun:ffi; koffi stays for what needs a worker thread, poll). Every drain of
 * the device ends with a read that finds nothing: node:fs's readSync throws EAGAIN, an exception that costs
 * ~2.5 µs, and ~50 µs after an idle spell; here it is -1 (~0.4 µs, ~2 µs cold), and a packet's read is
 * ~18 µs cold against 23 (koffi's call: 37). Falls back to readSync where bun:ffi cannot load libc.
 */
export function loadDeviceRead(): DeviceRead {
  if (deviceRead) return deviceRead;
  const read = libcRead()?.read;
  // The pointer is taken at each call: `buffer` may be any Buffer the caller owns.
  deviceRead = read ? (fd, buffer) => read(fd, ptr(buffer), buffer.length) : readSyncOrNone;
  return deviceRead;
}

/** The fallback of loadDeviceRead: node:fs's readSync, its exceptions (EAGAIN) as -1. */
export const readSyncOrNone: DeviceRead = (fd, buffer) => {
  try {
    return readSync(fd, buffer, 0, buffer.length, null);
  } catch {
    return -1; // EAGAIN: nothing queued
  }
};
