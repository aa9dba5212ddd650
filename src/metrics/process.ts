import { Gauge, type Registry } from "prom-client";

/**
 * The process's memory and start time, read at each scrape. prom-client's default metrics are not used:
 * under Bun its event-loop lag figures are NaN or 9.2e9 and its heap figure is the address space.
 */
export function registerProcessMetrics(registry: Registry): void {
  const memory = (help: string, read: (usage: NodeJS.MemoryUsage) => number) => ({
    help,
    registers: [registry],
    collect(this: Gauge) {
      this.set(read(process.memoryUsage()));
    },
  });
  new Gauge({ name: "process_resident_memory_bytes", ...memory("Resident memory size in bytes.", (m) => m.rss) });
  new Gauge({ name: "inp2p_heap_used_bytes", ...memory("JavaScript heap in use, in bytes.", (m) => m.heapUsed) });
  new Gauge({ name: "inp2p_heap_total_bytes", ...memory("JavaScript heap reserved, in bytes.", (m) => m.heapTotal) });
  // Packet and stream Buffers live outside the JavaScript heap until the collector frees their owners.
  new Gauge({ name: "inp2p_external_memory_bytes", ...memory("Memory of Buffers and other native objects owned by JavaScript, in bytes.", (m) => m.external) });
  const startedS = Math.round(Date.now() / 1000 - process.uptime());
  new Gauge({ name: "process_start_time_seconds", help: "Start time of the process since the Unix epoch, in seconds.", registers: [registry] }).set(startedS);
}
