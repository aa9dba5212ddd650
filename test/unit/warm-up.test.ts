// The start-up warm-up of the per-packet code: every packet arrives, and the functions every packet
// passes through leave JavaScriptCore's interpreter for its optimising tier (DFG).
import { numberOfDFGCompiles } from "bun:jsc";
import { describe, expect, it } from "vitest";
import { SecureSession } from "../../src/crypto/index.ts";
import { Overlay, warmUpOverlay } from "../../src/sdwan/index.ts";
import { Coalescer, splitRead } from "../../src/sdwan/offload.ts";
import { Link, pacedWarmUp, PeerEndpoint, WARM_UP_DATAGRAMS, warmUpLinks } from "../../src/transport/index.ts";

type Fn = (...args: never[]) => unknown;
const compiles = (functions: Record<string, Fn>) => Object.fromEntries(Object.entries(functions).map(([name, fn]) => [name, numberOfDFGCompiles(fn)]));
const notCompiled = (functions: Record<string, Fn>) => Object.fromEntries(Object.keys(functions).map((name) => [name, 0]));
const privateMethod = (prototype: object, name: string) => (prototype as Record<string, Fn>)[name]!;

describe("start-up warm-up", () => {
  it("sends datagrams both ways between two links on loopback and leaves seal, open, sendDatagram and the socket's send and receive optimised", async () => {
    const perPacket = {
      seal: SecureSession.prototype.seal,
      open: SecureSession.prototype.open,
      sendDatagram: Link.prototype.sendDatagram,
      sendUdp: PeerEndpoint.prototype.sendUdp,
      enqueue: privateMethod(PeerEndpoint.prototype, "enqueue"),
    };
    expect(compiles(perPacket)).toEqual(notCompiled(perPacket));
    expect(await warmUpLinks()).toBe(2 * WARM_UP_DATAGRAMS);
    for (const [name, count] of Object.entries(compiles(perPacket))) expect(count, name).toBeGreaterThan(0);
  });

  it("on an SDWAN node, sends IP packets both ways between two overlays and leaves the device's and the overlay's code optimised", async () => {
    const perPacket = {
      fromDevice: privateMethod(Overlay.prototype, "fromDevice"),
      forward: privateMethod(Overlay.prototype, "forward"),
      splitRead,
      coalesce: Coalescer.prototype.add,
    };
    expect(compiles(perPacket)).toEqual(notCompiled(perPacket));
    expect(await warmUpOverlay(), "packets written to the far devices").toBe(2 * WARM_UP_DATAGRAMS);
    for (const [name, count] of Object.entries(compiles(perPacket))) expect(count, name).toBeGreaterThan(0);
  });

  it("gives up soon when its packets stop arriving (loopback down, a packet lost), rather than spinning until its deadline", async () => {
    let sent = 0;
    const startedAt = performance.now();
    await pacedWarmUp(WARM_UP_DATAGRAMS, () => ((sent += 3), 3), () => Math.min(2 * sent, 30));
    expect(sent, "sends stop once arrivals stall").toBeLessThan(30);
    expect(performance.now() - startedAt, "well before the 5 s deadline").toBeLessThan(2_000);
  });
});
