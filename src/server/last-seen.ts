import { allocationText } from "./node-list.ts";
import type { NodeStore, Sighting } from "./nodes.ts";
import type { NodeSession, Registry } from "./registry.ts";

/** How often the last-seen time of the nodes online is saved: one write for all of them, not one per heartbeat. */
export const LAST_SEEN_SAVE_INTERVAL_MS = 60_000;

/**
 * Keeps each known node's last-seen time in the node store: when it goes offline, every
 * LAST_SEEN_SAVE_INTERVAL_MS while it is online (so a crashed server still knows roughly when), and on stop.
 */
const sighting = (session: NodeSession): Sighting => ({
  address: session.address,
  version: session.version,
  nat: session.nat ? { natType: session.nat.natType, allocation: allocationText(session.nat.allocation) } : null,
});

export function trackLastSeen(registry: Registry, nodes: NodeStore): { stop(): void } {
  const markOnline = () => {
    for (const session of registry.all()) nodes.seen(session.user, session.name, sighting(session));
  };
  registry.onChange((session, event) => {
    if (event === "offline") nodes.seen(session.user, session.name, sighting(session));
  });
  const timer = setInterval(markOnline, LAST_SEEN_SAVE_INTERVAL_MS);
  timer.unref?.();
  return {
    stop() {
      clearInterval(timer);
      markOnline();
    },
  };
}
