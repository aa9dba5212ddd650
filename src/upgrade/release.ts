// Reading a release: the signed index, its VERSION, and one program checked against the index.

import { createHash } from "node:crypto";
import { fsyncSync, writeSync } from "node:fs";
import { TRUSTED_RELEASE_PUBLIC_KEY_PEM, verifyReleaseSignature } from "../crypto/index.ts";
import {
  MAX_RELEASE_INDEX_BYTES,
  parseChecksums,
  parseVersionFile,
  RELEASE_INDEX_FILE,
  RELEASE_SIGNATURE_BYTES,
  RELEASE_SIGNATURE_FILE,
  RELEASE_VERSION_FILE,
  releaseDirectoryUrl,
  ReleaseFormatError,
} from "../protocol/index.ts";
import { MAX_PROGRAM_BYTES, PROGRAM_DOWNLOAD_TIMEOUT_MS, RELEASE_METADATA_TIMEOUT_MS } from "./constants.ts";
import { UpgradeError } from "./errors.ts";

export interface Release {
  version: string;
  /** The release's directory URL. */
  url: string;
  /** path -> sha256 hex, from the signed index. */
  checksums: Map<string, string>;
}

export interface ReleaseQuery {
  releaseUrl: string;
  /** A given version; the newest when absent. */
  version?: string;
  /** @default TRUSTED_RELEASE_PUBLIC_KEY_PEM */
  publicKeyPem?: string;
}

async function get(url: string, timeoutMs: number): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "follow" });
  } catch (err) {
    throw new UpgradeError("NETWORK", `cannot reach ${url}: ${(err as Error).message} (check the network, or release_url in the config / --url)`, { cause: err });
  }
  if (response.status === 404) throw new UpgradeError("NO_RELEASE", `no release at ${url} (HTTP 404): check the version and release_url`);
  if (!response.ok) throw new UpgradeError("NETWORK", `${url} answered HTTP ${response.status}`);
  return response;
}

async function getBytes(url: string, maxBytes: number): Promise<Uint8Array> {
  const response = await get(url, RELEASE_METADATA_TIMEOUT_MS);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (bytes.length > maxBytes) throw new UpgradeError("BAD_RELEASE", `${url} is ${bytes.length} bytes, more than a release's ${maxBytes}`);
  return bytes;
}

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

/** The release's index, signature-checked, and its version. */
export async function fetchRelease(query: ReleaseQuery): Promise<Release> {
  const url = releaseDirectoryUrl(query.releaseUrl, query.version);
  const [index, signature] = await Promise.all([
    getBytes(`${url}/${RELEASE_INDEX_FILE}`, MAX_RELEASE_INDEX_BYTES),
    getBytes(`${url}/${RELEASE_SIGNATURE_FILE}`, RELEASE_SIGNATURE_BYTES),
  ]);
  if (signature.length !== RELEASE_SIGNATURE_BYTES || !verifyReleaseSignature(index, signature, query.publicKeyPem ?? TRUSTED_RELEASE_PUBLIC_KEY_PEM)) {
    throw new UpgradeError(
      "BAD_SIGNATURE",
      `${url}/${RELEASE_SIGNATURE_FILE} is not the release key's signature of ${RELEASE_INDEX_FILE}: refusing this release (nothing was changed)`,
    );
  }
  let checksums: Map<string, string>;
  let version: string;
  try {
    checksums = parseChecksums(new TextDecoder().decode(index));
    const expected = checksums.get(RELEASE_VERSION_FILE);
    if (!expected) throw new ReleaseFormatError(`${RELEASE_INDEX_FILE} lists no ${RELEASE_VERSION_FILE}`);
    const versionFile = await getBytes(`${url}/${RELEASE_VERSION_FILE}`, 1024);
    if (sha256(versionFile) !== expected) {
      throw new UpgradeError("CHECKSUM_MISMATCH", `${url}/${RELEASE_VERSION_FILE} does not match its checksum in the signed ${RELEASE_INDEX_FILE}: refusing this release`);
    }
    version = parseVersionFile(new TextDecoder().decode(versionFile));
  } catch (err) {
    if (err instanceof ReleaseFormatError) throw new UpgradeError("BAD_RELEASE", `${url}: ${err.message}`, { cause: err });
    throw err;
  }
  if (query.version !== undefined && version !== query.version) {
    throw new UpgradeError("BAD_RELEASE", `${url} holds release ${version}, not the ${query.version} asked for`);
  }
  return { version, url, checksums };
}

/**
 * Downloads <target>/<program> of the release into an open file `fd`, hashing as it goes; throws unless
 * the bytes match the signed index (the caller removes the file).
 */
export async function downloadProgram(release: Release, target: string, program: string, fd: number): Promise<void> {
  const path = `${target}/${program}`;
  const expected = release.checksums.get(path);
  if (!expected) {
    const targets = [...new Set([...release.checksums.keys()].filter((p) => p.endsWith(`/${program}`)).map((p) => p.split("/")[0]))];
    throw new UpgradeError("NO_BUILD", `release ${release.version} has no build of ${program} for ${target} (it has: ${targets.join(", ") || "none"})`);
  }
  const response = await get(`${release.url}/${path}`, PROGRAM_DOWNLOAD_TIMEOUT_MS);
  const hash = createHash("sha256");
  let bytes = 0;
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      if (bytes > MAX_PROGRAM_BYTES) throw new UpgradeError("BAD_RELEASE", `${release.url}/${path} is larger than ${MAX_PROGRAM_BYTES} bytes`);
      hash.update(chunk);
      for (let written = 0; written < chunk.length; ) written += writeSync(fd, chunk, written);
    }
  } catch (err) {
    if (err instanceof UpgradeError) throw err;
    throw new UpgradeError("NETWORK", `downloading ${release.url}/${path} failed: ${(err as Error).message}`, { cause: err });
  }
  const actual = hash.digest("hex");
  if (actual !== expected) {
    throw new UpgradeError("CHECKSUM_MISMATCH", `${release.url}/${path} has sha256 ${actual}, but the signed ${RELEASE_INDEX_FILE} says ${expected}: refusing it`);
  }
  fsyncSync(fd);
}
