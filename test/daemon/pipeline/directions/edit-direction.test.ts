// Δ = mean E_text(target bank) − mean E_text(source bank), checked against a direct computation
// (each sentence encoded alone, means in float64), and its disk cache: the second call reads the
// file and never runs the text encoder.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDiffusionModel, type DiffusionModel } from '../../../../daemon/pipeline/diffusion-model.js';
import { editDirection, editEmbedding } from '../../../../daemon/pipeline/directions/edit-direction.js';
import { parallelSentenceBankPair, sentenceBankPair } from '../../../../daemon/pipeline/directions/sentence-bank.js';
import { encodeText } from '../../../../daemon/pipeline/text/text-encoder.js';
import { MODEL_NAME, tinyModels, type TinyModels } from '../tiny-pipeline.js';

const BANKS = {
  source: ['a cat', 'a photo of a cat', 'a black cat sitting on the couch'],
  target: ['a dog', 'a photo of a dog', 'a brown dog sitting on the couch', 'a dog in the snow'],
};

describe('editDirection (tiny model, opset14)', () => {
  let tiny: TinyModels;
  let model: DiffusionModel;
  let cacheDir: string;
  beforeAll(async () => {
    tiny = await tinyModels('opset14');
    model = await loadDiffusionModel(tiny.counting, MODEL_NAME);
    cacheDir = await mkdtemp(join(tmpdir(), 'p2pz-directions-'));
  });
  afterAll(async () => {
    await tiny.dispose();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('equals the difference of the banks\' mean embeddings, computed sentence by sentence', async () => {
    const d = await editDirection(tiny.counting, model, BANKS);
    const n = 77 * 32;
    const mean = async (bank: readonly string[]): Promise<Float64Array> => {
      const sum = new Float64Array(n);
      for (const s of bank) {
        const e = (await encodeText(tiny.counting, model, s)).embedding.data;
        for (let i = 0; i < n; i++) sum[i] = sum[i]! + e[i]! / bank.length;
      }
      return sum;
    };
    const [ms, mt] = [await mean(BANKS.source), await mean(BANKS.target)];
    expect(d.delta).toHaveLength(n);
    let maxDiff = 0;
    let norm = 0;
    for (let i = 0; i < n; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(d.delta[i]! - (mt[i]! - ms[i]!)));
      norm += d.delta[i]! ** 2;
    }
    expect(maxDiff).toBeLessThan(1e-5);
    expect(Math.sqrt(norm)).toBeGreaterThan(1e-2);
  });

  it('caches Δ on disk: the second call reads the file and runs no text encoder', async () => {
    tiny.counting.reset();
    const first = await editDirection(tiny.counting, model, { ...BANKS, source: [...BANKS.source, 'a cat in the snow'] }, { cacheDir, skipMemory: true });
    const runsAfterFirst = tiny.counting.count('text_encoder');
    expect(first.cached).toBe(false);
    expect(runsAfterFirst).toBeGreaterThan(0);
    expect(await readdir(cacheDir)).toEqual([`${first.key}.npy`]);
    const second = await editDirection(tiny.counting, model, { ...BANKS, source: [...BANKS.source, 'a cat in the snow'] }, { cacheDir, skipMemory: true });
    expect(second.cached).toBe(true);
    expect(tiny.counting.count('text_encoder')).toBe(runsAfterFirst);
    expect([...second.delta]).toEqual([...first.delta]);
    const other = await editDirection(tiny.counting, model, { ...BANKS, target: BANKS.target.slice(1) }, { cacheDir, skipMemory: true });
    expect(other.key).not.toBe(first.key);
    expect(other.cached).toBe(false);
  });

  it('keeps recent directions in memory: no text encoder run, no file needed', async () => {
    const banks = { source: ['a cat on the floor'], target: ['a dog on the floor'] };
    const first = await editDirection(tiny.counting, model, banks);
    expect(first.cached).toBe(false);
    tiny.counting.reset();
    const second = await editDirection(tiny.counting, model, banks);
    expect(second.cached).toBe(true);
    expect(tiny.counting.count('text_encoder')).toBe(0);
    expect([...second.delta]).toEqual([...first.delta]);
  });

  it('per-concept banks move Δ in the tokens before the word too; parallel banks leave them at exactly 0', async () => {
    // The text encoder is causal: a position sees only the tokens up to it. Parallel banks share each
    // sentence's prefix, so Δ is 0 there (position 1 is always before the word: "a cat", "a photo of …").
    const D = model.textWidth;
    const rowNorm = (delta: Float32Array, t: number) => Math.hypot(...delta.subarray(t * D, (t + 1) * D));
    const parallel = await editDirection(tiny.counting, model, parallelSentenceBankPair('cat', 'dog', { count: 8 }));
    expect(rowNorm(parallel.delta, 0)).toBe(0);
    expect(rowNorm(parallel.delta, 1)).toBe(0);
    expect(parallel.delta.some((v) => v !== 0)).toBe(true);
    const own = await editDirection(tiny.counting, model, sentenceBankPair('cat', 'dog', { count: 8 }));
    expect(rowNorm(own.delta, 0)).toBe(0);
    expect(rowNorm(own.delta, 1)).toBeGreaterThan(0);
  });

  it('e_edit = e_c + s·Δ on every position', () => {
    const eC = Float32Array.of(1, 2, 3);
    const delta = Float32Array.of(0.5, -1, 0);
    expect([...editEmbedding(eC, delta, 2)]).toEqual([2, 0, 3]);
    expect(() => editEmbedding(eC, Float32Array.of(1), 1)).toThrow();
  });
});
