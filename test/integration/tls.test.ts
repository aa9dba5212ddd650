// TLS with the operator's own certificate files, verified by the client against the system CAs
// (NODE_EXTRA_CA_CERTS adds our test CA to them), and the output format of the logs.
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSelfSignedCertificate } from "../../src/crypto/index.ts";
import { onlineNodes, startClient, startServer, tempDir, waitFor } from "../helpers/processes.ts";

let certDir: string;
let certFile: string;
let fingerprint: string;

beforeAll(() => {
  certDir = tempDir("inp2p-ca-");
  // Valid for localhost and 127.0.0.1 only.
  const generated = createSelfSignedCertificate("inp2ps-test");
  certFile = join(certDir, "server.crt");
  writeFileSync(certFile, generated.certPem);
  writeFileSync(join(certDir, "server.key"), generated.keyPem, { mode: 0o600 });
  fingerprint = generated.fingerprint256;
});
afterAll(() => rmSync(certDir, { recursive: true, force: true }));

const filesToml = () => `tls_cert = "${certFile}"\ntls_key = "${join(certDir, "server.key")}"`;

describe("TLS with tls_cert / tls_key", () => {
  it("serves the configured certificate; a client that trusts its CA accepts it as a system CA and records nothing", async () => {
    const server = await startServer({ extraToml: filesToml() });
    const client = startClient({ node: "ca-ok", port: server.port, token: server.token, env: { NODE_EXTRA_CA_CERTS: certFile } });
    try {
      expect(server.proc.output).toContain(`files certificate ${certFile}`);
      expect(server.proc.output).toContain(fingerprint);
      await client.waitForOutput(/logged in/);
      expect(client.output).toMatch(/server certificate accepted \(system CA\)/);
      expect(existsSync(join(client.dir, "inp2pc.known_servers.json"))).toBe(false);
      expect(await onlineNodes(server)).toEqual(["ca-ok"]);
    } finally {
      await client.stop();
      await server.stop();
      rmSync(client.dir, { recursive: true, force: true });
    }
  });

  it("a CA-trusted certificate for another name is not taken as verified: the client falls back to trust on first use", async () => {
    // The certificate names 127.0.0.1 and localhost; the client dials 127.0.0.2.
    const server = await startServer({ listen: "127.0.0.2", extraToml: filesToml() });
    const client = startClient({ node: "wrong-name", host: "127.0.0.2", port: server.port, token: server.token, env: { NODE_EXTRA_CA_CERTS: certFile } });
    try {
      await client.waitForOutput(/logged in/);
      expect(client.output).toMatch(/server certificate accepted \(first use: recorded\)/);
      const known = JSON.parse(readFileSync(join(client.dir, "inp2pc.known_servers.json"), "utf8"));
      expect(known).toEqual({ [`127.0.0.2:${server.port}`]: fingerprint });
    } finally {
      await client.stop();
      await server.stop();
      rmSync(client.dir, { recursive: true, force: true });
    }
  });

  it("refuses to start when a configured certificate file cannot be read, naming it", async () => {
    const missing = join(certDir, "missing.crt");
    await expect(startServer({ extraToml: `tls_cert = "${missing}"\ntls_key = "${join(certDir, "server.key")}"` })).rejects.toThrow(
      new RegExp(`cannot read TLS certificate ${missing}: ENOENT`),
    );
  });
});

describe("--log-format json", () => {
  it("prints one JSON object per log line with time, level and message", async () => {
    const server = await startServer();
    const client = startClient({ node: "json-logs", port: server.port, token: server.token, extraArgs: ["--log-format", "json", "--log-level", "info"] });
    try {
      await client.waitForOutput(/logged in/);
      const lines = client.output.trim().split("\n");
      const records = lines.map((line) => JSON.parse(line) as { time: string; level: string; msg: string; node?: string });
      expect(records.every((r) => typeof r.time === "string" && ["info", "warn"].includes(r.level))).toBe(true);
      expect(records.some((r) => r.msg === "logged in" && r.node === "json-logs")).toBe(true);
      await waitFor("server lists it", async () => (await onlineNodes(server)).includes("json-logs"));
    } finally {
      await client.stop();
      await server.stop();
      rmSync(client.dir, { recursive: true, force: true });
    }
  });
});

describe('tls = "off"', () => {
  const WARNING = /WARN .*tls = "off" on a non-loopback address.*captured login.*offline/;

  it("served on a non-loopback address: inp2ps warns at start that a captured login allows offline guessing of weak tokens", async () => {
    const server = await startServer({ tls: "off", listen: "0.0.0.0" });
    try {
      expect(server.proc.output).toMatch(WARNING);
    } finally {
      await server.stop();
    }
  });

  it("on loopback (behind a local proxy), or with TLS on every address: no such warning", async () => {
    for (const options of [{ tls: "off", listen: "127.0.0.1" }, { tls: "auto", listen: "0.0.0.0" }] as const) {
      const server = await startServer(options);
      try {
        expect(server.proc.output, JSON.stringify(options)).toMatch(/listening on/);
        expect(server.proc.output, JSON.stringify(options)).not.toMatch(/captured login/);
      } finally {
        await server.stop();
      }
    }
  });
});
