/**
 * The dashboard page (`GET /` on the admin listener, `/_holdup/` at the
 * edge): server-rendered HTML with its style and script inline, updated live
 * from `GET /events`; token kept per tab, strict CSP with a nonce.
 * See docs/design/dashboard.md.
 */
import { html, raw } from "hono/html";
import type { DashEvent } from "./events.ts";
import { CLIENT_JS } from "./browser.ts";

export interface PageStatus {
  holdup: string;
  runtime: string;
  /** Every app's mode, or "mixed". */
  mode: string;
  stopMessage?: string;
  held: number;
  configVersion: number;
  websockets?: { open: number; draining: number };
  apps?: Array<{ name: string; hosts: string[]; pathPrefix: string; mode: string; stopMessage?: string; held: number }>;
  upstreams: Array<{ app?: string; url: string; status: string; lastError: string | null; inFlight: number; websockets?: number }>;
  draining?: Array<{ url: string; inFlight: number; lastError: string | null }>;
  uptimeSeconds?: number;
  /** The proxy listener's address. */
  proxy?: string;
  /** With -- COMMAND: the app process (run/supervisor.ts status()). */
  app?: { phase: string; instance: number | null; pid: number | null; restarts: number };
  reloadable?: boolean;
}

/** "3 d 4 h", "2 h 5 min", "4 min 3 s", "12 s" (the client script words it the same way). */
export function formatUptime(seconds: number): string {
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24, m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}

/** How an upstream's state reads on the page (the client script uses the same words). */
export function upstreamState(status: string): string {
  return status === "up" ? "ready" : status === "down" ? "unreachable" : "unknown";
}

/** Headers for the page: only its own nonce'd script and style, requests to itself, no framing, no caching. */
export function pageHeaders(nonce: string): Record<string, string> {
  return {
    "content-security-policy": [
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      `style-src 'nonce-${nonce}'`,
      "connect-src 'self'",
      "img-src 'self' data:",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; "),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
  };
}

export function newNonce(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return btoa(String.fromCharCode(...b));
}

/**
 * The page. `data` is null when a token is needed: then nothing about the
 * proxy is rendered until the script has the token.
 */
export function renderPage(nonce: string, data: { status: PageStatus; events: DashEvent[] } | null) {
  const s = data?.status;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>holdup dashboard</title>
<style nonce="${nonce}">${raw(CSS)}</style>
</head>
<body data-token="${data ? "none" : "required"}">
<header>
  <h1>holdup</h1>
  <span id="version">${s ? `${s.holdup} · ${s.runtime}` : ""}</span>
  <span class="note">proxy <b id="proxy">${s?.proxy ?? "–"}</b> · up <b id="uptime">${s?.uptimeSeconds !== undefined ? formatUptime(s.uptimeSeconds) : "–"}</b></span>
  <span id="conn" class="conn" role="status">${data ? "loading…" : "needs token"}</span>
</header>
<main>
<section id="tokenbox" class="wide" aria-labelledby="tokenhead" ${data ? raw("hidden") : ""}>
  <h2 id="tokenhead">Admin token</h2>
  <form id="tokenform">
    <label for="token">holdup needs its admin token. It is kept for this tab only.</label>
    <div class="row"><input id="token" type="password" autocomplete="off" required><button type="submit">Connect</button></div>
    <p id="tokenmsg" class="note" aria-live="polite"></p>
  </form>
</section>

<section aria-labelledby="appshead">
  <h2 id="appshead">Apps</h2>
  <p class="summary"><span id="mode" class="mode ${s?.mode ?? ""}">${s?.mode ?? "–"}</span> <span id="stopmsg" class="note">${s?.stopMessage ? `“${s.stopMessage}”` : ""}</span>
  · config <b id="configversion">${s ? `v${s.configVersion}` : "–"}</b>
  · WebSockets open <b id="wsopen">${s ? String(s.websockets?.open ?? 0) : "–"}</b> <span class="note">(<span id="wsdraining">${s ? String(s.websockets?.draining ?? 0) : "–"}</span> draining)</span></p>
  <div class="scroll"><table>
    <thead><tr><th scope="col">app</th><th scope="col">answers</th><th scope="col">mode</th><th scope="col">held</th><th scope="col">oldest held / deadline</th></tr></thead>
    <tbody id="apps">${s ? appRows(s) : ""}</tbody>
  </table></div>
</section>

<section id="appbox" aria-labelledby="apphead" ${s?.app ? "" : raw("hidden")}>
  <h2 id="apphead">App process</h2>
  <p class="summary"><span id="appphase" class="mode">${s?.app?.phase ?? "–"}</span>
  · instance <b id="appinstance">${s?.app?.instance ? `#${s.app.instance}` : "–"}</b>
  · pid <b id="apppid">${s?.app?.pid ? String(s.app.pid) : "–"}</b>
  · restarts <b id="apprestarts">${s?.app ? String(s.app.restarts) : "–"}</b></p>
  <p class="note">last exit: <span id="appexit">–</span></p>
  <div class="row"><button id="restart" type="button" data-action="restart">Restart app</button></div>
</section>

<section aria-labelledby="controlshead">
  <h2 id="controlshead">Controls</h2>
  <div class="row">
    <button id="pause" type="button" data-action="pause" ${s?.mode === "paused" ? raw("disabled") : ""}>Pause</button>
    <button id="resume" type="button" data-action="resume" ${s?.mode === "running" ? raw("disabled") : ""}>Resume</button>
    <button id="reload" type="button" data-action="reload" ${s && !s.reloadable ? raw("disabled") : ""}>Reload config</button>
  </div>
  <p id="reloadnote" class="note" ${s && !s.reloadable ? "" : raw("hidden")}>Reload needs a config file (-c FILE); change settings with POST /reload and a JSON body.</p>
  <form id="stopform" class="row">
    <label for="stopmessage" class="visually-hidden">Message for clients while stopped</label>
    <input id="stopmessage" type="text" maxlength="500" placeholder="message for clients (optional)">
    <button id="stop" type="submit" class="danger">Stop (answer 503)</button>
  </form>
  <p id="result" class="note" aria-live="polite"></p>
</section>

<section aria-labelledby="heldhead">
  <h2 id="heldhead">Held now: <span id="held" aria-live="polite">${s ? String(s.held) : "–"}</span></h2>
  <div class="charts">
    ${chart("held", "held")}
    ${chart("rps", "requests/s")}
    ${chart("e5xx", "5xx/s")}
  </div>
  <p id="window" class="note">Up to 15 minutes, one point per second.</p>
</section>

<section class="wide" aria-labelledby="upshead">
  <h2 id="upshead">Upstreams</h2>
  <div class="scroll"><table>
    <thead><tr><th scope="col">upstream</th><th scope="col">app</th><th scope="col">state</th><th scope="col">in flight</th><th scope="col">WebSockets</th><th scope="col">last error</th></tr></thead>
    <tbody id="upstreams">${s ? upstreamRows(s) : ""}</tbody>
  </table></div>
</section>

<section class="wide" aria-labelledby="eventshead">
  <h2 id="eventshead">Events</h2>
  <ol id="events" reversed>${data ? [...data.events].reverse().map(eventItem) : ""}</ol>
</section>
</main>
<script nonce="${nonce}">${raw(CLIENT_JS)}</script>
</body>
</html>
`;
}

function chart(id: string, label: string) {
  return html`<figure class="chart">
    <figcaption>${label} <b id="${id}-now">–</b> <span class="note">max <span id="${id}-max">–</span></span></figcaption>
    <svg id="${id}-chart" viewBox="0 0 900 60" preserveAspectRatio="none" role="img" aria-label="${label}, last 15 minutes">
      <polyline id="${id}-line" points="" fill="none" vector-effect="non-scaling-stroke"></polyline>
    </svg>
    <div class="axis" aria-hidden="true"><span id="${id}-from">−60 s</span><span id="${id}-mid">−30 s</span><span>now</span></div>
  </figure>`;
}

/** What an app answers: its hosts (any host when none) and path prefix (the client script words it the same way). */
function answers(a: { hosts: string[]; pathPrefix: string }): string {
  return `${a.hosts.length ? a.hosts.join(", ") : "any host"}${a.pathPrefix && a.pathPrefix !== "/" ? ` ${a.pathPrefix}` : ""}`;
}

function appRows(s: PageStatus) {
  return (s.apps ?? []).map((a) =>
    html`<tr><td>${a.name}</td><td class="note">${answers(a)}</td><td><span class="mode ${a.mode}">${a.mode}</span>${a.stopMessage ? html` <span class="note">“${a.stopMessage}”</span>` : ""}</td><td>${String(a.held)}</td><td class="note">–</td></tr>`
  );
}

function upstreamRows(s: PageStatus) {
  const rows = s.upstreams.map((u) => row(u.url, u.app ?? "", upstreamState(u.status), u.inFlight, u.websockets ?? 0, u.lastError));
  for (const u of s.draining ?? []) rows.push(row(u.url, "", "draining", u.inFlight, "", u.lastError));
  return rows;
}

function row(url: string, app: string, state: string, inFlight: number, websockets: number | "", lastError: string | null) {
  return html`<tr><td class="url">${url}</td><td>${app}</td><td><span class="state ${state}">${state}</span></td><td>${String(inFlight)}</td><td>${String(websockets)}</td><td class="err">${lastError ?? ""}</td></tr>`;
}

function eventItem(e: DashEvent) {
  return html`<li class="${e.level}"><time datetime="${e.time}">${e.time.slice(11, 19)}</time> <span class="msg">${e.msg}</span> <span class="fields">${fieldsText(e.fields)}</span></li>`;
}

/** An event's fields as `key=value` (the client script formats them the same way). */
export function fieldsText(fields: Record<string, unknown>): string {
  return Object.entries(fields).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
}

const CSS = `
:root { --fg: #1b1f24; --bg: #fff; --muted: #5b6470; --line: #d8dde3; --ok: #1a7f37; --bad: #c62828; --warn: #9a6700; --accent: #0b5cad; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8eb; --bg: #15181c; --muted: #9aa4af; --line: #2f353d; --ok: #4ac26b; --bad: #ff6b6b; --warn: #e3b341; --accent: #6cb6ff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: baseline; padding: .75rem 1rem; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
main { display: grid; gap: 1rem; padding: 1rem; max-width: 1100px; margin: 0 auto; grid-template-columns: repeat(auto-fit, minmax(min(100%, 460px), 1fr)); }
section { min-width: 0; }
.wide { grid-column: 1 / -1; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: .85rem; }
.scroll { overflow-x: auto; }
.url { white-space: nowrap; }
.err { color: var(--muted); font-size: .85rem; word-break: break-word; }
.note { color: var(--muted); font-size: .85rem; }
.conn { margin-left: auto; font-size: .85rem; padding: .1rem .5rem; border-radius: 1rem; border: 1px solid var(--line); }
.conn.live { color: var(--ok); border-color: var(--ok); }
.conn.down { color: var(--bad); border-color: var(--bad); }
.summary { margin: 0 0 .5rem; }
.mode, .state { font-weight: 600; }
.mode.running, .state.ready { color: var(--ok); }
.mode.paused, .state.draining, .state.unknown { color: var(--warn); }
.mode.stopped, .state.unreachable { color: var(--bad); }
#held { font-variant-numeric: tabular-nums; }
.row { display: flex; flex-wrap: wrap; gap: .5rem; margin: .25rem 0 .5rem; }
button, input { font: inherit; padding: .5rem .9rem; border-radius: .4rem; border: 1px solid var(--line); background: var(--bg); color: var(--fg); min-height: 2.75rem; }
button { cursor: pointer; border-color: var(--accent); color: var(--accent); font-weight: 600; }
button.danger { border-color: var(--bad); color: var(--bad); }
input { flex: 1 1 12rem; min-width: 0; }
button:focus-visible, input:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.charts { display: grid; gap: .5rem; }
.chart { margin: 0; }
.chart figcaption { font-size: .85rem; }
.axis { display: flex; justify-content: space-between; font-size: .75rem; color: var(--muted); font-variant-numeric: tabular-nums; }
button:disabled { opacity: .45; cursor: not-allowed; }
.late { color: var(--bad); font-weight: 600; }
.chart svg { display: block; width: 100%; height: 60px; border: 1px solid var(--line); border-radius: .3rem; }
#held-line { stroke: var(--warn); stroke-width: 2; }
#rps-line { stroke: var(--accent); stroke-width: 2; }
#e5xx-line { stroke: var(--bad); stroke-width: 2; }
#events { list-style: none; margin: 0; padding: 0; font-size: .9rem; max-height: 24rem; overflow-y: auto; }
#events li { padding: .25rem 0; border-bottom: 1px solid var(--line); word-break: break-word; }
#events time { color: var(--muted); font-variant-numeric: tabular-nums; }
#events .warn .msg { color: var(--warn); }
#events .error .msg { color: var(--bad); }
#events .fields { color: var(--muted); font-size: .8rem; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
[hidden] { display: none !important; }
`;
