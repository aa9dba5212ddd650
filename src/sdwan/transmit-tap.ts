import { ptr } from "bun:ffi";
import { lazyLibc, loadLibc, O_CLOEXEC } from "./ffi.ts";

// A wake-up for the TUN read loop from Bun's own event loop: a packet socket (AF_PACKET) bound to the
// device, whose filter keeps only what the kernel transmits to the device (what the read loop is about
// to read), cut to 1 byte. Bun watches it as any socket (Bun.connect({ fd })), so a packet for the device
// wakes the JS thread itself, from the sending program's CPU, where the worker thread's poll() (tun.ts)
// wakes that thread first, whose hand-off to the JS thread is a second wake-up, mostly on the other CPU.
// The tap sees each packet just before the device queues it: a reader on another CPU can look too soon,
// so the read loop looks again a little after each wake-up (tun.ts).

const AF_PACKET = 17;
const SOCK_DGRAM_NONBLOCK_CLOEXEC = 2 | 0o4000 | O_CLOEXEC;
/** Every protocol (ETH_P_ALL), in network order as sockaddr_ll takes it. */
const ETH_P_ALL_NETWORK_ORDER = 0x0300;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_ATTACH_FILTER = 26;
const SOCKADDR_LL_BYTES = 20;
const SOCK_FILTER_BYTES = 8;
const SOCK_FPROG_BYTES = 16;
/** Classic BPF: load the packet type (an ancillary field), keep PACKET_OUTGOING's first byte, drop the rest. */
const BPF_LD_W_ABS = 0x20;
const BPF_JMP_JEQ_K = 0x15;
const BPF_RET_K = 0x06;
const SKF_AD_PKTTYPE = 0xfffff000 + 4;
const PACKET_OUTGOING = 4;
const TAP_FILTER: readonly [code: number, jumpIfTrue: number, jumpIfFalse: number, k: number][] = [
  [BPF_LD_W_ABS, 0, 0, SKF_AD_PKTTYPE],
  [BPF_JMP_JEQ_K, 0, 1, PACKET_OUTGOING],
  [BPF_RET_K, 0, 0, 1],
  [BPF_RET_K, 0, 0, 0],
];
/** The least the kernel allows (it doubles this and takes at least ~4.5 KB): a wake-up needs one queued, the rest are dropped. */
const TAP_RECEIVE_BUFFER_BYTES = 1;

export interface TransmitTap {
  /** False once the socket has closed: the interface went down (ENETDOWN), or close() was called. */
  readonly open: boolean;
  close(): void;
}

/** Bun.connect adopts a socket's fd (FdSocketOptions); its type declarations lack that overload. */
const connectFd = Bun.connect as unknown as (options: Bun.FdSocketOptions) => Promise<Bun.Socket>;

const libcCalls = lazyLibc({
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
  bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
});

/**
 * Calls `onTransmit` (from the event loop) after the kernel has sent packets to `device`, and `onClosed`
 * once if the socket closes by itself (the interface went down); undefined where no packet socket can be
 * made (bun:ffi cannot open libc, no CAP_NET_RAW, no such interface).
 */
export function openTransmitTap(device: string, onTransmit: () => void, onClosed: () => void): TransmitTap | undefined {
  const libc = libcCalls();
  if (!libc) return undefined;
  const index = loadLibc().if_nametoindex(device); // koffi's libc, loaded already by the TUN device it taps
  if (index === 0) return undefined;
  // Protocol 0: the socket receives nothing until bind() names one, by when the filter is on.
  const fd = libc.socket(AF_PACKET, SOCK_DGRAM_NONBLOCK_CLOEXEC, 0);
  if (fd < 0) return undefined;
  const filter = Buffer.alloc(TAP_FILTER.length * SOCK_FILTER_BYTES);
  for (const [i, [code, jumpIfTrue, jumpIfFalse, k]] of TAP_FILTER.entries()) {
    filter.writeUInt16LE(code, i * SOCK_FILTER_BYTES);
    filter.writeUInt8(jumpIfTrue, i * SOCK_FILTER_BYTES + 2);
    filter.writeUInt8(jumpIfFalse, i * SOCK_FILTER_BYTES + 3);
    filter.writeUInt32LE(k >>> 0, i * SOCK_FILTER_BYTES + 4);
  }
  const program = Buffer.alloc(SOCK_FPROG_BYTES); // sock_fprog: the count, then (aligned) the pointer
  program.writeUInt16LE(TAP_FILTER.length, 0);
  program.writeBigUInt64LE(BigInt(ptr(filter)), 8);
  const address = Buffer.alloc(SOCKADDR_LL_BYTES); // sockaddr_ll: family, protocol, interface index
  address.writeUInt16LE(AF_PACKET, 0);
  address.writeUInt16LE(ETH_P_ALL_NETWORK_ORDER, 2);
  address.writeInt32LE(index, 4);
  const ready =
    libc.setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, ptr(program), SOCK_FPROG_BYTES) === 0 &&
    libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, ptr(new Int32Array([TAP_RECEIVE_BUFFER_BYTES])), 4) === 0 &&
    libc.bind(fd, ptr(address), SOCKADDR_LL_BYTES) === 0;
  if (!ready) {
    libc.close(fd);
    return undefined;
  }
  let open = true;
  let socket: { terminate(): void } | undefined;
  const closedBySocket = () => {
    if (!open) return;
    open = false;
    onClosed();
  };
  connectFd({
    fd,
    socket: {
      data: () => {
        if (open) onTransmit();
      },
      close: closedBySocket,
      error: closedBySocket,
    },
  }).then(
    (connected) => {
      if (open) socket = connected;
      else connected.terminate();
    },
    () => {
      libc.close(fd);
      closedBySocket();
    },
  );
  return {
    get open() {
      return open;
    },
    close() {
      open = false;
      socket?.terminate();
    },
  };
}
