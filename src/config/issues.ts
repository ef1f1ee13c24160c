/**
 * How a config problem reads to the user: one FieldError per field, named as
 * written ("apps[0].hosts"), in our own words (zod/mini carries no message
 * locale), with a "did you mean" for an unknown key.
 */
import type * as z from "zod/mini";
import { closest } from "../util/suggest.ts";

/** One field's problem, named as the user wrote it ("tryDuration", "admin.listen"). */
export interface FieldError {
  field: string;
  problem: string;
}

// zod/mini carries no message locale: say what is wrong in our own words.
export function describeIssue(issue: z.core.$ZodIssue): FieldError[] {
  const field = issue.path.map(String).join(".").replace(/\.(\d+)(?=\.|$)/g, "[$1]") || "(config)";
  switch (issue.code) {
    case "unrecognized_keys":
      return issue.keys.map((k) => ({
        field: field === "(config)" ? k : `${field}.${k}`,
        problem: `unknown key${suggest(k)}`,
      }));
    case "invalid_type":
      return [{ field, problem: `expected ${issue.expected}, got ${typeOf(issue.input)}` }];
    case "invalid_value":
      return [{ field, problem: `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}` }];
    case "invalid_union":
      return [{ field, problem: `expected a string or a number, got ${typeOf(issue.input)}` }];
    default:
      return [{ field, problem: issue.message }];
  }
}

function typeOf(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)}`;
}

const KNOWN = [
  "listen", "upstreams", "tryDuration", "tryInterval", "responseTimeout", "healthPath",
  "maxHeld", "maxBodyBuffer", "maxBody", "maxHeldBodyBytes", "headerTimeout", "bodyTimeout", "keepAliveTimeout",
  "maxConnections", "admin", "log", "token", "hosts", "apps", "name", "pathPrefix", "stripPrefix",
  "state", "workers", "waitingPageAfter", "retryOn", "maxConcurrent", "slowStart", "rollbackWindow", "run", "command", "cwd", "env", "readyTimeout", "stopSignal", "stopTimeout", "drainTimeout", "idleStop", "restart", "release",
  "wsMaxBuffered", "wsCloseSpread", "wsIdleTimeout", "wsPingInterval", "healthInterval", "healthTimeout", "unhealthyAfter", "allowUpstreams", "tls", "cert", "key", "redirectHttp", "acme", "email", "directory", "stateDir", "ca",
  "metrics", "pages",
];

function suggest(key: string): string {
  const best = closest(key, KNOWN);
  return best ? ` (did you mean "${best}"?)` : "";
}
