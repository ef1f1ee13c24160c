/** "Did you mean …": the closest known word by edit distance, for config keys, flags and commands. */

/** The candidate nearest to `word` (case-insensitive), if at most `max` edits away. */
export function closest(word: string, candidates: Iterable<string>, max = 2): string | null {
  const w = word.toLowerCase();
  let best: string | null = null, bestDistance = max + 1;
  for (const c of candidates) {
    const d = distance(w, c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

/** Levenshtein distance. */
export function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * parseArgs' "Unknown option '--try-duraton'" with the nearest known flag:
 * `Unknown option '--try-duraton' (did you mean --try-duration?)`.
 */
export function explainArgsError(message: string, flags: Iterable<string>): string {
  const text = message.replace(/\. To specify.*$/s, "");
  const m = /^Unknown option '(-{1,2})([^'=]+)'/.exec(text);
  if (!m) return text;
  const best = closest(m[2], flags, m[2].length <= 4 ? 1 : 2);
  return best ? `${text} (did you mean --${best}?)` : text;
}
