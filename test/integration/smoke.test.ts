import { afterAll, describe, expect, it } from "vitest";
import { onlineNodes, startClient, startServer, waitFor, type ServerHandle } from "../helpers/processes.ts";

describe("a server and a client", () => {
  let server: ServerHandle;
  afterAll(async () => server?.stop());

  it("the client logs in and the server lists it", async () => {
    server = await startServer();
    const client = startClient({ node: "edge-1", port: server.port, token: server.token });
    try {
      await client.waitForOutput(/logged in/);
      expect(await waitFor("edge-1 listed", async () => ((await onlineNodes(server)).includes("edge-1") ? true : undefined))).toBe(true);
    } finally {
      await client.stop();
    }
  });
});
