import { Hono } from "hono";
import { DEFAULT_USER_NAME } from "../config/index.ts";
import type { AuditLog } from "./audit.ts";
import { NodeStoreError, type NodeStore } from "./nodes.ts";
import { AdmissionError, type SignalHub } from "./signal.ts";

export interface PairingRoutesInit {
  hub: SignalHub;
  nodes: NodeStore;
  audit: AuditLog;
}

/** Pairing requests, pending and decided, as `inp2ps pairing list --json` prints them. */
export interface PairingListEntry {
  user: string;
  node: string;
  publicKey: string;
  /** Whether the name has an approved key already, which approving this request replaces. */
  newKey: boolean;
  address: string;
  since: string;
  expiresAt: string;
  /** Whether the node is connected now (approving it brings it online at once). */
  waiting: boolean;
}

/**
 * Admission by the admin (admin-only, as every route but health: see createApp): GET /pairing, POST /pairing/:name/approve|reject,
 * POST /nodes/:name/revoke, PUT /nodes/:name/tags?tags=a,b. `?user=U` names the node's user (default: default).
 */
export function pairingRoutes(init: PairingRoutesInit): Hono<any> {
  const app = new Hono<any>();
  app.onError((err, c) => {
    if (err instanceof AdmissionError || (err instanceof NodeStoreError && err.code === "UNKNOWN_NODE")) return c.json({ error: err.message }, 404);
    if (err instanceof NodeStoreError) return c.json({ error: err.message }, 400);
    return c.json({ error: `internal error: ${err.message}` }, 500);
  });
  const target = (c: { req: { query(k: string): string | undefined; param(k: string): string } }) => ({
    user: c.req.query("user") ?? DEFAULT_USER_NAME,
    node: c.req.param("name"),
  });

  app.get("/pairing", (c) => {
    const requests: PairingListEntry[] = init.hub.pendingRequests().map((r) => ({
      user: r.user,
      node: r.node,
      publicKey: r.publicKey,
      newKey: r.replacesKey !== undefined,
      address: r.address,
      since: new Date(r.since).toISOString(),
      expiresAt: new Date(r.expiresAt).toISOString(),
      waiting: r.waiting !== undefined,
    }));
    return c.json({ requests });
  });
  app.post("/pairing/:name/approve", (c) => {
    const { user, node } = target(c);
    return c.json({ approved: init.hub.approve(user, node) });
  });
  app.post("/pairing/:name/reject", (c) => {
    const { user, node } = target(c);
    init.hub.reject(user, node);
    return c.json({ rejected: { user, node } });
  });
  app.post("/nodes/:name/revoke", (c) => {
    const { user, node } = target(c);
    return c.json({ revoked: init.hub.revoke(user, node) });
  });
  app.put("/nodes/:name/tags", (c) => {
    const { user, node } = target(c);
    const given = c.req.query("tags") ?? "";
    const tags = init.nodes.setTags(user, node, given === "" ? [] : given.split(","));
    init.audit.record("tagged", { user, node, tags });
    init.hub.aclChanged(user);
    return c.json({ tagged: { user, node, tags } });
  });
  return app;
}
