import { describe, expect, it } from "vitest";
import {
  AppProtocolError,
  DatagramType,
  decodeStreamAnswer,
  decodeStreamHeader,
  decodeUdpAppDatagram,
  encodeStreamAnswer,
  encodeStreamHeader,
  encodeUdpAppDatagram,
  encodeUdpRefusedDatagram,
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

describe("app stream answer", () => {
  it("round-trips ok and a refusal, and hands back the target's bytes that follow it", () => {
    const ok = decodeStreamAnswer(Buffer.concat([encodeStreamAnswer({ ok: true }), Buffer.from("SSH-2.0")]));
    expect(ok?.answer).toEqual({ ok: true });
    expect(ok?.rest.toString()).toBe("SSH-2.0");
    const refused = { ok: false, code: "NOT_EXPOSED", error: "127.0.0.1:22 is not exposed on beta" } as const;
    expect(decodeStreamAnswer(encodeStreamAnswer(refused))).toEqual({ answer: refused, rest: Buffer.alloc(0) });
    const unreachable = { ok: false, code: "UNREACHABLE", error: "connect ECONNREFUSED 127.0.0.1:1" } as const;
    expect(decodeStreamAnswer(encodeStreamAnswer(unreachable))?.answer).toEqual(unreachable);
  });

  it("keeps its wire format: u16 length, then JSON", () => {
    const encoded = encodeStreamAnswer({ ok: true });
    expect(encoded.readUInt16BE(0)).toBe('{"ok":true}'.length);
    expect(encoded.subarray(2).toString()).toBe('{"ok":true}');
    expect(encodeStreamAnswer({ ok: false, code: "NOT_EXPOSED", error: "e" }).subarray(2).toString()).toBe('{"ok":false,"code":"NOT_EXPOSED","error":"e"}');
  });

  it("asks for more bytes until the answer is whole", () => {
    const encoded = encodeStreamAnswer({ ok: false, code: "UNREACHABLE", error: "timed out" });
    for (let length = 0; length < encoded.length; length++) expect(decodeStreamAnswer(encoded.subarray(0, length))).toBeUndefined();
    expect(decodeStreamAnswer(encoded)?.answer.ok).toBe(false);
  });

  it("refuses an oversized, non-JSON or unknown answer, saying which", () => {
    const oversized = Buffer.alloc(2);
    oversized.writeUInt16BE(MAX_STREAM_HEADER_BYTES + 1);
    expect(() => decodeStreamAnswer(oversized)).toThrow(`stream answer of ${MAX_STREAM_HEADER_BYTES + 1} bytes is over the ${MAX_STREAM_HEADER_BYTES}-byte limit`);
    const framed = (text: string) => Buffer.concat([Buffer.from([0, text.length]), Buffer.from(text)]);
    // What an older serving node sends first: the target's own bytes.
    expect(() => decodeStreamAnswer(Buffer.from("SSH-2.0-OpenSSH_9.2\r\n"))).toThrow(AppProtocolError);
    expect(() => decodeStreamAnswer(framed("{nope"))).toThrow("stream answer is not JSON");
    for (const json of ["null", "{}", '{"ok":"yes"}', '{"ok":false}', '{"ok":false,"code":"WHO","error":"x"}', '{"ok":false,"code":"NOT_EXPOSED"}'])
      expect(() => decodeStreamAnswer(framed(json)), json).toThrow('stream answer is neither {"ok":true} nor {"ok":false} with a known "code" and an "error"');
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
    expect(DatagramType).toEqual({ udpApp: 1, udpReply: 2, ipPacket: 3, udpRefused: 4, ipPacketPartialChecksum: 5, ipSuperPacket: 6 });
    expect([...encodeUdpAppDatagram(0x01020304, "h:1", Buffer.from("x"))]).toEqual([1, 1, 2, 3, 4, 3, ...Buffer.from("h:1x")]);
    expect([...encodeUdpReplyDatagram(0x01020304, Buffer.from("y"))]).toEqual([2, 1, 2, 3, 4, ...Buffer.from("y")]);
    expect([...encodeUdpRefusedDatagram(0x01020304, "NOT_EXPOSED")]).toEqual([4, 1, 2, 3, 4, 1]);
    expect([...encodeUdpRefusedDatagram(0x01020304, "UNREACHABLE")]).toEqual([4, 1, 2, 3, 4, 2]);
  });

  it("round-trip a refusal: flow id and reason", () => {
    expect(decodeUdpAppDatagram(encodeUdpRefusedDatagram(0xfeedbeef, "NOT_EXPOSED"))).toEqual({ type: "refused", flowId: 0xfeedbeef, code: "NOT_EXPOSED" });
    expect(decodeUdpAppDatagram(encodeUdpRefusedDatagram(9, "UNREACHABLE"))).toEqual({ type: "refused", flowId: 9, code: "UNREACHABLE" });
  });

  it("refuse a refusal of the wrong length or with an unknown reason, saying which", () => {
    const refusal = encodeUdpRefusedDatagram(1, "NOT_EXPOSED");
    for (let length = 1; length < refusal.length; length++) expect(() => decodeUdpAppDatagram(refusal.subarray(0, length)), `${length} bytes`).toThrow(AppProtocolError);
    expect(() => decodeUdpAppDatagram(Buffer.concat([refusal, Buffer.from([0])]))).toThrow("UDP refusal datagram of 7 bytes is not 6 bytes long");
    expect(() => decodeUdpAppDatagram(Buffer.from([4, 0, 0, 0, 1, 9]))).toThrow("UDP refusal datagram has an unknown reason 9");
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
