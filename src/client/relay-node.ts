import { relayTicketKey } from "../crypto/index.ts";
import type { Logger } from "../log/index.ts";
import { privateRelayRefusal, RELAY_REPORT_INTERVAL_MS, startRelay, type RunningRelay } from "../relay/index.ts";
import type { ServerSession } from "./session.ts";

export interface RelayNodeInit {
  session: ServerSession;
  node: string;
  token: string;
  host: string;
  port: number;
  bwMbps: number;
  /** A super relay serves every user's nodes; a private one only its own user's. */
  super: boolean;
  logger: Logger;
  /** Called for each connection the relay's limits refuse (RelayInit.onLimited). */
  onLimited?(): void;
}

/**
 * This node as a relay (`--relay` or `--super`): a relay listener, its ticket key derived from the
 * user token, and a report of its capacity and load to the server after each login and every few seconds.
 */
export class RelayNode {
  private relay?: RunningRelay;
  private starting?: Promise<void>;
  private timer?: ReturnType<typeof setInterval>;
  private stopped = false;

  constructor(private readonly init: RelayNodeInit) {}

  /** Call after each login: the first starts the listener (the ticket names need the user). */
  async onLoggedIn(user: string): Promise<void> {
    this.starting ??= this.start(user);
    await this.starting;
    void this.report();
  }

  /** Sessions and bytes of this node's relay, once it runs. */
  counts(): { sessions: number; bytesRelayed: number } | undefined {
    return this.relay?.counts();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    void this.relay?.stop();
  }

  private async start(user: string): Promise<void> {
    const { init } = this;
    try {
      this.relay = await startRelay({
        host: init.host,
        port: init.port,
        name: `${user}/${init.node}`,
        key: relayTicketKey(init.token, init.node),
        serverNow: () => init.session.serverNow(),
        bwMbps: init.bwMbps,
        refuse: init.super ? undefined : privateRelayRefusal(user),
        logger: init.logger.child("relay"),
        onLimited: init.onLimited,
      });
    } catch (err) {
      init.logger.error(`cannot relay: TCP port ${init.port} is not available (${(err as Error).message}); set relay_port`);
      return;
    }
    if (this.stopped) return void this.relay.stop();
    const whom = init.super ? `user ${user}'s nodes, and every user's once the server's admin approves this super relay` : `user ${user}'s nodes (private relay)`;
    init.logger.info(`relaying for ${whom}`, { port: this.relay.port, bwMbps: init.bwMbps });
    this.timer = setInterval(() => void this.report(), RELAY_REPORT_INTERVAL_MS);
  }

  private async report(): Promise<void> {
    if (!this.relay || this.stopped || this.init.session.state !== "online") return;
    const { sessions, bwMbps, loadMbps } = this.relay.load();
    try {
      await this.init.session.request("report", { relay: { port: this.relay.port, super: this.init.super, bwMbps, loadMbps, sessions } });
    } catch (err) {
      this.init.logger.debug("could not report relay load", { error: (err as Error).message });
    }
  }
}
