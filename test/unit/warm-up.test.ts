// The start-up warm-up of a link's per-packet code: every datagram arrives, and the functions every
// packet passes through leave JavaScriptCore's interpreter for its optimising tier (DFG).
import { numberOfDFGCompiles } from "bun:jsc";
import { describe, expect, it } from "vitest";
import { SecureSession } from "../../src/crypto/index.ts";
import { Link, WARM_UP_DATAGRAMS, warmUpLinks } from "../../src/transport/index.ts";

const perPacket = {
  seal: SecureSession.prototype.seal,
  open: SecureSession.prototype.open,
  sendDatagram: Link.prototype.sendDatagram,
};

describe("warmUpLinks", () => {
  it("delivers every datagram both ways and leaves seal, open and sendDatagram optimised", () => {
    const before = Object.fromEntries(Object.entries(perPacket).map(([name, fn]) => [name, numberOfDFGCompiles(fn)]));
    expect(before).toEqual({ seal: 0, open: 0, sendDatagram: 0 });
    expect(warmUpLinks()).toBe(2 * WARM_UP_DATAGRAMS);
    for (const [name, fn] of Object.entries(perPacket)) expect(numberOfDFGCompiles(fn), name).toBeGreaterThan(0);
  });
});
