// Small parts of the pipeline: the inversion cache (bounded LRU, disk copy, key), which model a job
// uses, the caption template, the reduced settings of the diffusion preview and the cheap step
// preview's projection.
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EditParams, P2pzError } from '../../../shared/protocol/index.js';
import { captionFor } from '../../../daemon/pipeline/caption.js';
import { chooseDiffusionModel, listDiffusionModels } from '../../../daemon/pipeline/diffusion-model.js';
import { previewSettings } from '../../../daemon/pipeline/diffusion-preview.js';
import { InversionCache, inversionKey, type InversionKeyParts } from '../../../daemon/pipeline/inversion-cache.js';
import { latentPreviewRgb, SD1_LATENT_RGB } from '../../../daemon/pipeline/latent-preview.js';
import { MODELS_DEFAULTS } from '../../../daemon/models/defaults.js';
import { resolveModelPath } from '../../../daemon/models/model-path.js';

const PARTS: InversionKeyParts = {
  imageSha256: 'a'.repeat(64), model: 'm', caption: 'a photo of a cat', steps: 50, seed: 1, regSteps: 5,
  regularization: { inner: 5, lambdaAc: 20, lambdaKl: 20 }, size: [512, 512], vaeLatent: 'mean',
};

describe('InversionCache', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pz-inv-cache-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('keys change with every part that z_T depends on', () => {
    const base = inversionKey(PARTS);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    for (const change of [{ caption: 'a cat' }, { seed: 2 }, { steps: 49 }, { regSteps: 4 }, { size: [512, 448] as const }, { vaeLatent: 'sample' }, { model: 'n' }]) {
      expect(inversionKey({ ...PARTS, ...change })).not.toBe(base);
    }
  });

  it('keeps at most maxEntries in memory, least recently used out first; returns copies', async () => {
    const cache = new InversionCache({ maxEntries: 2 });
    await cache.set('k1', Float32Array.of(1, 2), [1, 2]);
    await cache.set('k2', Float32Array.of(3, 4), [1, 2]);
    const got = (await cache.get('k1', 2))!;
    got[0] = 99;
    expect([...(await cache.get('k1', 2))!]).toEqual([1, 2]);
    await cache.set('k3', Float32Array.of(5, 6), [1, 2]); // evicts k2, the least recent
    expect(cache.size).toBe(2);
    expect(await cache.get('k2', 2)).toBeUndefined();
    expect(await cache.get('k1', 3)).toBeUndefined(); // wrong length never matches
    expect([cache.hits, cache.misses]).toEqual([2, 2]);
  });

  it('with a folder, a new cache (a new process) finds the latent on disk', async () => {
    await new InversionCache({ dir }).set('abc', Float32Array.of(0.5, -1.25, 3), [1, 3]);
    expect(await readdir(dir)).toEqual(['abc.npy']);
    expect([...(await new InversionCache({ dir }).get('abc', 3))!]).toEqual([0.5, -1.25, 3]);
  });
});

describe('chooseDiffusionModel', () => {
  let models: string;
  const files = () => ({ modelsDir: models, resolve: (p: string) => resolveModelPath(models, p) });
  beforeAll(async () => {
    models = await mkdtemp(join(tmpdir(), 'p2pz-choose-'));
  });
  afterAll(() => rm(models, { recursive: true, force: true }));
  const install = async (name: string) => {
    await mkdir(join(models, name), { recursive: true });
    await writeFile(join(models, name, 'model_index.json'), '{}');
  };
  const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: P2pzError) => e.code);

  it('none installed → E_MODEL_MISSING with the install command; one → that one; the default wins; a named one must exist', async () => {
    const none = await chooseDiffusionModel(files()).catch((e: P2pzError) => e);
    expect(none).toBeInstanceOf(P2pzError);
    expect((none as P2pzError).code).toBe('E_MODEL_MISSING');
    expect((none as P2pzError).hint).toContain(MODELS_DEFAULTS.installCommand);
    await install('my-model');
    await mkdir(join(models, 'gan'), { recursive: true });
    expect(await chooseDiffusionModel(files())).toBe('my-model');
    await install('other');
    expect(await codeOf(chooseDiffusionModel(files()))).toBe('E_BAD_REQUEST');
    await install('stable-diffusion-v1-4');
    expect(await listDiffusionModels(files())).toEqual(['my-model', 'other', 'stable-diffusion-v1-4']);
    expect(await chooseDiffusionModel(files())).toBe('stable-diffusion-v1-4');
    expect(await chooseDiffusionModel(files(), 'other')).toBe('other');
    expect(await codeOf(chooseDiffusionModel(files(), 'absent'))).toBe('E_MODEL_MISSING');
    expect(await codeOf(chooseDiffusionModel(files(), '../etc'))).toBe('E_BAD_REQUEST');
  });
});

describe('captions, preview settings, step previews', () => {
  it('the caption is the user\'s (whitespace collapsed) or "a photo of a/an {source}"', () => {
    expect(captionFor('cat')).toEqual({ caption: 'a photo of a cat', origin: 'template' });
    expect(captionFor('elephant').caption).toBe('a photo of an elephant');
    expect(captionFor('cat', '  a  cat on a sofa ')).toEqual({ caption: 'a cat on a sofa', origin: 'user' });
  });

  it('the diffusion preview caps steps at 10, regularization at 1 and the size at 256', () => {
    const full = EditParams.parse({ source: 'cat', target: 'dog' });
    expect(previewSettings(full)).toMatchObject({ steps: 10, regSteps: 1, size: 256, cfg: full.cfg, seed: full.seed });
    const small = EditParams.parse({ source: 'cat', target: 'dog', steps: 4, regSteps: 0, size: 128 });
    expect(previewSettings(small)).toMatchObject({ steps: 4, regSteps: 0, size: 128 });
  });

  it('the latent preview is the fixed linear projection, one pixel per latent cell', () => {
    // x̂0 = unit vector on channel 3 at pixel 0, zero elsewhere, 1×2 latent.
    const x0 = new Float32Array(8);
    x0[3 * 2 + 0] = 1;
    const rgb = latentPreviewRgb(x0, 1, 2);
    const p = SD1_LATENT_RGB[3]!;
    expect([...rgb.subarray(0, 3)]).toEqual(p.map((v) => Math.round((v + 1) * 127.5)));
    expect([...rgb.subarray(3)]).toEqual([128, 128, 128]);
  });
});
