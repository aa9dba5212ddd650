// Upgrades end to end: two real builds of this machine's target (1.0.0 and 1.1.0, scripts/build.ts
// --version, signed with a test key the binaries trust), served from a local HTTP server in the release
// layout (src/protocol/release.ts), with hand-made releases beside them: a broken 1.2.0 (an inp2pc that
// exits 1 at start), 1.3.0 signed by another key, 1.4.0 whose inp2pc does not match the signed index,
// and 1.5.0 with no build for this machine. Installed binaries live in a temp dir per test.

import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { makeSigningKey, serveDirectory, signChecksums, type TestSigningKey } from "../helpers/install-sh.ts";
import { api, BUN, freePort, freeUdpPorts, INP2PS, Proc, REPO_ROOT, run, runToEnd, startServer, waitFor, type ServerHandle } from "../helpers/processes.ts";

const BUILD_TIMEOUT_MS = 240_000;
const RUN_TIMEOUT_MS = 60_000;
/** The restart, the new process's login and a rollback, on a loaded 2-core machine. */
const RESTART_TIMEOUT_MS = 90_000;
const TARGET = process.arch === "arm64" ? "linux-arm64" : "linux-x64";
const OLD = "1.0.0";
const NEW = "1.1.0";
const BROKEN = "1.2.0";
const FORGED = "1.3.0";
const TAMPERED = "1.4.0";
const NO_BUILD = "1.5.0";

let tmp: string;
let key: TestSigningKey;
let releases: { url: string; stop(): void };
/** Each test's own directory of installed binaries, removed after it. */
let installs: string[] = [];
/** Processes a test started (the restarted ones by pid), stopped after it. */
let procs: Proc[] = [];
let pids: number[] = [];

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

function build(version: string): string {
  const out = join(tmp, `build-${version}`);
  const result = Bun.spawnSync([BUN, "scripts/build.ts", "--target", TARGET, "--outdir", out, "--signing-key", join(tmp, "key.pem"), "--version", version], {
    cwd: REPO_ROOT,
    env: { ...process.env, INP2P_TEST_RELEASE_PUBLIC_KEY: key.publicPem },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (result.exitCode !== 0) throw new Error(`build ${version} failed:\n${result.stdout}${result.stderr}`);
  return out;
}

/** Rewrites a release directory's index over the files listed in it, with VERSION set, signed by `signer`. */
function reindex(dir: string, version: string, signer: TestSigningKey, files: string[]): void {
  writeFileSync(join(dir, "VERSION"), `${version}\n`);
  writeFileSync(join(dir, "SHA256SUMS"), ["VERSION", ...files].map((f) => `${sha256(join(dir, f))}  ${f}\n`).join(""));
  signChecksums(dir, signer);
}

/** A release made from the 1.1.0 build: `change` edits its files, then it is indexed and signed. */
function derived(newBuild: string, version: string, signer: TestSigningKey, change: (dir: string) => void = () => {}): string {
  const dir = join(tmp, `release-${version}`);
  mkdirSync(join(dir, TARGET), { recursive: true });
  copyFileSync(join(newBuild, TARGET, "inp2pc"), join(dir, TARGET, "inp2pc"));
  const files = [`${TARGET}/inp2pc`];
  reindex(dir, version, signer, files);
  change(dir);
  return dir;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "inp2p-upgrade-test-"));
  key = makeSigningKey();
  writeFileSync(join(tmp, "key.pem"), key.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  const started = performance.now();
  const [oldBuild, newBuild] = [build(OLD), build(NEW)];
  console.log(`built ${OLD} and ${NEW} for ${TARGET} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const root = join(tmp, "releases");
  const place = (version: string | "latest", dir: string) => {
    const at = version === "latest" ? join(root, "latest", "download") : join(root, "download", `v${version}`);
    mkdirSync(join(at, ".."), { recursive: true });
    symlinkSync(dir, at);
  };
  place("latest", newBuild);
  place(OLD, oldBuild);
  place(NEW, newBuild);
  place(
    BROKEN,
    derived(newBuild, BROKEN, key, (dir) => {
      writeFileSync(join(dir, TARGET, "inp2pc"), '#!/bin/sh\necho "this build is broken" >&2\nexit 1\n', { mode: 0o755 });
      reindex(dir, BROKEN, key, [`${TARGET}/inp2pc`]);
    }),
  );
  place(FORGED, derived(newBuild, FORGED, makeSigningKey()));
  place(
    TAMPERED,
    derived(newBuild, TAMPERED, key, (dir) => {
      const file = join(dir, TARGET, "inp2pc");
      const bytes = readFileSync(file);
      bytes[bytes.length - 1] ^= 0xff;
      writeFileSync(file, bytes);
    }),
  );
  place(
    NO_BUILD,
    derived(newBuild, NO_BUILD, key, (dir) => {
      const other = TARGET === "linux-x64" ? "linux-arm64" : "linux-x64";
      cpSync(join(dir, TARGET), join(dir, other), { recursive: true });
      rmSync(join(dir, TARGET), { recursive: true });
      reindex(dir, NO_BUILD, key, [`${other}/inp2pc`]);
    }),
  );
  releases = serveDirectory(root);
  copyFileSync(join(oldBuild, TARGET, "inp2pc"), join(tmp, "inp2pc-old"));
  copyFileSync(join(oldBuild, TARGET, "inp2ps"), join(tmp, "inp2ps-old"));
  copyFileSync(join(newBuild, TARGET, "inp2pc"), join(tmp, "inp2pc-new"));
}, BUILD_TIMEOUT_MS);

/** Stops the processes restarts started (known by pid only). */
function killRestarted(): void {
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

afterEach(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  killRestarted();
  for (const dir of installs) rmSync(dir, { recursive: true, force: true });
  [procs, pids, installs] = [[], [], []];
});

afterAll(() => {
  releases?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A fresh install of the 1.0.0 inp2pc in a directory of its own (mode 755 down to it, for other users). */
function installOld(): { dir: string; binary: string } {
  const dir = mkdtempSync(join(tmp, "bin-"));
  chmodSync(tmp, 0o755);
  chmodSync(dir, 0o755);
  installs.push(dir);
  const binary = join(dir, "inp2pc");
  copyFileSync(join(tmp, "inp2pc-old"), binary);
  chmodSync(binary, 0o755);
  return { dir, binary };
}

/** `inp2pc upgrade ...` of the given binary, against the local release server; no inp2pc runs on the (unused) status port. */
async function upgrade(binary: string, args: string[], statusPort?: number) {
  const port = statusPort ?? (await freePort());
  return runToEnd(binary, ["upgrade", "--url", releases.url, "--status-port", String(port), ...args], { cwd: tmp, timeoutMs: RUN_TIMEOUT_MS });
}

const versionOf = async (binary: string) => (await runToEnd(binary, ["--version"], { timeoutMs: RUN_TIMEOUT_MS })).output.split("\n")[0];

interface DaemonStatus {
  version: string;
  pid: number;
  server: { state: string };
  upgrade: { state: string; error: string | null } | null;
}

async function status(port: number): Promise<DaemonStatus | undefined> {
  try {
    return (await (await fetch(`http://127.0.0.1:${port}/api/v1/status`)).json()) as DaemonStatus;
  } catch {
    return undefined;
  }
}

/** Waits until the inp2pc on the status port is logged in (after a restart: the new process), and returns its status. */
const loggedIn = (port: number, what: string, timeoutMs = RESTART_TIMEOUT_MS) =>
  waitFor(what, async () => {
    const s = await status(port);
    return s?.server.state === "online" && s;
  }, timeoutMs);

/** Starts an installed inp2pc as a daemon logged in to the server (`toml`: more [client] keys); resolves with its status port. */
async function startDaemon(server: ServerHandle, binary: string, node: string, toml = ""): Promise<number> {
  const statusPort = await freePort();
  const dir = mkdtempSync(join(tmp, `${node}-`));
  installs.push(dir);
  // Nodes fetch releases from their own release_url; the server only names the version.
  writeFileSync(join(dir, "inp2pc.toml"), `role = "client"\n[client]\nbonjour = false\nrelease_url = "${releases.url}"\n${toml}\n`);
  const proc = run(
    binary,
    ["--config", join(dir, "inp2pc.toml"), "-serverhost", "127.0.0.1", "-serverport", String(server.port), "-node", node, "-token", server.token, "-insecure", "--status-port", String(statusPort)],
    { cwd: dir },
  );
  procs.push(proc);
  await loggedIn(statusPort, `${node} logged in`, RUN_TIMEOUT_MS);
  return statusPort;
}

describe("inp2pc upgrade, no inp2pc running", () => {
  test("--check says whether a newer release exists, and changes nothing", async () => {
    const { dir, binary } = installOld();
    const older = await upgrade(binary, ["--check"]);
    expect(older.output).toContain(`inp2pc ${NEW} is available (this is ${OLD})`);
    expect(older.code).toBe(0);
    expect(readdirSync(dir)).toEqual(["inp2pc"]);
    const newest = await upgrade(join(tmp, "inp2pc-new"), ["--check"]);
    expect(newest.output).toContain(`inp2pc ${NEW} is up to date`);
    expect(newest.code).toBe(0);
  }, RUN_TIMEOUT_MS * 2);

  test("installs the newest release over the binary and keeps the old one as inp2pc.previous", async () => {
    const { dir, binary } = installOld();
    const result = await upgrade(binary, []);
    expect(result.output).toContain(`upgraded ${binary} from ${OLD} to ${NEW} (the old one is kept as ${binary}.previous)`);
    expect(result.code).toBe(0);
    expect(await versionOf(binary)).toBe(`inp2pc/${NEW} (bun ${Bun.version}, ${process.platform}-${process.arch})`);
    expect(sha256(binary)).toBe(sha256(join(tmp, "inp2pc-new")));
    expect(sha256(`${binary}.previous`)).toBe(sha256(join(tmp, "inp2pc-old")));
    expect(readdirSync(dir).sort()).toEqual(["inp2pc", "inp2pc.previous"]);
    // --version picks an older release too.
    const back = await upgrade(binary, ["--version", OLD]);
    expect(back.output).toContain(`from ${NEW} to ${OLD}`);
    expect(sha256(binary)).toBe(sha256(join(tmp, "inp2pc-old")));
  }, RUN_TIMEOUT_MS * 3);

  test.each([
    [FORGED, `is not the release key's signature of SHA256SUMS: refusing this release`],
    [TAMPERED, `but the signed SHA256SUMS says`],
    [NO_BUILD, `release ${NO_BUILD} has no build of inp2pc for ${TARGET} (it has: ${TARGET === "linux-x64" ? "linux-arm64" : "linux-x64"})`],
  ])("release %s is refused with a clear error and the binary is untouched", async (version, error) => {
    const { dir, binary } = installOld();
    const before = sha256(binary);
    const result = await upgrade(binary, ["--version", version]);
    expect(result.output).toContain(error);
    expect(result.code).toBe(1);
    expect(sha256(binary)).toBe(before);
    expect(readdirSync(dir)).toEqual(["inp2pc"]);
  }, RUN_TIMEOUT_MS);

  test("no network: names the URL it could not reach", async () => {
    const { binary } = installOld();
    const closed = `http://127.0.0.1:${await freePort()}`;
    const result = await runToEnd(binary, ["upgrade", "--check", "--url", closed, "--status-port", String(await freePort())], { cwd: tmp, timeoutMs: RUN_TIMEOUT_MS });
    expect(result.output).toContain(`inp2pc: cannot reach ${closed}/latest/download/SHA256SUMS`);
    expect(result.code).toBe(1);
  }, RUN_TIMEOUT_MS);

  test.skipIf(process.getuid?.() !== 0 || Bun.which("setpriv") === null)(
    "a binary its user cannot replace: names the directory and what to do, before downloading",
    async () => {
      const { dir, binary } = installOld();
      const result = await runToEnd("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", binary, "upgrade", "--url", releases.url, "--status-port", String(await freePort())], {
        cwd: "/",
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(result.output).toContain(`inp2pc: cannot write ${dir}, so ${binary} cannot be replaced: run the upgrade as the user that owns it (e.g. sudo inp2pc upgrade)`);
      expect(result.code).toBe(1);
      expect(readdirSync(dir)).toEqual(["inp2pc"]);
    },
    RUN_TIMEOUT_MS,
  );
});

describe("inp2pc upgrade of a running inp2pc", () => {
  let server: ServerHandle;

  beforeAll(async () => {
    server = await startServer({ tls: "off" });
  }, RUN_TIMEOUT_MS);

  afterAll(async () => {
    await server?.stop();
  });

  test("upgrade restarts the running inp2pc into the new release: same arguments and fixed ports, logged in again", async () => {
    const { binary } = installOld();
    // Fixed peer and relay ports: the new process binds them once the old one let them go.
    const [udpPort] = await freeUdpPorts();
    const port = await startDaemon(server, binary, "upg-ok", `peer_bind = "127.0.0.1"\npeer_udp_port = ${udpPort}\npeer_tcp_port = ${await freePort()}\nrelay = true\nrelay_port = ${await freePort()}`);
    const oldPid = (await status(port))!.pid;
    const result = await upgrade(binary, [], port);
    expect(result.output).toContain(`installed inp2pc ${NEW} over ${OLD} at ${binary}`);
    expect(result.output).toContain(`inp2pc ${NEW} is running`);
    expect(result.code).toBe(0);
    const now = await loggedIn(port, "the new inp2pc logged in");
    pids.push(now.pid);
    expect(now.version).toBe(NEW);
    expect(now.pid).not.toBe(oldPid);
    expect(sha256(`${binary}.previous`)).toBe(sha256(join(tmp, "inp2pc-old")));
  }, RESTART_TIMEOUT_MS * 2);

  test("a new binary that exits at start is rolled back, and the old one runs again", async () => {
    const { binary } = installOld();
    const port = await startDaemon(server, binary, "upg-broken");
    const oldPid = (await status(port))!.pid;
    const result = await upgrade(binary, ["--version", BROKEN], port);
    expect(result.output).toContain(`installed inp2pc ${BROKEN} over ${OLD}`);
    expect(result.output).toContain(`the upgrade to ${BROKEN} did not come up: the new binary was not healthy: it exited (code 1) before it was healthy; rolled back to the previous binary; inp2pc ${OLD} runs again`);
    expect(result.code).toBe(1);
    expect(sha256(binary)).toBe(sha256(join(tmp, "inp2pc-old")));
    const again = await loggedIn(port, "the old inp2pc logged in again");
    expect(again.version).toBe(OLD);
    expect(again.pid).toBe(oldPid);
    expect(again.upgrade?.state).toBe("rolled-back");
  }, RESTART_TIMEOUT_MS * 2);
});

describe("fleet upgrades", () => {
  let server: ServerHandle;

  beforeAll(async () => {
    // The 1.0.0 build (it trusts the test key): it checks the release server at start, so it knows of 1.1.0.
    server = await startServer({ tls: "off", program: join(tmp, "inp2ps-old"), extraToml: `release_url = "${releases.url}"\nrelease_check_hours = 1` });
  }, RUN_TIMEOUT_MS);

  afterAll(async () => {
    await server?.stop();
  });

  const listed = async (node: string) => ((await api(server, "/api/v1/nodes", server.adminToken)).body.nodes as { name: string; version: string; behind: string | null }[]).find((n) => n.name === node);

  test("inp2ps nodes upgrade NAME asks the node, which restarts into the newest release the server knows", async () => {
    const { binary } = installOld();
    const port = await startDaemon(server, binary, "fleet-asked");
    await waitFor("the server's release check", () => server.proc.output.includes(`newest release is ${NEW}; telling the nodes`), RUN_TIMEOUT_MS);
    expect(await listed("fleet-asked")).toMatchObject({ version: OLD, behind: NEW });
    const asked = await runToEnd(INP2PS, ["nodes", "upgrade", "fleet-asked", "--config", server.configPath], { cwd: server.dir, timeoutMs: RUN_TIMEOUT_MS });
    expect(asked.output).toContain(`asked node fleet-asked (user default) to upgrade from ${OLD} to ${NEW}`);
    expect(asked.code).toBe(0);
    const now = await waitFor("the node back as 1.1.0", async () => {
      const s = await status(port);
      return s?.version === NEW && s.server.state === "online" && s;
    }, RESTART_TIMEOUT_MS);
    pids.push(now.pid);
    await waitFor("the server listing it as 1.1.0, not behind", async () => {
      const n = await listed("fleet-asked");
      return n?.version === NEW && n.behind === null;
    }, RESTART_TIMEOUT_MS);
    const audit = (await api(server, "/api/v1/audit", server.adminToken)).body.entries as { event: string; node?: string }[];
    expect(audit.some((e) => e.event === "upgrade-asked" && e.node === "fleet-asked")).toBe(true);
  }, RESTART_TIMEOUT_MS * 2);

  test("an auto_upgrade node takes the release the server announces, within its window (0 s here)", async () => {
    const { binary } = installOld();
    const port = await startDaemon(server, binary, "fleet-auto", "auto_upgrade = true\nauto_upgrade_window_s = 0");
    const now = await waitFor("the node back as 1.1.0", async () => {
      const s = await status(port);
      return s?.version === NEW && s.server.state === "online" && s;
    }, RESTART_TIMEOUT_MS);
    pids.push(now.pid);
    expect(sha256(`${binary}.previous`)).toBe(sha256(join(tmp, "inp2pc-old")));
  }, RESTART_TIMEOUT_MS * 2);

  test("nodes upgrade of a node that is not online says so", async () => {
    const asked = await runToEnd(INP2PS, ["nodes", "upgrade", "nobody-here", "--config", server.configPath], { cwd: server.dir, timeoutMs: RUN_TIMEOUT_MS });
    expect(asked.output).toContain("node nobody-here of user default is not online");
    expect(asked.code).toBe(1);
  }, RUN_TIMEOUT_MS);
});

describe("inp2ps upgrade of a running inp2ps", () => {
  test("restarts the server into the new release, listening on the same ports; the old binary is kept", async () => {
    const dir = mkdtempSync(join(tmp, "inp2ps-bin-"));
    installs.push(dir);
    const binary = join(dir, "inp2ps");
    copyFileSync(join(tmp, "inp2ps-old"), binary);
    const server = await startServer({ tls: "off", program: binary });
    try {
      const before = (await api(server, "/api/v1/upgrade", server.adminToken)).body as { version: string; pid: number };
      expect(before.version).toBe(OLD);
      const result = await runToEnd(binary, ["upgrade", "--url", releases.url, "--config", server.configPath], { cwd: server.dir, timeoutMs: RESTART_TIMEOUT_MS });
      expect(result.output).toContain(`installed inp2ps ${NEW} over ${OLD} at ${binary}`);
      expect(result.output).toContain(`inp2ps ${NEW} is running`);
      expect(result.code).toBe(0);
      const after = (await api(server, "/api/v1/upgrade", server.adminToken)).body as { version: string; pid: number };
      pids.push(after.pid);
      expect(after.version).toBe(NEW);
      expect(after.pid).not.toBe(before.pid);
      expect(sha256(`${binary}.previous`)).toBe(sha256(join(tmp, "inp2ps-old")));
    } finally {
      killRestarted();
      await server.stop();
    }
  }, RESTART_TIMEOUT_MS * 2);
});
