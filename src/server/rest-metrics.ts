import { Hono, type MiddlewareHandler } from "hono";
import type { Server } from "bun";
import { METRICS_PATH, type ServerMetrics } from "../metrics/index.ts";
import { clientAddress } from "../net/index.ts";

type Env = { Bindings: Server<unknown> };

export interface MetricsRouteInit {
  metrics: ServerMetrics;
  /** [server] metrics_allow: client addresses that may scrape without the admin credential. */
  metricsAllow(address: string): boolean;
  trustedProxies(address: string): boolean;
  /** The REST API's admin check: a request that sends a credential must send the admin's. */
  adminOnly: MiddlewareHandler<Env>;
}

/** GET /metrics: for the admin credential (Bearer), or for a client address in metrics_allow. */
export function metricsRoute(init: MetricsRouteInit): Hono<Env> {
  const app = new Hono<Env>();
  app.get(
    METRICS_PATH,
    async (c, next) => {
      if (c.req.header("authorization")) return init.adminOnly(c, next);
      const peer = c.env.requestIP(c.req.raw);
      const client = peer ? clientAddress(peer.address, c.req.header("x-forwarded-for"), init.trustedProxies) : { error: "cannot tell the client address" };
      if ("error" in client) return c.json({ error: client.error }, 400);
      if (init.metricsAllow(client.address)) return next();
      return c.json(
        { error: `metrics need the admin credential ('Authorization: Bearer <admin credential>'), or a client address in [server] metrics_allow of the server's config; ${client.address} is not in it` },
        401,
      );
    },
    () => init.metrics.response(),
  );
  return app;
}
