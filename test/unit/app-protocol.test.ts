import { describe, expect, it } from "vitest";
import {
  AppProtocolError,
  DatagramType,
  decodeStreamHeader,
  decodeUdpAppDatagram,
  encodeStreamHeader,
  encodeUdpAppDatagram,
  encodeUdpReplyDatagram,
  MAX_STREAM_HEADER_BYTES,
  MAX_UDP_TARGET_BYTES,
} from "../../src/protocol/index.ts";

describe("app stream header", () => {
  it("round-trips, and hands back the bytes that follow it", () => {
    const encoded = encodeStreamHeader({ target: "10.0.0.7:22" });
    const decoded = decodeStreamHeader(Buffer.concat([encoded, Buffer.from("SSH-2.0")]));
    expect(decoded?.header).toEqual({ target: "10.0.0.7:22" });
    expect(decoded?.rest.toString()).toBe("SSH-2.0");
  });

  it("keeps its wire format: u16 length, then JSON", () => {
    const encoded = encodeStreamHeader({ target: "db:5432" });
    const json = '{"target":"db:5432"}';
    expect(encoded.readUInt16BE(0)).toBe(json.length);
    expect(encoded.subarray(2).toString()).toBe(json);
  });

  it("asks for more bytes until the header is whole", () => {
    const encoded = encodeStreamHeader({ target: "[::1]:8080" });
    for (let length = 0; length < encoded.length; length++) expect(decodeStreamHeader(encoded.subarray(0, length))).toBeUndefined();
    expect(decodeStreamHeader(encoded)?.header.target).toBe("[::1]:8080");
  });

  it("refuses an oversized, non-JSON or target-less header, saying which", () => {
    const oversized = Buffer.alloc(2);
    oversized.writeUInt16BE(MAX_STREAM_HEADER_BYTES + 1);
    expect(() => decodeStreamHeader(oversized)).toThrow(new AppProtocolError(`stream header of ${MAX_STREAM_HEADER_BYTES + 1} bytes is over the ${MAX_STREAM_HEADER_BYTES}-byte limit`));
    const framed = (text: string) => Buffer.concat([Buffer.from([0, text.length]), Buffer.from(text)]);
    expect(() => decodeStreamHeader(framed("{nope"))).toThrow("stream header is not JSON");
    for (const json of ["null", "{}", '{"target":5}', '{"target":"no-port"}', '{"target":":22x"}'])
      expect(() => decodeStreamHeader(framed(json)), json).toThrow('stream header has no "target" of the form host:port');
    expect(() => encodeStreamHeader({ target: `${"h".repeat(MAX_STREAM_HEADER_BYTES)}:1` })).toThrow(AppProtocolError);
  });
});

describe("UDP app datagrams", () => {
  it("round-trip a request: flow id, target and payload", () => {
    const payload = Buffer.from([0, 1, 2, 255]);
    const encoded = encodeUdpAppDatagram(0xfeedbeef, "127.0.0.1:53", payload);
    expect(decodeUdpAppDatagram(encoded)).toEqual({ type: "request", flowId: 0xfeedbeef, target: "127.0.0.1:53", payload });
  });

  it("round-trip a reply, an empty payload included", () => {
    expect(decodeUdpAppDatagram(encodeUdpReplyDatagram(7, Buffer.from("answer")))).toEqual({ type: "reply", flowId: 7, payload: Buffer.from("answer") });
    expect(decodeUdpAppDatagram(encodeUdpReplyDatagram(8, Buffer.alloc(0)))).toEqual({ type: "reply", flowId: 8, payload: Buffer.alloc(0) });
  });

  it("keep their wire format and the type byte SDWAN shares", () => {
    expect(DatagramType).toEqual({ udpApp: 1, udpReply: 2, ipPacket: 3 });
    expect([...encodeUdpAppDatagram(0x01020304, "h:1", Buffer.from("x"))]).toEqual([1, 1, 2, 3, 4, 3, ...Buffer.from("h:1x")]);
    expect([...encodeUdpReplyDatagram(0x01020304, Buffer.from("y"))]).toEqual([2, 1, 2, 3, 4, ...Buffer.from("y")]);
  });

  it("leave other datagram types (SDWAN's IP packets) alone", () => {
    expect(decodeUdpAppDatagram(Buffer.from([DatagramType.ipPacket, 0x45, 0]))).toBeUndefined();
    expect(decodeUdpAppDatagram(Buffer.alloc(0))).toBeUndefined();
  });

  it("refuse truncated datagrams and targets that are not host:port", () => {
    const request = encodeUdpAppDatagram(1, "10.0.0.1:9", Buffer.alloc(0));
    for (let length = 1; length < request.length; length++) expect(() => decodeUdpAppDatagram(request.subarray(0, length)), `${length} bytes`).toThrow(AppProtocolError);
    const reply = encodeUdpReplyDatagram(1, Buffer.alloc(0));
    for (let length = 1; length < reply.length; length++) expect(() => decodeUdpAppDatagram(reply.subarray(0, length)), `${length} bytes`).toThrow(AppProtocolError);
    expect(() => decodeUdpAppDatagram(encodeUdpAppDatagram(1, "no-port", Buffer.alloc(0)))).toThrow("UDP app datagram's target is not host:port");
  });

  it("refuse to encode a target longer than its length byte can say", () => {
    expect(() => encodeUdpAppDatagram(1, `${"h".repeat(MAX_UDP_TARGET_BYTES)}:1`, Buffer.alloc(0))).toThrow(`UDP app target of ${MAX_UDP_TARGET_BYTES + 2} bytes is over the ${MAX_UDP_TARGET_BYTES}-byte limit`);
  });
});
