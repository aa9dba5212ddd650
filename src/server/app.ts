import { Hono, type MiddlewareHandler } from "hono";
import { upgradeWebSocket } from "hono/bun";
import type { Server } from "bun";
import { DEFAULT_USER_NAME } from "../config/index.ts";
import { consoleRoutes } from "../console/index.ts";
import { safeEqualText } from "../crypto/index.ts";
import { clientAddress } from "../net/index.ts";
import { adminCredentialSource, type AdminCredential } from "./admin.ts";
import type { AuditLog } from "./audit.ts";
import type { AddressGuard } from "./guard.ts";
import { waitSeconds, type FailedLogins } from "./failed-logins.ts";
import { listNodes } from "./node-list.ts";
import type { NodeStore } from "./nodes.ts";
import { pairingRoutes } from "./rest-pairing.ts";
import type { Registry } from "./registry.ts";
import { metricsRoute } from "./rest-metrics.ts";
import type { ServerMetrics } from "../metrics/index.ts";
import type { TrustedRelays } from "./relay-trust.ts";
import { createRelaysApi } from "./rest-relays.ts";
import { upgradeRoutes } from "./rest-upgrade.ts";
import type { Fleet } from "./fleet.ts";
import type { SelfUpgrade } from "../upgrade/index.ts";
import type { Connection, SignalHub } from "./signal.ts";

export interface AppInit {
  hub: SignalHub;
  registry: Registry;
  nodes: NodeStore;
  guard: AddressGuard;
  failedLogins: FailedLogins;
  /** Whether a direct peer is a trusted reverse proxy (trusted_proxies), whose X-Forwarded-For names the client. */
  trustedProxies(address: string): boolean;
  audit: AuditLog;
  trustedRelays: TrustedRelays;
  version: string;
  fleet: Fleet;
  /** This inp2ps upgrading itself (POST /api/v1/upgrade); absent when it cannot (run from source). */
  upgrade?: SelfUpgrade;
  admin: AdminCredential;
  /** Every user's token, to tell a user who sent one that it grants nothing here. */
  userTokens: readonly string[];
  metrics: ServerMetrics;
  /** [server] metrics_allow: addresses that may read /metrics without the admin credential. */
  metricsAllow(address: string): boolean;
}

type Env = { Bindings: Server<unknown> };

export const WS_PATH = "/ws";
export const HEALTH_PATH = "/api/v1/health";

/** REST API and the client WebSocket, on one port. */
export function createApp(init: AppInit): Hono<Env> {
  const app = new Hono<Env>();
  const adminOnly: MiddlewareHandler<Env> = async (c, next) => {
    const given = c.req.header("authorization")?.match(/^Bearer (.+)$/i)?.[1];
    if (!given) return c.json({ error: "admin credential required: send 'Authorization: Bearer <admin credential>'" }, 401);
    if (!safeEqualText(given, init.admin.secret)) {
      init.metrics.authFailure("admin_credential");
      // Only a holder of a user token learns where the credential is kept; a stranger learns nothing.
      if (init.userTokens.some((token) => safeEqualText(given, token)))
        return c.json({ error: `that is a user token, which grants nothing on this API but health; send the admin credential (in ${adminCredentialSource(init.admin)})` }, 403);
      return c.json({ error: "admin credential is not valid" }, 403);
    }
    await next();
  };

  app.get(HEALTH_PATH, (c) => c.json({ status: "ok", version: init.version, nodes: init.registry.size }));
  // Every other API route, including those mounted below, is the admin's alone.
  app.use("/api/*", adminOnly);

  // `nodes`: the nodes online (as ever); `offline`: known nodes not online, with last seen; `pending`: waiting for approval.
  app.get("/api/v1/nodes", (c) => {
    const { online, offline, pending } = listNodes(init.registry, init.nodes, init.hub.pendingRequests(), init.fleet);
    return c.json({ nodes: online, offline, pending, latest: init.fleet.latest });
  });

  // Releases a node name from its pinned identity key, for a node that was reinstalled.
  app.delete("/api/v1/nodes/:name/key", (c) => {
    const user = c.req.query("user") ?? DEFAULT_USER_NAME;
    const name = c.req.param("name");
    if (!init.nodes.forget(user, name)) return c.json({ error: `no key is pinned for node "${name}" of user "${user}"` }, 404);
    init.audit.record("key-forgotten", { user, node: name });
    return c.json({ forgotten: { user, name } });
  });

  app.get("/api/v1/audit", (c) => c.json({ entries: init.audit.list() }));
  app.route("/api/v1", upgradeRoutes(init));
  app.route("/api/v1", pairingRoutes(init));
  app.route("/api/v1/relays", createRelaysApi({ registry: init.registry, trustedRelays: init.trustedRelays, audit: init.audit }));
  app.route("/", metricsRoute({ ...init, adminOnly }));

  app.get(
    WS_PATH,
    async (c, next) => {
      const peer = c.env.requestIP(c.req.raw);
      if (!peer) return c.json({ error: "cannot tell the client address" }, 400);
      const client = clientAddress(peer.address, c.req.header("x-forwarded-for"), init.trustedProxies);
      if ("error" in client) return c.json({ error: client.error }, 400);
      const remote = { address: client.address, port: client.forwarded ? undefined : peer.port };
      const slowed = init.failedLogins.addressWait(remote.address);
      if (slowed) {
        init.metrics.limited("logins");
        c.header("Retry-After", String(waitSeconds(slowed)));
        return c.json({ error: `${slowed.reason}; retry in ${waitSeconds(slowed)} s` }, 429);
      }
      const admitted = init.guard.admit(remote.address);
      if (!admitted.ok) {
        init.metrics.limited("preauth");
        c.header("Retry-After", String(admitted.retryAfterS));
        return c.json({ error: admitted.reason }, admitted.status);
      }
      c.set("remote" as never, remote as never);
      await next();
      // A failed upgrade (not a WebSocket request) never reaches onClose: give the slot back here.
      if (c.res.status !== 101 && c.res.status !== 200) init.guard.release(remote.address);
    },
    upgradeWebSocket((c) => {
      const remote = c.get("remote" as never) as { address: string; port?: number };
      let connection: Connection | undefined;
      return {
        onOpen: (_event, ws) => {
          connection = init.hub.open({ send: (text) => ws.send(text), close: (code, reason) => ws.close(code, reason) }, remote.address, remote.port);
        },
        onMessage: (event, _ws) => {
          if (connection) init.hub.message(connection, event.data as string | ArrayBuffer);
        },
        onClose: () => {
          if (connection) init.hub.close(connection);
        },
      };
    }),
  );

  app.route("/", consoleRoutes(init));

  app.notFound((c) => c.json({ error: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => c.json({ error: `internal error: ${err.message}` }, 500));
  return app;
}
