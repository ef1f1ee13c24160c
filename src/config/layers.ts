/**
 * Where the effective config comes from: defaults, then the config file, then
 * flags (or the environment, for the edge entry), and finally any JSON body an
 * operator POSTs to /reload. Each layer is validated on its own, so an error
 * names the layer and the field; the merged result remembers which layer set
 * each key, for GET /status and the start-up log.
 */
import { type Config, type FieldError, type RawConfig, validatePartial, validateWhole } from "./schema.ts";
import { formatListen } from "./address.ts";
import { formatDuration } from "./units.ts";

export type Source = "default" | "file" | "flag" | "env" | "reload";

export interface Layer {
  source: Source;
  /** How the user knows this layer: "config file ./holdup.json", "flags", "POST /reload". */
  label: string;
  raw: RawConfig;
}

export interface Effective {
  config: Config;
  /** The raw layers this config was built from, to build the next one on. */
  layers: Layer[];
  /** Which layer set each key ("admin.listen" for nested ones). */
  sources: Record<string, Source>;
  /** Keys a flag set over a value from the config file. */
  shadowed: string[];
}

export interface LayerError extends FieldError {
  /** The layer's label. */
  where: string;
}

export function defaultLayer(opts: { stderrIsTTY: boolean; adminToken?: string }): Layer {
  return {
    source: "default",
    label: "defaults",
    raw: {
      listen: ":8080",
      upstreams: ["http://127.0.0.1:8003"],
      tryDuration: "30s",
      tryInterval: "250ms",
      responseTimeout: "60s",
      healthPath: null,
      maxHeld: 10000,
      maxBodyBuffer: "1MiB",
      admin: { listen: "127.0.0.1:2019", token: opts.adminToken || null },
      log: opts.stderrIsTTY ? "text" : "json",
    },
  };
}

/** Validates each layer, then merges them in order (later wins). */
export function resolve(layers: Layer[]): { effective: Effective } | { errors: LayerError[] } {
  const errors: LayerError[] = [];
  const merged: Record<string, unknown> = {};
  const sources: Record<string, Source> = {};
  const fileKeys = new Set<string>();
  const shadowed: string[] = [];
  for (const layer of layers) {
    const r = validatePartial(layer.raw);
    if ("errors" in r) {
      for (const e of r.errors) errors.push({ ...e, where: layer.label });
      continue;
    }
    for (const [key, value] of flatten(r.value)) {
      if (value === undefined) continue;
      if (layer.source === "flag" && fileKeys.has(key)) shadowed.push(key);
      if (layer.source === "file") fileKeys.add(key);
      merged[key] = value;
      sources[key] = layer.source;
    }
  }
  if (errors.length) return { errors };
  const config = {
    ...merged,
    admin: { listen: merged["admin.listen"] ?? null, token: merged["admin.token"] ?? null },
  } as unknown as Config & Record<string, unknown>;
  delete config["admin.listen"];
  delete config["admin.token"];
  const whole = validateWhole(config);
  if (whole.length) return { errors: whole.map((e) => ({ ...e, where: layers[layers.length - 1].label })) };
  return { effective: { config, layers, sources, shadowed } };
}

function* flatten(obj: Record<string, unknown>): Generator<[string, unknown]> {
  for (const [k, v] of Object.entries(obj)) {
    if (k === "admin" && v && typeof v === "object") {
      for (const [k2, v2] of Object.entries(v)) yield [`admin.${k2}`, v2];
    } else yield [k, v];
  }
}

/** "config file x.json: tryDuration: "3x" is not a duration; …" */
export function formatErrors(errors: LayerError[]): string {
  return errors.map((e) => `${e.where}: ${e.field}: ${e.problem}`).join("\n");
}

/** The effective config as JSON a user could paste into a config file (token redacted). */
export function toJSON(c: Config): Record<string, unknown> {
  return {
    listen: formatListen(c.listen),
    upstreams: c.upstreams,
    tryDuration: formatDuration(c.tryDuration),
    tryInterval: formatDuration(c.tryInterval),
    responseTimeout: formatDuration(c.responseTimeout),
    healthPath: c.healthPath,
    maxHeld: c.maxHeld,
    maxBodyBuffer: c.maxBodyBuffer,
    admin: { listen: c.admin.listen ? formatListen(c.admin.listen) : "off", token: c.admin.token ? "(set)" : null },
    log: c.log,
  };
}

/** Reads and parses a JSON config file into a layer. */
export async function fileLayer(
  path: string,
  readTextFile: (path: string) => Promise<string>,
): Promise<{ layer: Layer } | { errors: LayerError[] }> {
  const label = `config file ${path}`;
  let text: string;
  try {
    text = await readTextFile(path);
  } catch (e) {
    return { errors: [{ where: label, field: "(file)", problem: `cannot be read: ${(e as Error).message}` }] };
  }
  try {
    return { layer: { source: "file", label, raw: JSON.parse(text) } };
  } catch (e) {
    return { errors: [{ where: label, field: "(file)", problem: `is not valid JSON: ${(e as Error).message}` }] };
  }
}
