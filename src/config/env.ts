/**
 * Config from the environment, for the edge entry: HOLDUP_CONFIG holds a whole
 * JSON config; HOLDUP_UPSTREAMS (comma-separated), HOLDUP_TRY_DURATION, … set
 * one key each (upper snake case of the key) and win over HOLDUP_CONFIG.
 */
import type { Layer, LayerError } from "./layers.ts";
import type { RawConfig } from "./schema.ts";

const KEYS: Record<string, (raw: RawConfig, v: string) => void> = {
  HOLDUP_UPSTREAMS: (r, v) => r.upstreams = v.split(",").map((s) => s.trim()).filter(Boolean),
  HOLDUP_TRY_DURATION: (r, v) => r.tryDuration = v,
  HOLDUP_TRY_INTERVAL: (r, v) => r.tryInterval = v,
  HOLDUP_RESPONSE_TIMEOUT: (r, v) => r.responseTimeout = v,
  HOLDUP_HEALTH_PATH: (r, v) => r.healthPath = v,
  HOLDUP_MAX_HELD: (r, v) => r.maxHeld = v,
  HOLDUP_MAX_BODY_BUFFER: (r, v) => r.maxBodyBuffer = v,
  HOLDUP_MAX_BODY: (r, v) => r.maxBody = v,
  HOLDUP_MAX_HELD_BODY_BYTES: (r, v) => r.maxHeldBodyBytes = v,
  HOLDUP_RETRY_ON: (r, v) => r.retryOn = v,
  HOLDUP_MAX_CONCURRENT: (r, v) => r.maxConcurrent = v,
  HOLDUP_SLOW_START: (r, v) => r.slowStart = v,
  HOLDUP_ROLLBACK_WINDOW: (r, v) => r.rollbackWindow = v,
  HOLDUP_LOG: (r, v) => r.log = v as RawConfig["log"],
  HOLDUP_STATE: (r, v) => r.state = v,
  HOLDUP_DRAIN_TIMEOUT: (r, v) => r.drainTimeout = v,
  HOLDUP_WS_CLOSE_SPREAD: (r, v) => r.wsCloseSpread = v,
  HOLDUP_WS_MAX_BUFFERED: (r, v) => r.wsMaxBuffered = v,
  HOLDUP_ADMIN_TOKEN: (r, v) => r.admin = { ...r.admin, token: v },
  HOLDUP_ALLOW_UPSTREAMS: (r, v) => r.allowUpstreams = v.split(",").map((s) => s.trim()).filter(Boolean),
};

/** Variables that mean something only to the command-line proxy. */
const IGNORED = new Set(["HOLDUP_LISTEN", "HOLDUP_ADMIN_LISTEN", "HOLDUP_ADMIN"]);

export function envLayers(env: Record<string, string>): { layers: Layer[]; ignored: string[] } | { errors: LayerError[] } {
  const layers: Layer[] = [];
  const ignored: string[] = [];
  const errors: LayerError[] = [];
  if (env.HOLDUP_CONFIG) {
    try {
      layers.push({ source: "env", label: "HOLDUP_CONFIG", raw: JSON.parse(env.HOLDUP_CONFIG) });
    } catch (e) {
      errors.push({ where: "HOLDUP_CONFIG", field: "(json)", problem: `is not valid JSON: ${(e as Error).message}` });
    }
  }
  const raw: RawConfig = {};
  for (const [name, value] of Object.entries(env)) {
    if (name === "HOLDUP_CONFIG") continue;
    const set = KEYS[name];
    if (set) set(raw, value);
    else if (IGNORED.has(name)) ignored.push(name);
    else {
      errors.push({
        where: "environment",
        field: name,
        problem: `unknown variable; known: HOLDUP_CONFIG, ${Object.keys(KEYS).join(", ")}`,
      });
    }
  }
  if (errors.length) return { errors };
  if (Object.keys(raw).length) layers.push({ source: "env", label: "environment", raw });
  return { layers, ignored };
}
