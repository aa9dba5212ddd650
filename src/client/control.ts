// The status API's actions (mounted on /api/v1 of the local status server, src/client/status.ts):
// ping a peer over its link, run a speedtest, and ask a serving node whether an app's target is
// reachable. Each takes a small JSON body; a body that is not JSON (a browser's form or text/plain
// post, which needs no CORS preflight) is refused, so that no web page can make the node act.

import { Hono, type Context } from "hono";
import { encodeStreamHeader } from "../protocol/index.ts";
import type { Link } from "../transport/index.ts";
import type { App } from "./apps.ts";
import { readAnswer, withTimeout } from "./apps.ts";
import { PeerError, type PeerManager } from "./peers.ts";
import type { ServerSession } from "./session.ts";
import { runSpeedtest, SpeedtestError } from "./speedtest.ts";
import { UpgradeError, type SelfUpgrade } from "../upgrade/index.ts";
import { isVersion } from "../protocol/index.ts";

/** Largest request body the actions read. */
const MAX_CONTROL_BODY_BYTES = 4096;
/** How long an action waits for a link to be made. */
export const CONTROL_LINK_WAIT_MS = 10_000;
/** How long one ping waits for its pong. */
export const PING_TIMEOUT_MS = 3_000;
/** How long an app check waits for the serving node's answer. */
const APP_CHECK_TIMEOUT_MS = 8_000;
/** A speedtest's whole time (both directions), in seconds. */
export const SPEEDTEST_DEFAULT_SECONDS = 5;
export const SPEEDTEST_MIN_SECONDS = 2;
export const SPEEDTEST_MAX_SECONDS = 30;
const PEER_NAME_MAX_CHARS = 128;

export interface ControlInit {
  /** This node's name. */
  node: string;
  session: ServerSession;
  peers: PeerManager;
  apps: () => readonly App[];
  /** POST /upgrade: present in a program that can upgrade itself (inp2pc run as a daemon). */
  upgrade?: SelfUpgrade;
}

/** What POST /api/v1/upgrade answers: the versions installed (the restart follows), or null when already the newest. */
export interface UpgradeAnswer {
  installed: { from: string; to: string; path: string; previous: string } | null;
}

/** What ping and speedtest say about the link they used. */
export interface LinkFacts {
  peer: string;
  /** The path kind: lan, udp-direct, udp-punch, tcp-direct, tcp-punch, relay-... */
  path: string;
  via: string | null;
  remote: string;
  /** Whether the link was made for this request, and how long that took. */
  made: boolean;
  madeMs: number | null;
}

export interface PingAnswer extends LinkFacts {
  /** null: no pong within PING_TIMEOUT_MS. */
  rttMs: number | null;
}

export interface AppCheck {
  app: string;
  peer: string;
  target: string;
  /** true: the serving node connected to the target; false: it refused or could not reach it. */
  ok: boolean;
  code: string | null;
  error: string | null;
  ms: number;
}

/** A refusal with its HTTP status: the CLI prints `error` and exits non-zero. */
class ControlError extends Error {
  constructor(
    readonly status: 400 | 403 | 404 | 503 | 504,
    message: string,
  ) {
    super(message);
  }
  override readonly name = "ControlError";
}

export function controlRoutes(init: ControlInit): Hono {
  const api = new Hono();
  api.onError((err, c) => {
    if (err instanceof ControlError) return c.json({ error: err.message }, err.status);
    if (err instanceof UpgradeError) return c.json({ error: err.message, code: err.code }, err.code === "BUSY" ? 409 : 502);
    return c.json({ error: err.message }, 500);
  });

  api.post("/ping", async (c) => {
    const body = await readBody(c);
    const { link, facts } = await linkTo(init, peerName(body));
    const rttMs = await link.measureRtt(PING_TIMEOUT_MS);
    return c.json({ ...facts, rttMs: rttMs === null ? null : Math.round(rttMs * 1000) / 1000 } satisfies PingAnswer);
  });

  api.post("/speedtest", async (c) => {
    const body = await readBody(c);
    const peer = peerName(body);
    const seconds = body.seconds ?? SPEEDTEST_DEFAULT_SECONDS;
    if (typeof seconds !== "number" || !Number.isInteger(seconds) || seconds < SPEEDTEST_MIN_SECONDS || seconds > SPEEDTEST_MAX_SECONDS)
      throw new ControlError(400, `"seconds" must be a whole number from ${SPEEDTEST_MIN_SECONDS} to ${SPEEDTEST_MAX_SECONDS}, not ${JSON.stringify(seconds)}`);
    const { link, facts } = await linkTo(init, peer);
    const directionMs = (seconds * 1000) / 2;
    const signal = c.req.raw.signal;
    // One JSON object a line: progress as it comes, then the result or the error.
    const encoder = new TextEncoder();
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        const send = (value: unknown) => {
          try {
            controller.enqueue(encoder.encode(JSON.stringify(value) + "\n"));
          } catch {
            // the requester went away: the abort signal stops the test
          }
        };
        send({ event: "start", ...facts, seconds });
        try {
          const result = await runSpeedtest(link, directionMs, (progress) => send({ event: "progress", ...progress, ms: Math.round(progress.ms) }), signal);
          send({ event: "result", ...facts, seconds, ...result });
        } catch (err) {
          send({ event: "error", error: err instanceof SpeedtestError ? err.message : `speedtest failed: ${(err as Error).message}` });
        }
        try {
          controller.close();
        } catch {
          // already closed by a requester that went away
        }
      },
    });
    return new Response(stream, { headers: { "content-type": "application/x-ndjson" } });
  });

  api.post("/apps/check", async (c) => {
    const body = await readBody(c);
    if (typeof body.app !== "string") throw new ControlError(400, '"app" must be the name of an app in [[client.apps]]');
    const app = init.apps().find((a) => a.config.name === body.app);
    if (!app) throw new ControlError(404, `no app named ${JSON.stringify(body.app)} in [[client.apps]]`);
    if (app.config.protocol !== "tcp") throw new ControlError(400, `app ${app.config.name} is a UDP app: a UDP target answers only to data, so it cannot be checked without sending some`);
    const { link } = await linkTo(init, app.config.peer);
    return c.json(await checkTarget(link, app));
  });

  const upgrade = init.upgrade;
  if (upgrade) {
    // Installs only releases signed by the release key: the worst a local caller can ask is another signed version.
    api.post("/upgrade", async (c) => {
      const body = await readBody(c);
      if (body.version !== undefined && (typeof body.version !== "string" || !isVersion(body.version)))
        throw new ControlError(400, `"version" must be a version such as "1.2.3", not ${JSON.stringify(body.version)}`);
      if (body.url !== undefined && (typeof body.url !== "string" || !/^https?:\/\/[^\s?#]+$/.test(body.url)))
        throw new ControlError(400, `"url" must be an http:// or https:// URL, not ${JSON.stringify(body.url)}`);
      const installed = await upgrade.upgrade({ version: body.version as string | undefined, releaseUrl: body.url as string | undefined });
      return c.json({ installed: installed ?? null } satisfies UpgradeAnswer);
    });
  }

  return api;
}

/** Opens the app's stream and reports the serving node's answer; sends no data to the target. */
async function checkTarget(link: Link, app: App): Promise<AppCheck> {
  const { name, peer, target } = app.config;
  const started = performance.now();
  const stream = link.mux.openStream();
  stream.on("error", () => {});
  const timer = setTimeout(() => stream.destroy(), APP_CHECK_TIMEOUT_MS);
  try {
    stream.end(encodeStreamHeader({ target }));
    const answered = await readAnswer(stream);
    const ms = Math.round((performance.now() - started) * 1000) / 1000;
    if (!answered) throw new ControlError(504, `${peer} did not answer the stream for ${target} within ${APP_CHECK_TIMEOUT_MS} ms`);
    const { answer } = answered;
    return answer.ok ? { app: name, peer, target, ok: true, code: null, error: null, ms } : { app: name, peer, target, ok: false, code: answer.code, error: answer.error, ms };
  } finally {
    clearTimeout(timer);
    stream.destroy();
  }
}

/** The link to `peer`, made now (like an app would) when there is none. */
async function linkTo(init: ControlInit, peer: string): Promise<{ link: Link; facts: LinkFacts }> {
  const { session, peers } = init;
  if (peer === init.node) throw new ControlError(400, `${peer} is this node: name another node of this user`);
  let link = peers.link(peer);
  let madeMs: number | null = null;
  if (!link) {
    if (session.state !== "online") throw new ControlError(503, `this node is not logged in to the server (${session.state}): no link to ${peer} can be made`);
    // Asked by name: this node hears of the peer from now on (presence by interest).
    if ((await session.watch([peer])).length === 0)
      throw new ControlError(404, `peer ${peer} is not online: no node of this user by that name is logged in to the server (inp2ps nodes lists them)`);
    const started = performance.now();
    try {
      link = await withTimeout(peers.connect(peer), CONTROL_LINK_WAIT_MS, `no link to ${peer} within ${CONTROL_LINK_WAIT_MS / 1000} s`);
    } catch (err) {
      if (err instanceof PeerError && err.code === "ACL_DENIED") throw new ControlError(403, err.message);
      if (err instanceof PeerError && err.code === "PEER_OFFLINE") throw new ControlError(404, err.message);
      throw new ControlError(504, `cannot link to ${peer}: ${(err as Error).message}`);
    }
    madeMs = Math.round(performance.now() - started);
  }
  return { link, facts: { peer, path: link.kind, via: link.via, remote: link.init.path.remote, made: madeMs !== null, madeMs } };
}

async function readBody(c: Context): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/i.test(c.req.header("content-type") ?? ""))
    throw new ControlError(400, "send a JSON body with Content-Type: application/json (other bodies are refused, so that no web page can post here)");
  if (Number(c.req.header("content-length") ?? 0) > MAX_CONTROL_BODY_BYTES) throw new ControlError(400, `the request body is over ${MAX_CONTROL_BODY_BYTES} bytes`);
  const text = await c.req.text();
  if (Buffer.byteLength(text) > MAX_CONTROL_BODY_BYTES) throw new ControlError(400, `the request body is over ${MAX_CONTROL_BODY_BYTES} bytes`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ControlError(400, "the request body is not JSON");
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new ControlError(400, "the request body must be a JSON object");
  return body as Record<string, unknown>;
}

function peerName(body: Record<string, unknown>): string {
  const { peer } = body;
  if (typeof peer !== "string" || peer.length === 0 || peer.length > PEER_NAME_MAX_CHARS) throw new ControlError(400, `"peer" must be a node name of 1 to ${PEER_NAME_MAX_CHARS} characters`);
  return peer;
}

/**
 * Calls an action of the running inp2pc's status API on 127.0.0.1:`port` (the CLI's side of the
 * routes above); an answer other than 2xx throws its error.
 */
export async function callAction(port: number, path: string, body: unknown, timeoutMs?: number): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(`http://127.0.0.1:${port}/api/v1${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      ...(timeoutMs ? { signal: AbortSignal.timeout(timeoutMs) } : {}),
    });
  } catch (err) {
    if ((err as Error).name === "TimeoutError") throw new Error(`the running inp2pc did not answer ${path} within ${timeoutMs} ms`);
    throw new Error(`no inp2pc is running with its status API on 127.0.0.1:${port} (status_port in [client]): start inp2pc first`);
  }
  if (!response.ok) {
    const error = ((await response.json().catch(() => ({}))) as { error?: string }).error;
    throw new Error(error ?? `the status API answered ${response.status} to ${path}`);
  }
  return response;
}
