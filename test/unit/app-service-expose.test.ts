// The serving side of apps over in-memory links, with a resolver the test controls: a target given
// by host name is connected at the address its check resolved (no second lookup a rebinding DNS could
// answer differently), and a refused UDP flow is told so once per burst, not once per datagram.
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { createServer } from "node:net";
import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { AppService, UdpFlowIds } from "../../src/client/apps.ts";
import { ExposePolicy, type Lookup } from "../../src/client/expose.ts";
import { createLogger } from "../../src/log/index.ts";
import { decodeStreamAnswer, decodeUdpAppDatagram, encodeStreamHeader, encodeUdpAppDatagram, type StreamAnswer, UDP_APP_DATAGRAM_TYPES } from "../../src/protocol/index.ts";
import { linkPair } from "../helpers/memory-links.ts";

const logger = createLogger({ level: "error", write: () => {} });
const WAIT_MS = 10_000;

/** A resolver whose first answer is 127.0.0.1 and every later one an address nothing listens on (a rebinding DNS). */
function rebindingDns(): Lookup & { asked: string[] } {
  const asked: string[] = [];
  const lookup = async (name: string) => (asked.push(name), asked.length === 1 ? "127.0.0.1" : "192.0.2.1");
  return Object.assign(lookup, { asked });
}

/** Reads a whole stream (answer included) until it ends. */
function readAll(stream: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the stream did not end within ${WAIT_MS} ms (got ${Buffer.concat(chunks).length} bytes)`)), WAIT_MS);
    stream.once("end", () => (clearTimeout(timer), resolve(Buffer.concat(chunks))));
  });
}

describe("AppService with expose", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

  async function setUp(expose: (port: number) => string[], lookup: Lookup) {
    const target = createServer({ allowHalfOpen: true }, (socket) => (socket.on("error", () => {}), socket.pipe(socket)));
    target.listen(0, "127.0.0.1");
    await once(target, "listening");
    const port = (target.address() as { port: number }).port;
    const service = new AppService({ flowIds: new UdpFlowIds(), logger, node: "far", expose: new ExposePolicy(expose(port), lookup) });
    const { near, far } = linkPair(logger);
    service.attach("near", far);
    cleanups.push(() => (service.stop(), target.close(), near.close("test over"), far.close("test over")));
    return { port, near };
  }

  async function askThrough(near: ReturnType<typeof linkPair>["near"], target: string): Promise<{ answer: StreamAnswer; rest: string }> {
    const stream = near.mux.openStream();
    stream.end(Buffer.concat([encodeStreamHeader({ target }), Buffer.from("ping")]));
    const decoded = decodeStreamAnswer(await readAll(stream));
    if (!decoded) throw new Error("no whole answer");
    return { answer: decoded.answer, rest: decoded.rest.toString() };
  }

  for (const [kind, expose] of [
    ["an address entry", (port: number) => [`127.0.0.1:${port}`]],
    ["a name entry", (port: number) => [`rebind.test:${port}`]],
  ] as const)
    it(`connects a host-name target allowed by ${kind} to the address its check resolved, looking it up once`, async () => {
      const dns = rebindingDns();
      const { port, near } = await setUp(expose, dns);
      expect(await askThrough(near, `rebind.test:${port}`)).toEqual({ answer: { ok: true }, rest: "ping" });
      expect(dns.asked).toEqual(["rebind.test"]);
    });

  it("answers NOT_EXPOSED, and never connects, for a target outside expose", async () => {
    const dns = rebindingDns();
    const { port, near } = await setUp((p) => [`127.0.0.1:${p + 1}`], dns);
    const { answer, rest } = await askThrough(near, `127.0.0.1:${port}`);
    expect(answer).toEqual({ ok: false, code: "NOT_EXPOSED", error: `127.0.0.1:${port} is not exposed` });
    expect(rest).toBe("");
  });

  it("tells a refused UDP flow at most once a second however many datagrams it sends, and serves an exposed one beside it", async () => {
    const service = createSocket("udp4");
    service.on("message", (message, from) => service.send(message, from.port, from.address));
    service.bind(0, "127.0.0.1");
    await once(service, "listening");
    cleanups.push(() => service.close());
    const { port, near } = await setUp(() => [`127.0.0.1:${service.address().port}`], rebindingDns());
    const got: string[] = [];
    let onReply = () => {};
    near.onDatagram(UDP_APP_DATAGRAM_TYPES, (datagram) => {
      const decoded = decodeUdpAppDatagram(datagram);
      if (decoded?.type === "refused") got.push(`refused ${decoded.flowId} ${decoded.code}`);
      if (decoded?.type === "reply") (got.push(`reply ${decoded.flowId} ${decoded.payload}`), onReply());
    });
    /** Sends `refused` datagrams of flow 1, then one of flow 2 to the exposed service, and waits for its reply. */
    const burst = async (refused: number, tag: string) => {
      const replied = new Promise<void>((resolve) => (onReply = resolve));
      for (let i = 0; i < refused; i++) near.sendDatagram(encodeUdpAppDatagram(1, `127.0.0.1:${port}`, Buffer.from(`no ${i}`)));
      near.sendDatagram(encodeUdpAppDatagram(2, `127.0.0.1:${service.address().port}`, Buffer.from(tag)));
      await Promise.race([replied, new Promise((_, reject) => setTimeout(() => reject(new Error(`no reply within ${WAIT_MS} ms; got ${JSON.stringify(got)}`)), WAIT_MS))]);
    };
    await burst(1, "first");
    expect(got).toEqual(["refused 1 NOT_EXPOSED", "reply 2 first"]);
    // The flow is known to be refused now: a burst of its datagrams gets at most one refusal a second.
    const BURST = 50;
    await burst(BURST, "second");
    const refusals = got.filter((line) => line.startsWith("refused 1 NOT_EXPOSED")).length;
    expect(refusals).toBeGreaterThanOrEqual(1);
    expect(refusals).toBeLessThanOrEqual(2);
    expect(got.at(-1)).toBe("reply 2 second");
  });
});
