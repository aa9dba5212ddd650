// The requesting side of a TCP app over an in-memory link: what the local connection sees when the
// serving node ends the stream without ever answering (a peer that stops mid-way, or one that is not
// inp2p). The connection must close, not hang open until the user gives up.
import { once } from "node:events";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { App, UdpFlowIds } from "../../src/client/apps.ts";
import type { PeerManager } from "../../src/client/peers.ts";
import { createLogger } from "../../src/log/index.ts";
import { linkPair } from "../helpers/memory-links.ts";
import { freePort } from "../helpers/processes.ts";

const logger = createLogger({ level: "error", write: () => {} });
const CLOSE_WAIT_MS = 5_000;

describe("TCP app, requesting side", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

  it("closes the local connection when the serving node ends the stream without an answer", async () => {
    const { near, far } = linkPair(logger);
    const headers: Buffer[] = [];
    far.mux.onStream((stream) => {
      stream.on("error", () => {});
      stream.once("data", (chunk: Buffer) => (headers.push(chunk), stream.end()));
      stream.resume();
    });
    const peers = { connect: async () => near } as unknown as PeerManager;
    const port = await freePort();
    const app = new App({ name: "web", protocol: "tcp", listen: `127.0.0.1:${port}`, peer: "far", target: "127.0.0.1:80", enabled: true }, peers, new UdpFlowIds(), logger);
    await app.start();
    cleanups.push(() => (app.stop(), near.close("test over"), far.close("test over")));
    expect(app.state).toBe("listening");

    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => {});
    socket.resume();
    const closed = once(socket, "close");
    const verdict = await Promise.race([closed.then(() => "closed"), new Promise((done) => setTimeout(() => done("still open"), CLOSE_WAIT_MS))]);
    socket.destroy();
    expect(headers.length).toBe(1);
    expect(verdict).toBe("closed");
  });
});
