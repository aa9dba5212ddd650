import { Hono } from "hono";
import { formatTable } from "../log/index.ts";
import { METRICS_PATH, type ProgramMetrics } from "../metrics/index.ts";
import type { NatInfo } from "../protocol/index.ts";
import type { OverlayStatus } from "../sdwan/index.ts";
import type { AppStatus } from "./apps.ts";
import type { UpgradeState } from "../upgrade/index.ts";

export interface ClientStatus {
  node: string;
  version: string;
  /** The process answering: an upgrade's restart changes it. */
  pid: number;
  /** The last upgrade this process tried, while it runs: restarting, rolled back or failed (with why). */
  upgrade: UpgradeState | null;
  /** approval: while the state is "pending", the command that approves this node on the server. */
  /** error: why the last connection or login failed, until the next login. */
  server: { address: string; state: string; approval: string | null; user: string | null; rttMs: number | null; clockOffsetMs: number; error?: string | null };
  nat: NatInfo | null;
  peers: Record<
    string,
    {
      online: boolean;
      /** connecting | linked | needs-relay | failed | denied (by the server's ACL); null before anything was tried. */
      state: string | null;
      link: string | null;
      /** The relay's name ("user/node", or "server") on a relayed link. */
      relay: string | null;
      /** Request to first authenticated packet, for the last link made. */
      punchMs: number | null;
      remote: string | null;
      rttMs: number | null;
      bytesIn: number;
      bytesOut: number;
      since: string | null;
      /** Why the last link attempt failed (a denial of the server's ACL among them); null when none did. */
      error: string | null;
      /** Packets refused on this link: forged or corrupted, replayed, malformed. */
      rejected: { auth: number; replay: number; malformed: number };
    }
  >;
  apps: AppStatus[];
  /** The virtual network on this node; null when [client.sdwan] is not enabled. */
  sdwan: OverlayStatus | null;
}

/** Seconds a status API connection may stay silent (Bun's default is 10). */
const STATUS_IDLE_TIMEOUT_S = 30;

/** Host headers the status API answers: loopback by name or address, any port. */
const LOOPBACK_HOST = /^(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$/i;

/**
 * The local status API (127.0.0.1 only): GET /api/v1/status, GET /metrics when given metrics, and the
 * actions of src/client/control.ts (ping, speedtest, app check) when given them. A request for any other Host is refused:
 * a page whose name an attacker re-points at 127.0.0.1 (DNS rebinding) sends its own name.
 */
export function startStatusServer(port: number, status: () => ClientStatus, metrics?: ProgramMetrics, actions?: Hono): { port: number; stop(): void } {
  const app = new Hono();
  app.use(async (c, next) => {
    const host = c.req.header("host") ?? "";
    if (!LOOPBACK_HOST.test(host))
      return c.json({ error: `refused Host ${JSON.stringify(host)}: the status API answers only Host 127.0.0.1, localhost or [::1] (with any port), so that no other site's page can read it` }, 403);
    await next();
  });
  app.get("/api/v1/status", (c) => c.json(status()));
  if (metrics) app.get(METRICS_PATH, () => metrics.response());
  if (actions) app.route("/api/v1", actions);
  app.notFound((c) => c.json({ error: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404));
  // idleTimeout: an action may wait for a link (CONTROL_LINK_WAIT_MS) before it answers, past Bun's default.
  const server = Bun.serve({ hostname: "127.0.0.1", port, fetch: app.fetch, idleTimeout: STATUS_IDLE_TIMEOUT_S });
  return { port: server.port ?? port, stop: () => void server.stop(true) };
}

/** The human view `inp2pc status` prints. */
export function formatStatus(s: ClientStatus): string {
  const lines = [
    `node ${s.node} (inp2pc ${s.version})`,
    `server   ${s.server.address}  ${s.server.state}${s.server.user ? ` as user ${s.server.user}` : ""}${s.server.rttMs !== null ? `  rtt ${s.server.rttMs} ms` : ""}`,
    ...(s.server.approval ? [`         waiting for approval: run "${s.server.approval}" on the server`] : []),
    `NAT      ${s.nat ? `${s.nat.natType}${s.nat.publicAddress ? ` (${s.nat.publicAddress})` : ""}` : "not detected yet"}`,
    ...(s.upgrade ? [`upgrade  ${s.upgrade.to ?? "newest"}: ${s.upgrade.state}${s.upgrade.error ? ` (${s.upgrade.error})` : ""} at ${s.upgrade.at}`] : []),
    "",
  ];
  const peerRows = Object.entries(s.peers).map(([name, p]) => [
    name,
    (p.link ?? p.state ?? (p.online ? "none" : "offline")) + (p.relay ? ` via ${p.relay}` : ""),
    p.rttMs !== null ? `${p.rttMs} ms` : "-",
    formatBytes(p.bytesIn),
    formatBytes(p.bytesOut),
    p.since ?? "-",
  ]);
  lines.push(...formatTable([["PEER", "LINK", "RTT", "IN", "OUT", "SINCE"], ...peerRows]));
  if (peerRows.length === 0) lines.push("(no peers online)");
  const appRows = s.apps.map((a) => [a.name, a.protocol, a.listen, a.peer, a.state, String(a.connections) + (a.error ? `  ${a.error}` : "")]);
  lines.push("", ...formatTable([["APP", "PROTO", "LISTEN", "PEER", "STATE", "CONNS"], ...appRows]));
  if (appRows.length === 0) lines.push("(no apps configured)");
  const problems = s.apps.flatMap((a) => (a.problem ? [a.problem] : []));
  if (problems.length) lines.push("", ...problems);
  if (s.sdwan) {
    const v = s.sdwan;
    lines.push("", `SDWAN    ${v.state}${v.interface ? ` on ${v.interface}` : ""}${v.address ? `, ${v.address} in ${v.subnet}` : ""}, ${v.members} other members; packets out ${v.packetsOut}, in ${v.packetsIn}${v.superPacketsOut || v.superPacketsIn ? ` (super-packets out ${v.superPacketsOut}, in ${v.superPacketsIn})` : ""}` + (v.error ? `\n         ${v.error}` : ""));
  }
  return lines.join("\n");
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
