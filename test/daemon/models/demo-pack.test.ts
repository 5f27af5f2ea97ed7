// The demo pack: generated once, verified like an install, found by the pipeline's registries,
// marked demo, never counted as a real model, and removed as a whole.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PACK, hasRealDiffusionModel, removeDemoPack, writeDemoPack } from '../../../daemon/models/demo-pack.js';
import { listModels } from '../../../daemon/models/registry.js';
import { verifyModel } from '../../../daemon/models/verify.js';
import { chooseDiffusionModel } from '../../../daemon/pipeline/diffusion-model.js';
import { lookupGanGenerator } from '../../../daemon/pipeline/preview-registry.js';
import { resolveModelPath } from '../../../daemon/models/model-path.js';

let models: string;
beforeAll(async () => {
  models = await mkdtemp(join(tmpdir(), 'p2pz-demo-'));
});
afterAll(async () => {
  await rm(models, { recursive: true, force: true });
});

describe('demo pack', () => {
  it('is written once, verifies, and is what the pipeline finds', async () => {
    expect(await writeDemoPack(models)).toEqual([DEMO_PACK.diffusion, DEMO_PACK.gan]);
    expect(await writeDemoPack(models)).toEqual([]);
    const list = await listModels(models);
    expect(list.map((m) => [m.name, m.kind, m.demo, m.source?.kind, m.prepared])).toEqual([
      ['p2pz-demo', 'diffusion', true, 'generated', ['64x64']],
      ['gan/p2pz-demo-cat-dog', 'gan', true, 'generated', []],
    ]);
    for (const m of list) expect((await verifyModel(models, m.name)).ok, m.name).toBe(true);
    expect(await hasRealDiffusionModel(models)).toBe(false);

    const files = { modelsDir: models, resolve: (p: string) => resolveModelPath(models, p) };
    expect(await chooseDiffusionModel(files)).toBe('p2pz-demo');
    expect((await lookupGanGenerator(files, 'Cat', 'dog'))?.name).toBe('p2pz-demo-cat-dog');
  });

  it('is removed as a whole', async () => {
    expect(await removeDemoPack(models)).toEqual([DEMO_PACK.diffusion, DEMO_PACK.gan]);
    expect(await listModels(models)).toEqual([]);
  });
});
