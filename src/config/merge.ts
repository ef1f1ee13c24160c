/**
 * Folding config layers together without changing what they resolve to:
 * a run of reload bodies and shared operations becomes one layer, so the
 * layers a reload starts from do not grow with every reload (3,000 shared
 * operations were 3,000 layers, each re-validated on every later one), and a
 * fleet's shared history can be kept as one snapshot (fleet/fleet.ts).
 * Merging follows resolve() in layers.ts: later wins key by key; admin.*,
 * run.*, tls.* and tls.acme.* merge one key at a time; apps merge by name.
 */
import type { RawConfig } from "./schema.ts";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** `b` over `a`, as two consecutive layers would resolve (both already validated). */
export function mergeRaw(a: RawConfig, b: RawConfig): RawConfig {
  const out: Obj = { ...a as Obj };
  for (const [k, v] of Object.entries(b as Obj)) {
    if (v === undefined) continue;
    const before = out[k];
    if (k === "apps" && Array.isArray(v) && Array.isArray(before)) {
      const apps = new Map<string, Obj>(before.map((x: Obj) => [String(x.name), x]));
      for (const x of v as Obj[]) apps.set(String(x.name), { ...apps.get(String(x.name)), ...defined(x) });
      out[k] = [...apps.values()];
    } else if ((k === "admin" || k === "run" || k === "tls") && isObj(v) && isObj(before)) {
      const m: Obj = { ...before, ...defined(v) };
      if (k === "tls" && isObj(v.acme) && isObj(before.acme)) m.acme = { ...before.acme, ...defined(v.acme) };
      out[k] = m;
    } else out[k] = v;
  }
  return out as RawConfig;
}

function defined(o: Obj): Obj {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/** Consecutive reload layers folded into one (labelled by the last); other layers kept as they are. */
export function compactLayers<L extends { source: string; label: string; raw: RawConfig }>(layers: L[]): L[] {
  const out: L[] = [];
  for (const l of layers) {
    const prev = out[out.length - 1];
    if (prev && prev.source === "reload" && l.source === "reload" && isObj(prev.raw) && isObj(l.raw)) {
      out[out.length - 1] = { ...l, raw: mergeRaw(prev.raw, l.raw) };
    } else out.push(l);
  }
  return out;
}
