// The start-up warm-up of the per-packet code: every packet arrives, and the functions every packet
// passes through leave JavaScriptCore's interpreter for its optimising tier (DFG).
import { numberOfDFGCompiles } from "bun:jsc";
import { describe, expect, it } from "vitest";
import { SecureSession } from "../../src/crypto/index.ts";
import { Overlay, warmUpOverlay } from "../../src/sdwan/index.ts";
import { Coalescer, splitRead } from "../../src/sdwan/offload.ts";
import { Link, loopbackTcpLinkPair, pacedWarmUp, PeerEndpoint, WARM_UP_DATAGRAMS, warmUpLinks } from "../../src/transport/index.ts";
import { BUN, REPO_ROOT, runToEnd } from "../helpers/processes.ts";

type Fn = (...args: never[]) => unknown;
const compiles = (functions: Record<string, Fn>) => Object.fromEntries(Object.entries(functions).map(([name, fn]) => [name, numberOfDFGCompiles(fn)]));
const notCompiled = (functions: Record<string, Fn>) => Object.fromEntries(Object.keys(functions).map((name) => [name, 0]));
const privateMethod = (prototype: object, name: string) => (prototype as Record<string, Fn>)[name]!;

/**
 * Exits a function may take after the warm-up: above what meeting the idle packets' paths costs (8 at
 * most seen), below one a fairness window (~20) or one a packet (80).
 */
const EXITS_PER_FUNCTION_MAX = 15;
/** Exits in the helper's own code (its waits for each packet), not the node's. */
const HELPER_OWN = ["Promise"];
/** As in test/helpers/idle-link-exits.ts. */
const IDLE_DATAGRAMS_EACH_WAY = 40;
/** The helper's marks on stderr, before its idle packets device to device and over TCP. */
const UDP_MARK = "idle packets from here";
const TCP_MARK = "idle TCP datagrams from here";

/** The functions that left the optimised code in `output` from the mark `from` up to `to` (or the end), with how often. */
function exitsBetween(output: string, from: string, to?: string): Record<string, number> {
  const start = output.indexOf(from);
  const end = to === undefined ? output.length : output.indexOf(to);
  if (start < 0 || end < 0) throw new Error(`the helper's marks are missing ("${from}", "${to}"): ${output.slice(-500)}`);
  const exits: Record<string, number> = {};
  for (const [, name] of output.slice(start, end).matchAll(/Speculation failure in (\w*)#/g))
    if (!HELPER_OWN.includes(name!)) exits[name || "(anonymous)"] = (exits[name || "(anonymous)"] ?? 0) + 1;
  return exits;
}

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

  it("sends them over a TCP connection on loopback too (the code of links over TCP paths and relays)", async () => {
    expect(await warmUpLinks(WARM_UP_DATAGRAMS, loopbackTcpLinkPair)).toBe(2 * WARM_UP_DATAGRAMS);
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

  // JavaScriptCore's optimised code leaves for slower code (an "OSR exit") wherever it meets what the
  // code's profile never saw: a branch never taken, an object of another shape, another function called.
  // A node's real links differed from the warm-up's in all three (a lan link's pieces check, a LinkInit with
  // more fields, the UDP apps' datagram handler), and so did its overlay (its peers, another kind of object;
  // the builtins find() and some(), compiled for other callers; a fairness window with one flow), so every
  // idle packet left the optimised code, each way.
  it("leaves a node's real per-packet code optimised: idle packets after it, device to device and over TCP, run without leaving it", async () => {
    const { code, output } = await runToEnd(BUN, [`${REPO_ROOT}/test/helpers/idle-link-exits.ts`], { env: { BUN_JSC_printEachOSRExit: "1" }, timeoutMs: 30_000 });
    expect(code, output.slice(-2_000)).toBe(0);
    expect(output).toContain(`arrived ${2 * IDLE_DATAGRAMS_EACH_WAY}`);
    // The warm-up's own exits (before the first mark) are not the idle packets'.
    const exits = exitsBetween(output, UDP_MARK, TCP_MARK);
    // A few exits while the code meets idle packets' paths are JSC's way; one a packet or a window was the
    // defect (80 each in sendRecord, receive and forward; 20 in endWindow).
    expect(Object.entries(exits).filter(([, count]) => count > EXITS_PER_FUNCTION_MAX), JSON.stringify(exits)).toEqual([]);
    // Over a TCP connection (TCP paths, relays) the link's own code left it on every datagram, each way,
    // while the warm-up ran UDP links only (sendRecord, seal and receive: 80 each); and, in 3 of 8 runs,
    // the TCP path's send while it was a closure of each path's own (80).
    expect(output).toContain(`arrived over TCP ${2 * IDLE_DATAGRAMS_EACH_WAY}`);
    const overTcp = exitsBetween(output, TCP_MARK);
    expect(Object.entries(overTcp).filter(([, count]) => count > EXITS_PER_FUNCTION_MAX), JSON.stringify(overTcp)).toEqual([]);
  }, 40_000);

  it("gives up soon when its packets stop arriving (loopback down, a packet lost), rather than spinning until its deadline", async () => {
    let sent = 0;
    const startedAt = performance.now();
    await pacedWarmUp(WARM_UP_DATAGRAMS, () => ((sent += 3), 3), () => Math.min(2 * sent, 30));
    expect(sent, "sends stop once arrivals stall").toBeLessThan(30);
    expect(performance.now() - startedAt, "well before the 5 s deadline").toBeLessThan(2_000);
  });
});
