/**
 * Durations ("250ms", "1.5s", "2m") and sizes ("512", "64KiB", "1MiB", "1MB"),
 * as written in flags, config files and environment variables.
 * Each parser returns a number, or a string saying what is wrong.
 */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/** Milliseconds, or an error message. */
export function parseDuration(text: string): number | string {
  const m = DURATION.exec(text.trim());
  if (!m) return `"${text}" is not a duration; write it like 250ms, 1.5s, 2m or 1h`;
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]]);
}

const SIZE_UNITS: Record<string, number> = {
  "": 1, b: 1,
  kb: 1e3, mb: 1e6, gb: 1e9,
  kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
};
const SIZE = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i;

/** Bytes, or an error message. */
export function parseSize(text: string): number | string {
  const m = SIZE.exec(text.trim());
  const unit = m && SIZE_UNITS[m[2].toLowerCase()];
  if (!m || unit === undefined || unit === null) return `"${text}" is not a size; write it like 512, 64KiB, 1MiB or 1MB`;
  return Math.floor(Number(m[1]) * unit);
}

/** "1500ms" → "1.5s": for logs and status. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms >= 1000 && ms % 100 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
