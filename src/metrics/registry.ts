import { Counter, Gauge, Registry } from "prom-client";
import { registerProcessMetrics } from "./process.ts";

/** What a relay (the server's, or a node's) has carried: read at each scrape. */
export interface RelayCounts {
  sessions: number;
  bytesRelayed: number;
}

/**
 * One program's metrics: a registry of its own (tests run several servers and clients in one process,
 * so the library's global registry is never used), with the process metrics in it.
 */
export class ProgramMetrics {
  readonly registry = new Registry();

  constructor() {
    registerProcessMetrics(this.registry);
  }

  /** The text exposition, as an HTTP response. */
  async response(): Promise<Response> {
    this.scrapeStarted();
    return new Response(await this.registry.metrics(), { headers: { "content-type": this.registry.contentType } });
  }

  /** Called before each scrape's collection: a program reads the state its gauges share here. */
  protected scrapeStarted(): void {}

  /** Relay sessions and bytes, read from `counts` at each scrape (zero while it answers undefined: the relay is starting). */
  protected registerRelay(counts: () => RelayCounts | undefined): void {
    new Gauge({
      name: "inp2p_relay_sessions",
      help: "Sessions this program's relay bridges now.",
      registers: [this.registry],
      collect() {
        this.set(counts()?.sessions ?? 0);
      },
    });
    new Counter({
      name: "inp2p_relay_bytes_total",
      help: "Bytes this program's relay has carried, both directions together.",
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(counts()?.bytesRelayed ?? 0);
      },
    });
  }

  /** A counter with a series for each label value from the start, so that a rate over it never lacks one. */
  protected counterOver<L extends string>(name: string, help: string, label: L, values: readonly string[]): Counter<L> {
    const counter = new Counter<L>({ name, help, labelNames: [label], registers: [this.registry] });
    for (const value of values) counter.inc({ [label]: value } as Record<L, string>, 0);
    return counter;
  }
}
