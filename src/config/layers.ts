/**
 * Where the effective config comes from: defaults, then the config file, then
 * flags (or the environment, for the edge entry), and finally any JSON body an
 * operator POSTs to /reload. Each layer is validated on its own, so an error
 * names the layer and the field; the merged result remembers which layer set
 * each key, for GET /status and the start-up log.
 */
import {
  ACME_DEFAULTS,
  APP_KEYS,
  type AppConfig,
  type Config,
  type FieldError,
  type ParsedApp,
  type RawConfig,
  RUN_DEFAULTS,
  type RunConfig,
  validatePartial,
} from "./schema.ts";
import { validateWhole } from "./whole.ts";
import { formatListen } from "./address.ts";
import { compactLayers } from "./merge.ts";
import { formatDuration } from "./units.ts";
import { open } from "node:fs/promises";
import { isPermissionError } from "../util/permissions.ts";

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

export function defaultLayer(opts: { stderrIsTTY: boolean; adminToken?: string; state?: string }): Layer {
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
      healthInterval: "5s",
      healthTimeout: "2s",
      unhealthyAfter: 3,
      maxHeld: 10000,
      maxBodyBuffer: "1MiB",
      maxBody: null,
      maxHeldBodyBytes: "256MiB",
      headerTimeout: "10s",
      bodyTimeout: "60s",
      keepAliveTimeout: "75s",
      maxConnections: 10000,
      state: opts.state || null,
      workers: 1,
      wsMaxBuffered: "16MiB",
      wsCloseSpread: "5s",
      wsIdleTimeout: "10m",
      wsPingInterval: null,
      drainTimeout: "30s",
      admin: { listen: "127.0.0.1:2019", token: opts.adminToken || null, hosts: [] },
      log: opts.stderrIsTTY ? "text" : "json",
      waitingPageAfter: null,
      retryOn: [],
      maxConcurrent: null,
      slowStart: "0ms",
      rollbackWindow: null,
      allowUpstreams: [],
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
  /** Apps merge by name across layers: a reload body {"apps": [{"name": "web", "upstreams": […]}]} changes web only. */
  let apps: Map<string, ParsedApp> | null = null;
  for (const layer of layers) {
    const r = validatePartial(layer.raw);
    if ("errors" in r) {
      for (const e of r.errors) errors.push({ ...e, where: layer.label });
      continue;
    }
    const names = new Set<string>();
    for (const a of r.value.apps ?? []) {
      if (names.has(a.name)) errors.push({ where: layer.label, field: "apps", problem: `two apps named "${a.name}"` });
      names.add(a.name);
      apps ??= new Map();
      const before = apps.get(a.name);
      apps.set(a.name, before ? { ...before, ...definedOnly(a) } as ParsedApp : a);
      sources[`apps.${a.name}`] = layer.source;
    }
    for (const [key, value] of flatten(r.value)) {
      if (key === "apps") continue;
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
    run: null,
  } as unknown as Config & Record<string, unknown>;
  delete config["admin.listen"];
  delete config["admin.token"];
  delete config["admin.hosts"];
  config.metrics = { listen: (merged["metrics.listen"] ?? null) as Config["metrics"]["listen"] };
  delete config["metrics.listen"];
  config.pages = (merged.pages ?? null) as string | null;
  config.tls = { cert: merged["tls.cert"] ?? null, key: merged["tls.key"] ?? null, redirectHttp: merged["tls.redirectHttp"] ?? null, acme: null } as Config["tls"];
  delete config["tls.cert"];
  delete config["tls.key"];
  delete config["tls.redirectHttp"];
  // tls.acme.* keys merge one by one (a flag's --acme EMAIL keeps the file's tls.acme.directory).
  const acmeKeys = Object.keys(merged).filter((k) => k.startsWith("tls.acme."));
  if (acmeKeys.length) {
    const acme: Record<string, unknown> = { ...ACME_DEFAULTS, hosts: [], ca: null };
    for (const k of acmeKeys) {
      acme[k.slice(9)] = merged[k];
      delete config[k];
    }
    config.tls.acme = acme as unknown as Config["tls"]["acme"];
  }
  // run.* keys merge one by one too (a flag's --idle-stop keeps the file's run.command).
  const runKeys = Object.keys(merged).filter((k) => k.startsWith("run."));
  if (runKeys.length) {
    const run: Record<string, unknown> = { ...RUN_DEFAULTS };
    for (const k of runKeys) {
      run[k.slice(4)] = merged[k];
      delete config[k];
    }
    const last = [...layers].reverse().find((l) => typeof l.raw === "object" && l.raw !== null && "run" in l.raw) ?? layers[layers.length - 1];
    if (!run.command) {
      return { errors: [{ where: last.label, field: "run.command", problem: "is missing: give the app to run, holdup [options] -- COMMAND [ARGS…] (config: run.command)" }] };
    }
    if (sources.upstreams && sources.upstreams !== "default") {
      return { errors: [{ where: last.label, field: "upstreams", problem: "cannot be combined with run: holdup proxies to the app it starts" }] };
    }
    config.run = run as unknown as RunConfig;
  }
  config.apps = apps ? [...apps.values()].map((a) => appConfig(config, a)) : [appConfig(config, { name: "default" })];
  const whole = validateWhole(config);
  if (whole.length) return { errors: whole.map((e) => ({ ...e, where: layers[layers.length - 1].label })) };
  // Reload layers folded into one: the next reload starts from a few layers, not from every reload ever made.
  return { effective: { config, layers: compactLayers(layers), sources, shadowed } };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** An app with every per-app key resolved: its own value, else the top-level one. */
function appConfig(top: Config, a: ParsedApp): AppConfig {
  const out = {
    name: a.name,
    hosts: (a.hosts ?? []).map((h) => h.toLowerCase()),
    pathPrefix: (a.pathPrefix ?? "").replace(/\/+$/, ""),
    stripPrefix: a.stripPrefix ?? false,
    tls: a.tls ?? null,
  } as AppConfig;
  const own = a as Record<string, unknown>;
  for (const k of APP_KEYS) (out as unknown as Record<string, unknown>)[k] = own[k] ?? top[k];
  return out;
}

function* flatten(obj: Record<string, unknown>): Generator<[string, unknown]> {
  for (const [k, v] of Object.entries(obj)) {
    if ((k === "admin" || k === "run" || k === "tls" || k === "metrics") && v && typeof v === "object") {
      for (const [k2, v2] of Object.entries(v)) {
        if (k === "tls" && k2 === "acme" && v2 && typeof v2 === "object") {
          for (const [k3, v3] of Object.entries(v2)) yield [`tls.acme.${k3}`, v3];
        } else yield [`${k}.${k2}`, v2];
      }
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
    healthInterval: formatDuration(c.healthInterval),
    healthTimeout: formatDuration(c.healthTimeout),
    unhealthyAfter: c.unhealthyAfter,
    maxHeld: c.maxHeld,
    maxBodyBuffer: c.maxBodyBuffer,
    maxBody: c.maxBody,
    maxHeldBodyBytes: c.maxHeldBodyBytes,
    headerTimeout: formatDuration(c.headerTimeout),
    bodyTimeout: formatDuration(c.bodyTimeout),
    keepAliveTimeout: formatDuration(c.keepAliveTimeout),
    maxConnections: c.maxConnections,
    wsMaxBuffered: c.wsMaxBuffered,
    wsCloseSpread: formatDuration(c.wsCloseSpread),
    wsIdleTimeout: c.wsIdleTimeout === null ? "off" : formatDuration(c.wsIdleTimeout),
    wsPingInterval: c.wsPingInterval === null ? "off" : formatDuration(c.wsPingInterval),
    drainTimeout: formatDuration(c.drainTimeout),
    admin: {
      listen: c.admin.listen ? formatListen(c.admin.listen) : "off",
      token: c.admin.token ? "(set)" : null,
      hosts: c.admin.hosts,
    },
    apps: c.apps.map((a) => ({
      name: a.name,
      hosts: a.hosts,
      pathPrefix: a.pathPrefix,
      stripPrefix: a.stripPrefix,
      upstreams: a.upstreams,
      healthPath: a.healthPath,
      tryDuration: formatDuration(a.tryDuration),
      tryInterval: formatDuration(a.tryInterval),
      responseTimeout: formatDuration(a.responseTimeout),
      maxHeld: a.maxHeld,
      maxBodyBuffer: a.maxBodyBuffer,
      maxBody: a.maxBody,
      retryOn: a.retryOn,
      maxConcurrent: a.maxConcurrent,
      slowStart: formatDuration(a.slowStart),
      ...(a.tls ? { tls: a.tls } : {}),
    })),
    ...(c.tls.cert || c.tls.redirectHttp || c.tls.acme
      ? {
        tls: {
          cert: c.tls.cert,
          key: c.tls.key,
          redirectHttp: c.tls.redirectHttp ? formatListen(c.tls.redirectHttp) : null,
          ...(c.tls.acme ? { acme: c.tls.acme } : {}),
        },
      }
      : {}),
    ...(c.metrics.listen ? { metrics: { listen: formatListen(c.metrics.listen) } } : {}),
    ...(c.pages ? { pages: c.pages } : {}),
    log: c.log,
    ...(c.workers > 1 ? { workers: c.workers } : {}),
    ...(c.allowUpstreams.length ? { allowUpstreams: c.allowUpstreams } : {}),
    waitingPageAfter: c.waitingPageAfter === null ? null : formatDuration(c.waitingPageAfter),
    retryOn: c.retryOn,
    maxConcurrent: c.maxConcurrent,
    slowStart: formatDuration(c.slowStart),
    rollbackWindow: c.rollbackWindow === null ? null : formatDuration(c.rollbackWindow),
    ...(c.run
      ? {
        run: {
          command: c.run.command,
          cwd: c.run.cwd,
          env: Object.fromEntries(Object.keys(c.run.env).map((k) => [k, "(set)"])),
          readyTimeout: formatDuration(c.run.readyTimeout),
          stopSignal: c.run.stopSignal,
          stopTimeout: formatDuration(c.run.stopTimeout),
          drainTimeout: formatDuration(c.run.drainTimeout),
          idleStop: c.run.idleStop === null ? null : formatDuration(c.run.idleStop),
          restart: c.run.restart,
          release: c.run.release,
        },
      }
      : {}),
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
    if (isPermissionError(e)) throw e; // one line naming --allow-read (src/proxy.ts), not "cannot be read"
    const code = (e as { code?: string }).code;
    return { problem: `cannot be read${code ? ` (${code})` : ""}` };
  } finally {
    await fh?.close().catch(() => {});
  }
}
