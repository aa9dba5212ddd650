// Builds the release artifacts: both executables (`bun build --compile`), the example configs and
// systemd units, and SHA256SUMS in the format `sha256sum -c` reads. install.sh fetches this set.
//
//   bun scripts/build.ts [--target bun-linux-x64] [--outdir dist]

import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const BINARIES = ["inp2ps", "inp2pc"] as const;
const CHECKSUMS_FILE = "SHA256SUMS";

class BuildError extends Error {}

function parseArgs(argv: string[]): { target?: string; outDir: string } {
  let target: string | undefined;
  let outDir = join(ROOT, "dist");
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.split("=", 2) as [string, string | undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (!v) throw new BuildError(`${name} needs a value`);
      return v;
    };
    if (name === "--target") target = value();
    else if (name === "--outdir") outDir = resolve(value());
    else throw new BuildError(`unknown argument ${arg} (usage: bun scripts/build.ts [--target bun-linux-x64] [--outdir dist])`);
  }
  return { target, outDir };
}

function compile(binary: string, outDir: string, target: string | undefined): string {
  const entry = join(ROOT, "src", "cli", `${binary}.ts`);
  if (!existsSync(entry)) throw new BuildError(`entry point ${entry} is missing`);
  const outFile = join(outDir, binary);
  const args = [
    process.execPath, "build", "--compile", entry, "--outfile", outFile,
    "--sourcemap",
    // A deployed daemon must not pick up a stray .env or bunfig.toml from its working directory.
    "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
  ];
  if (target) args.push(`--target=${target}`);
  const result = Bun.spawnSync(args, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) {
    const output = `${result.stdout.toString()}${result.stderr.toString()}`.trim();
    throw new BuildError(`bun build --compile ${binary} failed (exit ${result.exitCode}):\n${output}`);
  }
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

function formatSize(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`;
}

function main(): void {
  const started = performance.now();
  const { target, outDir } = parseArgs(process.argv.slice(2));
  const sources = supportFiles();
  mkdirSync(outDir, { recursive: true });
  // Only our own files are removed: --outdir may point at a directory holding other things.
  const outputs = [...BINARIES, ...sources.map((f) => basename(f)), CHECKSUMS_FILE];
  for (const name of outputs) rmSync(join(outDir, name), { force: true });

  const artifacts: string[] = [];
  for (const binary of BINARIES) artifacts.push(compile(binary, outDir, target));
  for (const source of sources) {
    const dest = join(outDir, basename(source));
    copyFileSync(source, dest);
    artifacts.push(dest);
  }

  const sums = artifacts.map((file) => `${sha256(file)}  ${basename(file)}\n`).join("");
  writeFileSync(join(outDir, CHECKSUMS_FILE), sums);

  const names = [...artifacts, join(outDir, CHECKSUMS_FILE)].map((file) => relative(process.cwd(), file));
  const width = Math.max(...names.map((name) => name.length));
  for (const name of names) console.log(`${name.padEnd(width)}  ${formatSize(statSync(name).size).padStart(10)}`);
  console.log(`built ${target ?? "for this platform"} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

try {
  main();
} catch (err) {
  if (!(err instanceof BuildError)) throw err;
  console.error(`build failed: ${err.message}`);
  process.exit(1);
}
