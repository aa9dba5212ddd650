// The speedtest's wire format, and both of its sides over an in-memory link: what the serving node
// counts, what it refuses (and why), and the bounds it keeps against a requester that does not stop.
import { describe, expect, it } from "vitest";
import { AppService, UdpFlowIds } from "../../src/client/apps.ts";
import { ExposePolicy } from "../../src/client/expose.ts";
import { readFramed } from "../../src/client/framed-read.ts";
import { runSpeedtest, SpeedtestService } from "../../src/client/speedtest.ts";
import { createLogger } from "../../src/log/index.ts";
import {
  AppProtocolError,
  decodeSpeedtestAnswer,
  decodeSpeedtestResult,
  decodeStreamHeader,
  decodeStreamOpening,
  encodeSpeedtestAnswer,
  encodeSpeedtestRequest,
  encodeSpeedtestResult,
  encodeStreamHeader,
  SPEEDTEST_GRACE_MS,
  SPEEDTEST_MAX_DIRECTION_MS,
} from "../../src/protocol/index.ts";
import { linkPair } from "../helpers/memory-links.ts";

const framed = (json: string) => {
  const out = Buffer.alloc(2 + Buffer.byteLength(json));
  out.writeUInt16BE(Buffer.byteLength(json));
  out.write(json, 2);
  return out;
};

describe("speedtest wire format", () => {
  it("a request is a stream opening of its own kind, JSON after a u16 length", () => {
    const encoded = encodeSpeedtestRequest({ direction: "upload", ms: 2500 });
    expect(encoded.subarray(2).toString()).toBe('{"speedtest":"upload","ms":2500}');
    expect(encoded.readUInt16BE(0)).toBe(encoded.length - 2);
    const decoded = decodeStreamOpening(Buffer.concat([encoded, Buffer.from("data")]));
    expect(decoded?.opening).toEqual({ kind: "speedtest", request: { direction: "upload", ms: 2500 } });
    expect(decoded?.rest.toString()).toBe("data");
    expect(decodeStreamOpening(encodeStreamHeader({ target: "db:5432" }))?.opening).toEqual({ kind: "app", header: { target: "db:5432" } });
    for (let length = 0; length < encoded.length; length++) expect(decodeStreamOpening(encoded.subarray(0, length))).toBeUndefined();
  });

  it("an app-only reader refuses a speedtest opening as having no target", () => {
    expect(() => decodeStreamHeader(encodeSpeedtestRequest({ direction: "download", ms: 1 }))).toThrow(new AppProtocolError('stream header has no "target" of the form host:port'));
  });

  it("refuses a request with an unknown direction or a time that is not a positive whole number, saying which", () => {
    expect(() => decodeStreamOpening(framed('{"speedtest":"sideways","ms":5}'))).toThrow(new AppProtocolError('speedtest request\'s "speedtest" is neither "upload" nor "download"'));
    for (const ms of ["0", "-1", "1.5", '"5"', "null", "1e300"])
      expect(() => decodeStreamOpening(framed(`{"speedtest":"upload","ms":${ms}}`)), ms).toThrow(new AppProtocolError('speedtest request\'s "ms" is not a positive whole number'));
  });

  it("answers and upload results round-trip; malformed ones are refused", () => {
    expect(decodeSpeedtestAnswer(encodeSpeedtestAnswer({ ok: true }))?.answer).toEqual({ ok: true });
    const refusal = { ok: false as const, code: "BUSY" as const, error: "one at a time" };
    expect(decodeSpeedtestAnswer(encodeSpeedtestAnswer(refusal))?.answer).toEqual(refusal);
    expect(() => decodeSpeedtestAnswer(framed('{"ok":false,"code":"NOPE","error":"x"}'))).toThrow(AppProtocolError);
    expect(decodeSpeedtestResult(encodeSpeedtestResult({ bytes: 123, ms: 4.5 }))).toEqual({ bytes: 123, ms: 4.5 });
    for (const json of ['{"bytes":-1,"ms":1}', '{"bytes":1.5,"ms":1}', '{"bytes":1,"ms":-1}', '{"bytes":1}', "[]"])
      expect(() => decodeSpeedtestResult(framed(json)), json).toThrow(new AppProtocolError('speedtest result has no whole "bytes" and "ms" of at least 0'));
  });
});

describe("speedtest over a link", () => {
  function setUp() {
    const lines: string[] = [];
    const logger = createLogger({ level: "info", write: (line) => lines.push(line) });
    const service = new AppService({ flowIds: new UdpFlowIds(), logger, node: "far", expose: new ExposePolicy([]), speedtest: new SpeedtestService({ logger, node: "far" }) });
    const { near, far } = linkPair(createLogger({ level: "error", write: () => {} }));
    service.attach("near", far);
    const served = (direction: string) => lines.flatMap((line) => line.match(new RegExp(`speedtest served peer=near direction=${direction} bytes=(\\d+)`))?.[1] ?? []).map(Number);
    return { near, far, lines, served, stop: () => (service.stop(), near.close("test over"), far.close("test over")) };
  }

  it("moves bytes both ways; the upload's count is the serving node's, the download's what the serving node sent", async () => {
    const { near, served, stop } = setUp();
    try {
      const result = await runSpeedtest(near, 300, () => {});
      for (const direction of ["upload", "download"] as const) {
        expect(result[direction].bytes, direction).toBeGreaterThan(0);
        expect(result[direction].mbps, direction).toBeGreaterThan(0);
        expect(served(direction), direction).toEqual([result[direction].bytes]);
      }
    } finally {
      stop();
    }
  });

  it("refuses a direction longer than its bound, and a second test from the same peer while one runs", async () => {
    const { near, stop } = setUp();
    try {
      // The link's close at the end resets what is still open: that is expected here.
      const open = () => near.mux.openStream().on("error", () => {});
      const tooLong = open();
      tooLong.write(encodeSpeedtestRequest({ direction: "download", ms: SPEEDTEST_MAX_DIRECTION_MS + 1 }));
      expect((await readFramed(tooLong, decodeSpeedtestAnswer))?.answer).toEqual({
        ok: false,
        code: "TOO_LONG",
        error: `far serves a speedtest direction for at most ${SPEEDTEST_MAX_DIRECTION_MS} ms, not ${SPEEDTEST_MAX_DIRECTION_MS + 1} ms`,
      });
      const running = open();
      running.write(encodeSpeedtestRequest({ direction: "upload", ms: 1000 }));
      expect((await readFramed(running, decodeSpeedtestAnswer))?.answer).toEqual({ ok: true });
      const second = open();
      second.write(encodeSpeedtestRequest({ direction: "download", ms: 100 }));
      expect((await readFramed(second, decodeSpeedtestAnswer))?.answer).toEqual({ ok: false, code: "BUSY", error: "far is running a speedtest for near already: one at a time per peer" });
      running.destroy();
    } finally {
      stop();
    }
  });

  it("stops counting an upload that goes on past its time and grace, and tells the requester its count", async () => {
    const { near, served, stop } = setUp();
    const ms = 100;
    const stream = near.mux.openStream().on("error", () => {});
    const sender = setInterval(() => stream.write(Buffer.alloc(1024)), 10);
    try {
      stream.write(encodeSpeedtestRequest({ direction: "upload", ms }));
      expect((await readFramed(stream, decodeSpeedtestAnswer))?.answer).toEqual({ ok: true });
      const startedAt = Date.now();
      // The requester never ends its side: the serving node ends the test on its own.
      const result = await readFramed(stream, decodeSpeedtestResult);
      const tookMs = Date.now() - startedAt;
      expect(result?.bytes).toBeGreaterThan(0);
      expect(served("upload")).toEqual([result!.bytes]);
      expect(tookMs).toBeGreaterThanOrEqual(ms + SPEEDTEST_GRACE_MS - 50);
      expect(tookMs).toBeLessThan(ms + SPEEDTEST_GRACE_MS + 5_000);
    } finally {
      clearInterval(sender);
      stop();
    }
  }, 15_000);
});
