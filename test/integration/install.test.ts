// install.sh against a local HTTP server holding fake release artifacts.

import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

const INSTALL_SH = resolve(import.meta.dirname, "../../install.sh");
const PLATFORM = `linux-${process.arch === "arm64" ? "arm64" : "x64"}`;
const FAKE_VERSION = "9.9.9-test";

let root: string;
let server: ReturnType<typeof Bun.serve>;
let baseUrl: string;

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

/** A release tree under <root>/<name>/<platform>/ with fake binaries, configs, units and SHA256SUMS. */
function writeRelease(name: string, corrupt?: string): void {
  const dir = join(root, name, PLATFORM);
  mkdirSync(dir, { recursive: true });
  const files: Record<string, string> = {};
  for (const binary of ["inp2pc", "inp2ps"]) {
    files[binary] = `#!/bin/sh\necho "${binary} ${FAKE_VERSION}"\n`;
    files[`${binary}.example.toml`] = `# example ${binary} config\ntoken = 0\n`;
    files[`${binary}.service`] =
      `[Service]\nExecStart=/usr/local/bin/${binary} --config /etc/inp2p/${binary}.toml\nReadWritePaths=/etc/inp2p\n`;
  }
  let sums = "";
  for (const [file, content] of Object.entries(files)) {
    sums += `${sha256(content)}  ${file}\n`;
    writeFileSync(join(dir, file), file === corrupt ? content.replace(FAKE_VERSION, "6.6.6-evil") : content);
  }
  writeFileSync(join(dir, "SHA256SUMS"), sums);
}

interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
}

// Async spawn: the HTTP server lives in this process and must keep answering while install.sh runs.
async function runInstall(args: string[], env: Record<string, string>): Promise<Run> {
  const proc = Bun.spawn(["sh", INSTALL_SH, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", INP2P_NO_SYSTEMD: "1", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { exitCode, stdout, stderr };
}

function freshTarget(name: string) {
  const dir = join(root, "targets", name);
  const prefix = join(dir, "prefix");
  const etc = join(dir, "etc");
  return { dir, prefix, etc, env: { PREFIX: prefix, INP2P_CONFIG_DIR: etc } };
}

const mode = (path: string) => statSync(path).mode & 0o777;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "inp2p-install-"));
  writeRelease("good");
  writeRelease("corrupt", "inp2pc");
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = join(root, decodeURIComponent(new URL(req.url).pathname));
      if (!path.startsWith(root) || !existsSync(path) || statSync(path).isDirectory()) {
        return new Response("not found", { status: 404 });
      }
      return new Response(Bun.file(path));
    },
  });
  baseUrl = `http://127.0.0.1:${server.port}`;
});

afterAll(() => {
  server?.stop(true);
  if (root) rmSync(root, { recursive: true, force: true });
});

describe("install.sh", () => {
  test("is valid POSIX sh", async () => {
    const proc = Bun.spawnSync(["sh", "-n", INSTALL_SH]);
    expect(proc.exitCode).toBe(0);
  });

  test("installs the client, then a second run keeps a modified config", async () => {
    const t = freshTarget("client");
    const env = { ...t.env, INP2P_BASE_URL: `${baseUrl}/good` };
    const first = await runInstall(["--role", "client"], env);
    expect(first.stderr).toBe("");
    expect(first.exitCode).toBe(0);
    expect(first.stdout).toContain("server_host, node and token");

    const bin = join(t.prefix, "bin", "inp2pc");
    expect(mode(bin)).toBe(0o755);
    const ran = Bun.spawnSync([bin, "--version"]);
    expect(ran.stdout.toString().trim()).toBe(`inp2pc ${FAKE_VERSION}`);

    const config = join(t.etc, "inp2pc.toml");
    expect(readFileSync(config, "utf8")).toContain("example inp2pc config");
    expect(mode(config)).toBe(0o600);

    writeFileSync(config, "token = 42\n");
    const second = await runInstall(["--role", "client"], env);
    expect(second.exitCode).toBe(0);
    expect(second.stdout).toContain("Kept existing config");
    expect(readFileSync(config, "utf8")).toBe("token = 42\n");
    expect(mode(bin)).toBe(0o755);
  });

  test("installs the server with --role=server", async () => {
    const t = freshTarget("server");
    const run = await runInstall(["--role=server"], { ...t.env, INP2P_BASE_URL: `${baseUrl}/good` });
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain("inp2ps token");
    expect(existsSync(join(t.prefix, "bin", "inp2ps"))).toBe(true);
    expect(mode(join(t.etc, "inp2ps.toml"))).toBe(0o600);
  });

  test("refuses a download whose checksum does not match and installs nothing", async () => {
    const t = freshTarget("corrupt");
    const run = await runInstall(["--role", "client"], { ...t.env, INP2P_BASE_URL: `${baseUrl}/corrupt` });
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toMatch(/checksum mismatch for inp2pc/);
    expect(existsSync(t.prefix)).toBe(false);
    expect(existsSync(t.etc)).toBe(false);
  });

  test("refuses when the release has no artifacts for this platform", async () => {
    const t = freshTarget("missing");
    const run = await runInstall(["--role", "client"], { ...t.env, INP2P_BASE_URL: `${baseUrl}/nothing-here` });
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toContain("download failed");
    expect(existsSync(t.prefix)).toBe(false);
  });

  test("refuses an unknown or missing role", async () => {
    const t = freshTarget("role");
    const unknown = await runInstall(["--role", "relay"], t.env);
    expect(unknown.exitCode).not.toBe(0);
    expect(unknown.stderr).toContain("unknown role 'relay'");
    const missing = await runInstall([], t.env);
    expect(missing.exitCode).not.toBe(0);
    expect(missing.stderr).toContain("--role is required");
    expect(existsSync(t.prefix)).toBe(false);
  });

  test("installs and enables the systemd unit with the chosen paths", async () => {
    const t = freshTarget("systemd");
    const unitDir = join(t.dir, "units");
    const fakeBin = join(t.dir, "fakebin");
    const calls = join(t.dir, "systemctl.calls");
    mkdirSync(fakeBin, { recursive: true });
    writeFileSync(join(fakeBin, "systemctl"), `#!/bin/sh\necho "$*" >> "${calls}"\n`);
    chmodSync(join(fakeBin, "systemctl"), 0o755);

    const run = await runInstall(["--role", "client"], {
      ...t.env,
      INP2P_BASE_URL: `${baseUrl}/good`,
      INP2P_NO_SYSTEMD: "",
      INP2P_FORCE_SYSTEMD: "1",
      SYSTEMD_DIR: unitDir,
      PATH: `${fakeBin}:${process.env.PATH}`,
    });
    expect(run.stderr).toBe("");
    expect(run.exitCode).toBe(0);
    const unit = readFileSync(join(unitDir, "inp2pc.service"), "utf8");
    expect(unit).toContain(`ExecStart=${t.prefix}/bin/inp2pc --config ${t.etc}/inp2pc.toml`);
    expect(unit).toContain(`ReadWritePaths=${t.etc}`);
    expect(readFileSync(calls, "utf8")).toBe("daemon-reload\nenable inp2pc\n");
    expect(run.stdout).toContain("systemctl start inp2pc");
  });
});
