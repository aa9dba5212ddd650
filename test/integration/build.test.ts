// scripts/build.ts for this machine's target (linux-x64 or linux-arm64): both executables, support files and
// SHA256SUMS; the executables run without bun or node on PATH, and the client's FFI works inside the
// compiled executable. test/integration/release.test.ts covers the other targets.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import pkg from "../../package.json";
import { freePort, ownServerPorts, portFlags, waitFor } from "../helpers/processes.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const BUN = join(ROOT, "node_modules", ".bin", "bun");
const BUILD_TIMEOUT_MS = 240_000;
const HOST_TARGET = `linux-${process.arch}`;
const RELEASE_FILES = [
  "inp2ps", "inp2pc", "inp2ps.example.toml", "inp2pc.example.toml", "inp2ps.service", "inp2pc.service",
];

let tmp: string;
let distDir: string;
let outDir: string;
let emptyPathDir: string;
let bareEnv: Record<string, string>;

function run(argv: string[], env = bareEnv) {
  const proc = Bun.spawnSync(argv, { cwd: tmp, env, stdout: "pipe", stderr: "pipe" });
  return { exitCode: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "inp2p-build-"));
  distDir = join(tmp, "dist");
  outDir = join(distDir, HOST_TARGET);
  emptyPathDir = join(tmp, "empty-path");
  mkdirSync(emptyPathDir);
  bareEnv = { PATH: emptyPathDir, HOME: tmp, INP2P_DISABLE_BONJOUR: "1" }; // never advertise on this host's LAN

  const started = performance.now();
  const build = Bun.spawnSync([BUN, "scripts/build.ts", "--target", HOST_TARGET, "--outdir", distDir], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const output = `${build.stdout.toString()}${build.stderr.toString()}`;
  if (build.exitCode !== 0) throw new Error(`build failed (exit ${build.exitCode}):\n${output}`);
  console.log(`${output.trim()}\n(build test: ${((performance.now() - started) / 1000).toFixed(1)} s)`);
}, BUILD_TIMEOUT_MS);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("scripts/build.ts", () => {
  test("writes the release files and a SHA256SUMS that sha256sum -c accepts", () => {
    for (const file of RELEASE_FILES) expect(existsSync(join(outDir, file)), file).toBe(true);
    for (const binary of ["inp2ps", "inp2pc"]) {
      expect(statSync(join(outDir, binary)).mode & 0o111).not.toBe(0);
    }
    const sums = readFileSync(join(outDir, "SHA256SUMS"), "utf8").trim().split("\n");
    expect(sums.map((line) => line.split("  ")[1]).sort()).toEqual([...RELEASE_FILES].sort());
    const check = Bun.spawnSync(["sha256sum", "-c", "SHA256SUMS"], { cwd: outDir, stdout: "pipe", stderr: "pipe" });
    expect(check.stderr.toString()).toBe("");
    expect(check.exitCode).toBe(0);
  });

  test("the test environment has neither bun nor node on PATH", () => {
    expect(run(["/bin/sh", "-c", "command -v node"]).exitCode).not.toBe(0);
    expect(run(["/bin/sh", "-c", "command -v bun"]).exitCode).not.toBe(0);
  });

  test.each(["inp2ps", "inp2pc"])("%s --version prints the package version", (binary) => {
    const result = run([join(outDir, binary), "--version"]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain(pkg.version);
  });

  test("inp2pc doctor --system --json makes an FFI call inside the compiled executable", () => {
    const result = run([join(outDir, "inp2pc"), "doctor", "--system", "--json"]);
    const report = JSON.parse(result.stdout);
    const check = (name: string) => report.layers.find((l: { name: string }) => l.name === name);
    expect(check("system ffi").status, check("system ffi").measured).toBe("ok");
    expect(["ok", "fail"]).toContain(check("system tun device").status);
    expect(["ok", "fail"]).toContain(check("system net admin").status);
    // 17: the system layer failed (no TUN or no CAP_NET_ADMIN where this runs), never anything else.
    expect([0, 17], result.stderr).toContain(result.exitCode);
  });

  // Proves koffi's native module is embedded, not loaded from this checkout's node_modules:
  // hide node_modules in a private mount namespace (needs root and unshare).
  const canHideNodeModules = process.getuid?.() === 0 && Bun.which("unshare") !== null;
  if (!canHideNodeModules) console.warn("build test skipped: hiding node_modules needs root and unshare(1)");
  test.skipIf(!canHideNodeModules)("inp2pc doctor works with node_modules hidden", () => {
    const script = `mount --bind "$1" "$2" && exec "$3" doctor --system --json`;
    const result = run(
      [Bun.which("unshare")!, "-m", "/bin/sh", "-c", script, "sh", emptyPathDir, join(ROOT, "node_modules"), join(outDir, "inp2pc")],
      { ...bareEnv, PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    );
    expect([0, 17], result.stderr).toContain(result.exitCode);
    expect(JSON.parse(result.stdout).layers.find((l: { name: string }) => l.name === "system ffi").status).toBe("ok");
  });

  test("the compiled inp2ps and inp2pc talk: the client logs in over TLS once `inp2ps pairing approve` admits it, and `inp2ps nodes` lists it; the console page is served", async () => {
    const port = await freePort();
    const serverDir = join(tmp, "server");
    const clientDir = join(tmp, "client");
    mkdirSync(serverDir);
    mkdirSync(clientDir);
    const spawnBare = (binary: string, args: string[], cwd: string) =>
      Bun.spawn([join(outDir, binary), ...args], { cwd, env: bareEnv, stdout: "pipe", stderr: "pipe" });
    const collect = (proc: ReturnType<typeof spawnBare>) => {
      const seen = { text: "" };
      for (const stream of [proc.stdout, proc.stderr])
        void (async () => {
          for await (const chunk of stream) seen.text += new TextDecoder().decode(chunk);
        })();
      return seen;
    };
    // Ports of its own for every listener, so that nothing else on the host (another inp2ps on the defaults) is in the way.
    const { relay_port, ...stunPorts } = await ownServerPorts();
    const server = spawnBare("inp2ps", ["-ws-port", String(port), ...portFlags({ ...stunPorts, relay_port }), "--log-level", "debug"], serverDir);
    const serverOut = collect(server);
    let client: ReturnType<typeof spawnBare> | undefined;
    try {
      const token = (await waitFor("server banner", () => serverOut.text.match(/token:\s+(\d+)/) ?? undefined, 15_000).catch((err: Error) => {
        throw new Error(`${err.message}; inp2ps printed:\n${serverOut.text}`);
      }))[1]!;
      const clientPorts = portFlags({ ...stunPorts, relay_port: await freePort(), status_port: await freePort() });
      client = spawnBare("inp2pc", ["-serverhost", "127.0.0.1", "-serverport", String(port), ...clientPorts, "-node", "compiled", "-token", token], clientDir);
      const clientOut = collect(client);
      // The config the compiled server wrote admits nodes by approval: the client waits, the admin approves.
      await waitFor("the client to wait for approval", () => clientOut.text.includes('waiting for approval: run "inp2ps pairing approve compiled"'), 15_000);
      const approve = run([join(outDir, "inp2ps"), "pairing", "approve", "compiled", "--config", join(serverDir, "inp2ps.toml")]);
      expect(approve.exitCode, approve.stderr).toBe(0);
      await waitFor("client login", () => clientOut.text.includes("logged in"), 15_000);
      const nodes = run([join(outDir, "inp2ps"), "nodes", "--json", "--config", join(serverDir, "inp2ps.toml")]);
      expect(nodes.exitCode, nodes.stderr).toBe(0);
      expect(JSON.parse(nodes.stdout).map((n: { name: string }) => n.name)).toEqual(["compiled"]);
      // The web console is inside the binary too: no files beside it.
      const page = await fetch(`https://127.0.0.1:${port}/`, { tls: { rejectUnauthorized: false } } as RequestInit);
      expect(await page.text()).toContain("Admin credential");
      const script = await fetch(`https://127.0.0.1:${port}/console/app.js`, { tls: { rejectUnauthorized: false } } as RequestInit);
      expect(await script.text()).toContain("EventSource");
    } finally {
      client?.kill();
      server.kill();
      await Promise.all([client?.exited, server.exited]);
    }
  });
});
