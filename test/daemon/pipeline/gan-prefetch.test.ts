// An upload made ready for its quick preview ahead of the request (daemon/pipeline/gan-prefetch.ts), on
// generated generators (y = −x) in a models folder of their own: the preview then finds the decode and
// the tensor done (and gives the pixels a preview that decodes gives), waits for a decode under way
// instead of decoding twice, and nothing is decoded without a generator, for an oversized image, or
// kept for a damaged one, whose preview still reports its own decode error.
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePng } from '../../../daemon/image/encode.js';
import { GraphBuilder } from '../../../daemon/onnx/graph/builder.js';
import { GAN_PREFETCH_DEFAULTS, prefetchGanInput } from '../../../daemon/pipeline/gan-prefetch.js';
import { runGanPreview } from '../../../daemon/pipeline/gan-preview.js';
import type { PipelineContext } from '../../../daemon/pipeline/context.js';
import { PreviewInputCache, previewInputKey } from '../../../daemon/pipeline/preview-input-cache.js';
import { findGanGenerator } from '../../../daemon/pipeline/preview-registry.js';
import { SessionCache } from '../../../daemon/worker/sessions.js';
import { pngHeader } from '../server/helpers.js';

let root: string;
let empty: string;
let models: SessionCache;
let none: SessionCache;
const W = 80;
const H = 48;
let png: Uint8Array;

beforeAll(async () => {
  root = await realpath(await mkdtemp(join(tmpdir(), 'p2pz-gan-prefetch-')));
  const dir = join(root, 'models', 'gan', 'day-night');
  await mkdir(dir, { recursive: true });
  const b = new GraphBuilder({ seed: 0, graphName: 'negate' });
  const x = b.input('pixels', 'float32', [1, 3, 'h', 'w']);
  b.output(b.op('Neg', [x]), 'translated', 'float32', [1, 3, 'h', 'w']);
  await b.write(join(dir, 'generator.onnx'));
  await writeFile(join(dir, 'meta.json'), JSON.stringify({ v: 1, source: 'day', target: 'night', size: 64 }));
  empty = join(root, 'empty');
  await mkdir(empty);
  models = new SessionCache({ modelsDir: join(root, 'models'), executionProviders: ['cpu'] });
  none = new SessionCache({ modelsDir: empty, executionProviders: ['cpu'] });
  const rgb = Uint8Array.from({ length: W * H * 3 }, (_, i) => (i * 53) % 256);
  png = await encodePng({ width: W, height: H, rgb });
});

afterAll(async () => {
  await models.releaseAll();
  await none.releaseAll();
  await rm(root, { recursive: true, force: true });
});

function context(): PipelineContext {
  return { models, signal: new AbortController().signal, progress: () => {} };
}

const always = () => true;

describe('prefetchGanInput', () => {
  it('decodes the upload and makes its tensor at the generator working size; the preview finds both', async () => {
    const inputs = new PreviewInputCache();
    expect(await prefetchGanInput(png, models, always, inputs)).toBe('ready');
    // 80×48 at meta.size 64: working size 64×64 (generatorWorkingSize): one tensor of 3·64·64 floats.
    expect(inputs.bytes).toBe(W * H * 3 + 3 * 64 * 64 * 4);
    const generator = await findGanGenerator(models, 'day', 'night');
    const result = await runGanPreview(png, generator, context(), inputs);
    expect(Object.keys(result.timings)).toContain('decoded-before');
    expect(Object.keys(result.timings)).not.toContain('decode');
    expect(inputs.bytes).toBe(W * H * 3 + 3 * 64 * 64 * 4); // no second tensor
    const decoding = await runGanPreview(png, generator, context(), new PreviewInputCache());
    expect(Object.keys(decoding.timings)).toContain('decode');
    expect(result.outputs[0]?.png).toEqual(decoding.outputs[0]?.png);
    // Again: found ready.
    expect(await prefetchGanInput(png, models, always, inputs)).toBe('ready');
    expect([inputs.hits, inputs.misses]).toEqual([2, 1]);
  });

  it('a preview asked while the prefetch decodes waits for that decode', async () => {
    const inputs = new PreviewInputCache();
    const generator = await findGanGenerator(models, 'day', 'night');
    const prefetch = prefetchGanInput(png, models, always, inputs);
    const result = await runGanPreview(png, generator, context(), inputs);
    expect(await prefetch).toBe('ready');
    expect(Object.keys(result.timings).filter((k) => k.startsWith('decode'))).toEqual(['decode-wait']);
    expect(inputs.misses).toBe(2); // each looked once and found nothing kept; one decode
  });

  it('stops before the tensor once a job has started', async () => {
    const inputs = new PreviewInputCache();
    // The worker starts a prefetch only while idle; here a job has started by the time it asks again.
    expect(await prefetchGanInput(png, models, () => false, inputs)).toBe('partly');
    expect(inputs.bytes).toBe(W * H * 3); // the decode, no tensor
  });

  it('does nothing without a generator, for an image over its pixel bound, or for bytes that are no image', async () => {
    const inputs = new PreviewInputCache();
    expect(await prefetchGanInput(png, none, always, inputs)).toBe('no-generator');
    expect(inputs.has(previewInputKey(png))).toBe(false);
    const side = Math.ceil(Math.sqrt(GAN_PREFETCH_DEFAULTS.maxPixels)) + 1;
    expect(await prefetchGanInput(pngHeader(side, side), models, always, inputs)).toBe('too-large');
    expect(await prefetchGanInput(Buffer.from('GIF89a, not ours'), models, always, inputs)).toBe('unreadable');
    expect(inputs.bytes).toBe(0);
  });

  it('keeps nothing for a damaged image, whose preview reports E_IMAGE_DECODE itself', async () => {
    const inputs = new PreviewInputCache();
    const damaged = Buffer.from(png);
    const idat = damaged.indexOf('IDAT');
    damaged.fill(0x55, idat + 8, damaged.length - 12);
    expect(await prefetchGanInput(damaged, models, always, inputs)).toBe('unreadable');
    expect(inputs.has(previewInputKey(damaged))).toBe(false);
    const generator = await findGanGenerator(models, 'day', 'night');
    await expect(runGanPreview(damaged, generator, context(), inputs)).rejects.toMatchObject({ code: 'E_IMAGE_DECODE' });
    // Asked while the prefetch's decode is under way: that decode fails, the preview decodes itself.
    const prefetch = prefetchGanInput(damaged, models, always, inputs);
    await expect(runGanPreview(damaged, generator, context(), inputs)).rejects.toMatchObject({ code: 'E_IMAGE_DECODE' });
    expect(await prefetch).toBe('unreadable');
    expect(inputs.bytes).toBe(0);
  });
});
