// The daemon's folders import one way (docs/DESIGN.md, "Parts"): the entry points over server, jobs
// and the engines (worker, team), the worker over the pipeline, the pipeline over models, models over onnx; image, log.ts
// and config.ts below them all; shared/ imports nothing of ours. Reads every import and export-from
// (static, type-only and dynamic) of daemon/ and shared/ and checks each edge between folders against
// the allowed direction, so a new import that points back up fails here.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const DAEMON = join(ROOT, 'daemon');

/** What each part of daemon/ may import (besides itself and shared/). A part is a folder, or one of
 *  the files at the top of daemon/. */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  'cli.ts': ['cli', 'config.ts', 'log.ts'],
  cli: ['daemon.ts', 'server', 'jobs', 'worker', 'team', 'distill', 'pipeline', 'models', 'onnx', 'image', 'config.ts', 'log.ts'],
  'daemon.ts': ['server', 'jobs', 'worker', 'team', 'models', 'config.ts', 'log.ts'],
  // The team routes (server/routes/team.ts) serve the team engine's workers.
  server: ['jobs', 'team', 'pipeline', 'models', 'image', 'config.ts', 'log.ts'],
  jobs: ['config.ts', 'log.ts'],
  // The worker's supervisor implements the queue's JobEngine contract (jobs/engine.ts).
  worker: ['jobs', 'pipeline', 'models', 'onnx', 'image', 'config.ts', 'log.ts'],
  // Team mode's JobEngine (BullMQ in Redis) stands where the local worker does.
  team: ['jobs', 'config.ts', 'log.ts'],
  distill: ['worker', 'pipeline', 'models', 'onnx', 'image', 'config.ts', 'log.ts'],
  pipeline: ['models', 'onnx', 'image', 'log.ts'],
  models: ['onnx', 'image', 'config.ts', 'log.ts'],
  onnx: ['config.ts', 'log.ts'],
  image: [],
  'config.ts': [],
  'log.ts': ['config.ts'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** Relative specifiers of every `import … from`, `export … from`, bare `import '…'` and `import('…')`. */
function relativeImports(text: string): string[] {
  const found: string[] = [];
  const patterns = [/\bfrom\s+'(\.[^']*)'/g, /\bimport\s+'(\.[^']*)'/g, /\bimport\(\s*'(\.[^']*)'\s*\)/g];
  for (const re of patterns) for (const m of text.matchAll(re)) found.push(m[1] as string);
  return found;
}

/** The part of daemon/ a path belongs to, `shared` for shared/, or undefined elsewhere. */
function partOf(path: string): string | undefined {
  const rel = relative(ROOT, path).split(sep);
  if (rel[0] === 'shared') return 'shared';
  if (rel[0] !== 'daemon' || rel.length < 2) return undefined;
  return rel.length === 2 ? (rel[1] as string).replace(/\.js$/, '.ts') : rel[1];
}

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly file: string;
}

function importEdges(dir: string): Edge[] {
  const edges: Edge[] = [];
  for (const file of sourceFiles(dir)) {
    const from = partOf(file);
    if (from === undefined) continue;
    for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
      const to = partOf(resolve(dirname(file), spec)) ?? `outside (${spec})`;
      if (to !== from) edges.push({ from, to, file: relative(ROOT, file) });
    }
  }
  return edges;
}

/** Folders on a cycle of `edges`, as paths such as `models → pipeline → models` (none for a DAG). */
function cycles(edges: ReadonlyMap<string, ReadonlySet<string>>): string[] {
  const found: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const walk = (node: string, path: string[]): void => {
    state.set(node, 'open');
    for (const next of edges.get(node) ?? []) {
      if (state.get(next) === 'open') found.push([...path.slice(path.indexOf(next)), node, next].join(' → '));
      else if (!state.has(next)) walk(next, [...path, node]);
    }
    state.set(node, 'done');
  };
  for (const node of edges.keys()) if (!state.has(node)) walk(node, []);
  return found;
}

function graphOf(edges: readonly Edge[]): Map<string, Set<string>> {
  const g = new Map<string, Set<string>>();
  for (const e of edges) g.set(e.from, (g.get(e.from) ?? new Set()).add(e.to));
  return g;
}

describe('import direction', () => {
  const edges = importEdges(DAEMON);

  it('reads the imports of every part of daemon/', () => {
    const parts = new Set(edges.map((e) => e.from));
    for (const part of ['cli', 'server', 'jobs', 'worker', 'pipeline', 'models', 'distill']) expect(parts).toContain(part);
    expect(edges.some((e) => e.from === 'worker' && e.to === 'pipeline')).toBe(true);
  });

  it('allows no cycle, so the allowed direction itself is one way', () => {
    expect(cycles(new Map(Object.entries(ALLOWED).map(([k, v]) => [k, new Set(v)])))).toEqual([]);
  });

  it('every import between daemon folders follows the allowed direction', () => {
    const shared = new Set(['shared']);
    const wrong = edges
      .filter((e) => !shared.has(e.to) && !(ALLOWED[e.from] ?? []).includes(e.to))
      .map((e) => `${e.file}: ${e.from} → ${e.to}`);
    expect(wrong).toEqual([]);
  });

  it('no folder imports a folder that imports it back', () => {
    expect(cycles(graphOf(edges))).toEqual([]);
  });

  it('shared/ imports nothing of ours outside shared/', () => {
    const outward = importEdges(join(ROOT, 'shared')).map((e) => `${e.file} → ${e.to}`);
    expect(outward).toEqual([]);
  });

  it('finds a cycle and a wrong-way import when there is one', () => {
    expect(cycles(new Map([['models', new Set(['pipeline'])], ['pipeline', new Set(['models'])]]))).toEqual(['models → pipeline → models']);
    expect(relativeImports(`import type { A } from '../pipeline/x.js';\nexport { B } from './y.js';\nawait import('../z.js');`))
      .toEqual(['../pipeline/x.js', './y.js', '../z.js']);
  });
});
