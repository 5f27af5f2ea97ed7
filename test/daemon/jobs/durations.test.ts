// The duration estimate: a finished render's timings become seconds per UNet evaluation at its size
// (and the rest as overhead), kept per device on disk; the estimate of the next render is those
// numbers times its evaluations, scaled by pixel count from the nearest size when its own is new.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurationLog, deviceKey, renderSample } from '../../../daemon/jobs/durations.js';
import { durationWords, estimateRender, unetEvaluations } from '../../../shared/protocol/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-durations-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const cpu = { provider: 'cpu' as const };
const gpu = { provider: 'webgpu' as const, adapter: 'Apple M2' };
/** A 50-step render: 600 s of inversion, 1200 s of edit, 30 s of everything else, 5 s queued. */
const render = { engine: 'diffusion' as const, timings: { load: 20_000, inversion: 600_000, edit: 1_200_000, 'vae-decode': 10_000, queued: 5_000, total: 1_835_000 } };

describe('renderSample', () => {
  it('divides the diffusion stages by 3 evaluations per step; the rest is overhead', () => {
    expect(unetEvaluations(50)).toBe(150);
    expect(renderSample({ size: 512, steps: 50 }, render)).toEqual({ size: 512, steps: 50, secondsPerEvaluation: 1800 / 150, overheadSeconds: 30 });
  });

  it('ignores previews and timings without the diffusion stages', () => {
    expect(renderSample({ size: 512, steps: 50 }, { ...render, engine: 'diffusion-preview' })).toBeUndefined();
    expect(renderSample({ size: 512, steps: 50 }, { engine: 'diffusion', timings: { total: 100 } })).toBeUndefined();
  });
});

describe('estimateRender', () => {
  const at512 = { size: 512, steps: 50, secondsPerEvaluation: 12, overheadSeconds: 30 };
  it('uses the median rate at the same size: 12 s × 150 + 30 s for 50 steps, "about 31 min"', () => {
    const e = estimateRender([at512, { ...at512, secondsPerEvaluation: 11 }, { ...at512, secondsPerEvaluation: 100 }], { size: 512, steps: 50 });
    expect(e).toEqual({ seconds: 12 * 150 + 30, fromSize: 512 });
    expect(durationWords(e!.seconds)).toBe('about 31 min');
    expect(estimateRender([at512], { size: 512, steps: 10 })?.seconds).toBe(12 * 30 + 30);
  });

  it('scales the nearest size by pixel count when this size has not run yet', () => {
    expect(estimateRender([at512, { ...at512, size: 1024, secondsPerEvaluation: 60 }], { size: 256, steps: 50 })).toEqual({ seconds: 3 * 150 + 30, fromSize: 512 });
  });

  it('has nothing to say before the first render', () => {
    expect(estimateRender([], { size: 512, steps: 50 })).toBeUndefined();
  });

  it('words', () => {
    expect(durationWords(7)).toBe('about 5 s');
    expect(durationWords(44)).toBe('about 45 s');
    expect(durationWords(2400)).toBe('about 40 min');
    expect(durationWords(3600 + 20 * 60)).toBe('about 1 h 20 min');
    expect(durationWords(2 * 3600 + 58 * 60)).toBe('about 3 h');
  });
});

describe('DurationLog', () => {
  it('keeps samples per device (provider and adapter), on disk across a restart, newest 12', async () => {
    const file = join(dir, 'cache', 'durations.json');
    const log = await DurationLog.open(file);
    await log.record(cpu, { size: 512, steps: 50 }, render);
    await log.record(gpu, { size: 512, steps: 50 }, { ...render, timings: { ...render.timings, inversion: 6_000, edit: 12_000, total: 53_000 } });
    expect(log.samples(cpu)).toHaveLength(1);
    expect(log.samples({ provider: 'webgpu' })).toEqual([]);
    expect(log.samples(gpu)[0]?.secondsPerEvaluation).toBeCloseTo(0.12, 10);
    expect(log.samples(null)).toEqual([]);

    const again = await DurationLog.open(file);
    expect(again.samples(cpu)).toEqual(log.samples(cpu));
    expect(Object.keys(JSON.parse(await readFile(file, 'utf8')).devices)).toEqual([deviceKey(cpu), deviceKey(gpu)]);
    for (let i = 0; i < 15; i++) await again.record(cpu, { size: 256, steps: 10 + i }, render);
    expect(again.samples(cpu)).toHaveLength(12);
    expect(again.samples(cpu).at(-1)?.steps).toBe(24);
  });

  it('starts empty from a damaged file, and rewrites it', async () => {
    const file = join(dir, 'damaged.json');
    await writeFile(file, '{"v":1,"devices":{"cpu:":[{"size":"big"}]}}');
    const log = await DurationLog.open(file);
    expect(log.samples(cpu)).toEqual([]);
    await log.record(cpu, { size: 512, steps: 50 }, render);
    expect((await DurationLog.open(file)).samples(cpu)).toHaveLength(1);
  });
});
