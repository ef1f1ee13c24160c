/**
 * `--pages DIR` (config `pages`): the operator's own HTML for holdup's pages —
 * stop.html, waiting.html, 502.html, 503.html, 504.html, any of them (the rest
 * stay built in) — with {{message}}, {{requestId}}, {{retryAfter}} and {{app}}
 * filled in HTML-escaped (pages.ts). Read at start (an error there stops
 * holdup, naming the file) and again on every reload (an error refuses the
 * reload and the old set stays). Each file is parsed once, into the pieces
 * between placeholders, so a request only joins strings.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { LayerError } from "../config/layers.ts";
import { PAGE_KINDS, type PageSet, type Template } from "./pages.ts";

const PLACEHOLDERS = ["message", "requestId", "retryAfter", "app"];
/** A page larger than this is surely not one. */
const MAX_BYTES = 1024 * 1024;

const fileOf = (kind: string) => `${kind}.html`;

/** Reads and checks every template in `dir`; null dir: the built-in pages. */
export function loadPages(dir: string | null): { set: PageSet | null } | { errors: LayerError[] } {
  if (dir === null) return { set: null };
  const err = (file: string, problem: string) => ({ errors: [{ where: "pages", field: file, problem }] });
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    return err(dir, `cannot read the directory: ${(e as Error).message}`);
  }
  const set: PageSet = {};
  for (const kind of PAGE_KINDS) {
    if (!names.includes(fileOf(kind))) continue;
    const path = join(dir, fileOf(kind));
    let text: string;
    try {
      const st = statSync(path);
      if (!st.isFile()) return err(path, "is not a file");
      if (st.size > MAX_BYTES) return err(path, `is ${st.size} bytes; the most is ${MAX_BYTES}`);
      text = readFileSync(path, "utf8");
    } catch (e) {
      return err(path, `cannot be read: ${(e as Error).message}`);
    }
    const parsed = parse(text);
    if (typeof parsed === "string") return err(path, parsed);
    set[kind] = parsed;
  }
  if (!Object.keys(set).length) {
    return err(dir, `holds none of ${PAGE_KINDS.map(fileOf).join(", ")}`);
  }
  return { set };
}

/** Text and placeholder names, alternating; or what is wrong. */
export function parse(text: string): Template | string {
  const out: Template = [];
  let at = 0;
  for (;;) {
    const open = text.indexOf("{{", at);
    if (open < 0) break;
    const close = text.indexOf("}}", open + 2);
    if (close < 0) return `line ${lineOf(text, open)}: "{{" without a closing "}}"`;
    const name = text.slice(open + 2, close).trim();
    if (!PLACEHOLDERS.includes(name)) {
      return `line ${lineOf(text, open)}: unknown placeholder {{${name.slice(0, 40)}}}; known: ${PLACEHOLDERS.map((p) => `{{${p}}}`).join(", ")}`;
    }
    out.push(text.slice(at, open), name);
    at = close + 2;
  }
  out.push(text.slice(at));
  return out;
}

function lineOf(text: string, at: number): number {
  let n = 1;
  for (let i = 0; i < at; i++) if (text.charCodeAt(i) === 10) n++;
  return n;
}
