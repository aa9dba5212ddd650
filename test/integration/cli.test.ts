// The two CLIs as users run them: real `bun src/cli/inp2ps.ts` / `inp2pc.ts` processes, loopback only.
import { createHash, createPublicKey } from "node:crypto";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BUN, freePort, INP2PC, INP2PS, ownServerPorts, portFlags, portToml, REPO_ROOT, run, tempDir, type Proc } from "../helpers/processes.ts";
import { RELEASE_PUBLIC_KEY_PEM } from "../../src/crypto/index.ts";

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;
const CLEAN_ENV = { INP2P_TOKEN: undefined, INP2P_NODE: undefined, INP2P_SERVER: undefined };

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a CLI to completion (bounded), keeping stdout and stderr apart. */
function cli(program: string, args: string[], options: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {}): Promise<Result> {
  const env: Record<string, string | undefined> = { ...process.env, ...CLEAN_ENV, ...options.env };
  for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
  const child = spawn(BUN, [program, ...args], { cwd: options.cwd ?? REPO_ROOT, env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d.toString()));
  child.stderr.on("data", (d) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 15_000);
  return new Promise((done) =>
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      done({ code: code ?? (signal ? 128 : null), stdout, stderr });
    }),
  );
}

const modeOf = (path: string) => statSync(path).mode & 0o777;

// Temp dirs and processes of this file, removed/stopped even when a test fails.
const dirs: string[] = [];
const procs: Proc[] = [];
function dir(prefix: string): string {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
}
function track(proc: Proc): Proc {
  procs.push(proc);
  return proc;
}
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop("SIGKILL")));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The line of a --help text that documents `flag`. */
function helpLine(help: string, flag: string): string {
  const line = help.split("\n").find((l) => new RegExp(`^\\s*(-\\w, )?${flag}\\b(?!-)`).test(l));
  if (!line) throw new Error(`--help does not list ${flag}:\n${help}`);
  return line;
}

describe.concurrent("version and help", () => {
  for (const [name, program] of [["inp2ps", INP2PS], ["inp2pc", INP2PC]] as const) {
    it(`${name} --version / -v / -version print package.json's version`, async ({ expect }) => {
      for (const flag of ["--version", "-v", "-version"]) {
        const r = await cli(program, [flag]);
        expect(r.code, flag).toBe(0);
        expect(r.stdout, flag).toContain(`${name}/${VERSION}`);
      }
    });

    it(`${name} --version names the Bun it runs on by Bun's own version, not the Node-compat one`, async ({ expect }) => {
      const bun = spawnSync(BUN, ["--version"], { encoding: "utf8" });
      const bunVersion = bun.stdout.trim();
      expect(bunVersion, "bun --version").toMatch(/^\d+\.\d+\.\d+/);
      const r = await cli(program, ["--version"]);
      expect(r.code).toBe(0);
      expect(r.stdout.split("\n")[0]).toBe(`${name}/${VERSION} (bun ${bunVersion}, ${process.platform}-${process.arch})`);
    });

    it(`${name} --version names the release signing key it trusts`, async ({ expect }) => {
      const r = await cli(program, ["--version"]);
      const der = createPublicKey(RELEASE_PUBLIC_KEY_PEM).export({ type: "spki", format: "der" });
      expect(r.stdout.split("\n")[1]).toBe(`release signing key: ed25519 sha256:${createHash("sha256").update(der).digest("hex")}`);
    });
  }

  it("inp2ps --help lists every flag of the reference design, with defaults", async ({ expect }) => {
    const r = await cli(INP2PS, ["--help"]);
    expect(r.code).toBe(0);
    const flags = ["--token", "--ws-port", "--stun-udp1", "--stun-udp2", "--stun-tcp1", "--stun-tcp2", "--config", "--newconfig", "--log-level", "--log-format"];
    for (const flag of flags) helpLine(r.stdout, flag);
    expect(helpLine(r.stdout, "--ws-port")).toContain("27183");
    expect(helpLine(r.stdout, "--stun-udp1")).toContain("27182");
    expect(helpLine(r.stdout, "--stun-udp2")).toContain("27183");
    expect(helpLine(r.stdout, "--stun-tcp1")).toContain("27180");
    expect(helpLine(r.stdout, "--stun-tcp2")).toContain("27181");
    // The reference design's single-dash spelling works too.
    expect((await cli(INP2PS, ["-help"])).stdout).toBe(r.stdout);
  });

  it("inp2pc --help lists every flag of the reference design, with defaults", async ({ expect }) => {
    const r = await cli(INP2PC, ["--help"]);
    expect(r.code).toBe(0);
    const flags = [
      "--serverhost", "--serverport", "--node", "--token", "--insecure", "--relay", "--super", "--relay-port", "--bw",
      "--config", "--newconfig", "--stun-udp1", "--stun-udp2", "--stun-tcp1", "--stun-tcp2",
    ];
    for (const flag of flags) helpLine(r.stdout, flag);
    expect(helpLine(r.stdout, "--serverport")).toContain("27183");
    expect(helpLine(r.stdout, "--relay-port")).toContain("27185");
    expect(helpLine(r.stdout, "--bw")).toMatch(/default: 10\b/);
    expect(helpLine(r.stdout, "--stun-udp1")).toContain("27182");
    expect(helpLine(r.stdout, "--stun-udp2")).toContain("27183");
    expect(helpLine(r.stdout, "--stun-tcp1")).toContain("27180");
    expect(helpLine(r.stdout, "--stun-tcp2")).toContain("27181");
  });
});

describe.concurrent("inp2ps token", () => {
  // CRC-64/ISO golden values from Go's hash/crc64 tests (crc64.ISO table).
  const vectors: [string, string, string][] = [
    ["a", "", "3756002089226993664"],
    ["ab", "c", "3996597361055891456"],
    ["abcdefgh", "", "1018288516945639108"],
    ["Discard medicine more than two years old.", "", "10286476395995438303"],
  ];
  for (const [user, password, token] of vectors) {
    it(`user ${JSON.stringify(user)} password ${JSON.stringify(password)} -> ${token}`, async ({ expect }) => {
      const r = await cli(INP2PS, ["token", "--user", user, "--password", password]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(token);
    });
  }

  it("single-dash flags and a uint64 above 2^63 come out exact", async ({ expect }) => {
    const r = await cli(INP2PS, ["token", "-user", "Discard medicine", "-password", " more than two years old."]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe("10286476395995438303");
  });

  it("missing --password: exit 2 with a clear message", async ({ expect }) => {
    const r = await cli(INP2PS, ["token", "--user", "a"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/--password/);
  });
});

describe.concurrent("usage errors", () => {
  for (const [name, program] of [["inp2ps", INP2PS], ["inp2pc", INP2PC]] as const) {
    it(`${name}: an unknown flag exits 2, names the flag and points at --help`, async ({ expect }) => {
      const cwd = dir("inp2p-cli-");
      for (const flag of ["--bogus", "-bogus"]) {
        const r = await cli(program, [flag], { cwd });
        expect(r.code, flag).toBe(2);
        expect(r.stderr, flag).toContain("--bogus");
        expect(r.stderr, flag).toContain("--help");
      }
    });

    it(`${name}: an unknown dashed flag is named as typed (not camelCased)`, async ({ expect }) => {
      const cwd = dir("inp2p-cli-");
      for (const flag of ["--bogus-flag", "-bogus-flag"]) {
        const r = await cli(program, [flag], { cwd });
        expect(r.code, flag).toBe(2);
        expect(r.stderr, flag).toContain("--bogus-flag");
        expect(r.stderr, flag).toContain("--help");
      }
    });

    it(`${name}: an unknown command exits 2`, async ({ expect }) => {
      const r = await cli(program, ["frobnicate"], { cwd: dir("inp2p-cli-") });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("frobnicate");
      expect(r.stderr).toContain("--help");
    });
  }
});

describe.concurrent("config errors through the CLI", () => {
  function configFile(text: string): string {
    const path = join(dir("inp2p-cfg-"), "bad.toml");
    writeFileSync(path, text);
    return path;
  }

  it("a TOML syntax error names the file and the line", async ({ expect }) => {
    const path = configFile('role = "server"\n[server]\nws_port = = 3\n');
    const r = await cli(INP2PS, ["--config", path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${path}:3`);
    expect(r.stderr).toMatch(/invalid TOML/);
  });

  it("a schema error names the key path and what was expected", async ({ expect }) => {
    const path = configFile('role = "server"\n[server]\nws_port = "x"\n');
    const r = await cli(INP2PS, ["--config", path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(path);
    expect(r.stderr).toContain("server.ws_port");
    expect(r.stderr).toMatch(/expected an integer 1\.\.65535, got "x"/);
  });

  it("an unknown key suggests the nearest one", async ({ expect }) => {
    const path = configFile('role = "server"\n[server]\nwsport = 9000\n');
    const r = await cli(INP2PS, ["--config", path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown key server\.wsport/);
    expect(r.stderr).toMatch(/did you mean server\.ws_port\?/);
  });

  it("a bad flag value is a config error too", async ({ expect }) => {
    const r = await cli(INP2PS, ["-ws-port", "99999"], { cwd: dir("inp2p-cfg-") });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--ws-port/);
    expect(r.stderr).toMatch(/expected an integer 1\.\.65535, got 99999/);
  });

  it("an explicit config that does not exist is refused", async ({ expect }) => {
    const missing = join(dir("inp2p-cfg-"), "nope.toml");
    const r = await cli(INP2PC, ["--config", missing]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(missing);
    expect(r.stderr).toMatch(/not found/);
  });

  it("missing client settings say how to give each one", async ({ expect }) => {
    const r = await cli(INP2PC, [], { cwd: dir("inp2p-cfg-") });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/missing client\.server_host: give --serverhost, set INP2P_SERVER/);
    expect(r.stderr).toMatch(/missing client\.node: give --node, set INP2P_NODE/);
    expect(r.stderr).toMatch(/missing client\.token: give --token, set INP2P_TOKEN/);
    // Only what is missing is named.
    const partial = await cli(INP2PC, ["-serverhost", "127.0.0.1", "-node", "n"], { cwd: dir("inp2p-cfg-") });
    expect(partial.code).toBe(2);
    expect(partial.stderr).toMatch(/--token/);
    expect(partial.stderr).toMatch(/INP2P_TOKEN/);
    expect(partial.stderr).not.toMatch(/client\.node/);
  });
});

describe.concurrent("precedence: flags > environment > TOML > defaults", () => {
  /** Starts inp2pc against a closed port and returns its "starting" line, then stops it. */
  async function clientStart(cwd: string, args: string[], env: Record<string, string | undefined> = {}): Promise<string> {
    const proc = track(run(INP2PC, args, { cwd, env }));
    try {
      return (await proc.waitForOutput(/inp2pc \S+ starting .*/))[0];
    } finally {
      await proc.stop("SIGKILL");
    }
  }

  it("inp2pc: node and server from TOML, environment, flags", async ({ expect }) => {
    const cwd = dir("inp2pc-prec-");
    const closed = await freePort();
    const closed2 = await freePort();
    const config = join(cwd, "c.toml");
    writeFileSync(config, `role = "client"\n[client]\nserver_host = "127.0.0.1"\nserver_port = ${closed}\nnode = "from-toml"\ntoken = "5"\n`);
    const base = ["--config", config];
    expect(await clientStart(cwd, base)).toMatch(new RegExp(`node=from-toml server=127\\.0\\.0\\.1:${closed}$`));
    expect(await clientStart(cwd, base, { INP2P_NODE: "from-env" })).toMatch(/node=from-env /);
    expect(await clientStart(cwd, [...base, "-node", "from-flag"], { INP2P_NODE: "from-env" })).toMatch(/node=from-flag /);
    expect(await clientStart(cwd, [...base, "--node=from-flag2"], { INP2P_NODE: "from-env" })).toMatch(/node=from-flag2 /);
    // INP2P_SERVER=host:port sets both; a flag beats it.
    expect(await clientStart(cwd, base, { INP2P_SERVER: `localhost:${closed2}` })).toMatch(new RegExp(`server=localhost:${closed2}$`));
    expect(await clientStart(cwd, [...base, "-serverport", String(closed)], { INP2P_SERVER: `localhost:${closed2}` })).toMatch(
      new RegExp(`server=localhost:${closed}$`),
    );
  });

  it("inp2pc --newconfig records the merged result (env + flags + defaults), 0600", async ({ expect }) => {
    const cwd = dir("inp2pc-prec-");
    const closed = await freePort();
    const config = join(cwd, "sub", "written.toml");
    const proc = track(
      run(INP2PC, ["--newconfig", "--config", config, "-node", "from-flag", "-token", "18446744073709551615", "-bw", "25"], {
        cwd,
        env: { INP2P_NODE: "from-env", INP2P_SERVER: `localhost:${closed}`, INP2P_TOKEN: "77" },
      }),
    );
    try {
      await proc.waitForOutput(/created this node.s identity key/);
    } finally {
      await proc.stop("SIGKILL");
    }
    expect(existsSync(config)).toBe(true);
    expect(modeOf(config)).toBe(0o600);
    const text = readFileSync(config, "utf8");
    expect(text).toMatch(/^role = "client"$/m);
    expect(text).toMatch(/^node = "from-flag"$/m);
    expect(text).toMatch(/^server_host = "localhost"$/m);
    expect(text).toMatch(new RegExp(`^server_port = ${closed}$`, "m"));
    expect(text).toMatch(/^token = "18446744073709551615"$/m);
    expect(text).toMatch(/^bw = 25$/m);
    expect(text).toMatch(/^relay_port = 27185$/m);
    // The identity key lands next to the config (data_dir defaults to the config's directory), 0600.
    expect(modeOf(join(cwd, "sub", "inp2pc.key"))).toBe(0o600);

    // The written file works on its own: a later start without flags or env reads it back.
    const again = track(run(INP2PC, ["--config", config], { cwd }));
    try {
      expect((await again.waitForOutput(/inp2pc \S+ starting .*/))[0]).toMatch(new RegExp(`node=from-flag server=localhost:${closed}$`));
    } finally {
      await again.stop("SIGKILL");
    }
  });

  it("inp2ps: ws_port and token from TOML, environment, --flag and -flag", async ({ expect }) => {
    const cwd = dir("inp2ps-prec-");
    const config = join(cwd, "s.toml");
    const [p1, p2, p3, p4] = [await freePort(), await freePort(), await freePort(), await freePort()];
    writeFileSync(config, `role = "server"\n[server]\nlisten = "127.0.0.1"\nws_port = ${p1}\ntoken = "111"\ntls = "off"\n${portToml(await ownServerPorts())}\n`);

    async function banner(args: string[], env: Record<string, string | undefined> = {}): Promise<{ port: number; token: string }> {
      const proc = track(run(INP2PS, ["--config", config, ...args], { cwd, env }));
      try {
        const [, port] = await proc.waitForOutput(/listening on 127\.0\.0\.1:(\d+)/);
        const [, token] = await proc.waitForOutput(/token:\s+(\d+)/);
        return { port: Number(port), token: token! };
      } finally {
        await proc.stop();
      }
    }

    expect(await banner([])).toEqual({ port: p1, token: "111" });
    expect(await banner(["--ws-port", String(p2)], { INP2P_TOKEN: "222" })).toEqual({ port: p2, token: "222" });
    expect(await banner(["-ws-port", String(p3), "-token", "333"], { INP2P_TOKEN: "222" })).toEqual({ port: p3, token: "333" });
    expect(await banner([`-ws-port=${p4}`, "--token=18446744073709551615"])).toEqual({ port: p4, token: "18446744073709551615" });
    // None of this rewrote the file.
    expect(readFileSync(config, "utf8")).toContain(`ws_port = ${p1}`);
  });
});

describe("first start without a config (npm start)", () => {
  let cwd: string;
  let port: number;
  let token: string;
  let fingerprint: string;
  let adminCredential: string;

  it("generates a token, an admin credential and a certificate, prints them and a join line, writes the secrets 0600", async () => {
    cwd = dir("inp2ps-fresh-");
    port = await freePort();
    const proc = track(run(INP2PS, ["--ws-port", String(port), ...portFlags(await ownServerPorts())], { cwd }));
    try {
      await proc.waitForOutput(/join a node with:\n.*inp2pc .*\n/);
      const out = proc.output;
      expect(out).toMatch(new RegExp(`listening on \\S+:${port} \\(TLS\\)`));
      token = out.match(/token:\s+(\d+)/)![1]!;
      fingerprint = out.match(/SHA-256:\s+((?:[0-9A-F]{2}:){31}[0-9A-F]{2})\b/)![1]!;
      expect(BigInt(token) > 0n).toBe(true);
      // The token goes in the environment: a command line is readable by every local user (ps, /proc/PID/cmdline).
      const line = out.match(/^ +(.*inp2pc .*)$/m)![1]!;
      const joinLine = line.match(/^INP2P_TOKEN=(\d+) inp2pc -serverhost (\S+) -serverport (\d+) -node NODE_NAME -tls-fingerprint (\S+)$/);
      expect(joinLine, line).not.toBeNull();
      expect(joinLine![1]).toBe(token);
      expect(joinLine![3]).toBe(String(port));
      expect(joinLine![4]).toBe(fingerprint);
      const adminFile = join(cwd, "inp2ps.admin");
      const admin = out.match(/admin:\s+(\S+) \(new; saved in (\S+), shown only this once\)/);
      expect(admin, out).not.toBeNull();
      expect(admin![2]).toBe(adminFile);
      adminCredential = admin![1]!;
      expect(adminCredential).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(readFileSync(adminFile, "utf8").trim()).toBe(adminCredential);
      expect(modeOf(adminFile)).toBe(0o600);
      // A config inp2ps writes itself admits nodes by approval, and the banner says how.
      expect(out).toContain('"inp2ps pairing list"');
      expect(out).toContain('"inp2ps pairing approve NAME"');
      // The banner names the web console, and it answers there (asked on loopback) with its login page.
      expect(out).toMatch(new RegExp(`console: +https://\\S+:${port}/ \\(log in with the admin credential\\)`));
      const page = await fetch(`https://127.0.0.1:${port}/`, { tls: { rejectUnauthorized: false } } as RequestInit);
      expect(await page.text()).toMatch(/name="credential"/);
    } finally {
      await proc.stop();
    }
    const config = join(cwd, "inp2ps.toml");
    expect(modeOf(config)).toBe(0o600);
    expect(readFileSync(config, "utf8")).toContain(`token = "${token}"`);
    expect(readFileSync(config, "utf8")).not.toContain(adminCredential);
    expect(readFileSync(config, "utf8")).toContain('admission = "approve"');
    expect(modeOf(join(cwd, "inp2ps.tls.key"))).toBe(0o600);
  });

  it("a restart reuses the same token, admin credential and certificate, and prints only where the credential is", async () => {
    expect(token).toBeDefined();
    const proc = track(run(INP2PS, ["--ws-port", String(port), ...portFlags(await ownServerPorts())], { cwd }));
    try {
      await proc.waitForOutput(/join a node with:\n.*inp2pc .*\n/);
      expect(proc.output).toMatch(new RegExp(`token:\\s+${token}\\n`));
      expect(proc.output).toContain(`SHA-256:  ${fingerprint}`);
      expect(proc.output).toContain(`admin:    in ${join(cwd, "inp2ps.admin")}\n`);
      expect(proc.output).not.toContain(adminCredential);
      expect(proc.output).not.toMatch(/generated a token/);
    } finally {
      await proc.stop();
    }
    expect(readFileSync(join(cwd, "inp2ps.admin"), "utf8").trim()).toBe(adminCredential);
  });

  it("the printed join line logs a client in; secrets on both sides are 0600", async () => {
    expect(token).toBeDefined();
    const server = track(run(INP2PS, ["--ws-port", String(port)], { cwd }));
    const pinned = dir("inp2pc-join-");
    const tofu = dir("inp2pc-join-");
    try {
      const [, envToken, line] = await server.waitForOutput(/INP2P_TOKEN=(\d+) (inp2pc -serverhost .*)/);
      // Only the host changes: tests stay on loopback.
      const args = line!.split(/\s+/).slice(1);
      args[args.indexOf("-serverhost") + 1] = "127.0.0.1";
      args[args.indexOf("-node") + 1] = "joined";
      const a = track(run(INP2PC, [...args, "--log-level", "debug"], { cwd: pinned, env: { INP2P_TOKEN: envToken } }));
      // Admission is by approval: the node says what to run, and the banner's command lets it in.
      await a.waitForOutput(/waiting for approval: run "inp2ps pairing approve joined" on the server/);
      expect((await cli(INP2PS, ["pairing", "approve", "joined"], { cwd })).code).toBe(0);
      await a.waitForOutput(/logged in/);
      expect(a.output).toMatch(/server certificate accepted \(pinned\)/);
      // Without the pin: trust on first use records the fingerprint.
      const b = track(run(INP2PC, ["-serverhost", "127.0.0.1", "-serverport", String(port), "-node", "tofu", "-token", token], { cwd: tofu }));
      await b.waitForOutput(/waiting for approval/);
      expect((await cli(INP2PS, ["pairing", "approve", "tofu"], { cwd })).code).toBe(0);
      await b.waitForOutput(/logged in/);
      await Promise.all([a.stop(), b.stop()]);
    } finally {
      await server.stop();
    }
    expect(modeOf(join(cwd, "inp2ps.toml"))).toBe(0o600);
    expect(modeOf(join(cwd, "inp2ps.tls.key"))).toBe(0o600);
    expect(modeOf(join(pinned, "inp2pc.key"))).toBe(0o600);
    expect(modeOf(join(tofu, "inp2pc.key"))).toBe(0o600);
    const known = join(tofu, "inp2pc.known_servers.json");
    expect(modeOf(known)).toBe(0o600);
    expect(JSON.parse(readFileSync(known, "utf8"))).toEqual({ [`127.0.0.1:${port}`]: fingerprint });
  });

  it("a config file without a token is refused, naming the file", async () => {
    const empty = dir("inp2ps-notoken-");
    const config = join(empty, "inp2ps.toml");
    writeFileSync(config, `role = "server"\n[server]\nlisten = "127.0.0.1"\nws_port = ${await freePort()}\n`);
    const r = await cli(INP2PS, [], { cwd: empty });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`no token in ${config}`);
    expect(r.stdout).not.toMatch(/listening/);
    // The file was left as it was.
    expect(readFileSync(config, "utf8")).not.toMatch(/token/);
  });
});
