import { describe, expect, test } from "vitest";
import { compareVersions, isVersion, parseChecksums, parseVersionFile, releaseDirectoryUrl, ReleaseFormatError } from "../../src/protocol/index.ts";

const HASH = "ab".repeat(32);

describe("release metadata (src/protocol/release.ts)", () => {
  test("the index parses as sha256sum writes it, and names the first bad line", () => {
    const sums = parseChecksums(`${HASH}  VERSION\n${"cd".repeat(32)}  linux-x64/inp2pc\n`);
    expect([...sums]).toEqual([["VERSION", HASH], ["linux-x64/inp2pc", "cd".repeat(32)]]);
    expect(() => parseChecksums(`${HASH}  VERSION\nnot a line\n`)).toThrow('line 2 of SHA256SUMS is not "<sha256>  <path>": "not a line"');
    expect(() => parseChecksums(`${HASH}  ../etc/passwd\n`)).toThrow(ReleaseFormatError);
    expect(() => parseChecksums(`${HASH}  a\n${HASH}  a\n`)).toThrow("SHA256SUMS lists a twice");
    expect(() => parseChecksums("")).toThrow("SHA256SUMS is empty");
  });

  test("versions compare by semver precedence", () => {
    const ordered = ["0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"];
    for (let i = 0; i < ordered.length; i++)
      for (let j = 0; j < ordered.length; j++) expect(Math.sign(compareVersions(ordered[i]!, ordered[j]!)), `${ordered[i]} vs ${ordered[j]}`).toBe(Math.sign(i - j));
    expect(compareVersions("1.2.3+build.5", "1.2.3")).toBe(0);
    expect(() => compareVersions("1.2", "1.2.3")).toThrow('not a version: "1.2"');
  });

  test("VERSION holds one version; the release directories follow GitHub's layout", () => {
    expect(parseVersionFile("1.2.3\n")).toBe("1.2.3");
    expect(() => parseVersionFile("1.2.3\nextra\n")).toThrow(ReleaseFormatError);
    expect(isVersion("01.2.3")).toBe(false);
    expect(releaseDirectoryUrl("https://example.com/r/")).toBe("https://example.com/r/latest/download");
    expect(releaseDirectoryUrl("https://example.com/r", "1.2.3")).toBe("https://example.com/r/download/v1.2.3");
  });
});
