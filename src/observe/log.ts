/**
 * Logs on stderr: the access log (one line per request) and events (start-up,
 * reloads, pause/resume/stop, upstream state changes). JSON lines when stderr
 * is not a terminal, readable text when it is. Lines are batched and written
 * once per tick, so a busy proxy makes one write per tick rather than one per
 * request.
 */
import type { LogFormat } from "../config/schema.ts";

export interface AccessEntry {
  method: string;
  path: string;
  status: number;
  /** Response body bytes when known (Content-Length or counted), else null. */
  bytes: number | null;
  durationMs: number;
  heldMs: number;
  upstream: string | null;
  /** The request's X-Request-Id (see http/requestid.ts). */
  requestId: string;
  /** Why holdup answered itself ("held past tryDuration", …). */
  reason?: string;
}

export class Logger {
  private lines: string[] = [];
  private scheduled = false;
  /** Sees every event (not the access log): the dashboard keeps the last ones. */
  onEvent: ((level: string, msg: string, fields: Record<string, unknown>) => void) | null = null;
  /**
   * Which process wrote the line: with --workers the worker's index (`"worker": 1` in JSON,
   * `[w1]` in text); at the edge with shared state, the isolate's instance id.
   */
  worker: number | string | null = null;

  /**
   * @param format the access-log format; events use it too, except with "off",
   *   where they still print: as JSON unless stderr is a terminal.
   */
  constructor(public format: LogFormat, private write: (text: string) => void, private stderrIsTTY = false) {}

  private get eventFormat(): "json" | "text" {
    if (this.format === "off") return this.stderrIsTTY ? "text" : "json";
    return this.format;
  }

  get accessEnabled(): boolean {
    return this.format !== "off";
  }

  access(e: AccessEntry): void {
    if (this.format === "off") return;
    if (this.format === "json") {
      this.push(JSON.stringify({
        time: new Date().toISOString(),
        level: "info",
        ...(this.worker !== null ? { worker: this.worker } : {}),
        msg: "request",
        method: e.method,
        path: e.path,
        status: e.status,
        bytes: e.bytes,
        duration_ms: round(e.durationMs),
        held_ms: round(e.heldMs),
        upstream: e.upstream,
        request_id: e.requestId,
        ...(e.reason ? { reason: e.reason } : {}),
      }));
    } else {
      const held = e.heldMs >= 1 ? ` held=${round(e.heldMs)}ms` : "";
      const why = e.reason ? ` (${e.reason})` : "";
      this.push(
        `${time()}${this.worker !== null ? ` [w${this.worker}]` : ""} ${e.method} ${e.path} ${e.status} ${e.bytes ?? "-"}B ${round(e.durationMs)}ms${held}` +
          ` → ${e.upstream ?? "holdup"}${why} id=${e.requestId}`,
      );
    }
  }

  /** A line the app (instance `id`) wrote: `[app#2] line`, or a JSON event. Printed even with the access log off. */
  app(id: number, stream: "stdout" | "stderr", line: string): void {
    if (this.eventFormat === "json") {
      this.push(JSON.stringify({ time: new Date().toISOString(), level: "info", msg: "app output", instance: id, stream, line }));
    } else this.push(`[app#${id}] ${line}`);
  }

  /** A line the release command (run.release) wrote: `[release] line`, or a JSON event. */
  release(stream: "stdout" | "stderr", line: string): void {
    if (this.eventFormat === "json") {
      this.push(JSON.stringify({ time: new Date().toISOString(), level: "info", msg: "release output", stream, line: `[release] ${line}` }));
    } else this.push(`[release] ${line}`);
  }

  /** An event an operator should see. Printed even with the access log off. */
  info(msg: string, fields: Record<string, unknown> = {}): void {
    this.event("info", msg, fields);
  }

  warn(msg: string, fields: Record<string, unknown> = {}): void {
    this.event("warn", msg, fields);
  }

  error(msg: string, fields: Record<string, unknown> = {}): void {
    this.event("error", msg, fields);
  }

  /** Writes what is batched now (before exit). */
  flush(): void {
    this.scheduled = false;
    if (!this.lines.length) return;
    const text = this.lines.join("\n") + "\n";
    this.lines = [];
    this.write(text);
  }

  private event(level: string, msg: string, fields: Record<string, unknown>): void {
    this.onEvent?.(level, msg, fields);
    if (this.eventFormat === "json") {
      const w = this.worker !== null ? { worker: this.worker } : {};
      this.push(JSON.stringify({ time: new Date().toISOString(), level, ...w, msg, ...fields }));
    } else {
      const extra = Object.entries(fields)
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
        .join(" ");
      this.push(`${time()}${this.worker !== null ? ` [w${this.worker}]` : ""} ${level === "info" ? "" : `${level.toUpperCase()} `}${msg}${extra ? ` ${extra}` : ""}`);
    }
  }

  private push(line: string): void {
    this.lines.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.flush(), 0);
    }
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function time(): string {
  return new Date().toISOString().slice(11, 23);
}
