/** @jsxImportSource hono/jsx */
import type { Server } from "bun";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { safeEqualText } from "../crypto/index.ts";
import { clientAddress } from "../net/index.ts";
import { NODE_NAME_PATTERN } from "../protocol/index.ts";
import type { ServerMetrics } from "../metrics/index.ts";
import type { AdminCredential } from "../server/admin.ts";
import { waitSeconds, type FailedLogins } from "../server/failed-logins.ts";
import { AdmissionError, type SignalHub } from "../server/signal.ts";
import { LiveView } from "./live.ts";
import { CONSOLE_SCRIPT } from "./script.ts";
import { CONSOLE_SESSION_TTL_MS, ConsoleSessions, type ConsoleSession } from "./sessions.ts";
import { consoleState, type ConsoleSources } from "./state.ts";
import { CONSOLE_PATHS, ConsolePage, Live, LoginPage } from "./view.tsx";

export const CONSOLE_COOKIE = "inp2ps_console";
/** The largest form the console accepts (a login is under 100 bytes). */
export const MAX_CONSOLE_FORM_BYTES = 4_096;

export interface ConsoleInit extends ConsoleSources {
  hub: ConsoleSources["hub"] & Pick<SignalHub, "approve" | "reject" | "revoke">;
  admin: AdminCredential;
  failedLogins: FailedLogins;
  metrics?: Pick<ServerMetrics, "authFailure">;
  trustedProxies(address: string): boolean;
  version: string;
}

type Env = { Bindings: Server<unknown> };

const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
  "x-frame-options": "DENY",
  // Not no-referrer: under it the browser sends "Origin: null" with the page's own forms, which sameOrigin refuses.
  "referrer-policy": "same-origin",
  "cache-control": "no-store",
};

/** Where a request comes from (the client behind a trusted proxy); undefined when it cannot be told. */
function requestAddress(c: Context<Env>, trustedProxies: (address: string) => boolean): string | undefined {
  const peer = c.env?.requestIP?.(c.req.raw);
  if (!peer) return undefined;
  const client = clientAddress(peer.address, c.req.header("x-forwarded-for"), trustedProxies);
  return "error" in client ? undefined : client.address;
}

/** A POST from a page of this server: its Origin names the host it was sent to. A cross-site one is refused. */
function sameOrigin(c: Context<Env>): boolean {
  const origin = c.req.header("origin");
  if (!origin) return false;
  try {
    return new URL(origin).host === c.req.header("host");
  } catch {
    return false;
  }
}

/**
 * The web console: GET / (the page, or the login form), POST /console/login and /console/logout,
 * GET /console/events (the live view, server-sent events), POST /console/action/approve|reject|revoke.
 */
export function consoleRoutes(init: ConsoleInit): Hono<Env> {
  const app = new Hono<Env>();
  const sessions = new ConsoleSessions();
  const live = new LiveView(() => String(<Live state={consoleState(init)} />));
  const sessionOf = (c: Context<Env>) => sessions.get(getCookie(c, CONSOLE_COOKIE));
  const page = (c: Context<Env>, body: unknown, status: 200 | 401 | 403 | 413 | 429 = 200) => c.html(`<!DOCTYPE html>${String(body)}`, status, SECURITY_HEADERS);
  const limit = bodyLimit({ maxSize: MAX_CONSOLE_FORM_BYTES, onError: (c) => c.json({ error: `a console form may have at most ${MAX_CONSOLE_FORM_BYTES} bytes` }, 413) });
  /** The session of a POST that came from its own page, with its CSRF token; a Response refusing it otherwise. */
  const authorized = async (c: Context<Env>): Promise<ConsoleSession | Response> => {
    if (!sameOrigin(c)) return c.json({ error: "refused: the request's Origin is not this server's (cross-site requests are not accepted)" }, 403);
    const session = sessionOf(c);
    if (!session) return c.json({ error: "not logged in (or the session expired): reload the page and log in" }, 401);
    let token = c.req.header("x-csrf-token");
    if (token === undefined && c.req.header("content-type")?.startsWith("application/x-www-form-urlencoded")) {
      const field = (await c.req.parseBody()).csrf;
      if (typeof field === "string") token = field;
    }
    if (!sessions.checkCsrf(session, token)) return c.json({ error: "refused: missing or wrong CSRF token (reload the page)" }, 403);
    return session;
  };

  app.get("/", (c) => {
    const session = sessionOf(c);
    if (!session) return page(c, <LoginPage />);
    return page(c, <ConsolePage csrf={session.csrf} version={init.version} live={live.current()} />);
  });

  app.get(CONSOLE_PATHS.script, (c) => c.body(CONSOLE_SCRIPT, 200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-cache" }));

  app.post(CONSOLE_PATHS.login, limit, async (c) => {
    if (!sameOrigin(c)) return page(c, <LoginPage error="refused: this login did not come from this server's page" />, 403);
    const address = requestAddress(c, init.trustedProxies);
    if (!address) return page(c, <LoginPage error="cannot tell your address" />, 403);
    const slowed = init.failedLogins.addressWait(address);
    if (slowed) {
      c.header("retry-after", String(waitSeconds(slowed)));
      return page(c, <LoginPage error={`${slowed.reason}; retry in ${waitSeconds(slowed)} s`} />, 429);
    }
    const credential = (await c.req.parseBody()).credential;
    if (typeof credential !== "string" || !safeEqualText(credential.trim(), init.admin.secret)) {
      init.failedLogins.failedAdmin(address);
      init.metrics?.authFailure("admin_credential");
      return page(c, <LoginPage error="wrong admin credential" />, 401);
    }
    const session = sessions.create();
    setCookie(c, CONSOLE_COOKIE, session.id, {
      httpOnly: true,
      sameSite: "Strict",
      secure: new URL(c.req.url).protocol === "https:",
      path: "/",
      maxAge: CONSOLE_SESSION_TTL_MS / 1000,
    });
    return c.redirect("/", 303);
  });

  app.post(CONSOLE_PATHS.logout, limit, async (c) => {
    const session = await authorized(c);
    if (session instanceof Response) return session;
    sessions.end(session.id);
    deleteCookie(c, CONSOLE_COOKIE, { path: "/" });
    return c.redirect("/", 303);
  });

  app.get(CONSOLE_PATHS.events, (c) => {
    const session = sessionOf(c);
    if (!session) return c.json({ error: "not logged in" }, 401);
    const stream = live.stream(() => sessions.get(session.id) !== undefined);
    if (!stream) return c.json({ error: "too many consoles watching this server at once" }, 503);
    return new Response(stream, { headers: { "content-type": "text/event-stream", "cache-control": "no-store", "x-accel-buffering": "no" } });
  });

  app.post(`${CONSOLE_PATHS.action}/:action`, limit, async (c) => {
    const session = await authorized(c);
    if (session instanceof Response) return session;
    const action = c.req.param("action");
    const user = c.req.query("user") ?? "";
    const node = c.req.query("node") ?? "";
    if (!NODE_NAME_PATTERN.test(user) || !NODE_NAME_PATTERN.test(node)) return c.json({ error: "user and node must be names of 1-63 letters, digits, '.', '_' or '-'" }, 400);
    try {
      let result: unknown;
      if (action === "approve") result = init.hub.approve(user, node);
      else if (action === "reject") result = init.hub.reject(user, node);
      else if (action === "revoke") result = init.hub.revoke(user, node);
      else return c.json({ error: `unknown action "${action.slice(0, 32)}" (approve, reject or revoke)` }, 404);
      live.refresh();
      return c.json({ ok: true, result: result ?? null });
    } catch (err) {
      if (err instanceof AdmissionError) return c.json({ error: err.message }, 404);
      throw err;
    }
  });

  return app;
}
