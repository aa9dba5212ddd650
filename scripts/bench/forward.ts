#!/usr/bin/env bun
// Throughput of one TCP transfer through each way of forwarding a port, in one run on 127.0.0.1:
//
//   node_modules/.bin/bun scripts/bench/forward.ts [--mib 256] [--no-netns]
//
//   1. raw:    the sender connects straight to the target
//   2. socat:  through `socat TCP-LISTEN:…,fork TCP:…` (a plain user-space forward)
//   3. inp2p TCP app over a UDP path (KCP on the peers' UDP sockets; on loopback the path is "lan")
//   4. inp2p TCP app over a TCP path ("tcp-direct")
//
// Real processes: one inp2ps, and per inp2p row a "far" inp2pc and a "near" inp2pc whose [[client.apps]]
// TCP app forwards to the target. The sender writes --mib MiB (a random 1 MiB block, repeated) and
// half-closes; the target counts the bytes and answers the count; the time runs from connect to answer.
//
// Forcing the TCP path: paths race, and on loopback the UDP "lan" path always wins. Row 4's far client
// gets a fixed peer_udp_port and an nft rule drops UDP to that port, so only its TCP listener answers.
// To leave the host's firewall alone the whole run happens in a fresh network namespace (root and
// iproute2 needed; the script re-runs itself inside with `ip netns exec`, and deletes the namespace
// afterwards). Without root, or with --no-netns, row 4 is skipped.
//
// Everything is removed at the end, on error and on Ctrl-C: processes, temp dirs, the namespace.

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { connect, type Server } from "node:net";
import {
  freePort,
  freeUdpPorts,
  linkedClientStatus,
  startLinkedClient,
  exposeToml,
  startServer,
  stopLinkedClient,
  waitFor,
  type LinkedClient,
  type ServerHandle,
} from "../../test/helpers/processes.ts";
import { startSink, transfer } from "./transfer.ts";

const MiB = 1024 * 1024;
const PATH_ENV = `${process.env.PATH ?? ""}:/usr/sbin:/sbin`;

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`${name} takes a positive integer`);
    process.exit(2);
  }
  return value;
}

const MIB = option("--mib", 256);
const INSIDE = process.argv.includes("--inside");
const NO_NETNS = process.argv.includes("--no-netns");

function have(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { env: { ...process.env, PATH: PATH_ENV } }).status === 0;
}

// ---------- run inside a private network namespace when we can ----------

if (!INSIDE && !NO_NETNS && process.getuid?.() === 0 && have("ip") && have("nft")) {
  const ns = `inp2p-bench-${process.pid}`;
  const ip = (...args: string[]) => execFileSync("ip", args, { env: { ...process.env, PATH: PATH_ENV }, stdio: ["ignore", "ignore", "inherit"] });
  let code = 1;
  ip("netns", "add", ns);
  const removeNamespace = () => {
    try {
      ip("netns", "del", ns);
    } catch {
      // already gone
    }
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => (removeNamespace(), process.exit(130)));
  try {
    ip("netns", "exec", ns, "ip", "link", "set", "lo", "up");
    console.log(`(running in network namespace ${ns}, loopback only)`);
    const child = spawnSync("ip", ["netns", "exec", ns, process.execPath, ...process.argv.slice(1), "--inside"], {
      stdio: "inherit",
      env: { ...process.env, PATH: PATH_ENV },
      timeout: 15 * 60_000,
    });
    code = child.status ?? 1;
  } finally {
    removeNamespace();
  }
  process.exit(code);
}

// ---------- the measurements ----------

const totalBytes = MIB * MiB;

/** MB/s (10^6 bytes a second) of one transfer of totalBytes. */
const megabytesPerSecond = async (port: number) => totalBytes / 1e6 / (await transfer(port, totalBytes));

async function listening(port: number, what: string): Promise<void> {
  await waitFor(
    `${what} listening on ${port}`,
    () =>
      new Promise<boolean>((done) => {
        const socket = connect({ host: "127.0.0.1", port }, () => (socket.destroy(), done(true)));
        socket.on("error", () => done(false));
      }),
    10_000,
    100,
  );
}

interface Row {
  label: string;
  link: string;
  mbps?: number;
  note?: string;
}

const children: ChildProcess[] = [];
const clients: LinkedClient[] = [];
let server: ServerHandle | undefined;
let sink: { server: Server; port: number } | undefined;

async function cleanUp(): Promise<void> {
  for (const child of children) child.kill("SIGKILL");
  for (const client of clients.splice(0)) await stopLinkedClient(client);
  await server?.stop();
  sink?.server.close();
}
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => void cleanUp().finally(() => process.exit(130)));

/** A far/near pair of inp2pc whose app forwards to the sink; resolves with the app's port and the link kind. */
async function inp2pPair(name: string, farToml: string): Promise<{ port: number; link: string }> {
  const port = await freePort();
  const far = await startLinkedClient(server!, `far-${name}`, [farToml, exposeToml(`127.0.0.1:${sink!.port}`)].join("\n"), { logLevel: "info" });
  clients.push(far);
  const near = await startLinkedClient(
    server!,
    `near-${name}`,
    ["[[client.apps]]", 'name = "bench"', 'protocol = "tcp"', `listen = "127.0.0.1:${port}"`, `peer = "far-${name}"`, `target = "127.0.0.1:${sink!.port}"`].join("\n"),
    { logLevel: "info" },
  );
  clients.push(near);
  await listening(port, `near-${name}'s app`);
  await transfer(port, 4 * MiB); // warm-up: the link is up and the JIT has seen the path
  const link = await waitFor(`a link from near-${name} to far-${name}`, async () => (await linkedClientStatus(near)).peers[`far-${name}`]?.link as string | undefined, 15_000);
  return { port, link };
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  sink = await startSink();
  const measure = async (row: Row, port: number) => {
    try {
      row.mbps = await megabytesPerSecond(port);
    } catch (err) {
      row.note = (err as Error).message;
    }
    rows.push(row);
    console.log(`  ${row.label}: ${row.mbps ? `${row.mbps.toFixed(1)} MB/s` : row.note}`);
  };
  console.log(`${MIB} MiB per transfer, one TCP connection, 127.0.0.1`);

  await transfer(sink.port, 16 * MiB); // warm-up
  await measure({ label: "raw TCP (direct to the target)", link: "-" }, sink.port);

  if (have("socat")) {
    const socatPort = await freePort();
    const socat = spawn("socat", ["-t", "10", `TCP-LISTEN:${socatPort},bind=127.0.0.1,reuseaddr,fork`, `TCP:127.0.0.1:${sink.port}`], {
      stdio: "ignore",
      env: { ...process.env, PATH: PATH_ENV },
    });
    children.push(socat);
    await listening(socatPort, "socat");
    await measure({ label: "socat forward", link: "-" }, socatPort);
    socat.kill();
  } else rows.push({ label: "socat forward", link: "-", note: "socat not installed (apt-get install socat)" });

  server = await startServer();

  const udp = await inp2pPair("udp", "");
  await measure({ label: "inp2p TCP app, UDP path (KCP)", link: udp.link }, udp.port);

  if (INSIDE) {
    // Only this far client's UDP socket goes deaf: the UDP path fails, the TCP path wins the race.
    const [blockedUdpPort] = await freeUdpPorts();
    const nft = (...args: string[]) => execFileSync("nft", args, { env: { ...process.env, PATH: PATH_ENV } });
    nft("add", "table", "inet", "inp2pbench");
    nft("add", "chain", "inet", "inp2pbench", "input", "{ type filter hook input priority 0; }");
    nft("add", "rule", "inet", "inp2pbench", "input", "udp", "dport", String(blockedUdpPort), "drop");
    const tcp = await inp2pPair("tcp", `peer_udp_port = ${blockedUdpPort}`);
    await measure({ label: "inp2p TCP app, TCP path", link: tcp.link }, tcp.port);
  } else {
    rows.push({ label: "inp2p TCP app, TCP path", link: "-", note: "skipped: forcing the TCP path needs root (a network namespace and an nft rule)" });
  }

  const raw = rows[0]?.mbps;
  console.log("");
  console.log("path".padEnd(34) + "link".padEnd(13) + "MB/s".padStart(9) + "vs raw".padStart(9));
  for (const row of rows) {
    const mbps = row.mbps ? row.mbps.toFixed(1) : "-";
    const ratio = row.mbps && raw ? (row.mbps / raw).toFixed(3) : "-";
    console.log(row.label.padEnd(34) + row.link.padEnd(13) + mbps.padStart(9) + ratio.padStart(9) + (row.note ? `  (${row.note})` : ""));
  }
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  exitCode = 1;
} finally {
  await cleanUp();
}
process.exit(exitCode);
