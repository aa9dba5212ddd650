// Replacing a program's binary: the new one is written beside it, checked, fsynced and renamed over it
// (a crash leaves the old or the new, never half of one); the old one stays as <binary>.previous for
// the rollback.

import { accessSync, chmodSync, closeSync, constants, copyFileSync, existsSync, fsyncSync, linkSync, openSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { PREVIOUS_SUFFIX } from "./constants.ts";
import { UpgradeError } from "./errors.ts";
import { downloadProgram, type Release } from "./release.ts";

export interface InstallTarget {
  /** The binary to replace. */
  path: string;
  /** Its release target (linux-x64, ...). */
  target: string;
  program: string;
}

export const previousPath = (path: string) => `${path}${PREVIOUS_SUFFIX}`;

function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Throws, naming the path and what to do, unless the binary's directory can take a new file and a rename. */
export function checkWritable(path: string, program: string): void {
  const dir = dirname(path);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new UpgradeError(
      "NOT_WRITABLE",
      `cannot write ${dir}, so ${path} cannot be replaced: run the upgrade as the user that owns it (e.g. sudo ${program} upgrade), ` +
        `or under systemd give the unit ReadWritePaths=${dir}, or reinstall with install.sh`,
    );
  }
}

/** Downloads and checks the release's program, then puts it in place; resolves with the kept old binary's path. */
export async function installProgram(release: Release, target: InstallTarget): Promise<string> {
  checkWritable(target.path, target.program);
  const dir = dirname(target.path);
  const staging = join(dir, `.${basename(target.path)}.new-${process.pid}`);
  const fd = openSync(staging, "w", 0o755);
  try {
    try {
      await downloadProgram(release, target.target, target.program, fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(staging, 0o755);
    const previous = previousPath(target.path);
    rmSync(previous, { force: true });
    // A hard link keeps the old binary under its second name without copying ~110 MiB.
    try {
      linkSync(target.path, previous);
    } catch {
      copyFileSync(target.path, previous);
    }
    renameSync(staging, target.path);
    fsyncDirectory(dir);
    return previous;
  } finally {
    rmSync(staging, { force: true });
  }
}

/** Puts <binary>.previous back in place; false when there is none. */
export function rollBack(path: string): boolean {
  const previous = previousPath(path);
  if (!existsSync(previous)) return false;
  // The previous binary stays too: a link first, then the rename over the failed one.
  const restoring = join(dirname(path), `.${basename(path)}.restore-${process.pid}`);
  rmSync(restoring, { force: true });
  try {
    linkSync(previous, restoring);
  } catch {
    copyFileSync(previous, restoring);
  }
  renameSync(restoring, path);
  fsyncDirectory(dirname(path));
  return true;
}
