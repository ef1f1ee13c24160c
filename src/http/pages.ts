/**
 * holdup's own answers — the maintenance page (stop), the "starting…" page
 * (waiting) and its 502/503/504 — in the form the client asked for: HTML for
 * browsers, JSON `{"error","message","requestId","retryAfter"}` for clients
 * whose Accept excludes text/html or names JSON, plain text for the rest (curl:
 * no Accept or * / *). Each carries the request's X-Request-Id. `--pages DIR` swaps in the
 * operator's own HTML templates (see templates.ts).
 */
import type { HeaderList, Incoming } from "../serve/types.ts";

export type PageKind = "stop" | "waiting" | "502" | "503" | "504";
export const PAGE_KINDS: PageKind[] = ["stop", "waiting", "502", "503", "504"];

/** Loaded templates by kind; a kind without one uses the built-in page. */
export type PageSet = Partial<Record<PageKind, Template>>;
/** A template split at its placeholders: text, name, text, name, …, text. */
export type Template = string[];

export interface PageInput {
  status: number;
  message: string;
  requestId: string;
  retryAfter: number | null;
  app: string;
}

const ERROR_NAMES: Record<number, string> = {
  499: "client_closed",
  502: "bad_gateway",
  503: "service_unavailable",
  504: "gateway_timeout",
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The kind of page a status has, when it has one. */
export function kindFor(status: number): PageKind | null {
  return status === 502 ? "502" : status === 503 ? "503" : status === 504 ? "504" : null;
}

type Format = "html" | "json" | "text";

function format(req: Incoming, kind: PageKind | null): Format {
  const accept = req.header("accept") ?? "";
  if (accept.includes("text/html")) return kind ? "html" : "text";
  // An API client naming JSON gets it, */* or not (axios sends "application/json, text/plain, */*").
  if (accept.includes("json")) return "json";
  if (accept === "" || accept.includes("*/*") || accept.includes("text/*")) return "text";
  return "json";
}

/**
 * The body and content-type of one of holdup's own answers. `kind` null: no
 * page exists for it (plain text or JSON only). Built-in HTML exists for stop
 * and waiting; 502/503/504 are plain text for browsers unless a template
 * replaces them.
 */
export function render(
  req: Incoming,
  kind: PageKind | null,
  p: PageInput,
  pages: PageSet | null,
  plain: string,
): { headers: HeaderList; body: string } {
  let f = format(req, kind);
  const tpl = kind ? pages?.[kind] : undefined;
  if (f === "html" && !tpl && kind !== "stop" && kind !== "waiting") f = "text";
  if (f === "json") {
    const body = JSON.stringify({
      error: kind === "stop" ? "maintenance" : ERROR_NAMES[p.status] ?? `status_${p.status}`,
      message: p.message,
      requestId: p.requestId,
      retryAfter: p.retryAfter,
    }) + "\n";
    return { headers: [["content-type", "application/json"]], body };
  }
  if (f === "text") {
    return { headers: [["content-type", "text/plain; charset=utf-8"]], body: `${plain}\nrequest id: ${p.requestId}\n` };
  }
  const body = tpl ? fill(tpl, p) : kind === "stop" ? maintenancePage(p) : waitingPage(p);
  return { headers: [["content-type", "text/html; charset=utf-8"]], body };
}

function fill(tpl: Template, p: PageInput): string {
  let out = "";
  for (let i = 0; i < tpl.length; i++) {
    if (i % 2 === 0) out += tpl[i];
    else {
      const name = tpl[i];
      const v = name === "message" ? p.message : name === "requestId" ? p.requestId : name === "app" ? p.app : String(p.retryAfter ?? "");
      out += escapeHtml(v);
    }
  }
  return out;
}

const STYLE = "body{font:18px/1.5 system-ui,sans-serif;max-width:36em;margin:15vh auto;padding:0 1em;color:#222}small{color:#777}";

function maintenancePage(p: PageInput): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Down for maintenance</title>
<style>${STYLE}</style>
</head><body><h1>Down for maintenance</h1><p>${escapeHtml(p.message)}</p><p><small>Request ${escapeHtml(p.requestId)}</small></p></body></html>
`;
}

function waitingPage(p: PageInput): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="${p.retryAfter ?? 2}"><title>Starting…</title>
<style>${STYLE}</style>
</head><body><h1>Starting…</h1><p>${escapeHtml(p.message)}</p><p><small>Request ${escapeHtml(p.requestId)}</small></p></body></html>
`;
}
