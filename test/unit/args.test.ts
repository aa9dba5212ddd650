import cac from "cac";
import { describe, expect, it } from "vitest";
import { flagsToSettings, LOG_FLAGS, normalizeArgv, rawFlagValue, STUN_FLAGS, type FlagSpec } from "../../src/cli/args.ts";

describe("normalizeArgv", () => {
  it("turns single-dash long flags into double-dash ones", () => {
    expect(normalizeArgv(["-serverhost", "h", "-node", "n", "-ws-port", "9000", "-tls-fingerprint", "AB"])).toEqual([
      "--serverhost", "h", "--node", "n", "--ws-port", "9000", "--tls-fingerprint", "AB",
    ]);
  });

  it("rewrites the -flag=value form and keeps the value exact", () => {
    expect(normalizeArgv(["-ws-port=9000", "-token=18446744073709551615", "-node=a=b"])).toEqual([
      "--ws-port=9000", "--token=18446744073709551615", "--node=a=b",
    ]);
  });

  it("leaves one-letter flags alone (-h, -v, and -x=1)", () => {
    expect(normalizeArgv(["-h"])).toEqual(["-h"]);
    expect(normalizeArgv(["-v"])).toEqual(["-v"]);
    expect(normalizeArgv(["-x=1"])).toEqual(["-x=1"]);
  });

  it("leaves double-dash flags, commands and plain values alone", () => {
    expect(normalizeArgv(["token", "--user", "u", "--password=p", "value"])).toEqual(["token", "--user", "u", "--password=p", "value"]);
  });

  it("touches nothing after --", () => {
    expect(normalizeArgv(["-node", "a", "--", "-node", "-ws-port=1"])).toEqual(["--node", "a", "--", "-node", "-ws-port=1"]);
    expect(normalizeArgv(["--", "-token"])).toEqual(["--", "-token"]);
  });

  it("leaves negative numbers alone", () => {
    expect(normalizeArgv(["-bw", "-5", "-1.5", "-10"])).toEqual(["--bw", "-5", "-1.5", "-10"]);
  });

  it("does not change its input", () => {
    const input = ["-node", "a"];
    normalizeArgv(input);
    expect(input).toEqual(["-node", "a"]);
  });
});

describe("rawFlagValue", () => {
  it("returns undefined when the flag is absent, and the value when present", () => {
    expect(rawFlagValue(["--node", "a"], "token")).toBeUndefined();
    expect(rawFlagValue(["--node", "a"], "node")).toBe("a");
  });

  it("last one wins, across both spellings", () => {
    expect(rawFlagValue(["--node", "a", "--node", "b"], "node")).toBe("b");
    expect(rawFlagValue(["--node=a", "--node", "b", "--node=c"], "node")).toBe("c");
    expect(rawFlagValue(["--node", "a", "--node=b"], "node")).toBe("b");
  });

  it("reads the = form, including an empty value and values holding =", () => {
    expect(rawFlagValue(["--password="], "password")).toBe("");
    expect(rawFlagValue(["--node=a=b"], "node")).toBe("a=b");
  });

  it("keeps a uint64 token exact (no number conversion)", () => {
    expect(rawFlagValue(["--token", "18446744073709551615"], "token")).toBe("18446744073709551615");
    expect(rawFlagValue(["--token=18446744073709551615"], "token")).toBe("18446744073709551615");
    expect(rawFlagValue(["--token", "007"], "token")).toBe("007");
  });

  it("does not confuse flags sharing a prefix", () => {
    expect(rawFlagValue(["--serverhost", "h", "--serverport", "1"], "server")).toBeUndefined();
    expect(rawFlagValue(["--tokenx=1"], "token")).toBeUndefined();
  });

  it("stops at --, and ignores a flag with no value after it", () => {
    expect(rawFlagValue(["--node", "a", "--", "--node", "b"], "node")).toBe("a");
    expect(rawFlagValue(["--node"], "node")).toBeUndefined();
  });
});

describe("flagsToSettings", () => {
  const SPECS: readonly FlagSpec[] = [
    { flag: "serverhost", key: "server_host", kind: "string" },
    { flag: "serverport", key: "server_port", kind: "number" },
    { flag: "node", key: "node", kind: "string" },
    { flag: "token", key: "token", kind: "string" },
    { flag: "insecure", key: "insecure", kind: "boolean" },
    { flag: "relay-port", key: "relay_port", kind: "number" },
    ...STUN_FLAGS,
    ...LOG_FLAGS,
  ];

  /** Parses argv the way the CLIs do: normalize, then cac. */
  function parse(argv: string[]) {
    const args = normalizeArgv(argv);
    const cli = cac("t");
    cli
      .option("--serverhost <host>", "")
      .option("--serverport <port>", "")
      .option("--node <name>", "")
      .option("--token <token>", "")
      .option("--insecure", "")
      .option("--relay-port <port>", "")
      .option("--log-level <level>", "")
      .option("--log-format <format>", "");
    for (const spec of STUN_FLAGS) cli.option(`--${spec.flag} <port>`, "");
    const { options } = cli.parse(["bun", "t", ...args], { run: false });
    return flagsToSettings(SPECS, options, args);
  }

  it("gives nothing for no flags", () => {
    expect(parse([])).toEqual({});
    expect(flagsToSettings(SPECS, {}, [])).toEqual({});
  });

  it("has only the flags that were given", () => {
    const settings = parse(["-node", "edge-1", "-serverport", "9000"]);
    expect(settings).toEqual({ node: "edge-1", server_port: 9000 });
    expect(Object.keys(settings).sort()).toEqual(["node", "server_port"]);
  });

  it("keeps string values exactly as typed: uint64 tokens, leading zeros, digits-only names", () => {
    expect(parse(["-token", "18446744073709551615"]).token).toBe("18446744073709551615");
    expect(parse(["-token=18446744073709551615"]).token).toBe("18446744073709551615");
    expect(parse(["--token", "007"]).token).toBe("007");
    expect(parse(["-node", "123"]).node).toBe("123");
    expect(parse(["-serverhost", "10.0.0.1"]).server_host).toBe("10.0.0.1");
  });

  it("takes the last value of a repeated flag, for strings and numbers", () => {
    expect(parse(["-node", "a", "-node", "b"]).node).toBe("b");
    expect(parse(["-serverport", "1", "-serverport", "2"]).server_port).toBe(2);
    expect(flagsToSettings(SPECS, { serverport: [1, 2, 3] }, [])).toEqual({ server_port: 3 });
  });

  it("maps dashed flags to underscored keys (numbers and booleans from the parsed options)", () => {
    expect(parse(["-relay-port", "27999", "-stun-udp1", "1000", "--stun-tcp2=2000", "-insecure"])).toEqual({
      relay_port: 27999,
      stun_udp1: 1000,
      stun_tcp2: 2000,
      insecure: true,
    });
    expect(parse(["-log-level", "debug", "--log-format=json"])).toEqual({ log_level: "debug", log_format: "json" });
  });
});
