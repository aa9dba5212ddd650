import { isIPv4 } from "node:net";
import { LIBC_SONAME, loadKoffi } from "../sdwan/ffi.ts";

// UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18+): one sendmsg hands the kernel a run of
// datagrams of one size (the last may be shorter) to one address, and the run crosses the stack as one
// packet, cut into datagrams at the end (by the NIC, or just before the driver). The segments of one TUN
// super-packet seal into records of one size, so a 64 KB read leaves in one system call instead of ~45.

const SOL_UDP = 17;
const UDP_SEGMENT = 103;
const AF_INET = 2;
const SOCKADDR_IN_BYTES = 16;
/** Datagrams in one run at most (the kernel's UDP_MAX_SEGMENTS was 64 before Linux 5.x raised it). */
export const GSO_MAX_SEGMENTS = 64;
/** Bytes in one run at most: what one IPv4 UDP datagram can carry. */
export const GSO_MAX_BYTES = 65_507;
/**
 * Datagrams larger than this never go with GSO: a segment and its headers must fit the device's MTU
 * (the kernel refuses the call otherwise), and 1472 bytes is what IPv4 UDP fits in 1500. Larger ones
 * (KCP's packets on a lan path) leave with sendMany, fragmented by the kernel.
 */
export const GSO_MAX_SEGMENT_BYTES = 1472;
const MAX_CACHED_ADDRESSES = 1024;

/**
 * Sends `datagrams` (all `segmentBytes` long but the last, which may be shorter) to host:port in one
 * call: true when sent, false when the kernel refused GSO, undefined when it does not apply (not IPv4)
 * or the refusal was passing (the socket's buffer full).
 */
export type GsoSend = (datagrams: readonly Uint8Array[], segmentBytes: number, host: string, port: number) => boolean | undefined;

interface SendmsgCall {
  sendmsg: (fd: number, message: object, flags: number) => unknown;
  errno: () => number;
  sizeBytes: number;
}
const EAGAIN = 11;
const ENOBUFS = 105;
let call: SendmsgCall | null | undefined;

/** libc's sendmsg through koffi, bound once per process; null where FFI is not to be had. */
function sendmsgCall(): SendmsgCall | null {
  if (call !== undefined) return call;
  try {
    const koffi = loadKoffi();
    const iovec = koffi.struct("inp2p_iovec", { iov_base: "void *", iov_len: "size_t" });
    koffi.struct("inp2p_msghdr", {
      msg_name: "void *",
      msg_namelen: "uint32_t",
      msg_iov: koffi.pointer(iovec),
      msg_iovlen: "size_t",
      msg_control: "void *",
      msg_controllen: "size_t",
      msg_flags: "int",
    });
    const sendmsg = koffi.load(LIBC_SONAME).func("intptr_t sendmsg(int fd, const inp2p_msghdr *msg, int flags)");
    call = { sendmsg: (fd, message, flags) => sendmsg(fd, message, flags), errno: () => koffi.errno(), sizeBytes: koffi.sizeof("size_t") };
  } catch {
    call = null;
  }
  return call;
}

/** A GSO sender on socket `fd`, or undefined where FFI is not to be had (the caller sends one by one). */
export function udpGsoSender(fd: number): GsoSend | undefined {
  const libc = sendmsgCall();
  if (!libc) return undefined;
  const { sendmsg, errno, sizeBytes } = libc;
  // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } followed by the u16 segment size.
  const headerBytes = sizeBytes + 8;
  const control = Buffer.alloc(headerBytes + sizeBytes); // CMSG_SPACE(2): the data padded to size_t
  if (sizeBytes === 8) control.writeBigUInt64LE(BigInt(headerBytes + 2), 0);
  else control.writeUInt32LE(headerBytes + 2, 0);
  control.writeInt32LE(SOL_UDP, sizeBytes);
  control.writeInt32LE(UDP_SEGMENT, sizeBytes + 4);
  const addresses = new Map<string, Buffer>();
  const addressOf = (host: string, port: number): Buffer | undefined => {
    const key = `${host}:${port}`;
    let address = addresses.get(key);
    if (address) return address;
    if (!isIPv4(host)) return undefined;
    address = Buffer.alloc(SOCKADDR_IN_BYTES);
    address.writeUInt16LE(AF_INET, 0);
    address.writeUInt16BE(port, 2);
    Buffer.from(host.split(".").map(Number)).copy(address, 4);
    if (addresses.size >= MAX_CACHED_ADDRESSES) addresses.clear();
    addresses.set(key, address);
    return address;
  };
  return (datagrams, segmentBytes, host, port) => {
    const address = addressOf(host, port);
    if (!address) return undefined;
    control.writeUInt16LE(segmentBytes, headerBytes);
    const sent = Number(
      sendmsg(
        fd,
        {
          msg_name: address,
          msg_namelen: SOCKADDR_IN_BYTES,
          msg_iov: datagrams.map((datagram) => ({ iov_base: datagram, iov_len: datagram.length })),
          msg_iovlen: datagrams.length,
          msg_control: control,
          msg_controllen: control.length,
          msg_flags: 0,
        },
        0,
      ),
    );
    if (sent >= 0) return true;
    const error = errno();
    return error === EAGAIN || error === ENOBUFS ? undefined : false;
  };
}
