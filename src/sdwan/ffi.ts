// Loading koffi so that it works under `bun run` and inside a `bun build --compile` executable.
// The `koffi` package's own loader searches the filesystem for its prebuilt binary, which is not
// there inside a compiled executable, and `import` of a `.node` file fails in Bun. A `require()` of
// the prebuilt by a literal path is seen by the bundler, which embeds the file in the executable.

import type * as Koffi from "koffi";

export type KoffiModule = typeof Koffi;

export const SUPPORTED_PLATFORM = "linux-x64";
const LIBC_SONAME = "libc.so.6";

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

let koffi: KoffiModule | undefined;

export function loadKoffi(): KoffiModule {
  if (koffi) return koffi;
  const platform = currentPlatform();
  if (platform !== SUPPORTED_PLATFORM) {
    throw new FfiUnavailableError(
      `FFI (koffi) is only supported on ${SUPPORTED_PLATFORM} (glibc); this platform is ${platform}`,
    );
  }
  let native: KoffiModule;
  try {
    // The literal path must stay a literal: the bundler embeds exactly this file.
    native = require("../../node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node");
  } catch (err) {
    throw new FfiUnavailableError(
      `cannot load the koffi native module for ${platform} (glibc is required): ${(err as Error).message}`,
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
  const INT_BYTES = 4;
  libc = {
    getpid: () => getpid() as number,
    if_nametoindex: (name: string) => ifNameToIndex(name) as number,
    setsockoptInt: (fd, level, name, value) => setsockopt(fd, level, name, [value], INT_BYTES) as number,
  };
  return libc;
}
