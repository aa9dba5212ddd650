// `inp2pc doctor`: each layer in turn, with what it measured, its threshold and a one-line fix:
// config → server reachable → TLS → login → NAT → peers → apps → system (SDWAN's native needs).
// A running inp2pc with this config (its status API on status_port) is asked for what only it knows
// (login state, links, apps); without one, the doctor logs in once itself and logs out.

import { randomBytes } from "node:crypto";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { ConfigError, type ClientConfig, type LoadedConfig } from "../config/index.ts";
import { loadOrCreateIdentity } from "../crypto/index.ts";
import { createLogger, formatTable, TABLE_COLUMN_GAP } from "../log/index.ts";
import { detectNat } from "../nat/index.ts";
import { INSTANCE_ID_BYTES, VERSION } from "../protocol/index.ts";
import { runDoctor as runSystemChecks } from "../sdwan/index.ts";
import { IDENTITY_FILE, KNOWN_SERVERS_FILE } from "./constants.ts";
import { callAction, type AppCheck, type PingAnswer } from "./control.ts";
import { ServerSession } from "./session.ts";
import type { ClientStatus } from "./status.ts";
import { decideTrust, KnownServers } from "./trust.ts";
import { AutoServerError } from "./auto-server.ts";

/** The exit code of the first failing layer (0: none failed). */
export const DOCTOR_EXIT_CODES = { config: 10, server: 11, tls: 12, login: 13, nat: 14, peer: 15, app: 16, system: 17 } as const;
export type DoctorLayerName = keyof typeof DOCTOR_EXIT_CODES;

/** The server's TCP port must accept within this. */
export const SERVER_CONNECT_THRESHOLD_MS = 1_000;
/** How long the doctor waits for the server's TCP port at all (a slower answer is measured, and fails the threshold). */
const SERVER_CONNECT_TIMEOUT_MS = 5_000;
/** The TLS handshake must finish within this. */
export const TLS_HANDSHAKE_THRESHOLD_MS = 2_000;
/** A login (done by the doctor itself) must be answered within this. */
export const LOGIN_THRESHOLD_MS = 8_000;
/** A peer link's round trip must be under this. */
export const PEER_RTT_THRESHOLD_MS = 500;
/** What each layer checks, with its threshold (doctor --help and the README show these). */
export const DOCTOR_LAYER_CHECKS: Record<DoctorLayerName, string> = {
  config: "the config loads: valid TOML, known keys, required settings given",
  server: `TCP connect to server_host:server_port within ${SERVER_CONNECT_THRESHOLD_MS} ms`,
  tls: `TLS handshake within ${TLS_HANDSHAKE_THRESHOLD_MS} ms; the certificate matches tls_fingerprint, else the system CAs, else the first-use record`,
  login: `token, identity key, approval: the running inp2pc's state, else one login (within ${LOGIN_THRESHOLD_MS} ms) and logout`,
  nat: "NAT type, UDP and TCP against the server's STUN ports; fails when UDP is blocked",
  peer: `each peer: link kind, and a fresh round trip under ${PEER_RTT_THRESHOLD_MS} ms (needs a running inp2pc)`,
  app: "each app: listener bound, and the serving node accepts its target (no data sent; needs a running inp2pc)",
  system: "FFI, /dev/net/tun, CAP_NET_ADMIN: fails only when [client.sdwan] is enabled",
};

/** How long the doctor waits for a running inp2pc's status API. */
const STATUS_API_TIMEOUT_MS = 2_000;
/** How long the doctor waits for a running inp2pc's action (an app check or a ping may make a link first). */
const ACTION_WAIT_MS = 20_000;

export interface DoctorLayer {
  layer: DoctorLayerName;
  /** What was checked: "config", "peer beta", "app web", "system tun device". */
  name: string;
  /** warn: a finding that does not fail the layer; skipped: could not run, `measured` says why. */
  status: "ok" | "warn" | "fail" | "skipped";
  measured: string;
  threshold: string;
  /** What to do, in one line; null when there is nothing to do. */
  fix: string | null;
}

export interface DoctorReport {
  ok: boolean;
  exitCode: number;
  /** The first failing layer. */
  failed: DoctorLayerName | null;
  /** Whether a running inp2pc with this config answered on its status port. */
  running: boolean;
  layers: DoctorLayer[];
}

export interface DoctorInit {
  /** Loads the client config; throws ConfigError naming what is wrong. */
  load(): LoadedConfig;
  /** The settings with server_host = "auto" resolved (Bonjour); throws AutoServerError. Default: as loaded. */
  resolveServer?(loaded: LoadedConfig): Promise<ClientConfig>;
  /** Only the system layer (no config needed), each missing piece a failure. */
  systemOnly?: boolean;
}

const CONFIG_FIXES: Record<ConfigError["code"], string> = {
  CONFIG_SYNTAX: "correct the TOML at the line and column named above",
  CONFIG_SCHEMA: "correct the value named above (in the file, its flag or its INP2P_ environment variable); config/inp2pc.toml shows every key",
  CONFIG_UNKNOWN_KEY: "remove or correct the key named above; config/inp2pc.toml shows every key",
  CONFIG_MISSING: "give the settings named above (in [client], as flags or as INP2P_ environment variables)",
  CONFIG_NOT_FOUND: "give the path of an existing file to --config, or create one with --newconfig and the flags",
  CONFIG_ROLE: 'use an inp2pc config (role = "client"), not the server\'s',
};

const round = (ms: number) => Math.round(ms * 10) / 10;

export async function runLayeredDoctor(init: DoctorInit): Promise<DoctorReport> {
  const layers: DoctorLayer[] = [];
  const add = (layer: DoctorLayer) => layers.push(layer);
  const skip = (layer: DoctorLayerName, name: string, why: string) => add({ layer, name, status: "skipped", measured: why, threshold: "-", fix: null });
  if (init.systemOnly) return finish(await checkSystem(true), false);

  let config: ClientConfig;
  let path: string;
  try {
    const loaded = init.load();
    config = init.resolveServer ? await init.resolveServer(loaded) : loaded.config.client!;
    path = loaded.path;
    add({ layer: "config", name: "config", status: "ok", measured: `${path}: node ${config.node}, server ${config.server_host}:${config.server_port}`, threshold: "valid TOML, required settings given", fix: null });
  } catch (err) {
    const message = (err as Error).message;
    add({
      layer: "config",
      name: "config",
      status: "fail",
      measured: message,
      threshold: "valid TOML, required settings given",
      fix: err instanceof ConfigError ? CONFIG_FIXES[err.code] : err instanceof AutoServerError ? "see above: choose the server, or run inp2ps on this LAN with bonjour on" : "check the config file",
    });
    for (const [layer, name] of [["server", "server"], ["tls", "tls"], ["login", "login"], ["nat", "nat"], ["peer", "peers"], ["app", "apps"]] as const) skip(layer, name, "config is not valid");
    for (const layer of await checkSystem(false)) add(layer);
    return finish(layers, false);
  }

  const status = await runningStatus(config);
  const hostPort = `${config.server_host}:${config.server_port}`;

  // server: a TCP connect to the ws port.
  const reach = await timedConnect(config.server_host, config.server_port, SERVER_CONNECT_TIMEOUT_MS);
  const serverOk = reach.ok && reach.ms <= SERVER_CONNECT_THRESHOLD_MS;
  add({
    layer: "server",
    name: "server",
    status: serverOk ? "ok" : "fail",
    measured: reach.ok ? `TCP connect to ${hostPort} in ${round(reach.ms)} ms` : `TCP connect to ${hostPort} failed: ${reach.error}`,
    threshold: `connects within ${SERVER_CONNECT_THRESHOLD_MS} ms`,
    fix: serverOk ? null : reach.ok ? `the server answers slowly: check the network between here and ${config.server_host}` : `start inp2ps on ${config.server_host}, or correct server_host/server_port in [client], or open TCP port ${config.server_port} in firewalls between`,
  });

  // tls: the handshake, and the certificate against the pinned fingerprint or the first-use record.
  let tlsOk = serverOk;
  if (!serverOk) skip("tls", "tls", "the server is not reachable");
  else if (config.insecure) add({ layer: "tls", name: "tls", status: "warn", measured: "insecure = true: plain ws://, no TLS", threshold: "certificate matches the pin or first-use record", fix: "run inp2ps with TLS and drop insecure, so that the link to the server is encrypted and authenticated" });
  else {
    const tls = await checkTls(config);
    tlsOk = tls.status !== "fail";
    add({ layer: "tls", name: "tls", ...tls, threshold: `handshake within ${TLS_HANDSHAKE_THRESHOLD_MS} ms; certificate matches tls_fingerprint, else the system CAs, else the first-use record` });
  }

  // login: from the running inp2pc, else one real login and logout.
  let loginOk = false;
  if (status) {
    const login = loginFromStatus(status);
    loginOk = login.status === "ok";
    add({ layer: "login", name: "login", ...login, threshold: "logged in and approved" });
  } else if (!tlsOk) skip("login", "login", serverOk ? "TLS failed" : "the server is not reachable");
  else {
    const login = await tryLogin(config);
    loginOk = login.status === "ok";
    add({ layer: "login", name: "login", ...login, threshold: `logged in and approved within ${LOGIN_THRESHOLD_MS} ms` });
  }

  // nat: the running node's, else a detection now.
  add(await checkNat(config, status));

  // peers and apps: only a running inp2pc has links and listeners.
  const notRunning = `no inp2pc with node ${config.node} answers on 127.0.0.1:${config.status_port} (status_port): links and apps exist only in a running one`;
  if (!status) {
    skip("peer", "peers", notRunning);
    skip("app", "apps", notRunning);
  } else if (!loginOk) {
    skip("peer", "peers", "not logged in");
    skip("app", "apps", "not logged in");
  } else {
    for (const layer of await checkPeers(config, status)) add(layer);
    for (const layer of await checkApps(config, status)) add(layer);
  }

  for (const layer of await checkSystem(config.sdwan?.enabled === true)) add(layer);
  return finish(layers, status !== undefined);
}

function finish(layers: DoctorLayer[], running: boolean): DoctorReport {
  const failed = layers.find((l) => l.status === "fail")?.layer ?? null;
  return { ok: failed === null, exitCode: failed ? DOCTOR_EXIT_CODES[failed] : 0, failed, running, layers };
}

/** The status of a running inp2pc with this config's node name, or undefined. */
async function runningStatus(config: ClientConfig): Promise<ClientStatus | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${config.status_port}/api/v1/status`, { signal: AbortSignal.timeout(STATUS_API_TIMEOUT_MS) });
    const status = (await response.json()) as ClientStatus;
    return status.node === config.node ? status : undefined;
  } catch {
    return undefined;
  }
}

function timedConnect(host: string, port: number, timeoutMs: number): Promise<{ ok: true; ms: number } | { ok: false; error: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port });
    const timer = setTimeout(() => done({ ok: false, error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    const done = (result: { ok: true; ms: number } | { ok: false; error: string }) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    socket.once("connect", () => done({ ok: true, ms: performance.now() - started }));
    socket.once("error", (err) => done({ ok: false, error: err.message }));
  });
}

/** Never records a fingerprint: the doctor looks, the client's login records. */
class LookOnlyKnownServers extends KnownServers {
  override remember(): void {}
}

async function checkTls(config: ClientConfig): Promise<Pick<DoctorLayer, "status" | "measured" | "fix">> {
  const hostPort = `${config.server_host}:${config.server_port}`;
  const started = performance.now();
  const facts = await new Promise<{ authorized: boolean; authorizationError?: string; fingerprint256: string } | { error: string }>((resolve) => {
    const socket = tlsConnect({ host: config.server_host, port: config.server_port, rejectUnauthorized: false, servername: /^[\d.:]+$/.test(config.server_host) ? undefined : config.server_host });
    const timer = setTimeout(() => done({ error: `no handshake within ${TLS_HANDSHAKE_THRESHOLD_MS} ms` }), TLS_HANDSHAKE_THRESHOLD_MS);
    const done = (value: Parameters<typeof resolve>[0]) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    socket.once("secureConnect", () =>
      done({ authorized: socket.authorized, authorizationError: socket.authorizationError?.toString(), fingerprint256: socket.getPeerCertificate().fingerprint256 }),
    );
    socket.once("error", (err) => done({ error: err.message }));
  });
  const ms = round(performance.now() - started);
  if ("error" in facts) {
    const plain = /WRONG_VERSION_NUMBER|wrong version number|packet length too long/i.test(facts.error);
    return {
      status: "fail",
      measured: `TLS handshake with ${hostPort} failed: ${facts.error}`,
      fix: plain ? 'the server does not speak TLS on this port: if it runs with tls = "off", set insecure = true in [client]' : `check that inp2ps serves TLS on ${hostPort}`,
    };
  }
  const known = new LookOnlyKnownServers(join(config.data_dir, KNOWN_SERVERS_FILE));
  const decision = decideTrust(facts, hostPort, config.tls_fingerprint, known);
  if (!decision.ok)
    return {
      status: "fail",
      measured: `handshake in ${ms} ms; ${decision.reason}`,
      fix: `if the server's certificate was replaced on purpose, set tls_fingerprint = "${facts.fingerprint256}" in [client] (or remove "${hostPort}" from ${known.file}); if not, someone may be intercepting: do not connect`,
    };
  if (decision.how === "first use: recorded")
    return { status: "warn", measured: `handshake in ${ms} ms; no record of ${hostPort} yet: the first login trusts and records ${facts.fingerprint256}`, fix: `pin it: compare with the fingerprint inp2ps prints at start, and set tls_fingerprint in [client]` };
  return { status: "ok", measured: `handshake in ${ms} ms; certificate ${decision.how === "known (first seen earlier)" ? "matches the first-use record" : decision.how === "pinned" ? "matches tls_fingerprint" : "verified by the system CAs"}`, fix: null };
}

function loginFromStatus(status: ClientStatus): Pick<DoctorLayer, "status" | "measured" | "fix"> {
  const { server } = status;
  if (server.state === "online") return { status: "ok", measured: `the running inp2pc is logged in as ${status.node} of user ${server.user}${server.rttMs !== null ? ` (rtt ${server.rttMs} ms)` : ""}`, fix: null };
  if (server.state === "pending") return { status: "fail", measured: `the running inp2pc waits for approval: ${status.node} is pending on the server`, fix: `run "${server.approval}" on the server (or an auto_approve rule there)` };
  return {
    status: "fail",
    measured: `the running inp2pc is not logged in (${server.state})${server.error ? `: ${server.error}` : ""}`,
    fix: server.error ? loginFix(server.error) : "wait a moment and run doctor again, or read the inp2pc log",
  };
}

/** A one-line fix for a login problem the session described (its words already say most). */
function loginFix(problem: string): string {
  if (/BAD_TOKEN/.test(problem)) return "set token in [client] (or INP2P_TOKEN) to the token of this node's user on the server";
  if (/KEY_MISMATCH/.test(problem)) return 'give this node another node name, or run "inp2ps forget NODE" on the server if it replaces the old machine';
  if (/rejected|revoked|key replaced|new identity key/.test(problem)) return "ask the server's admin to approve this node again";
  return "see the reason above";
}

async function tryLogin(config: ClientConfig): Promise<Pick<DoctorLayer, "status" | "measured" | "fix">> {
  const { identity } = loadOrCreateIdentity(join(config.data_dir, IDENTITY_FILE));
  const session = new ServerSession({
    host: config.server_host,
    port: config.server_port,
    insecure: config.insecure,
    node: config.node,
    token: config.token,
    identity,
    version: VERSION,
    instance: randomBytes(INSTANCE_ID_BYTES).toString("base64url"),
    tlsFingerprint: config.tls_fingerprint,
    knownServers: new LookOnlyKnownServers(join(config.data_dir, KNOWN_SERVERS_FILE)),
    logger: createLogger({ level: "error", write: () => {} }),
    reconnectBaseDelayMs: LOGIN_THRESHOLD_MS, // one try: no retry comes within the wait
  });
  const started = performance.now();
  session.start();
  try {
    const deadline = Date.now() + LOGIN_THRESHOLD_MS;
    while (Date.now() < deadline && session.state !== "online" && session.state !== "pending" && !session.problem) await new Promise((r) => setTimeout(r, 25));
    const ms = round(performance.now() - started);
    if (session.state === "online") return { status: "ok", measured: `logged in as ${config.node} of user ${session.login?.user} in ${ms} ms (and out again: no inp2pc is running with this config)`, fix: null };
    if (session.state === "pending") return { status: "fail", measured: `logged in, but ${config.node} waits for approval on the server`, fix: `run "${session.awaitingApproval}" on the server (or an auto_approve rule there)` };
    if (session.problem) return { status: "fail", measured: `login failed: ${session.problem}`, fix: loginFix(session.problem) };
    return { status: "fail", measured: `no login answer within ${LOGIN_THRESHOLD_MS} ms`, fix: "check the server's log; it may be overloaded" };
  } finally {
    session.stop();
  }
}

async function checkNat(config: ClientConfig, status: ClientStatus | undefined): Promise<DoctorLayer> {
  const threshold = "UDP answers from the server's STUN ports (not udp-blocked)";
  const stunFix = `allow UDP to ${config.server_host} ports ${config.stun_udp1} and ${config.stun_udp2} (STUN); until then, links need a relay`;
  if (status?.nat) {
    const nat = status.nat;
    const blocked = nat.natType === "udp-blocked";
    return { layer: "nat", name: "nat", status: blocked ? "fail" : "ok", measured: `${nat.natType}${nat.publicAddress ? ` (${nat.publicAddress})` : ""}, from the running inp2pc`, threshold, fix: blocked ? stunFix : null };
  }
  try {
    const report = await detectNat({ serverHost: config.server_host, udpPorts: [config.stun_udp1, config.stun_udp2], tcpPorts: [config.stun_tcp1, config.stun_tcp2] });
    const blocked = report.natType === "udp-blocked";
    const tcp = report.tcpPublicAddress ? `TCP mapped ${report.tcpPublicAddress}` : "TCP probe unanswered";
    return {
      layer: "nat",
      name: "nat",
      status: blocked ? "fail" : "ok",
      measured: `${report.natType}${report.publicAddress ? ` (${report.publicAddress})` : ""}; ${tcp}; in ${report.durationMs} ms`,
      threshold,
      fix: blocked ? stunFix : null,
    };
  } catch (err) {
    return { layer: "nat", name: "nat", status: "fail", measured: `NAT detection failed: ${(err as Error).message}`, threshold, fix: stunFix };
  }
}

/**
 * Each peer the running inp2pc knows or an app needs: a linked peer, or one an app needs, is pinged
 * over its link (made now if there is none, as the app would), for the path and a fresh round trip.
 */
async function checkPeers(config: ClientConfig, status: ClientStatus): Promise<DoctorLayer[]> {
  const needed = new Map(status.apps.filter((a) => a.state !== "disabled").map((a) => [a.peer, a.name]));
  const threshold = `a link, with rtt under ${PEER_RTT_THRESHOLD_MS} ms`;
  const layers: DoctorLayer[] = [];
  const names = new Set([...Object.keys(status.peers), ...needed.keys()]);
  for (const name of [...names].sort()) {
    const peer = status.peers[name];
    const app = needed.get(name);
    const row = (s: DoctorLayer["status"], measured: string, fix: string | null): DoctorLayer => ({ layer: "peer", name: `peer ${name}`, status: s, measured, threshold, fix });
    if (!peer?.online && !peer?.link) {
      layers.push(app ? row("fail", `offline, and app ${app} needs it`, `start inp2pc on ${name} (it must log in to the same server with the same user's token)`) : row("ok", "offline", null));
      continue;
    }
    if (!peer.link && !app) {
      const failed = peer.state === "denied" || peer.state === "failed" || peer.state === "needs-relay";
      layers.push(failed ? row("warn", `no link: ${peer.state}${peer.error ? `: ${peer.error}` : ""}`, peerFix(name, peer.state)) : row("ok", "online, no link (none needed yet)", null));
      continue;
    }
    const answer = await pingOnce(config, name);
    const needs = app ? ` (app ${app} needs it)` : "";
    if ("error" in answer) {
      layers.push(row("fail", `no link${needs}: ${answer.error}`, peerFix(name, /ACL/.test(answer.error) ? "denied" : /no relay worked|needs a relay/.test(answer.error) ? "needs-relay" : null)));
      continue;
    }
    const path = `${answer.path}${answer.via ? ` via relay ${answer.via}` : ""}${answer.made ? ` (made now, in ${answer.madeMs} ms)` : ""}`;
    if (answer.rttMs === null) layers.push(row("fail", `${path}, but no pong to a ping`, `the link may be dying: run "inp2pc ping ${name}" and read both nodes' logs`));
    else if (answer.rttMs > PEER_RTT_THRESHOLD_MS)
      layers.push(row("fail", `${path}, rtt ${round(answer.rttMs)} ms`, answer.via ? "a direct path would be faster: check UDP/TCP reachability between the two (inp2pc nat on each)" : "the path is slow or congested: check the network between the two"));
    else layers.push(row("ok", `${path}, rtt ${answer.rttMs < 10 ? answer.rttMs.toFixed(2) : round(answer.rttMs)} ms`, null));
  }
  if (layers.length === 0) layers.push({ layer: "peer", name: "peers", status: "ok", measured: "no peers online and none needed", threshold, fix: null });
  return layers;
}

function peerFix(name: string, state: string | null): string {
  if (state === "denied") return `ask the server's admin for an ACL rule that lets this node link to ${name}`;
  if (state === "needs-relay") return 'no direct path: start a relay (inp2pc --relay) or keep "relay" in peer_paths';
  return `run "inp2pc ping ${name}" to make a link and see why it fails`;
}

async function checkApps(config: ClientConfig, status: ClientStatus): Promise<DoctorLayer[]> {
  const threshold = "listener bound; the serving node connects to the target";
  if (status.apps.length === 0) return [{ layer: "app", name: "apps", status: "ok", measured: "no apps configured", threshold, fix: null }];
  const layers: DoctorLayer[] = [];
  for (const app of status.apps) {
    const row = (s: DoctorLayer["status"], measured: string, fix: string | null): DoctorLayer => ({ layer: "app", name: `app ${app.name}`, status: s, measured, threshold, fix });
    if (app.state === "disabled") {
      layers.push(row("skipped", "disabled (enabled = false)", null));
      continue;
    }
    if (app.state !== "listening") {
      layers.push(row("fail", `listener on ${app.listen}: ${app.state}${app.error ? `: ${app.error}` : ""}`, `free ${app.listen} (another program holds it?) or change listen of app ${app.name}`));
      continue;
    }
    if (app.protocol === "udp") {
      layers.push(row("ok", `listening on ${app.listen} (UDP: the target answers only to data, not checked)`, null));
      continue;
    }
    const check = await checkApp(config, app.name);
    if ("error" in check && !("ok" in check)) {
      layers.push(row("fail", `listening on ${app.listen}; cannot check ${app.target} at ${app.peer}: ${check.error}`, `run "inp2pc ping ${app.peer}" to see why there is no link`));
      continue;
    }
    const answer = check as AppCheck;
    if (answer.ok) layers.push(row("ok", `listening on ${app.listen}; ${app.peer} connected to ${app.target} in ${round(answer.ms)} ms`, null));
    else
      layers.push(
        row(
          "fail",
          `listening on ${app.listen}; ${app.peer} refused ${app.target} (${answer.code}): ${answer.error}`,
          answer.code === "NOT_EXPOSED" ? `add "${app.target}" to expose in [client] on node ${app.peer}` : `start the service at ${app.target} as ${app.peer} sees it, or correct target of app ${app.name}`,
        ),
      );
  }
  return layers;
}

async function checkApp(config: ClientConfig, app: string): Promise<AppCheck | { error: string }> {
  try {
    return (await (await callAction(config.status_port, "/apps/check", { app }, ACTION_WAIT_MS)).json()) as AppCheck;
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** A fresh round trip over the running inp2pc's link to `peer` (made now if there is none), or why there is none. */
async function pingOnce(config: ClientConfig, peer: string): Promise<PingAnswer | { error: string }> {
  try {
    return (await (await callAction(config.status_port, "/ping", { peer }, ACTION_WAIT_MS)).json()) as PingAnswer;
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** `needed`: SDWAN is enabled, so each missing piece fails the layer (else it only warns). */
async function checkSystem(needed: boolean): Promise<DoctorLayer[]> {
  const report = await runSystemChecks();
  const fixes = {
    ffi: "the binary's native loader failed: use the inp2pc build for this platform (bun build --compile)",
    "tun device": "load the tun module (modprobe tun), or give the container /dev/net/tun",
    "net admin": "run as root, or grant CAP_NET_ADMIN (setcap cap_net_admin+ep, or AmbientCapabilities in the systemd unit)",
  };
  const checks = [
    ["ffi", report.ffi, "koffi loads libc"],
    ["tun device", report.tunDevice, "/dev/net/tun opens read-write"],
    ["net admin", report.netAdmin, "CAP_NET_ADMIN is effective"],
  ] as const;
  return checks.map(([name, check, threshold]) => ({
    layer: "system" as const,
    name: `system ${name}`,
    status: check.ok ? "ok" : needed ? "fail" : "warn",
    measured: check.ok ? check.detail : `${check.detail}${needed ? "" : " (needed only for SDWAN, which is off)"}`,
    threshold,
    fix: check.ok ? null : fixes[name],
  }));
}

/** The doctor's report for people: a row per check (name, result, what it measured), then its threshold and, when it failed or warns, the fix. */
export function formatDoctor(report: DoctorReport): string {
  // A measurement of several lines (a TOML error's excerpt) shows its first in the row, the rest under it.
  const rows = report.layers.map((l) => [l.name, l.status === "fail" ? "FAIL" : l.status, l.measured.split("\n")[0]!]);
  const lines = formatTable([["CHECK", "RESULT", "MEASURED"], ...rows]);
  const indent = " ".repeat(Math.max(...rows.map((row) => row[0]!.length)) + TABLE_COLUMN_GAP.length);
  const measuredIndent = " ".repeat(lines[0]!.indexOf("MEASURED"));
  const out = [lines[0]!];
  report.layers.forEach((layer, i) => {
    out.push(lines[i + 1]!, ...layer.measured.split("\n").slice(1).map((line) => `${measuredIndent}${line}`));
    if (layer.status === "skipped") return;
    out.push(`${indent}threshold: ${layer.threshold}`);
    if (layer.fix && layer.status !== "ok") out.push(`${indent}fix: ${layer.fix}`);
  });
  out.push("", report.ok ? "all layers ok" : `first failing layer: ${report.failed} (exit code ${report.exitCode})`);
  return out.join("\n");
}
