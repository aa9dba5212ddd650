/** @jsxImportSource hono/jsx */
import { raw } from "hono/html";
import type { Child } from "hono/jsx";
import type { NodeListing } from "../server/node-list.ts";
import type { ConsoleState, TopologyLink } from "./state.ts";

/** Paths of the console (the page itself is at /). */
export const CONSOLE_PATHS = { login: "/console/login", logout: "/console/logout", events: "/console/events", script: "/console/app.js", action: "/console/action" } as const;

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#222}
header{display:flex;align-items:center;gap:1em;background:#263238;color:#fff;padding:.6em 1.2em}
header h1{font-size:1.1em;margin:0;flex:1}
main{padding:1em 1.2em;display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:1em}
section{background:#fff;border-radius:6px;padding:.6em 1em;box-shadow:0 1px 2px #0002;overflow:auto}
section.wide{grid-column:1/-1}
h2{font-size:1em;margin:.2em 0 .6em}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.2em .5em;border-bottom:1px solid #eee;white-space:nowrap}
th{color:#555;font-weight:600}
.state{border-radius:3px;padding:0 .4em;color:#fff}
.behind{color:#e65100;font-weight:600}
.online{background:#43a047}.offline{background:#9e9e9e}.pending{background:#fb8c00}.revoked{background:#e53935}
.empty{color:#888}
form{display:inline}
button{cursor:pointer}
.login{max-width:24em;margin:15vh auto;background:#fff;padding:1.5em;border-radius:6px;box-shadow:0 1px 3px #0003}
.login input{width:100%;box-sizing:border-box;margin:.5em 0;padding:.4em}
.error{color:#c62828}
#conn{font-size:.85em;opacity:.8}
svg text{font-size:11px}
td.fields{white-space:normal;word-break:break-word}
g.link text{paint-order:stroke;stroke:#fff;stroke-width:4px}
`;

/** How each link kind is drawn: colour and dash pattern. */
const KIND_STYLE: Record<string, { color: string; dash?: string }> = {
  lan: { color: "#2e7d32" },
  "udp-direct": { color: "#1565c0" },
  "udp-punch": { color: "#1565c0", dash: "7 4" },
  "tcp-direct": { color: "#ef6c00" },
  "tcp-punch": { color: "#ef6c00", dash: "7 4" },
  "relay-private": { color: "#6a1b9a", dash: "2 4" },
  "relay-super": { color: "#6a1b9a", dash: "2 4" },
  "relay-server": { color: "#6a1b9a", dash: "2 4" },
};
const NODE_FILL: Record<NodeListing["state"], string> = { online: "#43a047", offline: "#9e9e9e", revoked: "#e53935", pending: "#fb8c00" };

export function formatRate(bitsPerS: number | null): string {
  if (bitsPerS === null) return "–";
  if (bitsPerS < 1_000) return `${bitsPerS} bit/s`;
  if (bitsPerS < 1_000_000) return `${(bitsPerS / 1_000).toFixed(1)} kbit/s`;
  return `${(bitsPerS / 1_000_000).toFixed(1)} Mbit/s`;
}
/** An ISO time to the second, as the console shows it. */
const shortTime = (iso: string | null) => (iso ? iso.slice(0, 19).replace("T", " ") : "–");

function Layout(props: { title: string; children: Child }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{props.title}</title>
        <style>{raw(STYLE)}</style>
      </head>
      <body>{props.children}</body>
    </html>
  );
}

export function LoginPage(props: { error?: string }) {
  return (
    <Layout title="inp2ps console: log in">
      <form class="login" method="post" action={CONSOLE_PATHS.login}>
        <h2>inp2ps console</h2>
        <label for="credential">Admin credential</label>
        <input id="credential" name="credential" type="password" autocomplete="current-password" autofocus required />
        {props.error ? <p class="error" id="login-error">{props.error}</p> : null}
        <button type="submit">Log in</button>
      </form>
    </Layout>
  );
}

export function ConsolePage(props: { csrf: string; version: string; live: string }) {
  return (
    <Layout title="inp2ps console">
      <header>
        <h1>inp2ps {props.version}</h1>
        <span id="conn">connecting…</span>
        <form method="post" action={CONSOLE_PATHS.logout}>
          <input type="hidden" name="csrf" value={props.csrf} />
          <button type="submit" id="logout">Log out</button>
        </form>
      </header>
      <p id="flash" class="error" />
      <div id="live" data-csrf={props.csrf}>
        {raw(props.live)}
      </div>
      <script src={CONSOLE_PATHS.script} />
    </Layout>
  );
}

function ActionButton(props: { action: "approve" | "reject" | "revoke"; user: string; node: string; label: string }) {
  const query = new URLSearchParams({ user: props.user, node: props.node });
  return (
    <form method="post" action={`${CONSOLE_PATHS.action}/${props.action}?${query}`} data-action={props.action} data-node={props.node}>
      <button type="submit">{props.label}</button>
    </form>
  );
}

function NodeActions({ node }: { node: NodeListing }) {
  if (node.state === "pending")
    return (
      <>
        <ActionButton action="approve" user={node.user} node={node.name} label="Approve" /> <ActionButton action="reject" user={node.user} node={node.name} label="Reject" />
      </>
    );
  if (node.state === "revoked") return <ActionButton action="approve" user={node.user} node={node.name} label="Reinstate" />;
  return <ActionButton action="revoke" user={node.user} node={node.name} label="Revoke" />;
}

function Empty(props: { columns: number; text: string }) {
  return (
    <tr>
      <td colspan={props.columns} class="empty">
        {props.text}
      </td>
    </tr>
  );
}

function NodesTable({ nodes }: { nodes: NodeListing[] }) {
  return (
    <table id="nodes">
      <tr>
        <th>Node</th>
        <th>User</th>
        <th>State</th>
        <th>Address</th>
        <th>NAT</th>
        <th>Allocation</th>
        <th>Version</th>
        <th>Tags</th>
        <th>Last seen</th>
        <th />
      </tr>
      {nodes.length === 0 ? <Empty columns={10} text="no nodes known yet" /> : null}
      {nodes.map((n) => (
        <tr data-node={n.name} data-user={n.user} data-state={n.state}>
          <td>{n.name}</td>
          <td>{n.user}</td>
          <td>
            <span class={`state ${n.state}`}>{n.state}</span>
          </td>
          <td>{n.address ?? "–"}</td>
          <td>{n.natType ?? "–"}</td>
          <td>{n.allocation ?? "–"}</td>
          <td>
            {n.version ?? "–"}
            {n.behind ? <span class="behind" title={`the newest release is ${n.behind}: inp2ps nodes upgrade ${n.name}`}>{` behind ${n.behind}`}</span> : null}
          </td>
          <td>{n.tags.join(", ") || "–"}</td>
          <td>{n.state === "online" ? `online since ${shortTime(n.onlineSince)}` : n.state === "pending" ? "–" : n.lastSeen ? shortTime(n.lastSeen) : "never"}</td>
          <td>
            <NodeActions node={n} />
          </td>
        </tr>
      ))}
    </table>
  );
}

const TOPOLOGY_WIDTH = 560;
const TOPOLOGY_HEIGHT = 360;
const TOPOLOGY_RADIUS = 130;

function linkLabel(link: TopologyLink): string {
  return [link.kind + (link.relay ? ` via ${link.relay}` : ""), link.rttMs === null ? null : `${link.rttMs} ms`, formatRate(link.bitsPerS)].filter(Boolean).join(" · ");
}

/** Nodes (online and known offline) on a circle, each link a line drawn by its kind with its RTT and throughput. */
function Topology({ state }: { state: ConsoleState }) {
  const shown = state.nodes.filter((n) => n.state !== "pending");
  const at = new Map<string, { x: number; y: number }>();
  shown.forEach((n, i) => {
    const angle = (2 * Math.PI * i) / shown.length - Math.PI / 2;
    const r = shown.length === 1 ? 0 : TOPOLOGY_RADIUS;
    at.set(`${n.user}/${n.name}`, { x: TOPOLOGY_WIDTH / 2 + r * Math.cos(angle), y: TOPOLOGY_HEIGHT / 2 + r * Math.sin(angle) });
  });
  return (
    <svg id="topology" viewBox={`0 0 ${TOPOLOGY_WIDTH} ${TOPOLOGY_HEIGHT}`} width="100%" role="img" aria-label="topology: nodes and their links">
      {state.links.map((link) => {
        const a = at.get(`${link.user}/${link.a}`);
        const b = at.get(`${link.user}/${link.b}`);
        if (!a || !b) return null;
        const style = KIND_STYLE[link.kind] ?? { color: "#000" };
        return (
          <g class="link" data-kind={link.kind} data-peers={[link.a, link.b].sort().join(" ")}>
            <line x1={a.x} y1={a.y} x2={b.x} y2={b.y} stroke={style.color} stroke-width="3" stroke-dasharray={style.dash} />
            <text x={(a.x + b.x) / 2} y={(a.y + b.y) / 2 - 6} text-anchor="middle" fill={style.color}>
              {linkLabel(link)}
            </text>
          </g>
        );
      })}
      {shown.map((n) => {
        const p = at.get(`${n.user}/${n.name}`)!;
        return (
          <g class="node" data-node={n.name} data-state={n.state}>
            <circle cx={p.x} cy={p.y} r="16" fill={NODE_FILL[n.state]} stroke="#fff" stroke-width="2" />
            <text x={p.x} y={p.y + 30} text-anchor="middle">
              {n.name}
            </text>
          </g>
        );
      })}
      {shown.length === 0 ? (
        <text x={TOPOLOGY_WIDTH / 2} y={TOPOLOGY_HEIGHT / 2} text-anchor="middle" fill="#888">
          no nodes yet
        </text>
      ) : null}
      {Object.entries(KIND_STYLE).map(([kind, style], i) => (
        <g transform={`translate(8 ${14 + i * 14})`}>
          <line x1="0" y1="-4" x2="22" y2="-4" stroke={style.color} stroke-width="3" stroke-dasharray={style.dash} />
          <text x="28" y="0">
            {kind}
          </text>
        </g>
      ))}
    </svg>
  );
}

/** The part of the page pushed live: everything but the header. */
export function Live({ state }: { state: ConsoleState }) {
  return (
    <main>
      <section class="wide">
        <h2>Nodes</h2>
        <NodesTable nodes={state.nodes} />
      </section>
      <section>
        <h2>Topology</h2>
        <Topology state={state} />
      </section>
      <section>
        <h2>Pairing requests</h2>
        <table id="pairing">
          <tr>
            <th>Node</th>
            <th>User</th>
            <th>From</th>
            <th>Since</th>
            <th />
          </tr>
          {state.pairing.length === 0 ? <Empty columns={5} text="none waiting" /> : null}
          {state.pairing.map((p) => (
            <tr data-node={p.node}>
              <td>{p.node}</td>
              <td>{p.user}</td>
              <td>{p.address}</td>
              <td>
                {shortTime(p.since)}
                {p.newKey ? " (new key)" : ""}
              </td>
              <td>
                <ActionButton action="approve" user={p.user} node={p.node} label="Approve" /> <ActionButton action="reject" user={p.user} node={p.node} label="Reject" />
              </td>
            </tr>
          ))}
        </table>
        <h2>Relays</h2>
        <table id="relays">
          <tr>
            <th>Relay</th>
            <th>Kind</th>
            <th>Load / cap</th>
            <th>Sessions</th>
          </tr>
          {state.relays.length === 0 ? <Empty columns={4} text="no relay nodes (the server's own relay is the last tier)" /> : null}
          {state.relays.map((r) => (
            <tr data-relay={r.name}>
              <td>{r.name}</td>
              <td>{r.online ? `${r.super ? "super" : "private"}${r.approved ? ", approved" : ""}` : "offline, approved"}</td>
              <td>{r.loadMbps === null ? "–" : `${r.loadMbps} / ${r.bwMbps} Mbit/s`}</td>
              <td>{r.sessions ?? "–"}</td>
            </tr>
          ))}
        </table>
      </section>
      <section>
        <h2>Apps</h2>
        <table id="apps">
          <tr>
            <th>Node</th>
            <th>App</th>
            <th>Protocol</th>
            <th>Peer</th>
            <th>State</th>
            <th>Connections</th>
          </tr>
          {state.apps.length === 0 ? <Empty columns={6} text="no apps reported" /> : null}
          {state.apps.map((a) => (
            <tr data-app={`${a.node}/${a.name}`}>
              <td>{a.node}</td>
              <td>{a.name}</td>
              <td>{a.protocol}</td>
              <td>{a.peer}</td>
              <td>{a.state}</td>
              <td>{a.connections}</td>
            </tr>
          ))}
        </table>
        <h2>SDWAN</h2>
        <table id="sdwan">
          <tr>
            <th>Node</th>
            <th>Virtual IP</th>
            <th>Routes</th>
          </tr>
          {state.sdwan.length === 0 ? <Empty columns={3} text="no node on the virtual network" /> : null}
          {state.sdwan.map((m) => (
            <tr>
              <td>{m.name}</td>
              <td>{m.ip}</td>
              <td>{m.routes.join(", ") || "–"}</td>
            </tr>
          ))}
        </table>
      </section>
      <section>
        <h2>Audit</h2>
        <table id="audit">
          {state.audit.length === 0 ? <Empty columns={3} text="nothing yet" /> : null}
          {state.audit.map(({ time, event, ...fields }) => (
            <tr>
              <td>{shortTime(time)}</td>
              <td>{event}</td>
              <td class="fields">
                {Object.entries(fields)
                  .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
                  .join(" ")}
              </td>
            </tr>
          ))}
        </table>
        <p class="empty">
          Link tables: {state.reports.nodes} nodes report, {state.reports.meanBytes} bytes each on average.
        </p>
      </section>
    </main>
  );
}
