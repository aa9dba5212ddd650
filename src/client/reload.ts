// What inp2pc applies on SIGHUP: apps and expose (the log level is config/reload.ts's). Links and the
// server session are left alone: an app is a local listener, and expose is asked per new connection.
import { canonicalJson, type AppConfig } from "../config/index.ts";
import type { App } from "./apps.ts";
import type { ExposePolicy } from "./expose.ts";

export interface AppsDiff {
  added: AppConfig[];
  /** Names of apps no longer in the config. */
  removed: string[];
  /** Apps whose settings changed: they restart. */
  changed: AppConfig[];
}

/** Apps by name: new names are added, missing ones removed, ones whose settings differ changed (the order in the file does not matter). */
export function diffApps(running: readonly AppConfig[], next: readonly AppConfig[]): AppsDiff {
  const before = new Map(running.map((app) => [app.name, app]));
  const after = new Set(next.map((app) => app.name));
  const diff: AppsDiff = { added: [], removed: [], changed: [] };
  for (const app of next) {
    const old = before.get(app.name);
    if (!old) diff.added.push(app);
    else if (canonicalJson(old) !== canonicalJson(app)) diff.changed.push(app);
  }
  for (const app of running) if (!after.has(app.name)) diff.removed.push(app.name);
  return diff;
}

/** "apps +a -b ~c", or undefined when no app changed. */
export function describeAppsDiff(diff: AppsDiff): string | undefined {
  const parts = [...diff.added.map((app) => `+${app.name}`), ...diff.removed.map((name) => `-${name}`), ...diff.changed.map((app) => `~${app.name}`)];
  return parts.length > 0 ? `apps ${parts.join(" ")}` : undefined;
}

/** The running client's parts a reload changes; index.ts hands them over. */
export interface ReloadableClient {
  /** The running apps, in config order; replaced in place. */
  apps: App[];
  /** Peers an app needs a link to; replaced in place. */
  appPeers: Set<string>;
  newApp(config: AppConfig): App;
  /** Whether apps listen yet (they start at the first login). */
  appsStarted(): boolean;
  /** Makes a link to a peer an app needs, when that peer is online. */
  ensureLink(peer: string): void;
  expose: ExposePolicy;
}

/**
 * Applies new apps and expose. A removed app stops listening (a UDP app's flows end with its socket);
 * TCP connections it forwards go on until either end closes them. A changed app stops, then listens
 * anew with its new settings; unchanged apps and their connections are not touched. Expose applies
 * to new connections and UDP flows; those already open go on. Returns what changed, in words.
 */
export async function applyClientReload(client: ReloadableClient, next: { apps: readonly AppConfig[]; expose: readonly string[] }): Promise<string[]> {
  const diff = diffApps(
    client.apps.map((app) => app.config),
    next.apps,
  );
  const restarted = new Set([...diff.removed, ...diff.changed.map((app) => app.name)]);
  // All stop before any starts: a new app may take the port a removed one leaves.
  for (const app of client.apps) if (restarted.has(app.config.name)) app.stop();
  const running = new Map(client.apps.map((app) => [app.config.name, app]));
  const fresh: App[] = [];
  const apps = next.apps.map((config) => {
    const kept = running.get(config.name);
    if (kept && !restarted.has(config.name)) return kept;
    const app = client.newApp(config);
    fresh.push(app);
    return app;
  });
  client.apps.splice(0, client.apps.length, ...apps);
  if (client.appsStarted()) await Promise.all(fresh.map((app) => app.start()));

  const peers = new Set(next.apps.filter((app) => app.enabled).map((app) => app.peer));
  const newPeers = [...peers].filter((peer) => !client.appPeers.has(peer));
  client.appPeers.clear();
  for (const peer of peers) client.appPeers.add(peer);
  if (client.appsStarted()) for (const peer of newPeers) client.ensureLink(peer);

  const changes: string[] = [];
  const appChanges = describeAppsDiff(diff);
  if (appChanges) changes.push(appChanges);
  if (canonicalJson(client.expose.entries) !== canonicalJson(next.expose)) {
    client.expose.set(next.expose);
    changes.push("expose");
  }
  return changes;
}
