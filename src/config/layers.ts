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
import { open } from "node:fs/promises";

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
      maxHeldBodyBytes: "256MiB",
      headerTimeout: "10s",
      bodyTimeout: "60s",
      keepAliveTimeout: "75s",
      maxConnections: 10000,
      wsMaxBuffered: "16MiB",
      wsCloseSpread: "5s",
      drainTimeout: "30s",
      admin: { listen: "127.0.0.1:2019", token: opts.adminToken || null, hosts: [] },
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
    admin: { listen: merged["admin.listen"] ?? null, token: merged["admin.token"] ?? null, hosts: merged["admin.hosts"] ?? [] },
  } as unknown as Config & Record<string, unknown>;
  delete config["admin.listen"];
  delete config["admin.token"];
  delete config["admin.hosts"];
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
    maxHeldBodyBytes: c.maxHeldBodyBytes,
    headerTimeout: formatDuration(c.headerTimeout),
    bodyTimeout: formatDuration(c.bodyTimeout),
    keepAliveTimeout: formatDuration(c.keepAliveTimeout),
    maxConnections: c.maxConnections,
    wsMaxBuffered: c.wsMaxBuffered,
    wsCloseSpread: formatDuration(c.wsCloseSpread),
    drainTimeout: formatDuration(c.drainTimeout),
    admin: {
      listen: c.admin.listen ? formatListen(c.admin.listen) : "off",
      token: c.admin.token ? "(set)" : null,
      hosts: c.admin.hosts,
    },
    log: c.log,
  };
}

/** A config file larger than this is refused unread (a symlink to /dev/zero must not fill memory). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * Reads and parses a JSON config file into a layer. Errors never quote the
 * file's contents: a reload error reaches the admin API's caller, and the
 * path may have been pointed at a file they must not read.
 */
export async function fileLayer(path: string): Promise<{ layer: Layer } | { errors: LayerError[] }> {
  const label = `config file ${path}`;
  const text = await readCapped(path, MAX_CONFIG_BYTES);
  if (typeof text !== "string") return { errors: [{ where: label, field: "(file)", problem: text.problem }] };
  return parseJSON(text, label, "(file)");
}

/** Parses JSON; on failure says where, never what the text was. */
export function parseJSON(text: string, where: string, field: string): { layer: Layer } | { errors: LayerError[] } {
  try {
    return { layer: { source: "file", label: where, raw: JSON.parse(text) } };
  } catch (e) {
    return { errors: [{ where, field, problem: `is not valid JSON${jsonErrorPlace(e)}` }] };
  }
}

/**
 * " (line 3 column 7)" or " (at position 12)" when the engine's message says
 * so. Only those numbers are kept: both engines quote the offending text in
 * their messages (`Unexpected token 'r', "root:x:0:0"...`).
 */
export function jsonErrorPlace(e: unknown): string {
  const msg = String((e as Error)?.message ?? "");
  const lc = /line (\d+) column (\d+)/.exec(msg);
  if (lc) return ` (line ${lc[1]} column ${lc[2]})`;
  const pos = /position (\d+)/.exec(msg);
  return pos ? ` (at position ${pos[1]})` : "";
}

async function readCapped(path: string, max: number): Promise<string | { problem: string }> {
  let fh;
  try {
    fh = await open(path, "r");
    // Pipes and devices are read too (-c <(…) works), but never past `max` bytes.
    if ((await fh.stat()).size > max) return { problem: `is larger than ${max} bytes` };
    const buf = new Uint8Array(max + 1);
    let size = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, size, buf.byteLength - size, null);
      if (bytesRead === 0) break;
      size += bytesRead;
      if (size > max) return { problem: `is larger than ${max} bytes` };
    }
    return new TextDecoder().decode(buf.subarray(0, size));
  } catch (e) {
    const code = (e as { code?: string }).code;
    return { problem: `cannot be read${code ? ` (${code})` : ""}` };
  } finally {
    await fh?.close().catch(() => {});
  }
}
