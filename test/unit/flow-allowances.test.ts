import { describe, expect, it } from "vitest";
import { FlowAllowances } from "../../src/sdwan/fairness.ts";

const TCP = 6;
const UDP = 17;

/** An IPv4 packet of `bytes` from 10.10.0.1:`sourcePort` to 10.10.0.2:5201. */
function ipv4(protocol: number, sourcePort: number, bytes: number): Buffer {
  const packet = Buffer.alloc(bytes);
  packet[0] = 0x45;
  packet.writeUInt16BE(bytes, 2);
  packet[9] = protocol;
  packet.writeUInt32BE(0x0a0a0001, 12);
  packet.writeUInt32BE(0x0a0a0002, 16);
  packet.writeUInt16BE(sourcePort, 20);
  packet.writeUInt16BE(5201, 22);
  return packet;
}

/** Offers `count` copies of `packet`; the bytes let through. */
function offer(allowances: FlowAllowances, packet: Buffer, count: number): number {
  let passed = 0;
  for (let i = 0; i < count; i++) if (allowances.admit(packet)) passed += packet.length;
  return passed;
}

const FLOOD = ipv4(UDP, 40_000, 1200);
const OTHER_UDP = ipv4(UDP, 40_001, 1200);
const TCP_SEGMENT = ipv4(TCP, 40_002, 1400);

/** A flood beside a little TCP while the device drops: the flood is held; what it got through next. */
function floodHeldBesideTcp(): { allowances: FlowAllowances; held: number } {
  const allowances = new FlowAllowances();
  allowances.endWindow(0);
  offer(allowances, FLOOD, 1000);
  offer(allowances, TCP_SEGMENT, 10);
  allowances.endWindow(500);
  return { allowances, held: offer(allowances, FLOOD, 1000) };
}

describe("flow allowances (fairness under a flood)", () => {
  it("let everything through while the device drops nothing", () => {
    const allowances = new FlowAllowances();
    for (let window = 0; window < 5; window++) {
      expect(offer(allowances, FLOOD, 2000)).toBe(2000 * 1200);
      allowances.endWindow(7); // the same count every time: no new drops
    }
    expect(allowances.droppedPackets).toBe(0);
  });

  it("hold the heaviest UDP flow to half of what it sent while the device drops, and never TCP or a lighter flow", () => {
    const allowances = new FlowAllowances();
    allowances.endWindow(0);
    offer(allowances, FLOOD, 1000);
    offer(allowances, OTHER_UDP, 100);
    offer(allowances, TCP_SEGMENT, 1000);
    allowances.endWindow(500); // the device dropped packets in that window

    expect(offer(allowances, FLOOD, 1000)).toBe(500 * 1200);
    expect(offer(allowances, OTHER_UDP, 100)).toBe(100 * 1200);
    expect(offer(allowances, TCP_SEGMENT, 1000)).toBe(1000 * 1400);
    expect(allowances.droppedPackets).toBe(500);
  });

  it("hold no flow that is alone: there is no one to protect", () => {
    const allowances = new FlowAllowances();
    allowances.endWindow(0);
    for (let window = 1; window <= 5; window++) {
      expect(offer(allowances, FLOOD, 1000)).toBe(1000 * 1200);
      allowances.endWindow(window * 500);
    }
    expect(allowances.droppedPackets).toBe(0);
  });

  it("grow a held flow's allowance back once the device stops dropping, and lift it when the flow slows down", () => {
    const { allowances, held } = floodHeldBesideTcp();
    allowances.endWindow(500); // no new drops: the allowance grows
    const grown = offer(allowances, FLOOD, 1000);
    expect(grown).toBeGreaterThan(held);
    expect(grown).toBeLessThan(1000 * 1200);

    allowances.endWindow(500);
    offer(allowances, FLOOD, 10); // the flow slows down: its allowance no longer binds
    allowances.endWindow(500);
    expect(offer(allowances, FLOOD, 5000)).toBe(5000 * 1200);
  });

  it("keep holding a flood while the flow it starved is silent for a few windows (a TCP connection waiting out its retransmission timer)", () => {
    const { allowances, held } = floodHeldBesideTcp();
    expect(held).toBe(500 * 1200);
    let drops = 500;
    for (let window = 0; window < 6; window++) {
      allowances.endWindow((drops += 500)); // the device still drops; TCP sent nothing in these windows
      expect(offer(allowances, FLOOD, 1000), `silent window ${window + 1}`).toBeLessThanOrEqual(held);
    }
  });

  it("need no windows while nothing flows and nothing is held, and after a pause take the drop count anew", () => {
    const allowances = new FlowAllowances();
    expect(allowances.active).toBe(false);
    offer(allowances, FLOOD, 10);
    expect(allowances.active).toBe(true);
    allowances.endWindow(0);
    expect(allowances.active).toBe(false);
    allowances.pause();
    // Drops counted while paused (another program's, or before this node read) are not this window's.
    offer(allowances, FLOOD, 1000);
    offer(allowances, TCP_SEGMENT, 10);
    allowances.endWindow(9_000);
    expect(offer(allowances, FLOOD, 1000)).toBe(1000 * 1200);
    offer(allowances, TCP_SEGMENT, 10);
    allowances.endWindow(9_500);
    expect(offer(allowances, FLOOD, 1000)).toBe(500 * 1200);
    allowances.endWindow(9_500);
    expect(allowances.active, "a held flow keeps the windows going").toBe(true);
  });

  it("cut no flow below a floor however long the drops last", () => {
    const allowances = new FlowAllowances();
    allowances.endWindow(0);
    let passed = 0;
    for (let window = 1; window <= 50; window++) {
      passed = offer(allowances, FLOOD, 1000);
      offer(allowances, TCP_SEGMENT, 10);
      allowances.endWindow(window * 100);
    }
    expect(passed).toBeGreaterThan(0);
    expect(passed).toBeLessThan(1000 * 1200);
  });
});
