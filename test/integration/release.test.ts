// The release matrix, built once in a temp dir and signed with a test key: the layout, checksums and
// signatures install.sh relies on; each target's ELF (CPU, loader, libraries) and embedded koffi
// prebuilt; each build run where this machine can run it (x64 natively, arm64 under qemu-user; musl
// cannot run here, see README); install.sh installing each target's set from a local HTTP server; and
// the container's root filesystem (scripts/container-rootfs.sh, as the Dockerfile runs it) running
// the programs in a chroot.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import pkg from "../../package.json";
import { verifyReleaseSignature } from "../../src/crypto/index.ts";
import { fakeMachine, makeSigningKey, runInstall, serveDirectory, type TestSigningKey } from "../helpers/install-sh.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const BUN = join(ROOT, "node_modules", ".bin", "bun");
const BUILD_TIMEOUT_MS = 300_000;
const QEMU_RUN_TIMEOUT_MS = 60_000;
const CHROOT_RUN_TIMEOUT_MS = 30_000;
const QEMU_LD_PREFIX = "/usr/aarch64-linux-gnu";
const TARGET_FILES = [
  "inp2ps", "inp2pc", "inp2ps.example.toml", "inp2pc.example.toml", "inp2ps.service", "inp2pc.service",
];

interface TargetFacts {
  name: string;
  machine: string;
  /** readelf -h's Machine line. */
  elfMachine: string;
  interpreter: string;
  needed: string[];
  koffiPackage: string;
  koffiPrebuilt: string;
  /** The other libc's prebuilt for the same CPU, which must not be embedded. */
  otherPrebuilt: string;
}

const GLIBC_NEEDED = (loader: string) => ["libc.so.6", loader, "libpthread.so.0", "libdl.so.2", "libm.so.6"];
const TARGETS: TargetFacts[] = [
  {
    name: "linux-x64", machine: "x86_64", elfMachine: "Advanced Micro Devices X86-64",
    interpreter: "/lib64/ld-linux-x86-64.so.2", needed: GLIBC_NEEDED("ld-linux-x86-64.so.2"),
    koffiPackage: "koffi-linux-x64", koffiPrebuilt: "linux_x64", otherPrebuilt: "musl_x64",
  },
  {
    name: "linux-x64-musl", machine: "x86_64", elfMachine: "Advanced Micro Devices X86-64",
    interpreter: "/lib/ld-musl-x86_64.so.1", needed: ["libstdc++.so.6", "libc.musl-x86_64.so.1"],
    koffiPackage: "koffi-linux-x64", koffiPrebuilt: "musl_x64", otherPrebuilt: "linux_x64",
  },
  {
    name: "linux-arm64", machine: "aarch64", elfMachine: "AArch64",
    interpreter: "/lib/ld-linux-aarch64.so.1", needed: GLIBC_NEEDED("ld-linux-aarch64.so.1"),
    koffiPackage: "koffi-linux-arm64", koffiPrebuilt: "linux_arm64", otherPrebuilt: "musl_arm64",
  },
  {
    name: "linux-arm64-musl", machine: "aarch64", elfMachine: "AArch64",
    interpreter: "/lib/ld-musl-aarch64.so.1", needed: ["libstdc++.so.6", "libc.musl-aarch64.so.1"],
    koffiPackage: "koffi-linux-arm64", koffiPrebuilt: "musl_arm64", otherPrebuilt: "linux_arm64",
  },
];

let tmp: string;
let dist: string;
let signingKey: TestSigningKey;

function run(argv: string[], env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin" }) {
  const proc = Bun.spawnSync(argv, { cwd: tmp, env, stdout: "pipe", stderr: "pipe" });
  return { exitCode: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

/** Why a tool-dependent test cannot run here, or undefined when it can; printed when skipping. */
function missing(what: Record<string, boolean>): string | undefined {
  const absent = Object.entries(what).filter(([, present]) => !present).map(([name]) => name);
  return absent.length > 0 ? `missing ${absent.join(", ")} (scripts/natlab/deps.sh installs them)` : undefined;
}

function skipReason(test: string, reason: string | undefined): string | undefined {
  if (reason) console.warn(`release test "${test}" skipped: ${reason}`);
  return reason;
}

const noReadelf = skipReason("ELF checks", missing({ "readelf (binutils)": Bun.which("readelf") !== null }));
const noQemu = skipReason(
  "arm64 under qemu",
  missing({
    "qemu-aarch64 (qemu-user)": Bun.which("qemu-aarch64") !== null,
    [`${QEMU_LD_PREFIX}/lib/ld-linux-aarch64.so.1 (libc6-arm64-cross)`]: existsSync(`${QEMU_LD_PREFIX}/lib/ld-linux-aarch64.so.1`),
    [`${QEMU_LD_PREFIX}/lib/libstdc++.so.6 (libstdc++6-arm64-cross, koffi needs it)`]: existsSync(`${QEMU_LD_PREFIX}/lib/libstdc++.so.6`),
  }),
);
const noOpenssl = skipReason("openssl verification", missing({ openssl: Bun.which("openssl") !== null }));
const notX64 = process.arch === "x64" ? undefined : skipReason("native x64 run", `this machine is ${process.arch}`);
const noChroot = skipReason(
  "container root filesystem",
  process.getuid?.() !== 0
    ? "needs root (chroot, unshare)"
    : missing({ "unshare (util-linux)": Bun.which("unshare") !== null, chroot: Bun.which("chroot") !== null, "ldconfig (libc-bin)": Bun.which("ldconfig", { PATH: "/usr/sbin:/sbin:/usr/bin:/bin" }) !== null }),
);

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "inp2p-release-"));
  dist = join(tmp, "dist");
  signingKey = makeSigningKey();
  const keyFile = join(tmp, "test-signing-key.pem");
  writeFileSync(keyFile, signingKey.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  const started = performance.now();
  const build = Bun.spawnSync([BUN, "scripts/build.ts", "--outdir", dist, "--signing-key", keyFile], {
    cwd: ROOT,
    env: { ...process.env, INP2P_TEST_RELEASE_PUBLIC_KEY: signingKey.publicPem },
    stdout: "pipe",
    stderr: "pipe",
  });
  const output = `${build.stdout.toString()}${build.stderr.toString()}`;
  if (build.exitCode !== 0) throw new Error(`build failed (exit ${build.exitCode}):\n${output}`);
  console.log(`${output.trim()}\n(release build: ${((performance.now() - started) / 1000).toFixed(1)} s)`);
}, BUILD_TIMEOUT_MS);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("the release matrix (scripts/build.ts)", () => {
  test("each target directory holds both programs, configs, units, SHA256SUMS and its signature; the index covers them all", () => {
    expect(readdirSync(dist).sort()).toEqual(["SHA256SUMS", "SHA256SUMS.sig", "VERSION", "install.sh", ...TARGETS.map((t) => t.name)].sort());
    expect(readFileSync(join(dist, "VERSION"), "utf8")).toBe(`${pkg.version}\n`);
    for (const target of TARGETS) {
      const dir = join(dist, target.name);
      expect(readdirSync(dir).sort(), target.name).toEqual([...TARGET_FILES, "SHA256SUMS", "SHA256SUMS.sig"].sort());
      const listed = readFileSync(join(dir, "SHA256SUMS"), "utf8").trim().split("\n").map((line) => line.split("  ")[1]);
      expect(listed.sort(), target.name).toEqual([...TARGET_FILES].sort());
    }
    // The index repeats each target's lines under its directory (hashing the binaries once is enough).
    const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
    const index = readFileSync(join(dist, "SHA256SUMS"), "utf8");
    const perTarget = TARGETS.flatMap((t) =>
      readFileSync(join(dist, t.name, "SHA256SUMS"), "utf8").trim().split("\n").map((line) => line.replace("  ", `  ${t.name}/`)),
    );
    expect(index.trim().split("\n").sort()).toEqual([`${sha256(join(dist, "install.sh"))}  install.sh`, `${sha256(join(dist, "VERSION"))}  VERSION`, ...perTarget].sort());
    expect(readFileSync(join(dist, "install.sh"), "utf8")).toBe(readFileSync(join(ROOT, "install.sh"), "utf8"));
    for (const target of TARGETS) {
      const sums = Bun.spawnSync(["sha256sum", "--strict", "-c", "SHA256SUMS"], { cwd: join(dist, target.name), stdout: "pipe", stderr: "pipe" });
      expect(sums.exitCode, `${target.name}: ${sums.stderr.toString()}`).toBe(0);
    }
  });

  test("every SHA256SUMS.sig is the signing key's signature of its SHA256SUMS", () => {
    for (const dir of [dist, ...TARGETS.map((t) => join(dist, t.name))]) {
      const sums = readFileSync(join(dir, "SHA256SUMS"));
      const signature = readFileSync(join(dir, "SHA256SUMS.sig"));
      expect(verifyReleaseSignature(sums, signature, signingKey.publicPem), dir).toBe(true);
      expect(verifyReleaseSignature(Buffer.concat([sums, Buffer.from("\n")]), signature, signingKey.publicPem), dir).toBe(false);
    }
  });

  test.skipIf(noOpenssl)("openssl verifies the signatures as install.sh does", () => {
    const publicKeyFile = join(tmp, "test-public-key.pem");
    writeFileSync(publicKeyFile, signingKey.publicPem);
    for (const dir of [dist, join(dist, "linux-arm64-musl")]) {
      const verify = run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", publicKeyFile, "-rawin",
        "-in", join(dir, "SHA256SUMS"), "-sigfile", join(dir, "SHA256SUMS.sig")]);
      expect(verify.stdout, verify.stderr).toContain("Signature Verified Successfully");
    }
  });

  test("the build refuses a signing key that is not the release key", () => {
    const keyFile = join(tmp, "stranger.pem");
    writeFileSync(keyFile, makeSigningKey().privateKey.export({ type: "pkcs8", format: "pem" }));
    const build = Bun.spawnSync([BUN, "scripts/build.ts", "--target", "linux-x64", "--outdir", join(tmp, "refused"), "--signing-key", keyFile], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: tmp },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(build.exitCode).toBe(1);
    expect(build.stderr.toString()).toContain(`the signing key ${keyFile} is not the release key`);
    expect(existsSync(join(tmp, "refused"))).toBe(false);
  });

  test.each(TARGETS)("$name embeds koffi's $koffiPrebuilt prebuilt and not $otherPrebuilt", (target) => {
    const binary = readFileSync(join(dist, target.name, "inp2pc"));
    const prebuilt = (name: string) => readFileSync(join(ROOT, "node_modules", "@koromix", target.koffiPackage, name, "koffi.node"));
    expect(binary.indexOf(prebuilt(target.koffiPrebuilt))).toBeGreaterThan(0);
    expect(binary.indexOf(prebuilt(target.otherPrebuilt))).toBe(-1);
  });

  test.skipIf(noReadelf).each(TARGETS)("$name: $elfMachine executables asking for $interpreter", (target) => {
    for (const binary of ["inp2ps", "inp2pc"]) {
      const file = join(dist, target.name, binary);
      const header = run(["readelf", "-h", file]).stdout;
      expect(header, file).toMatch(new RegExp(`Machine:\\s+${target.elfMachine}\\n`));
      const interpreter = /Requesting program interpreter: ([^\]]+)\]/.exec(run(["readelf", "-lW", file]).stdout)?.[1];
      expect(interpreter, file).toBe(target.interpreter);
      const needed = [...run(["readelf", "-dW", file]).stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
      expect(needed.sort(), file).toEqual([...target.needed].sort());
    }
  });

  test.skipIf(notX64).each(["inp2ps", "inp2pc"])("linux-x64 %s runs --version", (binary) => {
    const result = run([join(dist, "linux-x64", binary), "--version"]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain(`${binary}/${pkg.version} (bun `);
  });

  test.skipIf(noQemu)(
    "linux-arm64 runs under qemu-user: --version of both, and doctor's FFI check through the embedded koffi",
    () => {
      const env = { PATH: "/usr/bin:/bin", QEMU_LD_PREFIX, HOME: tmp };
      for (const binary of ["inp2ps", "inp2pc"]) {
        const version = run(["qemu-aarch64", join(dist, "linux-arm64", binary), "--version"], env);
        expect(version.exitCode, version.stderr).toBe(0);
        expect(version.stdout).toContain(`${binary}/${pkg.version} (bun `);
        expect(version.stdout).toContain("linux-arm64)");
      }
      const doctor = run(["qemu-aarch64", join(dist, "linux-arm64", "inp2pc"), "doctor", "--system", "--json"], env);
      const ffi = JSON.parse(doctor.stdout).layers.find((l: { name: string }) => l.name === "system ffi");
      expect(ffi.status, ffi.measured).toBe("ok");
      expect(ffi.measured).toMatch(/^koffi loaded; getpid\(\)=\d+, if_nametoindex\("lo"\)=\d+$/);
    },
    QEMU_RUN_TIMEOUT_MS,
  );

  test.each(TARGETS)("install.sh on the $machine machine of $name installs that set from the release", async (target) => {
    const server = serveDirectory(dist);
    try {
      const machineDir = join(tmp, "install", target.name);
      const prefix = join(machineDir, "prefix");
      const env = {
        PREFIX: prefix,
        INP2P_CONFIG_DIR: join(machineDir, "etc"),
        INP2P_BASE_URL: server.url,
        INP2P_TEST_RELEASE_PUBLIC_KEY: signingKey.publicPem,
        ...fakeMachine(machineDir, { machine: target.machine, musl: target.name.endsWith("-musl") }),
      };
      for (const role of ["client", "server"]) {
        const result = await runInstall(["--role", role], env);
        expect(result.stderr).toBe("");
        expect(result.exitCode).toBe(0);
        expect(result.stdout).toContain("Signature OK");
      }
      const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
      for (const binary of ["inp2ps", "inp2pc"]) {
        expect(sha256(join(prefix, "bin", binary)), binary).toBe(sha256(join(dist, target.name, binary)));
      }
      expect(readFileSync(join(machineDir, "etc", "inp2pc.toml"), "utf8")).toBe(readFileSync(join(ROOT, "config", "inp2pc.example.toml"), "utf8"));
    } finally {
      server.stop();
    }
  });

  test.skipIf(noChroot)(
    "the container's root filesystem holds the programs and their libraries only, and both run in it",
    () => {
      const rootfs = join(tmp, "rootfs");
      const env = { PATH: "/usr/sbin:/sbin:/usr/bin:/bin" };
      const assemble = run(["sh", join(ROOT, "scripts", "container-rootfs.sh"), join(dist, `linux-${process.arch}`), rootfs], env);
      expect(assemble.exitCode, assemble.stderr).toBe(0);
      const listed = Bun.spawnSync(["find", ".", "-type", "f"], { cwd: rootfs, stdout: "pipe" }).stdout.toString().trim().split("\n");
      const libDir = process.arch === "x64" ? "x86_64-linux-gnu" : "aarch64-linux-gnu";
      const loader = process.arch === "x64" ? "./lib64/ld-linux-x86-64.so.2" : "./lib/ld-linux-aarch64.so.1";
      expect(listed.sort()).toEqual(
        [
          "./usr/local/bin/inp2ps", "./usr/local/bin/inp2pc", loader,
          ...["libc.so.6", "libdl.so.2", "libm.so.6", "libpthread.so.0", "libstdc++.so.6", "libgcc_s.so.1"].map((lib) => `./lib/${libDir}/${lib}`),
        ].sort(),
      );
      // What a container engine adds at run time: a PID namespace with its own /proc (Bun needs it).
      mkdirSync(join(rootfs, "proc"));
      const inContainer = (args: string[]) =>
        run(["unshare", "--mount", "--pid", "--fork", `--mount-proc=${join(rootfs, "proc")}`, "chroot", rootfs, ...args], env);
      for (const binary of ["inp2ps", "inp2pc"]) {
        const version = inContainer([`/usr/local/bin/${binary}`, "--version"]);
        expect(version.exitCode, version.stderr).toBe(0);
        expect(version.stdout).toContain(`${binary}/${pkg.version} (bun `);
      }
      const doctor = inContainer(["/usr/local/bin/inp2pc", "doctor", "--system", "--json"]);
      const ffi = JSON.parse(doctor.stdout).layers.find((l: { name: string }) => l.name === "system ffi");
      expect(ffi.status, ffi.measured).toBe("ok");
    },
    CHROOT_RUN_TIMEOUT_MS,
  );
});
