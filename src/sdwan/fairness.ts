import { PROTOCOL_TCP, PROTOCOL_UDP } from "./packet.ts";

// Fairness between flows leaving the TUN device, under a flood this node cannot keep up with.
//
// The TUN device has no backpressure: when inp2pc reads more slowly than the host writes, the kernel
// drops at the device's queue, whatever the flow, so an unlimited UDP flood starves a TCP connection
// beside it. Only the kernel's drop counter shows it. While it rises, the heaviest flow other than TCP
// gets an allowance (half of what it sent in the last window, down to a floor) and what it sends over
// that is dropped here, before sealing: a dropped packet then costs a read, not a seal and a send (nor
// the receiver's work), so the node's time goes to the other flows, and TCP's packets get through. With no
// drops in a window, allowances grow back until they no longer bind. TCP is never held back: it
// backs off by itself on loss. A flow alone is not held either: there is no one to protect, and
// holding it would only lower what it delivers.
//
// Flows are hashed into a fixed table (like SFQ), so a stranger sending from many ports cannot make
// it grow; flows sharing a bucket share an allowance.

/** How often the device's drop counter is read and allowances are revised, while packets flow. */
export const FAIRNESS_WINDOW_MS = 50;
/** Flow buckets (a power of two). */
const FLOW_BUCKETS = 256;
/** An allowance is never cut below this many bytes a window (~10 Mbit/s at 50 ms windows). */
const ALLOWANCE_FLOOR_BYTES = 65_536;
/** A window without drops grows each allowance by this many bytes (~10 Mbit/s more at 50 ms windows). */
const ALLOWANCE_STEP_BYTES = 65_536;
/** An allowance this many times what its bucket sent in the last window no longer binds: it is lifted. */
const ALLOWANCE_LIFT_RATIO = 4;
/**
 * A flow counts as alone once nothing else was sent for this many windows (2 s): a TCP connection the
 * flood starved may send nothing while it waits out its retransmission timer, and is still there.
 */
const ALONE_AFTER_WINDOWS = 40;
/** windowsAlone's count stops here: alone (since the start or a pause, or for longer than ALONE_AFTER_WINDOWS). */
const ALONE = ALONE_AFTER_WINDOWS + 1;

export class FlowAllowances {
  /** Bytes each bucket sent in the current window. */
  private readonly sentBytes = new Float64Array(FLOW_BUCKETS);
  /** Bytes each bucket may send a window (Infinity: not limited). */
  private readonly allowanceBytes = new Float64Array(FLOW_BUCKETS).fill(Infinity);
  /** TCP bytes sent in the current window. */
  private tcpBytes = 0;
  private limitedBuckets = 0;
  /** Packets seen in the current window, admitted or not. */
  private windowPackets = 0;
  private lastDeviceDrops: number | undefined;
  /** Windows in a row in which only the heaviest flow sent, up to ALONE (also: no other flow seen since the start or a pause). */
  private windowsAlone = ALONE;
  /** Packets dropped here for being over their flow's allowance. */
  droppedPackets = 0;

  /** Whether a packet may go on (counting it if so); false: its flow is over its allowance, drop it. */
  admit(packet: Buffer): boolean {
    this.windowPackets++;
    if (packet.length < 20 || packet[0]! >> 4 !== 4) return true;
    const protocol = packet[9];
    if (protocol === PROTOCOL_TCP) {
      this.tcpBytes += packet.length;
      return true;
    }
    const bucket = flowBucket(packet, protocol!);
    const sent = this.sentBytes[bucket]! + packet.length;
    if (sent > this.allowanceBytes[bucket]!) {
      this.droppedPackets++;
      return false;
    }
    this.sentBytes[bucket] = sent;
    return true;
  }

  /** Ends a window, given the device's drop counter now (packets the kernel dropped at its queue). */
  endWindow(deviceDrops: number): void {
    const overflowed = this.lastDeviceDrops !== undefined && deviceDrops > this.lastDeviceDrops;
    this.lastDeviceDrops = deviceDrops;
    let heaviest = 0;
    let totalBytes = this.tcpBytes;
    for (let bucket = 0; bucket < FLOW_BUCKETS; bucket++) {
      totalBytes += this.sentBytes[bucket]!;
      if (this.sentBytes[bucket]! > this.sentBytes[heaviest]!) heaviest = bucket;
    }
    // 0 if another flow sent too, else one more. Arithmetic, not a branch: the start-up warm-up's windows
    // always carry two flows, and code it never ran leaves the optimised code (an idle node's every window).
    this.windowsAlone = Math.min(ALONE, (this.windowsAlone + 1) * Number(totalBytes === this.sentBytes[heaviest]!));
    if (!(overflowed && this.cut(heaviest)) && this.limitedBuckets > 0) this.growAll();
    this.sentBytes.fill(0);
    this.tcpBytes = 0;
    this.windowPackets = 0;
  }

  /** Whether windows must go on being ended: a packet came in this one, or an allowance is in force. */
  get active(): boolean {
    return this.windowPackets > 0 || this.limitedBuckets > 0;
  }

  /** Nothing flows and nothing is held: windows stop, and the next one starts counting the device's drops anew. */
  pause(): void {
    this.lastDeviceDrops = undefined;
    this.windowsAlone = ALONE;
  }

  /** Halves the allowance of the heaviest flow other than TCP if it sent more than the floor and is not alone; whether it did. */
  private cut(heaviest: number): boolean {
    const sent = this.sentBytes[heaviest]!;
    if (sent <= ALLOWANCE_FLOOR_BYTES || this.windowsAlone > ALONE_AFTER_WINDOWS) return false;
    if (this.allowanceBytes[heaviest] === Infinity) this.limitedBuckets++;
    this.allowanceBytes[heaviest] = Math.max(ALLOWANCE_FLOOR_BYTES, sent / 2);
    return true;
  }

  private growAll(): void {
    for (let bucket = 0; bucket < FLOW_BUCKETS; bucket++) {
      const allowance = this.allowanceBytes[bucket]!;
      if (allowance === Infinity) continue;
      if (allowance > ALLOWANCE_LIFT_RATIO * Math.max(ALLOWANCE_FLOOR_BYTES, this.sentBytes[bucket]!)) {
        this.allowanceBytes[bucket] = Infinity;
        this.limitedBuckets--;
      } else {
        this.allowanceBytes[bucket] = allowance + ALLOWANCE_STEP_BYTES;
      }
    }
  }
}

/** The bucket of an IPv4 packet's flow: protocol, addresses and, for UDP, ports. */
function flowBucket(packet: Buffer, protocol: number): number {
  let hash = Math.imul(protocol ^ packet.readUInt32BE(12), 0x9e3779b1) ^ packet.readUInt32BE(16);
  const headerBytes = (packet[0]! & 0x0f) * 4;
  if (protocol === PROTOCOL_UDP && packet.length >= headerBytes + 4) hash = Math.imul(hash, 0x85ebca6b) ^ packet.readUInt32BE(headerBytes);
  hash = Math.imul(hash ^ (hash >>> 16), 0xc2b2ae35);
  return (hash ^ (hash >>> 13)) & (FLOW_BUCKETS - 1);
}
