// `npm run gpu:check` as a smoke test on the CPU: the same bundle the npm script builds, the tiny
// model only, small sizes. It must generate and prepare the model, run every graph, and print the
// Markdown table (also written to --out) with one row per graph.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
let work: string;
let bundle: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'p2pz-gpu-check-test-'));
  // Bundled as package.json's gpu:check script does, next to the project's node_modules.
  bundle = join(ROOT, 'dist', `gpu-check-test-${process.pid}.mjs`);
  await build({ entryPoints: [join(ROOT, 'scripts/gpu-check.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', outfile: bundle, logLevel: 'silent' });
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(bundle, { force: true });
});

describe('gpu:check', () => {
  it('runs the tiny model on the CPU, the comparison path included, and prints the table', () => {
    const out = join(work, 'table.md');
    // --compare-always: CPU against CPU, so the comparison rows run here too (and differ by nothing).
    const r = spawnSync(process.execPath, [bundle, '--device', 'cpu', '--presets', 'tiny', '--compare-size', '64', '--time-size', '64', '--runs', '1', '--compare-always', '--out', out], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('Provider: cpu (CPU requested.)');
    expect(r.stdout).toMatch(/^## gpu:check\n/);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('| tiny |')).map((l) => l.split('|').map((c) => c.trim()));
    expect(rows.map((c) => c.slice(2, 5))).toEqual([
      ['UNet + cross-attention maps', '64', 'cpu'],
      ['guidance gradient', '64', 'cpu'],
      ['UNet step (batch 2)', '64', 'cpu'],
      ['guidance gradient step (batch 2)', '64', 'cpu'],
    ]);
    for (const c of rows) {
      expect(Number(c[6])).toBeGreaterThan(0);
      expect(c[9]).toBe('yes');
    }
    for (const c of rows.slice(0, 2)) expect(c.slice(7, 9)).toEqual(['0.00e+0', '0.00e+0']);
    for (const c of rows.slice(2)) expect(c.slice(7, 9)).toEqual(['–', '–']);
    return readFile(out, 'utf8').then((text) => expect(text).toBe(r.stdout));
  });

  it('refuses a working size that is not a multiple of 64', () => {
    const r = spawnSync(process.execPath, [bundle, '--device', 'cpu', '--presets', 'tiny', '--time-size', '100'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('--time-size must be a multiple of 64');
  });
});
