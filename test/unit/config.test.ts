import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  checkRequired,
  ConfigError,
  DEFAULT_BW_MBPS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_STATUS_PORT,
  DEFAULT_WS_PORT,
  defaultConfigPath,
  loadConfig,
  parseConfig,
  splitHostPort,
  writeConfig,
  type Config,
} from "../../src/config";

const EXAMPLES_DIR = resolve(__dirname, "../../config");
const SERVER_EXAMPLE = join(EXAMPLES_DIR, "inp2ps.example.toml");
const CLIENT_EXAMPLE = join(EXAMPLES_DIR, "inp2pc.example.toml");

const CLIENT_MINIMAL = `role = "client"
[client]
server_host = "file.example.org"
node = "from-file"
token = "111"
`;

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "inp2p-config-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Runs fn, expects a ConfigError, returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("example files", () => {
  it("server example loads and validates", () => {
    const { config, fromFile } = loadConfig({ role: "server", configPath: SERVER_EXAMPLE, env: {} });
    expect(fromFile).toBe(true);
    expect(config.role).toBe("server");
    // The example ships no token, so nobody runs a server on a published one.
    expect(config.server?.token).toBeUndefined();
    expect(config.server?.users ?? []).toEqual([]);
    expect(config.server?.data_dir).toBe(EXAMPLES_DIR);
    // "" in optional string fields means not set
    expect(config.server?.tls_cert).toBeUndefined();
    expect(config.server?.admin_token).toBeUndefined();
  });

  it("server example validates with its commented token and user lines filled in", () => {
    const text = readFileSync(SERVER_EXAMPLE, "utf8")
      .replace('# token = "<your token>"', 'token = "111"')
      .replace(/^# \[\[server\.users\]\]$/m, "[[server.users]]")
      .replace(/^# name = "alice"/m, 'name = "alice"')
      .replace(`# token = "<alice's token>"`, 'token = "222"');
    const config = parseConfig(text, SERVER_EXAMPLE);
    expect(config.server?.token).toBe("111");
    expect(config.server?.users).toEqual([{ name: "alice", token: "222" }]);
  });

  it("server example validates with its commented ACL rule filled in", () => {
    const text = readFileSync(SERVER_EXAMPLE, "utf8")
      .replace('# token = "<your token>"', 'token = "111"')
      .replace(/^# (\[\[server\.acl\]\]|name = "cams-to-nvr"|user = |from = |to = |action = )/gm, "$1");
    const config = parseConfig(text, SERVER_EXAMPLE);
    expect(config.server?.acl).toEqual([{ name: "cams-to-nvr", user: "default", from: ["tag:cams"], to: ["nvr"], action: "allow" }]);
  });

  it("client example loads and validates", () => {
    const { config } = loadConfig({ role: "client", configPath: CLIENT_EXAMPLE, env: {} });
    const client = config.client!;
    expect(client.server_host).toBe("example.org");
    expect(client.apps.map((app) => app.protocol)).toEqual(["tcp", "udp"]);
    expect(client.apps[0]?.allow).toEqual(["127.0.0.0/8", "192.168.0.0/16"]);
    expect(client.expose).toEqual([]);
    expect(client.tls_fingerprint).toBeUndefined();
  });
});

describe("defaults", () => {
  it("applies defaults to an empty [server] table", () => {
    const path = writeFile("s.toml", 'role = "server"\n[server]\n');
    const config = parseConfig(readFileSync(path, "utf8"), path);
    expect(config.log_level).toBe("info");
    expect(config.log_format).toBe("text");
    expect(config.server).toMatchObject({
      listen: "0.0.0.0",
      ws_port: DEFAULT_WS_PORT,
      stun_udp1: 27182,
      stun_udp2: 27183,
      stun_tcp1: 27180,
      stun_tcp2: 27181,
      tls: "auto",
      heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
      heartbeat_timeout_ms: 30000,
      max_conns_per_ip: 32,
      users: [],
      data_dir: dir,
    });
    expect(config.server?.token).toBeUndefined();
  });

  it("applies client and app defaults", () => {
    const path = writeFile(
      "c.toml",
      CLIENT_MINIMAL + '[[client.apps]]\nname = "a"\nprotocol = "udp"\nlisten = "[::1]:53"\npeer = "p"\ntarget = "h.lan:53"\n',
    );
    const { config } = loadConfig({ role: "client", configPath: path, env: {} });
    expect(config.client).toMatchObject({
      server_port: 27183,
      insecure: false,
      relay: false,
      super: false,
      relay_port: 27185,
      bw: DEFAULT_BW_MBPS,
      status_port: DEFAULT_STATUS_PORT,
      data_dir: dir,
    });
    expect(config.client?.apps[0]?.enabled).toBe(true);
    expect(config.client?.apps[0]?.allow).toBeUndefined();
  });

  it("a missing default file means defaults only; the default path is in the working directory", () => {
    expect(defaultConfigPath("server")).toBe(resolve(process.cwd(), "inp2ps.toml"));
    expect(defaultConfigPath("client")).toBe(resolve(process.cwd(), "inp2pc.toml"));
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const loaded = loadConfig({ role: "server", env: {} });
      expect(loaded.fromFile).toBe(false);
      expect(loaded.path).toBe(join(process.cwd(), "inp2ps.toml"));
      expect(loaded.config.server?.ws_port).toBe(DEFAULT_WS_PORT);
    } finally {
      process.chdir(cwd);
    }
  });

  it("a missing explicit file is CONFIG_NOT_FOUND", () => {
    const error = configError(() => loadConfig({ role: "server", configPath: join(dir, "nope.toml"), env: {} }));
    expect(error.code).toBe("CONFIG_NOT_FOUND");
    expect(error.message).toContain(join(dir, "nope.toml"));
  });

  it("resolves relative paths in a file against the file's directory", () => {
    const path = writeFile("s.toml", 'role = "server"\n[server]\ndata_dir = "state"\ntls_cert = "c.pem"\ntls_key = "k.pem"\n');
    const config = parseConfig(readFileSync(path, "utf8"), path);
    expect(config.server?.data_dir).toBe(join(dir, "state"));
    expect(config.server?.tls_cert).toBe(join(dir, "c.pem"));
  });
});

describe("precedence: flags > env > TOML > defaults", () => {
  it("each layer overrides the one below", () => {
    const path = writeFile("c.toml", CLIENT_MINIMAL + "relay_port = 1001\nstatus_port = 1002\n");
    const env = { INP2P_TOKEN: "222", INP2P_NODE: "from-env" };

    const fileOnly = loadConfig({ role: "client", configPath: path, env: {} }).config.client!;
    expect(fileOnly.relay_port).toBe(1001); // TOML over default
    expect(fileOnly.server_port).toBe(27183); // default
    expect(fileOnly.token).toBe("111");

    const withEnv = loadConfig({ role: "client", configPath: path, env }).config.client!;
    expect(withEnv.token).toBe("222"); // env over TOML
    expect(withEnv.node).toBe("from-env");

    const withFlags = loadConfig({
      role: "client",
      configPath: path,
      env,
      flags: { token: "333", status_port: 2002, log_level: "debug" },
    });
    const client = withFlags.config.client!;
    expect(client.token).toBe("333"); // flag over env
    expect(client.node).toBe("from-env");
    expect(client.status_port).toBe(2002); // flag over TOML
    expect(client.relay_port).toBe(1001);
    expect(withFlags.config.log_level).toBe("debug");
  });

  it("INP2P_TOKEN sets the server token; flags given as strings are converted", () => {
    const { config } = loadConfig({
      role: "server",
      env: { INP2P_TOKEN: "42" },
      flags: { ws_port: "9000", tls: "off", data_dir: "rel" },
    });
    expect(config.server?.token).toBe("42");
    expect(config.server?.ws_port).toBe(9000);
    expect(config.server?.tls).toBe("off");
    expect(config.server?.data_dir).toBe(resolve(process.cwd(), "rel")); // flags: relative to cwd
  });

  it("INP2P_SERVER accepts host, host:port and [IPv6]:port", () => {
    const base = { INP2P_NODE: "n", INP2P_TOKEN: "1" };
    const hostOnly = loadConfig({ role: "client", env: { ...base, INP2P_SERVER: "srv.example" } }).config.client!;
    expect(hostOnly).toMatchObject({ server_host: "srv.example", server_port: 27183 });
    const hostPort = loadConfig({ role: "client", env: { ...base, INP2P_SERVER: "srv.example:443" } }).config.client!;
    expect(hostPort).toMatchObject({ server_host: "srv.example", server_port: 443 });
    const v6 = loadConfig({ role: "client", env: { ...base, INP2P_SERVER: "[2001:db8::1]:8443" } }).config.client!;
    expect(v6).toMatchObject({ server_host: "2001:db8::1", server_port: 8443 });
    const bad = configError(() => loadConfig({ role: "client", env: { ...base, INP2P_SERVER: "srv:http" } }));
    expect(bad.message).toBe('INP2P_SERVER: client.server_port: expected an integer 1..65535, got "http"');
  });

  it("an invalid flag value names the flag and the setting", () => {
    const error = configError(() => loadConfig({ role: "server", env: {}, flags: { ws_port: "abc" } }));
    expect(error.code).toBe("CONFIG_SCHEMA");
    expect(error.keyPath).toBe("server.ws_port");
    expect(error.message).toBe('--ws-port: server.ws_port: expected an integer 1..65535, got "abc"');
  });

  it("an unknown flag setting suggests the nearest", () => {
    const error = configError(() => loadConfig({ role: "server", env: {}, flags: { ws_prot: 1 } }));
    expect(error.code).toBe("CONFIG_UNKNOWN_KEY");
    expect(error.message).toBe("--ws-prot: unknown setting server.ws_prot — did you mean server.ws_port?");
  });

  it("checks across settings again after flags", () => {
    const error = configError(() => loadConfig({ role: "server", env: {}, flags: { heartbeat_interval_ms: 40000 } }));
    expect(error.keyPath).toBe("server.heartbeat_timeout_ms");
    expect(error.message).toContain("must be greater than heartbeat_interval_ms (40000), got 30000");
  });
});

describe("token_file", () => {
  const CLIENT_WITH_FILE = 'role = "client"\n[client]\nserver_host = "h"\nnode = "n"\ntoken_file = "secret/token"\n';

  it("reads the token from the file, trimmed, relative to the config file, for client and server", () => {
    const path = writeFile("c.toml", CLIENT_WITH_FILE);
    mkdirSync(join(dir, "secret"));
    writeFile("secret/token", "  18446744073709551615\n");
    const client = loadConfig({ role: "client", configPath: path, env: {} }).config.client!;
    expect(client.token).toBe("18446744073709551615");
    expect(client.token_file).toBe(join(dir, "secret/token"));
    const server = writeFile("s.toml", 'role = "server"\n[server]\ntoken_file = "secret/token"\n');
    expect(loadConfig({ role: "server", configPath: server, env: {} }).config.server?.token).toBe("18446744073709551615");
  });

  it("INP2P_TOKEN and --token win over token_file", () => {
    const path = writeFile("c.toml", CLIENT_WITH_FILE);
    // The file does not exist: it is not read at all when a token comes from elsewhere.
    expect(loadConfig({ role: "client", configPath: path, env: { INP2P_TOKEN: "5" } }).config.client?.token).toBe("5");
    expect(loadConfig({ role: "client", configPath: path, env: {}, flags: { token: "6" } }).config.client?.token).toBe("6");
  });

  it("refuses token and token_file together, and a missing, empty or invalid file, naming the key and the file", () => {
    const both = configError(() => parseConfig(CLIENT_WITH_FILE + 'token = "1"\n', "/x.toml"));
    expect(both.keyPath).toBe("client.token_file");
    expect(both.message).toContain("token and token_file are mutually exclusive: keep one");
    const path = writeFile("c.toml", CLIENT_WITH_FILE);
    const file = join(dir, "secret/token");
    const missing = configError(() => loadConfig({ role: "client", configPath: path, env: {} }));
    expect(missing.keyPath).toBe("client.token_file");
    expect(missing.message).toContain(`client.token_file: cannot read ${file}: `);
    mkdirSync(join(dir, "secret"));
    writeFile("secret/token", " \n");
    const empty = configError(() => loadConfig({ role: "client", configPath: path, env: {} }));
    expect(empty.message).toBe(`${path}: client.token_file: ${file} is empty: put this node's user token in it`);
    writeFile("secret/token", "not-a-token\n");
    const invalid = configError(() => loadConfig({ role: "client", configPath: path, env: {} }));
    expect(invalid.keyPath).toBe("client.token_file");
    expect(invalid.message).toContain(`${path}: client.token_file: ${file} does not hold a token: expected a token: an integer 1..18446744073709551615`);
    expect(invalid.message).not.toContain("not-a-token");
  });

  it("a written config keeps token_file and not the token read from it", () => {
    mkdirSync(join(dir, "secret"));
    writeFile("secret/token", "77\n");
    const path = writeFile("c.toml", CLIENT_WITH_FILE);
    const { config } = loadConfig({ role: "client", configPath: path, env: {} });
    writeConfig(path, config);
    const text = readFileSync(path, "utf8");
    expect(text).toContain(`token_file = "${join(dir, "secret/token")}"`);
    expect(text).not.toMatch(/^token = /m);
    expect(loadConfig({ role: "client", configPath: path, env: {} }).config.client?.token).toBe("77");
  });
});

describe("error messages", () => {
  it("syntax error names file, line and column", () => {
    const path = writeFile("bad.toml", 'role = "client"\n[client]\nnode = "x\n');
    const error = configError(() => loadConfig({ role: "client", configPath: path, env: {} }));
    expect(error.code).toBe("CONFIG_SYNTAX");
    expect(error.line).toBe(3);
    expect(error.message).toMatch(new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:3:\\d+: invalid TOML: `));
  });

  it("schema error names key path, line and expectation; all issues reported", () => {
    const text = `role = "client"
[client]
node = "n"
[[client.apps]]
name = "a"
protocol = "tcp"
listen = "127.0.0.1:1"
peer = "p"
target = "h:1"
[[client.apps]]
name = "b"
protocol = "sctp"
listen = "127.0.0.1:70000"
peer = "p"
target = "h:1"
`;
    const error = configError(() => parseConfig(text, "/etc/inp2p/inp2pc.toml"));
    expect(error.code).toBe("CONFIG_SCHEMA");
    expect(error.keyPath).toBe("client.apps[1].protocol");
    expect(error.line).toBe(12);
    const lines = error.message.split("\n");
    expect(lines[0]).toBe('/etc/inp2p/inp2pc.toml:12: client.apps[1].protocol: expected "tcp" or "udp", got "sctp"');
    expect(lines[1]).toMatch(/^\/etc\/inp2p\/inp2pc\.toml:13: client\.apps\[1\]\.listen: expected host:port .*got "127\.0\.0\.1:70000"$/);
  });

  it("a missing required key in an array entry is reported", () => {
    const text = 'role = "client"\n[client]\n[[client.apps]]\nname = "a"\nprotocol = "tcp"\nlisten = "127.0.0.1:1"\npeer = "p"\n';
    const error = configError(() => parseConfig(text, "/x.toml"));
    expect(error.message).toMatch(/^\/x\.toml:3: client\.apps\[0\]\.target: missing, expected host:port/);
  });

  it("unknown key suggests the nearest known key", () => {
    const error = configError(() => parseConfig('role = "client"\n[client]\nserverhost = "x"\n', "/path/x.toml"));
    expect(error.code).toBe("CONFIG_UNKNOWN_KEY");
    expect(error.keyPath).toBe("client.serverhost");
    expect(error.message).toBe("/path/x.toml:3: unknown key client.serverhost — did you mean client.server_host?");
    const caseAndDash = configError(() => parseConfig('role = "server"\n[server]\nWS-Port = 1\n', "/x.toml"));
    expect(caseAndDash.message).toContain("did you mean server.ws_port?");
    const far = configError(() => parseConfig('role = "server"\n[server]\ncompletely_else = 1\n', "/x.toml"));
    expect(far.message).toBe("/x.toml:3: unknown key server.completely_else");
    const aboveTable = configError(() => parseConfig('role = "client"\nnode = "n"\n[client]\n', "/x.toml"));
    expect(aboveTable.message).toBe("/x.toml:2: unknown key node — did you mean client.node (below the [client] line)?");
  });

  it("wrong role for the program", () => {
    const path = writeFile("c.toml", CLIENT_MINIMAL);
    const error = configError(() => loadConfig({ role: "server", configPath: path, env: {} }));
    expect(error.code).toBe("CONFIG_ROLE");
    expect(error.message).toBe(`${path}: role is "client" but inp2ps needs a server config`);
  });

  it("a file must hold its role's table and not the other one", () => {
    const other = configError(() => parseConfig('role = "server"\n[server]\n[client]\n', "/x.toml"));
    expect(other.code).toBe("CONFIG_ROLE");
    const missing = configError(() => parseConfig('role = "server"\n', "/x.toml"));
    expect(missing.code).toBe("CONFIG_SCHEMA");
    expect(missing.message).toContain("missing table [server]");
    const noRole = configError(() => parseConfig("[server]\n", "/x.toml"));
    expect(noRole.message).toBe('/x.toml: role: missing, expected "server" or "client"');
  });

  it("missing client fields name how to give them", () => {
    const path = writeFile("c.toml", 'role = "client"\n[client]\nnode = "n"\n');
    const error = configError(() => loadConfig({ role: "client", configPath: path, env: {} }));
    expect(error.code).toBe("CONFIG_MISSING");
    expect(error.keyPath).toBe("client.server_host");
    expect(error.message.split("\n")).toEqual([
      `missing client.server_host: give --serverhost, set INP2P_SERVER, or add server_host to [client] in ${path}`,
      `missing client.token: give --token, set INP2P_TOKEN, or add token (or token_file) to [client] in ${path}`,
    ]);
    const config = parseConfig(CLIENT_MINIMAL, "/x.toml");
    expect(() => checkRequired(config)).not.toThrow();
    const noToken: Config = { ...config, client: { ...config.client!, token: "" } };
    expect(() => checkRequired(noToken)).toThrow("missing client.token: give --token, set INP2P_TOKEN, or add token (or token_file) to [client] in the config file");
  });
});

describe("writing", () => {
  it("writeConfig writes mode 0600 atomically and round-trips", () => {
    const path = join(dir, "nested", "inp2pc.toml");
    const source = parseConfig(readFileSync(CLIENT_EXAMPLE, "utf8"), path);
    writeConfig(path, source);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(path)).mode & 0o777).toBe(0o700);
    const text = readFileSync(path, "utf8");
    // data_dir is the default (the file's own directory), so it is left implicit and follows the file
    expect(text).not.toContain("data_dir");
    const back = parseConfig(text, path);
    expect(back).toEqual(source);
    // a data_dir elsewhere is written out
    const elsewhere: Config = { ...source, client: { ...source.client!, data_dir: join(dir, "state") } };
    writeConfig(path, elsewhere);
    expect(parseConfig(readFileSync(path, "utf8"), path)).toEqual(elsewhere);
    // overwriting an existing file keeps 0600
    writeFileSync(path, "", { mode: 0o644 });
    writeConfig(path, back);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(parseConfig(readFileSync(path, "utf8"), path)).toEqual(back);
  });

  it("newconfig ignores an existing file and writes a new one", () => {
    const path = writeFile("inp2pc.toml", CLIENT_MINIMAL + "relay_port = 1001\n");
    const loaded = loadConfig({
      role: "client",
      configPath: path,
      newconfig: true,
      env: { INP2P_SERVER: "new.example:9000" },
      flags: { node: "new-node", token: "7" },
    });
    expect(loaded).toMatchObject({ fromFile: false, wrote: true, path });
    expect(loaded.config.client).toMatchObject({ server_host: "new.example", server_port: 9000, node: "new-node", relay_port: 27185 });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const again = loadConfig({ role: "client", configPath: path, env: {} });
    expect(again.fromFile).toBe(true);
    expect(again.config).toEqual(loaded.config);
  });

  it("newconfig creates a missing explicit file", () => {
    const path = join(dir, "etc", "inp2ps.toml");
    const loaded = loadConfig({ role: "server", configPath: path, newconfig: true, env: {}, flags: { ws_port: 9000 } });
    expect(loaded.wrote).toBe(true);
    expect(parseConfig(readFileSync(path, "utf8"), path).server?.ws_port).toBe(9000);
  });

  it("a server config inp2ps writes admits by approval; a file without the key keeps token admission", () => {
    const path = join(dir, "new", "inp2ps.toml");
    loadConfig({ role: "server", configPath: path, newconfig: true, env: {} });
    expect(readFileSync(path, "utf8")).toMatch(/^admission = "approve"$/m);
    expect(loadConfig({ role: "server", configPath: path, env: {} }).config.server).toMatchObject({ admission: "approve", auto_approve: [], pairing_expiry_s: 3600 });
    const old = writeFile("inp2ps.toml", 'role = "server"\n[server]\ntoken = "1"\n');
    expect(loadConfig({ role: "server", configPath: old, env: {} }).config.server?.admission).toBe("token");
  });

  it("admission settings are checked, naming the key", () => {
    const server = (extra: string) => () => parseConfig(`role = "server"\n[server]\ntoken = "1"\n${extra}\n`, "/x.toml");
    expect(server('admission = "open"')).toThrow(/server\.admission: expected "token" or "approve", got "open"/);
    expect(server('auto_approve = ["10.0.0.0/33"]')).toThrow(/server\.auto_approve\[0\]: expected a CIDR/);
    expect(server("pairing_expiry_s = 0")).toThrow(/server\.pairing_expiry_s/);
    expect(parseConfig(`role = "server"\n[server]\nauto_approve = ["127.0.0.1", "fd00::/8"]\n`, "/x.toml").server?.auto_approve).toEqual(["127.0.0.1/32", "fd00::/8"]);
  });

  it("trusted_proxies takes IPv4 and IPv6 CIDRs, names a bad entry, and is empty by default", () => {
    const server = (extra: string) => () => parseConfig(`role = "server"\n[server]\ntoken = "1"\n${extra}\n`, "/x.toml");
    expect(server("")().server?.trusted_proxies).toEqual([]);
    expect(server('trusted_proxies = ["10.0.0.0/8", "fd00::/8", "127.0.0.1"]')().server?.trusted_proxies).toEqual(["10.0.0.0/8", "fd00::/8", "127.0.0.1/32"]);
    expect(server('trusted_proxies = ["10.0.0.0/8", "proxy.lan"]')).toThrow(/server\.trusted_proxies\[1\]: expected a CIDR/);
    expect(server('trusted_proxies = "10.0.0.0/8"')).toThrow(/server\.trusted_proxies/);
  });
});

describe("values", () => {
  it("a uint64 token beyond 2^53 survives, as an integer or a string", () => {
    const big = "18446744073709551615";
    const asInteger = parseConfig(`role = "server"\n[server]\ntoken = ${big}\n`, "/x.toml");
    expect(asInteger.server?.token).toBe(big);
    const asString = parseConfig(`role = "server"\n[server]\ntoken = "${big}"\n`, "/x.toml");
    expect(asString.server?.token).toBe(big);
    const path = join(dir, "s.toml");
    writeConfig(path, asInteger);
    expect(parseConfig(readFileSync(path, "utf8"), path).server?.token).toBe(big);
    const tooBig = configError(() => parseConfig(`role = "server"\n[server]\ntoken = "18446744073709551616"\n`, "/x.toml"));
    expect(tooBig.keyPath).toBe("server.token");
    const unsafeNumber = configError(() => loadConfig({ role: "server", env: {}, flags: { token: 2 ** 60 } }));
    expect(unsafeNumber.message).toContain("give it as a string");
  });

  it("normalizes tls_fingerprint to uppercase colon-separated", () => {
    const hex = "ab01".repeat(16);
    const expected = hex.toUpperCase().match(/../g)!.join(":");
    const plain = parseConfig(CLIENT_MINIMAL + `tls_fingerprint = "${hex}"\n`, "/x.toml");
    expect(plain.client?.tls_fingerprint).toBe(expected);
    const colons = parseConfig(CLIENT_MINIMAL + `tls_fingerprint = "${hex.match(/../g)!.join(":")}"\n`, "/x.toml");
    expect(colons.client?.tls_fingerprint).toBe(expected);
    const bad = configError(() => parseConfig(CLIENT_MINIMAL + 'tls_fingerprint = "abc"\n', "/x.toml"));
    expect(bad.keyPath).toBe("client.tls_fingerprint");
  });

  it("validates and normalizes allow CIDRs", () => {
    const app = '[[client.apps]]\nname = "a"\nprotocol = "tcp"\nlisten = "127.0.0.1:1"\npeer = "p"\ntarget = "h:1"\n';
    const ok = parseConfig(CLIENT_MINIMAL + app + 'allow = ["10.0.0.0/8", "fd00::/8", "192.168.1.5"]\n', "/x.toml");
    expect(ok.client?.apps[0]?.allow).toEqual(["10.0.0.0/8", "fd00::/8", "192.168.1.5/32"]);
    const bad = configError(() => parseConfig(CLIENT_MINIMAL + app + 'allow = ["10.0.0.0/33"]\n', "/x.toml"));
    expect(bad.keyPath).toBe("client.apps[0].allow[0]");
  });

  it("takes expose entries as written, nothing by default, and names a bad entry and what is wrong with it", () => {
    expect(parseConfig(CLIENT_MINIMAL, "/x.toml").client?.expose).toEqual([]);
    const entries = ["127.0.0.1:22", "192.168.1.0/24:80-443", "[::1]:53", "[fd00::/8]:*", "db.lan:5432", "*:*", "10.0.0.0/8:*"];
    expect(parseConfig(CLIENT_MINIMAL + `expose = ${JSON.stringify(entries)}\n`, "/x.toml").client?.expose).toEqual(entries);
    const bad: [string, string][] = [
      ["127.0.0.1", 'no ":PORTS" after the host'],
      ["[::1]", 'no ":PORTS" after "[IPv6]"'],
      ["127.0.0.1:0", "ports are 1..65535, not 0"],
      ["127.0.0.1:443-80", "the range 443-80 runs backwards"],
      ["127.0.0.1:ssh", '"ssh" is not a port, a range "from-to" or "*"'],
      ["::1:53", 'an IPv6 address goes in brackets, as in "[::1]:53"'],
      ["10.0.0.0/33:80", '"/33" is not a prefix length 0..32'],
      ["300.1.1.1:80", '"300.1.1.1" is not an IP address or CIDR'],
      ["[127.0.0.1]:80", "only an IPv6 address goes in brackets, not 127.0.0.1"],
      ["bad host!:80", '"bad host!" is not "*", an IP address, a CIDR or a host name'],
    ];
    for (const [entry, reason] of bad) {
      const error = configError(() => parseConfig(CLIENT_MINIMAL + `expose = ["*:*", ${JSON.stringify(entry)}]\n`, "/x.toml"));
      expect(error.keyPath, entry).toBe("client.expose[1]");
      expect(error.message, entry).toContain(`an expose entry HOST:PORTS such as "127.0.0.1:22", "192.168.1.0/24:80-443", "[::1]:53", "db.lan:5432" or "*:*", got ${JSON.stringify(entry)}: ${reason}`);
    }
  });

  it("refuses duplicate app names", () => {
    const app = (name: string, port: number) =>
      `[[client.apps]]\nname = "${name}"\nprotocol = "tcp"\nlisten = "127.0.0.1:${port}"\npeer = "p"\ntarget = "h:1"\n`;
    const error = configError(() => parseConfig(CLIENT_MINIMAL + app("ssh", 1) + app("ssh", 2), "/x.toml"));
    expect(error.keyPath).toBe("client.apps[1].name");
    expect(error.message).toContain('duplicate app name "ssh" (also apps[0])');
  });

  it("refuses duplicate user names, duplicate user tokens, server.token reuse and the name default", () => {
    const user = (name: string, token: string) => `[[server.users]]\nname = "${name}"\ntoken = "${token}"\n`;
    const base = 'role = "server"\n[server]\ntoken = "1"\n';
    const dupToken = configError(() => parseConfig(base + user("a", "5") + user("b", "5"), "/x.toml"));
    expect(dupToken.keyPath).toBe("server.users[1].token");
    expect(dupToken.message).toContain("duplicate token (also users[0].token)");
    const dupName = configError(() => parseConfig(base + user("a", "5") + user("a", "6"), "/x.toml"));
    expect(dupName.message).toContain('duplicate user name "a"');
    const serverToken = configError(() => parseConfig(base + user("a", "1"), "/x.toml"));
    expect(serverToken.message).toContain("token equals server.token");
    const reserved = configError(() => parseConfig(base + user("default", "5"), "/x.toml"));
    expect(reserved.message).toContain('"default" is reserved');
  });

  it("refuses an admin_token equal to server.token or to a user's token, naming the key", () => {
    const base = 'role = "server"\n[server]\ntoken = "1"\n';
    const users = '[[server.users]]\nname = "bob"\ntoken = "42"\n';
    const asDefault = configError(() => parseConfig(base + 'admin_token = "1"\n' + users, "/x.toml"));
    expect(asDefault.keyPath).toBe("server.admin_token");
    expect(asDefault.message).toContain("admin_token equals server.token (the default user's token): the admin credential must never be a user token");
    const asBob = configError(() => parseConfig(base + 'admin_token = "42"\n' + users, "/x.toml"));
    expect(asBob.keyPath).toBe("server.admin_token");
    expect(asBob.message).toContain("admin_token equals users[0].token (user bob)");
    expect(parseConfig(base + 'admin_token = "an admin secret"\n' + users, "/x.toml").server?.admin_token).toBe("an admin secret");
  });

  it("requires tls_cert and tls_key together and a heartbeat timeout above the interval", () => {
    const certOnly = configError(() => parseConfig('role = "server"\n[server]\ntls_cert = "c.pem"\n', "/x.toml"));
    expect(certOnly.keyPath).toBe("server.tls_key");
    const heartbeat = configError(() =>
      parseConfig('role = "server"\n[server]\nheartbeat_interval_ms = 5000\nheartbeat_timeout_ms = 5000\n', "/x.toml"),
    );
    expect(heartbeat.keyPath).toBe("server.heartbeat_timeout_ms");
  });

  it("splitHostPort handles IPv4, [IPv6] and host names", () => {
    expect(splitHostPort("127.0.0.1:22")).toEqual({ host: "127.0.0.1", port: 22 });
    expect(splitHostPort("[::1]:22")).toEqual({ host: "::1", port: 22 });
    expect(splitHostPort("box.lan:8080")).toEqual({ host: "box.lan", port: 8080 });
    expect(splitHostPort("::1:22")).toBeUndefined();
    expect(splitHostPort("host:0")).toBeUndefined();
  });
});

describe("[[server.acl]]", () => {
  const base = 'role = "server"\n[server]\ntoken = "1"\n[[server.users]]\nname = "alice"\ntoken = "2"\n';
  const acl = (lines: string) => `[[server.acl]]\n${lines}\n`;

  it("loads rules, the user defaulting to default", () => {
    const config = parseConfig(
      base + acl('name = "cams-only"\nfrom = ["tag:cams", "cam-9"]\nto = ["nvr"]\naction = "allow"') + acl('user = "alice"\nfrom = ["*"]\nto = ["*"]\naction = "deny"'),
      "/x.toml",
    );
    expect(config.server?.acl).toEqual([
      { name: "cams-only", user: "default", from: ["tag:cams", "cam-9"], to: ["nvr"], action: "allow" },
      { user: "alice", from: ["*"], to: ["*"], action: "deny" },
    ]);
    expect(parseConfig(base, "/x.toml").server?.acl).toEqual([]);
  });

  it("names the rule and the selector that is wrong", () => {
    const badSelector = configError(() => parseConfig(base + acl('from = ["a"]\nto = ["b"]\naction = "allow"') + acl('from = ["ok", "tag:"]\nto = ["b"]\naction = "allow"'), "/x.toml"));
    expect(badSelector.keyPath).toBe("server.acl[1].from[1]");
    expect(badSelector.message).toMatch(/server\.acl\[1\]\.from\[1\]: expected a node name, "tag:NAME" or "\*", got "tag:"/);
    const badTo = configError(() => parseConfig(base + acl('from = ["a"]\nto = ["b c"]\naction = "allow"'), "/x.toml"));
    expect(badTo.keyPath).toBe("server.acl[0].to[0]");
    const empty = configError(() => parseConfig(base + acl('from = []\nto = ["b"]\naction = "allow"'), "/x.toml"));
    expect(empty.keyPath).toBe("server.acl[0].from");
    const action = configError(() => parseConfig(base + acl('from = ["a"]\nto = ["b"]\naction = "permit"'), "/x.toml"));
    expect(action.keyPath).toBe("server.acl[0].action");
    expect(action.message).toContain('expected "allow" or "deny", got "permit"');
    const noAction = configError(() => parseConfig(base + acl('from = ["a"]\nto = ["b"]'), "/x.toml"));
    expect(noAction.keyPath).toBe("server.acl[0].action");
  });

  it("refuses a rule for a user the server does not have, and two rules of one name", () => {
    const unknown = configError(() => parseConfig(base + acl('user = "bob"\nfrom = ["a"]\nto = ["b"]\naction = "allow"'), "/x.toml"));
    expect(unknown.keyPath).toBe("server.acl[0].user");
    expect(unknown.message).toContain('unknown user "bob" (the users are default, alice)');
    const twice = configError(() => parseConfig(base + acl('name = "r"\nfrom = ["a"]\nto = ["b"]\naction = "allow"') + acl('name = "r"\nfrom = ["b"]\nto = ["a"]\naction = "allow"'), "/x.toml"));
    expect(twice.keyPath).toBe("server.acl[1].name");
    expect(twice.message).toContain('duplicate rule name "r" (also acl[0])');
  });
});
