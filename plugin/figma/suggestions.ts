/// <reference path="../../node_modules/@figma/plugin-typings/plugin-api.d.ts" />
// Quick-action suggestions for the source and target words. Both are free-form; the suggestions are
// the directions the daemon has a fast GAN preview for (asked once, from its open health endpoint, with
// a short timeout so that typing never waits on a daemon that is not running) and the built-in ones.
import { BUILTIN_DIRECTIONS, HealthDirections, type Direction } from '../../shared/protocol/plugin.js';

export const SUGGESTION_DEFAULTS = Object.freeze({
  /** How long the quick-action list waits for the daemon before showing the built-ins. */
  timeoutMs: 600,
  maxSuggestions: 12,
});

/** The sandbox's fetch, reduced to what is used here (Figma's has no abort). */
export type SandboxFetch = (url: string) => Promise<{ ok: boolean; json(): Promise<unknown> }>;

export function normalizeWord(word: string): string {
  return word.trim().toLowerCase().replace(/\s+/g, ' ');
}

/** Directions with a GAN preview installed in the daemon on `port`; [] when it cannot be asked. */
export async function daemonDirections(fetchFn: SandboxFetch | undefined, port: number, timeoutMs = SUGGESTION_DEFAULTS.timeoutMs): Promise<Direction[]> {
  if (fetchFn === undefined) return [];
  const ask = async (): Promise<Direction[]> => {
    const response = await fetchFn(`http://localhost:${port}/v1/health`);
    if (!response.ok) return [];
    const parsed = HealthDirections.safeParse(await response.json());
    if (!parsed.success) return [];
    return parsed.data.models.flatMap((m) => (m.direction ? [m.direction] : []));
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<Direction[]>((resolve) => {
    timer = setTimeout(() => resolve([]), timeoutMs);
  });
  try {
    return await Promise.race([ask().catch(() => []), timeout]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

function unique(words: readonly string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const w of words) {
    const key = normalizeWord(w);
    if (key.length === 0 || seen.has(key)) continue;
    seen.add(key);
    out.push(w.trim());
  }
  return out;
}

/**
 * Suggestions for one parameter. `source`: every known source word. `target`: the targets known for
 * the chosen source first, then the others. Words containing the query come first; the query itself
 * leads the list so that any word can be entered.
 */
export function suggestWords(key: 'source' | 'target', query: string, chosenSource: string | undefined, directions: readonly Direction[]): string[] {
  const all = [...directions, ...BUILTIN_DIRECTIONS];
  let words: string[];
  if (key === 'source') {
    words = unique(all.map((d) => d.source));
  } else {
    const from = chosenSource === undefined ? '' : normalizeWord(chosenSource);
    const matching = all.filter((d) => normalizeWord(d.source) === from).map((d) => d.target);
    words = unique([...matching, ...all.map((d) => d.target)]);
    if (from !== '') words = words.filter((w) => normalizeWord(w) !== from);
  }
  const q = normalizeWord(query);
  const hits = q === '' ? words : words.filter((w) => normalizeWord(w).includes(q));
  const list = q !== '' && !hits.some((w) => normalizeWord(w) === q) ? [query.trim(), ...hits] : hits;
  return list.slice(0, SUGGESTION_DEFAULTS.maxSuggestions);
}
