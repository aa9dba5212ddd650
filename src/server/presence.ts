import { MAX_WATCHED_PER_NODE, ProtocolError, type PeerInfo, type PresenceDelta } from "../protocol/index.ts";
import { PRESENCE_BATCH_MS } from "./constants.ts";
import { peerInfo, type NodeSession, type Registry } from "./registry.ts";

type Offline = PresenceDelta["offline"][number];

/** One user's interests: who watches whom (by node name), and the changes each watcher has yet to hear. */
interface UserInterest {
  watchersOf: Map<string, Set<string>>;
  watchedBy: Map<string, Set<string>>;
  unsent: Map<string, Map<string, PeerInfo | Offline>>;
}

/**
 * Presence by interest. A node hears of the peers it watches (its apps' peers, its SDWAN members, the
 * peers it links with or asks about), not of its whole user: a login or logout costs as many messages
 * as it has watchers, whatever the fleet's size. Changes gather for `batchMs` and go out as one delta
 * per watcher, each peer once in its latest state. Interest is kept by node name and ends when the
 * watcher goes offline (a node asks again after each login).
 */
export class Presence {
  private readonly users = new Map<string, UserInterest>();
  private timer?: ReturnType<typeof setTimeout>;

  constructor(
    private readonly registry: Registry,
    private readonly batchMs = PRESENCE_BATCH_MS,
  ) {
    registry.onChange((session, event, reason) => {
      if (event === "online") return this.changed(session, peerInfo(session));
      this.changed(session, { name: session.name, ...(reason ? { reason } : {}) });
      this.forget(session.user, session.name);
    });
  }

  /** `watcher` hears of `names` from now on; returns those of them online now. */
  watch(watcher: NodeSession, names: readonly string[]): PeerInfo[] {
    const interest = this.interestOf(watcher.user, true)!;
    const mine = interest.watchedBy.get(watcher.name) ?? new Set<string>();
    const added = names.filter((name) => name !== watcher.name && !mine.has(name));
    if (mine.size + new Set(added).size > MAX_WATCHED_PER_NODE)
      throw new ProtocolError("BAD_MESSAGE", `watch: this node watches ${mine.size} peers already; at most ${MAX_WATCHED_PER_NODE}`);
    interest.watchedBy.set(watcher.name, mine);
    for (const name of added) {
      mine.add(name);
      let watchers = interest.watchersOf.get(name);
      if (!watchers) interest.watchersOf.set(name, (watchers = new Set()));
      watchers.add(watcher.name);
    }
    const online: PeerInfo[] = [];
    for (const name of new Set(names)) {
      const peer = name === watcher.name ? undefined : this.registry.get(watcher.user, name);
      if (peer) online.push(peerInfo(peer));
    }
    return online;
  }

  /** The nodes watching `user`'s node `name` (for tests and the console). */
  watchersOf(user: string, name: string): string[] {
    return [...(this.users.get(user)?.watchersOf.get(name) ?? [])];
  }

  /** Sends what is gathered now (and stops the batch timer): the server is stopping. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flush();
  }

  private interestOf(user: string, create: boolean): UserInterest | undefined {
    let interest = this.users.get(user);
    if (!interest && create) this.users.set(user, (interest = { watchersOf: new Map(), watchedBy: new Map(), unsent: new Map() }));
    return interest;
  }

  private changed(session: NodeSession, change: PeerInfo | Offline): void {
    const interest = this.interestOf(session.user, false);
    const watchers = interest?.watchersOf.get(session.name);
    if (!interest || !watchers?.size) return;
    for (const watcher of watchers) {
      let unsent = interest.unsent.get(watcher);
      if (!unsent) interest.unsent.set(watcher, (unsent = new Map()));
      unsent.set(session.name, change);
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.batchMs);
  }

  /** A node went offline: it watches nothing any more (what it had yet to hear is dropped too). */
  private forget(user: string, watcher: string): void {
    const interest = this.interestOf(user, false);
    if (!interest) return;
    for (const name of interest.watchedBy.get(watcher) ?? []) {
      const watchers = interest.watchersOf.get(name);
      watchers?.delete(watcher);
      if (watchers?.size === 0) interest.watchersOf.delete(name);
    }
    interest.watchedBy.delete(watcher);
    interest.unsent.delete(watcher);
    if (interest.watchedBy.size === 0 && interest.unsent.size === 0) this.users.delete(user);
  }

  private flush(): void {
    for (const [user, interest] of this.users) {
      for (const [watcher, changes] of interest.unsent) {
        const delta: PresenceDelta = { type: "presence", online: [], offline: [] };
        for (const change of changes.values()) {
          if ("version" in change) delta.online.push(change);
          else delta.offline.push(change);
        }
        this.registry.get(user, watcher)?.send(JSON.stringify(delta));
      }
      interest.unsent.clear();
    }
  }
}
