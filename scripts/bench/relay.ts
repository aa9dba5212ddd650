#!/usr/bin/env bun
// Relay throughput against a direct path, and how well the relay bandwidth cap holds, in one run on
// 127.0.0.1 with real processes:
//
//   node_modules/.bin/bun scripts/bench/relay.ts [--mib 256] [--cap-mbps 80] [--cap-seconds 8]
//
//   1. direct:        a TCP app over a tcp-direct link (both clients peer_paths = ["tcp"])
//   2. server relay:  the same over relay-server (near: peer_paths = ["relay"]; inp2ps relay_bw 1000000, i.e. no cap)
//   3. relay node:    over relay-private, through an inp2pc --relay with --bw CAP
//   4. server relay:  over relay-server of a second inp2ps with relay_bw = CAP
//
// Rows 1 and 2 send --mib MiB; rows 3 and 4 send what CAP Mbit/s carries in --cap-seconds. The
// sender writes and half-closes; the target counts and answers; the time runs from connect to answer.
// The cap counts every byte the relay forwards (both directions, framing and encryption included), so
// app payload sits slightly under it; the ratio printed is payload rate / cap.

import type { Server } from "node:net";
import {
  freePort,
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
/** The default heartbeat, not the tests' fast one: a relay at full speed keeps the machine busy. */
const HEARTBEAT = { heartbeatIntervalMs: 10_000, heartbeatTimeoutMs: 30_000 };

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!(value > 0)) {
    console.error(`${name} takes a positive number`);
    process.exit(2);
  }
  return value;
}

const MIB = option("--mib", 256);
const CAP_MBPS = option("--cap-mbps", 80);
const CAP_SECONDS = option("--cap-seconds", 8);

/** Payload rate of one transfer of `bytes`, in Mbit/s (10^6 bits a second). */
const mbps = async (port: number, bytes: number) => (bytes * 8) / 1e6 / (await transfer(port, bytes));

const servers: ServerHandle[] = [];
const clients: LinkedClient[] = [];
let sink: { server: Server; port: number } | undefined;

async function cleanUp(): Promise<void> {
  for (const client of clients.splice(0)) await stopLinkedClient(client);
  for (const server of servers.splice(0)) await server.stop();
  sink?.server.close();
}
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => void cleanUp().finally(() => process.exit(130)));

async function start(server: ServerHandle, node: string, toml: string): Promise<LinkedClient> {
  const client = await startLinkedClient(server, node, toml, { logLevel: "info" });
  clients.push(client);
  return client;
}

/** A far/near pair whose app forwards to the sink; resolves with the app's port and the link (kind via relay). */
async function pair(server: ServerHandle, name: string, farPaths: string, nearPaths: string): Promise<{ port: number; link: string }> {
  const port = await freePort();
  await start(server, `far-${name}`, [`peer_paths = ${farPaths}`, exposeToml(`127.0.0.1:${sink!.port}`)].join("\n"));
  const near = await start(
    server,
    `near-${name}`,
    [`peer_paths = ${nearPaths}`, "[[client.apps]]", 'name = "bench"', 'protocol = "tcp"', `listen = "127.0.0.1:${port}"`, `peer = "far-${name}"`, `target = "127.0.0.1:${sink!.port}"`].join("\n"),
  );
  await waitFor("the app listening", async () => (await linkedClientStatus(near)).apps[0]?.state === "listening", 10_000);
  await transfer(port, 4 * MiB); // warm-up: the link is up
  const peer = (await linkedClientStatus(near)).peers[`far-${name}`];
  return { port, link: `${peer?.link}${peer?.relay ? ` via ${peer.relay}` : ""}` };
}

async function main(): Promise<void> {
  sink = await startSink();
  const open = await startServer({ ...HEARTBEAT, extraToml: "relay_bw = 1000000" });
  servers.push(open);
  console.log(`relay bench on 127.0.0.1: ${MIB} MiB uncapped; cap ${CAP_MBPS} Mbit/s for ${CAP_SECONDS} s`);

  const direct = await pair(open, "direct", '["tcp"]', '["tcp"]');
  const directMbps = await mbps(direct.port, MIB * MiB);
  console.log(`  1. direct (${direct.link}):           ${directMbps.toFixed(0)} Mbit/s`);
  const relayed = await pair(open, "relayed", '["tcp", "relay"]', '["relay"]');
  const relayedMbps = await mbps(relayed.port, MIB * MiB);
  console.log(`  2. server relay, no cap (${relayed.link}): ${relayedMbps.toFixed(0)} Mbit/s = ${((relayedMbps / directMbps) * 100).toFixed(0)} % of direct`);

  const capBytes = Math.round(((CAP_MBPS * 1e6) / 8) * CAP_SECONDS);
  const relayNode = await start(open, "relay1", `relay = true\nrelay_port = ${await freePort()}\nbw = ${CAP_MBPS}`);
  await relayNode.proc.waitForOutput(/relaying for/);
  await waitFor("the relay offer", () => open.proc.output.includes("node offers to relay node=relay1") || undefined, 10_000);
  const viaNode = await pair(open, "vianode", '["tcp", "relay"]', '["relay"]');
  const nodeMbps = await mbps(viaNode.port, capBytes);
  console.log(`  3. relay node, bw ${CAP_MBPS} (${viaNode.link}): ${nodeMbps.toFixed(1)} Mbit/s = ${((nodeMbps / CAP_MBPS) * 100).toFixed(1)} % of the cap`);

  const capped = await startServer({ ...HEARTBEAT, extraToml: `relay_bw = ${CAP_MBPS}` });
  servers.push(capped);
  const viaServer = await pair(capped, "viaserver", '["tcp", "relay"]', '["relay"]');
  const serverMbps = await mbps(viaServer.port, capBytes);
  console.log(`  4. server relay, relay_bw ${CAP_MBPS} (${viaServer.link}): ${serverMbps.toFixed(1)} Mbit/s = ${((serverMbps / CAP_MBPS) * 100).toFixed(1)} % of the cap`);
}

main()
  .catch((err) => {
    console.error(`relay bench failed: ${(err as Error).message}`);
    for (const client of clients) console.error(`--- ${client.node} (last lines)\n${client.proc.output.split("\n").slice(-8).join("\n")}`);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
