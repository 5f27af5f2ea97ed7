// Loading a model folder: the tokenizer is parsed once and shared by later loads (every edit loads
// its model) while its files are unchanged, and parsed again once one of them changes.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDiffusionModel, loadTextModel } from '../../../daemon/pipeline/diffusion-model.js';
import { MODEL_NAME, tinyModels, type TinyModels } from './tiny-pipeline.js';

describe('model loading reuses the parsed tokenizer', () => {
  let tiny: TinyModels;
  beforeAll(async () => {
    tiny = await tinyModels('opset14');
  });
  afterAll(() => tiny.dispose());

  it('shares one tokenizer across loads while the files are unchanged, and reloads after a change', async () => {
    const first = await loadDiffusionModel(tiny.counting, MODEL_NAME);
    const second = await loadDiffusionModel(tiny.counting, MODEL_NAME);
    const text = await loadTextModel(tiny.counting, MODEL_NAME);
    expect(second.tokenizer).toBe(first.tokenizer);
    expect(text.tokenizer).toBe(first.tokenizer);
    expect(first.tokenizer.padId).toBe(first.tokenizer.eosId);

    const mapPath = join(tiny.modelDir, 'tokenizer', 'special_tokens_map.json');
    const map = JSON.parse(await readFile(mapPath, 'utf8')) as Record<string, unknown>;
    await writeFile(mapPath, JSON.stringify({ ...map, pad_token: '!' }, null, 1));
    const vocab = JSON.parse(await readFile(join(tiny.modelDir, 'tokenizer', 'vocab.json'), 'utf8')) as Record<string, number>;
    const changed = await loadDiffusionModel(tiny.counting, MODEL_NAME);
    expect(changed.tokenizer).not.toBe(first.tokenizer);
    expect(changed.tokenizer.padId).toBe(vocab['!']);
    expect(changed.tokenizer.padId).not.toBe(first.tokenizer.padId);
    expect((await loadDiffusionModel(tiny.counting, MODEL_NAME)).tokenizer).toBe(changed.tokenizer);
  });
});
