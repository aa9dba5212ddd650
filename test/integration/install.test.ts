// install.sh against a local HTTP server holding fake release artifacts for every platform, signed
// with a test key; `uname` and the musl loader are faked per test (test/helpers/install-sh.ts).

import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  INSTALL_SH,
  fakeMachine,
  makeSigningKey,
  runInstall,
  serveDirectory,
  signChecksums,
  type FakeMachine,
  type TestSigningKey,
} from "../helpers/install-sh.ts";

const PLATFORMS = ["linux-x64", "linux-x64-musl", "linux-arm64", "linux-arm64-musl"];
const FAKE_VERSION = "9.9.9-test";
const X64_GLIBC: FakeMachine = { machine: "x86_64", musl: false };

let root: string;
let server: ReturnType<typeof serveDirectory>;
let releaseKey: TestSigningKey;

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

interface ReleaseOptions {
  platforms?: string[];
  /** A file whose content differs from its checksum. */
  corrupt?: string;
  signature?: "good" | "other-key" | "none";
  /** The binary and SHA256SUMS replaced together after signing, as a mirror could. */
  tamperSums?: boolean;
}

/** A release tree under <root>/<name>/: per platform fake binaries, configs, units, SHA256SUMS(.sig); an index. */
function writeRelease(name: string, options: ReleaseOptions = {}): void {
  const platforms = options.platforms ?? PLATFORMS;
  let index = "";
  for (const platform of platforms) {
    const dir = join(root, name, platform);
    mkdirSync(dir, { recursive: true });
    const files: Record<string, string> = {};
    for (const binary of ["inp2pc", "inp2ps"]) {
      files[binary] = `#!/bin/sh\necho "${binary} ${FAKE_VERSION} ${platform}"\n`;
      files[`${binary}.example.toml`] = `# example ${binary} config\ntoken = 0\n`;
      files[`${binary}.service`] =
        `[Service]\nExecStart=/usr/local/bin/${binary} --config /etc/inp2p/${binary}.toml\nReadWritePaths=/etc/inp2p\n`;
    }
    let sums = "";
    for (const [file, content] of Object.entries(files)) {
      sums += `${sha256(content)}  ${file}\n`;
      index += `${sha256(content)}  ${platform}/${file}\n`;
      writeFileSync(join(dir, file), file === options.corrupt ? content.replace(FAKE_VERSION, "6.6.6-evil") : content);
    }
    writeFileSync(join(dir, "SHA256SUMS"), sums);
    const signature = options.signature ?? "good";
    if (signature === "good") signChecksums(dir, releaseKey);
    if (signature === "other-key") signChecksums(dir, makeSigningKey());
    if (options.tamperSums) {
      const evil = `#!/bin/sh\necho "inp2pc 6.6.6-evil"\n`;
      writeFileSync(join(dir, "inp2pc"), evil);
      writeFileSync(join(dir, "SHA256SUMS"), sums.replace(sha256(files.inp2pc!), sha256(evil)));
    }
  }
  writeFileSync(join(root, name, "SHA256SUMS"), index);
}

function freshTarget(name: string, machine: FakeMachine = X64_GLIBC) {
  const dir = join(root, "targets", name);
  const prefix = join(dir, "prefix");
  const etc = join(dir, "etc");
  const env: Record<string, string> = {
    PREFIX: prefix,
    INP2P_CONFIG_DIR: etc,
    INP2P_TEST_RELEASE_PUBLIC_KEY: releaseKey.publicPem,
    ...fakeMachine(dir, machine),
  };
  return { dir, prefix, etc, env };
}

const mode = (path: string) => statSync(path).mode & 0o777;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "inp2p-install-"));
  releaseKey = makeSigningKey();
  writeRelease("good");
  writeRelease("corrupt", { corrupt: "inp2pc" });
  writeRelease("glibc-only", { platforms: ["linux-x64", "linux-arm64"] });
  writeRelease("tampered", { tamperSums: true });
  writeRelease("other-key", { signature: "other-key" });
  writeRelease("unsigned", { signature: "none" });
  server = serveDirectory(root);
});

afterAll(() => {
  server?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe("install.sh", () => {
  test("is valid POSIX sh", async () => {
    const proc = Bun.spawnSync(["sh", "-n", INSTALL_SH]);
    expect(proc.exitCode).toBe(0);
  });

  test("installs the client, then a second run keeps a modified config", async () => {
    const t = freshTarget("client");
    const env = { ...t.env, INP2P_BASE_URL: `${server.url}/good` };
    const first = await runInstall(["--role", "client"], env);
    expect(first.stderr).toBe("");
    expect(first.exitCode).toBe(0);
    expect(first.stdout).toContain("Signature OK");
    expect(first.stdout).toContain("server_host, node and token");

    const bin = join(t.prefix, "bin", "inp2pc");
    expect(mode(bin)).toBe(0o755);
    const ran = Bun.spawnSync([bin, "--version"]);
    expect(ran.stdout.toString().trim()).toBe(`inp2pc ${FAKE_VERSION} linux-x64`);

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
    const run = await runInstall(["--role=server"], { ...t.env, INP2P_BASE_URL: `${server.url}/good` });
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain("inp2ps token");
    expect(existsSync(join(t.prefix, "bin", "inp2ps"))).toBe(true);
    expect(mode(join(t.etc, "inp2ps.toml"))).toBe(0o600);
  });

  test.each([
    { machine: "x86_64", musl: false, platform: "linux-x64" },
    { machine: "amd64", musl: true, platform: "linux-x64-musl" },
    { machine: "aarch64", musl: false, platform: "linux-arm64" },
    { machine: "arm64", musl: true, platform: "linux-arm64-musl" },
  ])("on $machine (musl: $musl) installs the $platform build", async ({ machine, musl, platform }) => {
    const t = freshTarget(`detect-${machine}-${musl}`, { machine, musl });
    const run = await runInstall(["--role", "client"], { ...t.env, INP2P_BASE_URL: `${server.url}/good` });
    expect(run.stderr).toBe("");
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain(`Downloading inp2pc for ${platform} from`);
    const ran = Bun.spawnSync([join(t.prefix, "bin", "inp2pc")]);
    expect(ran.stdout.toString().trim()).toBe(`inp2pc ${FAKE_VERSION} ${platform}`);
  });

  test("installs the glibc build on a glibc system that also has the musl loader (Debian's musl package)", async () => {
    const t = freshTarget("glibc-and-musl", { machine: "x86_64", musl: true, glibcToo: true });
    const run = await runInstall(["--role", "client"], { ...t.env, INP2P_BASE_URL: `${server.url}/good` });
    expect(run.exitCode).toBe(0);
    expect(Bun.spawnSync([join(t.prefix, "bin", "inp2pc")]).stdout.toString().trim()).toBe(`inp2pc ${FAKE_VERSION} linux-x64`);
  });

  test("names the builds there are when this CPU has none", async () => {
    const t = freshTarget("armv7", { machine: "armv7l", musl: true });
    const run = await runInstall(["--role", "client"], { ...t.env, INP2P_BASE_URL: `${server.url}/good` });
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toContain(
      "there is no inp2p build for linux-armv7l (builds: linux-arm64 linux-arm64-musl linux-x64 linux-x64-musl)",
    );
    expect(existsSync(t.prefix)).toBe(false);
  });

  test("names the builds there are when the release lacks this platform's", async () => {
    const t = freshTarget("no-musl", { machine: "aarch64", musl: true });
    const run = await runInstall(["--role", "client"], { ...t.env, INP2P_BASE_URL: `${server.url}/glibc-only` });
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toContain("there is no inp2p build for linux-arm64-musl (builds: linux-arm64 linux-x64)");
    expect(existsSync(t.prefix)).toBe(false);
  });

  test("refuses a download whose checksum does not match and installs nothing", async () => {
    const t = freshTarget("corrupt");
    const run = await runInstall(["--role", "client"], { ...t.env, INP2P_BASE_URL: `${server.url}/corrupt` });
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toMatch(/checksum mismatch for inp2pc/);
    expect(existsSync(t.prefix)).toBe(false);
    expect(existsSync(t.etc)).toBe(false);
  });

  test.each([
    { release: "tampered", what: "a SHA256SUMS changed after signing (with a binary to match)" },
    { release: "other-key", what: "a SHA256SUMS.sig made by another key" },
  ])("refuses $what and installs nothing", async ({ release }) => {
    const t = freshTarget(`signature-${release}`);
    const run = await runInstall(["--role", "client"], { ...t.env, INP2P_BASE_URL: `${server.url}/${release}` });
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toContain(
      "bad signature: linux-x64/SHA256SUMS.sig does not verify SHA256SUMS with the inp2p release key; refusing to install",
    );
    expect(existsSync(t.prefix)).toBe(false);
  });

  test("refuses a release with no signature unless INP2P_ALLOW_UNSIGNED is set", async () => {
    const t = freshTarget("unsigned");
    const env = { ...t.env, INP2P_BASE_URL: `${server.url}/unsigned` };
    const refused = await runInstall(["--role", "client"], env);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain("the release has no linux-x64/SHA256SUMS.sig; refusing to install an unsigned release");
    expect(existsSync(t.prefix)).toBe(false);

    const allowed = await runInstall(["--role", "client"], { ...env, INP2P_ALLOW_UNSIGNED: "1" });
    expect(allowed.exitCode).toBe(0);
    expect(allowed.stdout).toContain("Warning: the release is unsigned");
    expect(Bun.spawnSync([join(t.prefix, "bin", "inp2pc")]).stdout.toString().trim()).toBe(`inp2pc ${FAKE_VERSION} linux-x64`);
  });

  test("without openssl it installs on checksums alone, says the signature was not checked, and still refuses a bad checksum", async () => {
    const t = freshTarget("no-openssl");
    // A PATH with what install.sh runs, except openssl.
    const tools = join(t.dir, "tools");
    mkdirSync(tools);
    for (const tool of ["sh", "curl", "awk", "sed", "grep", "sort", "tr", "mktemp", "cp", "mv", "rm", "mkdir", "chmod", "sha256sum", "cat"]) {
      const path = Bun.which(tool);
      if (!path) throw new Error(`${tool} is not installed`);
      symlinkSync(path, join(tools, tool));
    }
    const env = { ...t.env, PATH: `${t.env.PATH!.split(":")[0]}:${tools}` };
    const run = await runInstall(["--role", "client"], { ...env, INP2P_BASE_URL: `${server.url}/good` });
    expect(run.stderr).toBe("");
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain("Warning: openssl is not installed: the release signature was not checked (the checksums are)");
    expect(run.stdout).toContain("Checksums OK");

    const corrupt = freshTarget("no-openssl-corrupt");
    const refused = await runInstall(["--role", "client"], { ...corrupt.env, PATH: env.PATH, INP2P_BASE_URL: `${server.url}/corrupt` });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/checksum mismatch for inp2pc/);
    expect(existsSync(corrupt.prefix)).toBe(false);
  });

  test("the real release key verifies nothing the test key signed", async () => {
    const t = freshTarget("real-key");
    const { INP2P_TEST_RELEASE_PUBLIC_KEY: _, ...env } = t.env;
    const run = await runInstall(["--role", "client"], { ...env, INP2P_BASE_URL: `${server.url}/good` });
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toContain("bad signature");
  });

  test("refuses when the release has no artifacts for this platform", async () => {
    const t = freshTarget("missing");
    const run = await runInstall(["--role", "client"], { ...t.env, INP2P_BASE_URL: `${server.url}/nothing-here` });
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
      INP2P_BASE_URL: `${server.url}/good`,
      INP2P_NO_SYSTEMD: "",
      INP2P_FORCE_SYSTEMD: "1",
      SYSTEMD_DIR: unitDir,
      PATH: `${fakeBin}:${t.env.PATH}`,
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
