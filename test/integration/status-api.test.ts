// The client's local status API answers only requests addressed to loopback by name or address, so a
// web page whose host name an attacker re-points at 127.0.0.1 (DNS rebinding) cannot read it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStatusServer, type ClientStatus } from "../../src/client/status.ts";
import { runToEnd } from "../helpers/processes.ts";

const STATUS = { node: "edge-1", version: "0.1.0" } as unknown as ClientStatus;

/** curl the status API with this Host header; the status code and body. */
async function curl(port: number, host: string | undefined): Promise<{ status: number; body: string }> {
  const header = host === undefined ? [] : ["-H", `Host: ${host}`];
  const { code, output } = await runToEnd("curl", ["-sS", "--max-time", "5", "-w", "\n%{http_code}", ...header, `http://127.0.0.1:${port}/api/v1/status`]);
  expect(code, output).toBe(0);
  const at = output.lastIndexOf("\n");
  return { status: Number(output.slice(at + 1)), body: output.slice(0, at) };
}

describe("the local status API's Host check", () => {
  let server: ReturnType<typeof startStatusServer>;

  beforeAll(() => {
    server = startStatusServer(0, () => STATUS);
  });
  afterAll(() => server?.stop());

  it("answers Host 127.0.0.1, localhost and [::1], with or without a port", async () => {
    for (const host of [undefined, "127.0.0.1", `127.0.0.1:${server.port}`, "localhost", `LocalHost:${server.port}`, "[::1]", `[::1]:${server.port}`]) {
      const { status, body } = await curl(server.port, host);
      expect(status, String(host)).toBe(200);
      expect(JSON.parse(body).node, String(host)).toBe("edge-1");
    }
  });

  it("refuses any other Host with 403 and says why", async () => {
    for (const host of ["attacker.example", `attacker.example:${server.port}`, "127.0.0.1.attacker.example", "localhost.attacker.example", "10.0.0.1", "[::2]", "127.0.0.1:80:80"]) {
      const { status, body } = await curl(server.port, host);
      expect(status, host).toBe(403);
      expect(JSON.parse(body).error, host).toBe(
        `refused Host ${JSON.stringify(host)}: the status API answers only Host 127.0.0.1, localhost or [::1] (with any port), so that no other site's page can read it`,
      );
    }
  });
});
