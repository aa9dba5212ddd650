// Release metadata, as scripts/build.ts writes it and `inp2pc upgrade` / `inp2ps upgrade` read it.
// A release is one directory (GitHub's release layout, under [client]/[server] release_url):
//
//   <release_url>/latest/download/     the newest release
//   <release_url>/download/v<V>/       release V
//
// and in each:
//
//   SHA256SUMS       the index, `sha256sum -c` format: `<64 hex>  <path>` per line, for VERSION,
//                    install.sh and every <target>/<file>
//   SHA256SUMS.sig   the raw 64-byte Ed25519 signature of SHA256SUMS by the release key
//   VERSION          the release's version and a newline; trusted because its hash is in the signed index
//   <target>/        linux-x64, linux-arm64, ...: both programs, configs, units (and their own SHA256SUMS)

export const RELEASE_INDEX_FILE = "SHA256SUMS";
export const RELEASE_SIGNATURE_FILE = "SHA256SUMS.sig";
export const RELEASE_VERSION_FILE = "VERSION";
/** Bytes of an Ed25519 signature. */
export const RELEASE_SIGNATURE_BYTES = 64;
/** Larger index files are refused before parsing (a release lists a few dozen files). */
export const MAX_RELEASE_INDEX_BYTES = 64 * 1024;
export const MAX_VERSION_CHARS = 64;

/** major.minor.patch, an optional -prerelease and +build (semver 2). */
export const VERSION_PATTERN = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

export class ReleaseFormatError extends Error {
  override readonly name = "ReleaseFormatError";
}

/** The index's lines as path -> sha256 (lower-case hex); throws naming the first bad line. */
export function parseChecksums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  lines.forEach((line, i) => {
    const match = line.match(/^([0-9a-f]{64}) [ *]([A-Za-z0-9._/-]{1,200})$/);
    if (!match || match[2]!.split("/").some((part) => part === "" || part === "." || part === "..")) {
      throw new ReleaseFormatError(`line ${i + 1} of ${RELEASE_INDEX_FILE} is not "<sha256>  <path>": ${JSON.stringify(line.slice(0, 100))}`);
    }
    if (sums.has(match[2]!)) throw new ReleaseFormatError(`${RELEASE_INDEX_FILE} lists ${match[2]} twice`);
    sums.set(match[2]!, match[1]!);
  });
  if (sums.size === 0) throw new ReleaseFormatError(`${RELEASE_INDEX_FILE} is empty`);
  return sums;
}

export function isVersion(text: string): boolean {
  return text.length <= MAX_VERSION_CHARS && VERSION_PATTERN.test(text);
}

/** The VERSION file's content: one version and a newline. */
export function parseVersionFile(text: string): string {
  const version = text.endsWith("\n") ? text.slice(0, -1) : text;
  if (!isVersion(version)) throw new ReleaseFormatError(`${RELEASE_VERSION_FILE} holds ${JSON.stringify(version.slice(0, 80))}, not a version such as 1.2.3`);
  return version;
}

const compareIdentifiers = (a: string, b: string): number => {
  const numeric = /^\d+$/;
  if (numeric.test(a) && numeric.test(b)) return Math.sign(Number(a) - Number(b));
  if (numeric.test(a) !== numeric.test(b)) return numeric.test(a) ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
};

/** Semver precedence: negative when a is older than b, 0 when equal (build metadata ignored), positive when newer. */
export function compareVersions(a: string, b: string): number {
  const [ma, mb] = [a.match(VERSION_PATTERN), b.match(VERSION_PATTERN)];
  if (!ma || !mb) throw new ReleaseFormatError(`not a version: ${JSON.stringify(ma ? b : a)}`);
  for (let i = 1; i <= 3; i++) {
    const diff = Number(ma[i]) - Number(mb[i]);
    if (diff !== 0) return Math.sign(diff);
  }
  const [pa, pb] = [ma[4], mb[4]];
  if (pa === undefined || pb === undefined) return pa === pb ? 0 : pa === undefined ? 1 : -1;
  const [ia, ib] = [pa.split("."), pb.split(".")];
  for (let i = 0; i < Math.min(ia.length, ib.length); i++) {
    const diff = compareIdentifiers(ia[i]!, ib[i]!);
    if (diff !== 0) return diff;
  }
  return Math.sign(ia.length - ib.length);
}

/** The directory of one release under release_url: the newest, or version V. */
export function releaseDirectoryUrl(releaseUrl: string, version?: string): string {
  const base = releaseUrl.replace(/\/+$/, "");
  return version === undefined ? `${base}/latest/download` : `${base}/download/v${version}`;
}
