import { describe, expect, it } from "vitest";
import { UdpFlowIds } from "../../src/client/apps.ts";

describe("UdpFlowIds (one per node, shared by its UDP apps)", () => {
  it("gives every flow its own id, and a reply only to the flow it names, from that flow's peer", () => {
    const ids = new UdpFlowIds();
    const got: string[] = [];
    const dns = ids.open("far", (payload) => got.push(`dns:${payload}`));
    const echo = ids.open("far", (payload) => got.push(`echo:${payload}`));
    const other = ids.open("other", (payload) => got.push(`other:${payload}`));
    expect(new Set([dns, echo, other]).size).toBe(3);
    ids.deliver("far", dns, Buffer.from("a"));
    ids.deliver("far", echo, Buffer.from("b"));
    ids.deliver("far", other, Buffer.from("from the wrong peer"));
    ids.deliver("other", dns, Buffer.from("from the wrong peer"));
    ids.close(echo);
    ids.deliver("far", echo, Buffer.from("after close"));
    expect(got).toEqual(["dns:a", "echo:b"]);
  });

  it("wraps at 2^32 to 0", () => {
    const ids = new UdpFlowIds(0xffff_fffe);
    expect([0, 1, 2].map(() => ids.open("far", () => {}))).toEqual([0xffff_fffe, 0xffff_ffff, 0]);
  });
});
