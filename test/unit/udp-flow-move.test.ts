import { createSocket } from "node:dgram";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { AppService, UdpFlowIds } from "../../src/client/apps.ts";
import { ExposePolicy } from "../../src/client/expose.ts";
import { createLogger } from "../../src/log/index.ts";
import { decodeUdpAppDatagram, encodeUdpAppDatagram, UDP_APP_DATAGRAM_TYPES } from "../../src/protocol/index.ts";
import type { Link } from "../../src/transport/index.ts";
import { linkPair as memoryLinkPair } from "../helpers/memory-links.ts";

const logger = createLogger({ level: "error", write: () => {} });
const linkPair = () => memoryLinkPair(logger);

describe("a UDP app flow whose link is replaced (relay -> direct)", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

  it("keeps its socket at the target and answers on the link its datagrams now arrive on", async () => {
    // The target answers every datagram with the source port it came from.
    const target = createSocket("udp4");
    target.on("message", (_payload, from) => target.send(String(from.port), from.port, from.address));
    target.bind(0, "127.0.0.1");
    await once(target, "listening");
    const service = new AppService({ flowIds: new UdpFlowIds(), logger, node: "far", expose: new ExposePolicy([`127.0.0.1:${(target.address() as { port: number }).port}`]) });
    cleanups.push(() => (service.stop(), target.close()));
    const relayed = linkPair();
    const direct = linkPair();
    service.attach("near", relayed.far);
    service.attach("near", direct.far);
    // The near side's replies, whichever link they come on, answer the question asked last.
    let answered: (reply: string) => void = () => {};
    for (const link of [relayed.near, direct.near])
      link.onDatagram(UDP_APP_DATAGRAM_TYPES, (datagram) => {
        const decoded = decodeUdpAppDatagram(datagram);
        if (decoded?.type === "reply") answered(decoded.payload.toString());
      });
    const ask = async (link: Link): Promise<string> => {
      const answer = new Promise<string>((resolve) => (answered = resolve));
      link.sendDatagram(encodeUdpAppDatagram(7, `127.0.0.1:${target.address().port}`, Buffer.from("hello")));
      return answer;
    };
    const portBefore = await ask(relayed.near);
    const portAfter = await ask(direct.near);
    expect(Number(portBefore)).toBeGreaterThan(0);
    expect(portAfter).toBe(portBefore);
    // The relayed link retires: the flow, now on the direct link, stays.
    relayed.near.close("moved to a direct path");
    relayed.far.close("moved to a direct path");
    expect(await ask(direct.near)).toBe(portBefore);
    for (const link of [relayed.near, relayed.far, direct.near, direct.far]) link.close("test over");
  });
});
