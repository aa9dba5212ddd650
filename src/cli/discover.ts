// `inp2pc discover`: the inp2p servers and nodes found on the LAN by Bonjour.

import { writeSync } from "node:fs";
import type { CAC } from "cac";
import { DEFAULT_DISCOVER_TIMEOUT_MS, discover, type Discovered } from "../discovery/index.ts";
import { createLogger, formatTable } from "../log/index.ts";
import { exitWithError } from "./common.ts";
import { boundedNumber } from "./diag.ts";

const DISCOVER_MAX_TIMEOUT_S = 600;
const DISCOVER_MIN_TIMEOUT_S = 0.1;

function discoveredTable(found: readonly Discovered[]): string[] {
  const rows = [["KIND", "NAME", "HOST", "PORT", "TLS SHA-256", "VERSION"]];
  for (const entry of found) {
    if (entry.kind === "server") rows.push(["server", entry.name, entry.host, String(entry.txt.wsPort), entry.txt.tlsSha256 ?? "- (no TLS)", entry.txt.version]);
    else rows.push(["node", entry.txt.node, entry.host, String(entry.txt.udpPort), "-", entry.txt.version]);
  }
  return formatTable(rows);
}

export function addDiscoverCommand(cli: CAC, program: string): void {
  cli
    .command("discover", "list the inp2p servers and nodes that answer on this LAN (Bonjour/mDNS; never across routers), then exit")
    .option("--json", "print JSON")
    .option("--timeout <seconds>", `how long to listen (default: ${DEFAULT_DISCOVER_TIMEOUT_MS / 1000})`)
    .action(async (parsed) => {
      try {
        const timeoutS = boundedNumber(parsed.timeout, "--timeout", DEFAULT_DISCOVER_TIMEOUT_MS / 1000, DISCOVER_MIN_TIMEOUT_S, DISCOVER_MAX_TIMEOUT_S, false);
        const logger = createLogger({ level: parsed.logLevel ?? "warn", component: "bonjour" });
        const found = await discover({ logger, timeoutMs: timeoutS * 1000 });
        if (parsed.json) writeSync(1, JSON.stringify(found.map(({ kind, name, host, port, txt }) => ({ kind, name, host, port, ...txt })), null, 2) + "\n");
        else writeSync(1, (found.length ? discoveredTable(found).join("\n") : `(no inp2p server or node answered on this LAN within ${timeoutS} s)`) + "\n");
        process.exit(0);
      } catch (err) {
        exitWithError(program, err);
      }
    });
}
