// What a node's link table costs the server: bytes per report on the wire, and memory per node for
// the latest report it keeps (measured as heap growth over many nodes' reports).
//
//   bun scripts/bench/report-cost.ts
import { heapStats } from "bun:jsc";
import { MAX_REPORTED_APPS, MAX_REPORTED_LINKS, parseClientMessage, type LinksRequest } from "../../src/protocol/index.ts";
import { nodeReport, type NodeReport } from "../../src/server/node-reports.ts";

const NODES = 10_000;
const KINDS = ["lan", "udp-direct", "udp-punch", "tcp-direct", "tcp-punch", "relay-server"] as const;

function request(links: number, apps: number, seed: number): string {
  return JSON.stringify({
    type: "links",
    id: 1_000 + seed,
    links: Array.from({ length: links }, (_, i) => ({ peer: `edge-node-${i}`, kind: KINDS[i % KINDS.length], relay: KINDS[i % KINDS.length] === "relay-server" ? "server" : null, rttMs: 12.3, bytesIn: 123_456_789 + seed, bytesOut: 98_765_432 })),
    apps: Array.from({ length: apps }, (_, i) => ({ name: `app-${i}`, protocol: "tcp", peer: `edge-node-${i}`, state: "listening", connections: 3 })),
  });
}

function measure(label: string, links: number, apps: number): void {
  const wire = Buffer.byteLength(request(links, apps, 0));
  Bun.gc(true);
  const before = heapStats().heapSize;
  const kept: NodeReport[] = [];
  for (let i = 0; i < NODES; i++) kept.push(nodeReport(undefined, parseClientMessage(request(links, apps, i)) as LinksRequest));
  Bun.gc(true);
  const perNode = (heapStats().heapSize - before) / NODES;
  console.log(`${label}: ${links} links, ${apps} apps: ${wire} bytes per report (${((wire * 8) / 5 / 1000).toFixed(2)} kbit/s at one per 5 s); ~${Math.round(perNode)} bytes of server memory per node`);
  if (kept.length !== NODES) throw new Error("unreachable");
}

measure("typical", 4, 2);
measure("largest allowed", MAX_REPORTED_LINKS, MAX_REPORTED_APPS);
