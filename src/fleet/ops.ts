/**
 * The shared operations of a fleet (fleet/fleet.ts), checked as they are
 * read: whoever can write to the state store writes them, so each one is
 * validated like a POST /reload body (config/schema.ts) and may carry only
 * what the fleet shares (config/guard.ts: upstreams and the apps' routing and
 * holding keys, never run, admin, tls or log). A bad one is skipped and
 * logged; the ones after it still apply.
 *
 * SharedState is what every operation so far adds up to — the merged config
 * patches and each app's mode — which is the snapshot a compacted list starts
 * from. It depends only on the operations, so every instance computes the same.
 */
import { type RawConfig, validatePartial } from "../config/schema.ts";
import { bodyErrors } from "../config/guard.ts";
import { mergeRaw } from "../config/merge.ts";

export type Mode = "paused" | "running" | "stopped";
export type Op =
  | { kind: "mode"; by: string; app: string | null; mode: Mode; message?: string }
  | { kind: "patch"; by: string; body: unknown }
  | { kind: "deploy"; by: string; app: string; raw: RawConfig };

/** A stop message longer than this is refused (the admin API takes bodies up to 1 MiB). */
export const MAX_STOP_MESSAGE = 1024 * 1024;
const MODES = ["paused", "running", "stopped"];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** One item of the list, parsed and checked; an error names what is wrong. */
export function parseOp(item: string): { op: Op } | { error: string } {
  let v: unknown;
  try {
    v = JSON.parse(item);
  } catch {
    return { error: "is not JSON" };
  }
  if (!isObj(v)) return { error: `is not an operation object (got ${v === null ? "null" : Array.isArray(v) ? "an array" : typeof v})` };
  const by = typeof v.by === "string" ? v.by : "?";
  if (v.kind === "mode") {
    if (!MODES.includes(v.mode as string)) return { error: `mode: must be one of ${MODES.join(", ")}` };
    if (v.app !== null && v.app !== undefined && typeof v.app !== "string") return { error: "app: must be an app's name or null" };
    const m = modeError(v.message);
    if (m) return { error: m };
    return { op: { kind: "mode", by, app: (v.app as string | undefined) ?? null, mode: v.mode as Mode, ...(v.message !== undefined ? { message: v.message as string } : {}) } };
  }
  if (v.kind === "patch" || v.kind === "deploy") {
    const key = v.kind === "patch" ? "body" : "raw";
    if (v.kind === "deploy" && typeof v.app !== "string") return { error: "app: must be an app's name" };
    const errors = configErrors(v[key]);
    if (errors.length) return { error: errors.map((e) => `${key}.${e}`).join("; ") };
    return { op: v.kind === "patch" ? { kind: "patch", by, body: v.body as RawConfig } : { kind: "deploy", by, app: v.app as string, raw: v.raw as RawConfig } };
  }
  return { error: `kind: must be mode, patch or deploy (got ${JSON.stringify(v.kind) ?? "nothing"})` };
}

function modeError(message: unknown): string | null {
  if (message === undefined) return null;
  if (typeof message !== "string") return "message: must be a string";
  return message.length > MAX_STOP_MESSAGE ? `message: longer than ${MAX_STOP_MESSAGE} characters` : null;
}

/** A shared config patch: the reload-body schema, and only the keys the fleet shares. */
function configErrors(raw: unknown): string[] {
  const r = validatePartial(raw);
  if ("errors" in r) return r.errors.map((e) => `${e.field}: ${e.problem}`);
  return bodyErrors(raw, { shared: true, allow: null }).map((e) => `${e.field}: ${e.problem}`);
}

export interface ModeEntry {
  mode: Mode;
  message?: string;
}

/** Every operation so far, added up: the snapshot a compacted list starts from. */
export class SharedState {
  /** The config patches (reload bodies and deploys) merged, later over earlier; null: none yet. */
  raw: RawConfig | null = null;
  /** Each app's last mode; "*" for a change to every app (which replaces the per-app ones). */
  modes: Record<string, ModeEntry> = {};

  record(op: Op): void {
    if (op.kind === "mode") {
      const entry: ModeEntry = { mode: op.mode, ...(op.message !== undefined ? { message: op.message } : {}) };
      if (op.app === null) this.modes = { "*": entry };
      else this.modes[op.app] = entry;
    } else {
      const patch = (op.kind === "patch" ? op.body : op.raw) as RawConfig; // checked by parseOp
      this.raw = this.raw ? mergeRaw(this.raw, patch) : patch;
    }
  }

  toJSON(version: number): string {
    return JSON.stringify({ version, raw: this.raw, modes: this.modes });
  }

  /** A snapshot as stored, checked like an operation. */
  static parse(text: string): { version: number; state: SharedState } | { error: string } {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return { error: "is not JSON" };
    }
    if (!isObj(v) || !Number.isInteger(v.version) || (v.version as number) < 0) return { error: "version: must be a whole number" };
    const s = new SharedState();
    if (v.raw !== null && v.raw !== undefined) {
      const errors = configErrors(v.raw);
      if (errors.length) return { error: errors.map((e) => `raw.${e}`).join("; ") };
      s.raw = v.raw as RawConfig;
    }
    if (!isObj(v.modes)) return { error: "modes: must be an object" };
    for (const [app, e] of Object.entries(v.modes)) {
      if (!isObj(e) || !MODES.includes(e.mode as string)) return { error: `modes.${app}: must be {"mode": "paused" | "running" | "stopped"}` };
      const m = modeError(e.message);
      if (m) return { error: `modes.${app}.${m}` };
      s.modes[app] = { mode: e.mode as Mode, ...(e.message !== undefined ? { message: e.message as string } : {}) };
    }
    return { version: v.version as number, state: s };
  }
}
