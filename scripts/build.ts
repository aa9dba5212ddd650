// Builds the release matrix: for each target, both executables (`bun build --compile`), the example
// configs and systemd units, and SHA256SUMS in the format `sha256sum -c` reads, under
// <outdir>/<target>/. install.sh fetches one such directory. At the top of <outdir>: install.sh and an
// index, SHA256SUMS, whose lines are `<sha256>  <target>/<file>` (again `sha256sum -c` format, run from
// <outdir>) for every target directory present there. With a signing key, each SHA256SUMS gets a
// SHA256SUMS.sig beside it: the raw 64-byte Ed25519 signature of the file, as
// `openssl pkeyutl -verify -rawin` checks it. <outdir>/VERSION names the release's version (listed in the
// index, so the signature covers it): `upgrade` reads it (src/protocol/release.ts describes the layout).
//
//   bun scripts/build.ts [--target linux-x64|linux-x64-musl|linux-arm64|linux-arm64-musl] [--outdir dist]
//                        [--signing-key ed25519-private.pem]   (default: $INP2P_RELEASE_SIGNING_KEY)
//                        [--version 1.2.3]                     (default: package.json's version)
//
// The signing key must be the release key (src/crypto/release-key.ts); tests sign with a key of their
// own and name its public half in $INP2P_TEST_RELEASE_PUBLIC_KEY (PEM), which install.sh reads too and
// which the binaries built then trust instead of the release key (their --version prints its fingerprint).

import { createHash, createPrivateKey, createPublicKey, sign, type KeyObject } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, relative, resolve } from "node:path";
import { RELEASE_PUBLIC_KEY_PEM } from "../src/crypto/release-key.ts";
import { isVersion, RELEASE_VERSION_FILE } from "../src/protocol/release.ts";
import pkg from "../package.json" with { type: "json" };

const ROOT = resolve(import.meta.dir, "..");
const BINARIES = ["inp2ps", "inp2pc"] as const;
const CHECKSUMS_FILE = "SHA256SUMS";
const SIGNATURE_FILE = "SHA256SUMS.sig";
const SIGNING_KEY_ENV = "INP2P_RELEASE_SIGNING_KEY";
const TEST_PUBLIC_KEY_ENV = "INP2P_TEST_RELEASE_PUBLIC_KEY";

interface Target {
  /** The directory name, as install.sh computes it from `uname -m` and the libc. */
  name: string;
  bunTarget: string;
  /** The npm package holding koffi's prebuilt for this CPU, and the prebuilt's directory in it. */
  koffiPackage: string;
  koffiPrebuilt: string;
}

export const TARGETS: readonly Target[] = [
  // Bun's baseline x64 build needs no AVX2 (Celeron, Atom and older boxes lack it).
  { name: "linux-x64", bunTarget: "bun-linux-x64-baseline", koffiPackage: "@koromix/koffi-linux-x64", koffiPrebuilt: "linux_x64" },
  { name: "linux-x64-musl", bunTarget: "bun-linux-x64-musl", koffiPackage: "@koromix/koffi-linux-x64", koffiPrebuilt: "musl_x64" },
  { name: "linux-arm64", bunTarget: "bun-linux-arm64", koffiPackage: "@koromix/koffi-linux-arm64", koffiPrebuilt: "linux_arm64" },
  { name: "linux-arm64-musl", bunTarget: "bun-linux-arm64-musl", koffiPackage: "@koromix/koffi-linux-arm64", koffiPrebuilt: "musl_arm64" },
];

class BuildError extends Error {}

interface Options {
  targets: readonly Target[];
  outDir: string;
  signingKeyFile?: string;
  version: string;
}

const USAGE = `usage: bun scripts/build.ts [--target ${TARGETS.map((t) => t.name).join("|")}] [--outdir dist] [--signing-key FILE] [--version V]`;

function parseArgs(argv: string[], env: NodeJS.ProcessEnv): Options {
  let targets: readonly Target[] = TARGETS;
  let outDir = join(ROOT, "dist");
  let signingKeyFile = env[SIGNING_KEY_ENV] || undefined;
  let version = pkg.version;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.split("=", 2) as [string, string | undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (!v) throw new BuildError(`${name} needs a value (${USAGE})`);
      return v;
    };
    if (name === "--target") {
      const wanted = value();
      const target = TARGETS.find((t) => t.name === wanted);
      if (!target) throw new BuildError(`unknown target ${wanted} (targets: ${TARGETS.map((t) => t.name).join(", ")})`);
      targets = [target];
    } else if (name === "--outdir") outDir = resolve(value());
    else if (name === "--signing-key") signingKeyFile = resolve(value());
    else if (name === "--version") {
      version = value();
      if (!isVersion(version)) throw new BuildError(`--version ${version} is not a version such as 1.2.3 (semver)`);
    }
    else throw new BuildError(`unknown argument ${arg} (${USAGE})`);
  }
  return { targets, outDir, signingKeyFile, version };
}

function run(args: string[], what: string): void {
  const result = Bun.spawnSync(args, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) {
    const output = `${result.stdout.toString()}${result.stderr.toString()}`.trim();
    throw new BuildError(`${what} failed (exit ${result.exitCode}):\n${output}`);
  }
}

/**
 * npm installs koffi's prebuilts for this machine's CPU only; a cross build fetches the other CPU's
 * package from the npm registry (`npm pack`, which checks the registry's integrity hash) into
 * node_modules, where the literal require() paths of src/sdwan/ffi.ts find it.
 */
function ensureKoffiPrebuilt(target: Target): void {
  const packageDir = join(ROOT, "node_modules", target.koffiPackage);
  if (existsSync(join(packageDir, target.koffiPrebuilt, "koffi.node"))) return;
  const version = JSON.parse(readFileSync(join(ROOT, "node_modules", "koffi", "package.json"), "utf8")).version as string;
  const spec = `${target.koffiPackage}@${version}`;
  const scratch = mkdtempSync(join(tmpdir(), "inp2p-koffi-"));
  try {
    run(["npm", "pack", spec, "--silent", "--pack-destination", scratch], `npm pack ${spec}`);
    const tarball = join(scratch, `${target.koffiPackage.replace("@", "").replace("/", "-")}-${version}.tgz`);
    rmSync(packageDir, { recursive: true, force: true });
    mkdirSync(packageDir, { recursive: true });
    run(["tar", "-xzf", tarball, "-C", packageDir, "--strip-components=1"], `unpacking ${spec}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  if (!existsSync(join(packageDir, target.koffiPrebuilt, "koffi.node"))) {
    throw new BuildError(`${spec} holds no ${target.koffiPrebuilt}/koffi.node`);
  }
  console.log(`fetched ${spec} from the npm registry for ${target.name}`);
}

/** What the programs learn at build time: their version, their target (for upgrade), and in test builds the key they trust. */
function defines(target: Target, version: string): string[] {
  const values: Record<string, string> = { INP2P_KOFFI_PREBUILT: target.koffiPrebuilt, INP2P_BUILD_VERSION: version, INP2P_RELEASE_TARGET: target.name };
  const testKey = process.env[TEST_PUBLIC_KEY_ENV];
  if (testKey) values.INP2P_TEST_RELEASE_PUBLIC_KEY_PEM = testKey;
  return Object.entries(values).map(([name, value]) => `--define=${name}=${JSON.stringify(value)}`);
}

function compile(binary: string, targetDir: string, target: Target, version: string): string {
  const entry = join(ROOT, "src", "cli", `${binary}.ts`);
  if (!existsSync(entry)) throw new BuildError(`entry point ${entry} is missing`);
  const outFile = join(targetDir, binary);
  run(
    [
      process.execPath, "build", "--compile", entry, "--outfile", outFile, `--target=${target.bunTarget}`,
      // Bytecode starts the programs ~2-4x faster for ~4.3 MiB; the embedded source map keeps stack
      // traces pointing at src/. Whitespace and syntax minification keep every name (traces still read
      // `at parseCidr (src/sdwan/packet.ts:27:15)`) and save 0.35 MiB; full --minify would save 0.25 MiB
      // more and rename functions in traces to `s`, `d`... (README, Build and install: sizes of each).
      "--bytecode", "--sourcemap", "--minify-whitespace", "--minify-syntax",
      ...defines(target, version),
      // A deployed daemon must not pick up a stray .env or bunfig.toml from its working directory.
      "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
    ],
    `bun build --compile ${binary} for ${target.name}`,
  );
  // The map is embedded in the executable; the copy written beside it is not shipped.
  rmSync(`${outFile}.map`, { force: true });
  return outFile;
}

/** The files install.sh needs beside each binary: example config and systemd unit. */
function supportFiles(): string[] {
  const files = BINARIES.flatMap((b) => [`${b}.example.toml`, `${b}.service`]).map((f) => join(ROOT, "config", f));
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length > 0) throw new BuildError(`missing release files: ${missing.join(", ")}`);
  return files;
}

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

function loadSigningKey(file: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(file));
  } catch (err) {
    throw new BuildError(`cannot read the signing key ${file}: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new BuildError(`the signing key ${file} is ${key.asymmetricKeyType}, not an Ed25519 key`);
  }
  const publicPem = createPublicKey(key).export({ type: "spki", format: "pem" }).toString();
  const expected = process.env[TEST_PUBLIC_KEY_ENV] || RELEASE_PUBLIC_KEY_PEM;
  if (publicPem.trim() !== expected.trim()) {
    throw new BuildError(
      `the signing key ${file} is not the release key (RELEASE_PUBLIC_KEY_PEM in src/crypto/release-key.ts and install.sh); its public key is\n${publicPem}`,
    );
  }
  return key;
}

function writeChecksums(dir: string, files: string[], key: KeyObject | undefined): string {
  const sumsFile = join(dir, CHECKSUMS_FILE);
  writeFileSync(sumsFile, files.map((file) => `${sha256(file)}  ${relative(dir, file)}\n`).join(""));
  const signatureFile = join(dir, SIGNATURE_FILE);
  rmSync(signatureFile, { force: true });
  if (key) writeFileSync(signatureFile, sign(null, readFileSync(sumsFile), key));
  return sumsFile;
}

function formatSize(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`;
}

function buildTarget(target: Target, outDir: string, sources: string[], key: KeyObject | undefined, version: string): string[] {
  const dir = join(outDir, target.name);
  // Only our own files are removed: --outdir may point at a directory holding other things.
  mkdirSync(dir, { recursive: true });
  for (const name of [...BINARIES, ...sources.map((f) => basename(f)), CHECKSUMS_FILE, SIGNATURE_FILE]) {
    rmSync(join(dir, name), { force: true });
  }
  ensureKoffiPrebuilt(target);
  const artifacts = BINARIES.map((binary) => compile(binary, dir, target, version));
  for (const source of sources) {
    const dest = join(dir, basename(source));
    copyFileSync(source, dest);
    artifacts.push(dest);
  }
  return [...artifacts, writeChecksums(dir, artifacts, key)];
}

/** The index covers every target directory in outDir, built now or before, so one-target builds add up. */
function writeIndex(outDir: string, key: KeyObject | undefined, version: string): string[] {
  const installer = join(outDir, "install.sh");
  copyFileSync(join(ROOT, "install.sh"), installer);
  const versionFile = join(outDir, RELEASE_VERSION_FILE);
  writeFileSync(versionFile, `${version}\n`);
  const files = [installer, versionFile];
  for (const target of TARGETS) {
    const sumsFile = join(outDir, target.name, CHECKSUMS_FILE);
    if (!existsSync(sumsFile)) continue;
    for (const line of readFileSync(sumsFile, "utf8").trim().split("\n")) {
      files.push(join(outDir, target.name, line.slice(line.indexOf("  ") + 2)));
    }
  }
  return [installer, versionFile, writeChecksums(outDir, files, key)];
}

function main(): void {
  const started = performance.now();
  const { targets, outDir, signingKeyFile, version } = parseArgs(process.argv.slice(2), process.env);
  const key = signingKeyFile ? loadSigningKey(signingKeyFile) : undefined;
  const sources = supportFiles();
  mkdirSync(outDir, { recursive: true });
  const written = targets.flatMap((target) => buildTarget(target, outDir, sources, key, version));
  written.push(...writeIndex(outDir, key, version));

  const names = written.map((file) => relative(process.cwd(), file));
  const width = Math.max(...names.map((name) => name.length));
  for (const name of names) console.log(`${name.padEnd(width)}  ${formatSize(statSync(name).size).padStart(10)}`);
  console.log(
    `built ${version} for ${targets.map((t) => t.name).join(", ")} in ${((performance.now() - started) / 1000).toFixed(1)} s; ` +
      (key ? `signed with ${signingKeyFile}` : `unsigned (no --signing-key and no $${SIGNING_KEY_ENV})`),
  );
}

if (import.meta.main) {
  try {
    main();
  } catch (err) {
    if (!(err instanceof BuildError)) throw err;
    console.error(`build failed: ${err.message}`);
    process.exit(1);
  }
}
