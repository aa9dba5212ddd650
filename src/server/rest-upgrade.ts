import { Hono } from "hono";
import { DEFAULT_USER_NAME } from "../config/index.ts";
import { isVersion, VERSION } from "../protocol/index.ts";
import { UpgradeError, type SelfUpgrade } from "../upgrade/index.ts";
import type { AuditLog } from "./audit.ts";
import type { Fleet } from "./fleet.ts";
import type { Registry } from "./registry.ts";

export interface UpgradeRoutesInit {
  registry: Registry;
  fleet: Fleet;
  audit: AuditLog;
  upgrade?: SelfUpgrade;
}

/** What `inp2ps nodes upgrade` prints: the nodes asked, each with the version it runs and the one it is asked to take. */
export interface UpgradeAsked {
  asked: { user: string; node: string; from: string; to: string }[];
}

/**
 * Upgrades (admin-only, as every route but health: see createApp): POST /nodes/:name/upgrade?user=U
 * and POST /nodes/upgrade-all (every online node behind the newest release) ask nodes to upgrade now;
 * GET /upgrade tells this server's version and pid, the newest known and its own last upgrade; POST
 * /upgrade?version=V&url=U upgrades this server (the restart follows the answer).
 */
export function upgradeRoutes(init: UpgradeRoutesInit): Hono<any> {
  const app = new Hono<any>();
  app.onError((err, c) => {
    if (err instanceof UpgradeError) return c.json({ error: err.message, code: err.code }, err.code === "BUSY" ? 409 : 502);
    return c.json({ error: `internal error: ${err.message}` }, 500);
  });
  const asked = (answer: UpgradeAsked) => {
    for (const a of answer.asked) init.audit.record("upgrade-asked", { user: a.user, node: a.node, from: a.from, to: a.to });
    return answer;
  };

  app.post("/nodes/upgrade-all", (c) => {
    const behind = init.registry.all().filter((session) => init.fleet.behind(session.version));
    return c.json(asked({ asked: init.fleet.askUpgrade(behind) }));
  });
  app.post("/nodes/:name/upgrade", (c) => {
    const user = c.req.query("user") ?? DEFAULT_USER_NAME;
    const node = c.req.param("name");
    const session = init.registry.get(user, node);
    if (!session) return c.json({ error: `node ${node} of user ${user} is not online: it can be asked to upgrade only while it is (auto_upgrade = true takes the newest release at its next login)` }, 404);
    return c.json(asked({ asked: init.fleet.askUpgrade([session]) }));
  });

  // pid: the process answering (a restart changes it).
  app.get("/upgrade", (c) => c.json({ version: VERSION, pid: process.pid, latest: init.fleet.latest, upgrade: init.upgrade?.last ?? null }));
  app.post("/upgrade", async (c) => {
    const upgrade = init.upgrade;
    if (!upgrade) return c.json({ error: "this inp2ps runs from source, not a release binary: it cannot upgrade itself (update the checkout)" }, 503);
    const version = c.req.query("version");
    const url = c.req.query("url");
    if (version !== undefined && !isVersion(version)) return c.json({ error: `version must be a version such as 1.2.3, not ${JSON.stringify(version)}` }, 400);
    if (url !== undefined && !/^https?:\/\/[^\s?#]+$/.test(url)) return c.json({ error: `url must be an http:// or https:// URL, not ${JSON.stringify(url)}` }, 400);
    const installed = await upgrade.upgrade({ version, releaseUrl: url });
    if (installed) init.fleet.learn(installed.to);
    return c.json({ installed: installed ?? null });
  });
  return app;
}
