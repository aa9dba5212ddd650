import { ptr } from "bun:ffi";
import { lazyLibc, O_CLOEXEC } from "../sdwan/ffi.ts";

// Holding a local TCP port between uses: a socket bound to it (SO_REUSEADDR) that never listens nor
// connects. Linux hands a port bound this way to no other program's connect() (the ephemeral search
// skips it), while our own connects from the port (Bun sets SO_REUSEADDR on them too) still bind. Between
// two uses of a port that is not held, any connect() on the host may take it once it is free.

const AF_INET = 2;
const SOCK_STREAM_CLOEXEC = 1 | O_CLOEXEC;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SOCKADDR_IN_BYTES = 16;

export interface TcpPortHold {
  readonly port: number;
  /** Lets the port go (our connects from it still work; other programs may take it again). */
  release(): void;
}

const libcCalls = lazyLibc({
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
  bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
  getsockname: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
});

/** Holds a free local TCP port (IPv4, any address) that the kernel picks; undefined where libc cannot be called or no port is free. */
export function holdTcpPort(): TcpPortHold | undefined {
  const libc = libcCalls();
  if (!libc) return undefined;
  const fd = libc.socket(AF_INET, SOCK_STREAM_CLOEXEC, 0);
  if (fd < 0) return undefined;
  const address = Buffer.alloc(SOCKADDR_IN_BYTES); // sockaddr_in: family (host order), port 0 (the kernel's pick), address 0.0.0.0
  address.writeUInt16LE(AF_INET, 0);
  const length = new Uint32Array([SOCKADDR_IN_BYTES]);
  const held =
    libc.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, ptr(new Int32Array([1])), 4) === 0 &&
    libc.bind(fd, ptr(address), SOCKADDR_IN_BYTES) === 0 &&
    libc.getsockname(fd, ptr(address), ptr(length)) === 0;
  if (!held) {
    libc.close(fd);
    return undefined;
  }
  let open = true;
  return {
    port: address.readUInt16BE(2),
    release: () => {
      if (open) libc.close(fd);
      open = false;
    },
  };
}
