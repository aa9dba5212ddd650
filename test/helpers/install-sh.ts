// Running install.sh against releases served from a local directory: a static HTTP server on
// 127.0.0.1, a fake `uname` for the CPU, a directory standing in for /lib (the musl loader check), and
// a test signing key. Shared by install.test.ts (fake artifacts) and release.test.ts (real builds).

import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const INSTALL_SH = resolve(import.meta.dirname, "../../install.sh");

/** Serves files under root by path; anything else is a 404. */
export function serveDirectory(root: string): { url: string; stop(): void } {
  const server = Bun.serve({
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
  return { url: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) };
}

export interface TestSigningKey {
  privateKey: KeyObject;
  publicPem: string;
}

export function makeSigningKey(): TestSigningKey {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { privateKey, publicPem: publicKey.export({ type: "spki", format: "pem" }).toString() };
}

/** Writes <dir>/SHA256SUMS.sig as scripts/build.ts does: the raw Ed25519 signature of SHA256SUMS. */
export function signChecksums(dir: string, key: TestSigningKey): void {
  writeFileSync(join(dir, "SHA256SUMS.sig"), sign(null, readFileSync(join(dir, "SHA256SUMS")), key.privateKey));
}

export interface FakeMachine {
  /** What `uname -m` prints. */
  machine: string;
  musl: boolean;
  /** A glibc system that also has the musl loader (Debian's `musl` package installs one). */
  glibcToo?: boolean;
}

/**
 * A directory holding a `uname` that reports Linux on the given CPU, and a stand-in for /lib and /lib64
 * that holds a musl loader when the machine is musl (and a glibc loader beside it when glibcToo). Returns the env that points install.sh at them.
 */
export function fakeMachine(dir: string, machine: FakeMachine): Record<string, string> {
  const bin = join(dir, "fake-bin");
  const lib = join(dir, "fake-lib");
  mkdirSync(bin, { recursive: true });
  mkdirSync(lib, { recursive: true });
  writeFileSync(join(bin, "uname"), `#!/bin/sh\ncase "$1" in -m) echo ${machine.machine} ;; *) echo Linux ;; esac\n`);
  chmodSync(join(bin, "uname"), 0o755);
  if (machine.musl) writeFileSync(join(lib, `ld-musl-${machine.machine}.so.1`), "");
  if (machine.glibcToo) writeFileSync(join(lib, `ld-linux-${machine.machine}.so.2`), "");
  return { PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`, INP2P_TEST_LIB_DIR: lib };
}

export interface InstallRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

// Async spawn: the HTTP server lives in this process and must keep answering while install.sh runs.
export async function runInstall(args: string[], env: Record<string, string>): Promise<InstallRun> {
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
