// The text encoder with the tokenizer on the generated tiny models of both exporters: the ids' type
// is read from the session (int32 for the diffusers export, int64 for optimum's), batching gives the
// same rows as single runs, and the output is [B,77,D].
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDiffusionModel, type DiffusionModel } from '../../../../daemon/pipeline/diffusion-model.js';
import { encodeText, encodeTokenIds, tokenizeAll } from '../../../../daemon/pipeline/text/text-encoder.js';
import { MODEL_NAME, tinyModels, type TinyModels } from '../tiny-pipeline.js';

for (const [flavour, idType] of [['opset14', 'int32'], ['opset17', 'int64']] as const) {
  describe(`text encoder (${flavour})`, () => {
    let tiny: TinyModels;
    let model: DiffusionModel;
    beforeAll(async () => {
      tiny = await tinyModels(flavour);
      model = await loadDiffusionModel(tiny.counting, MODEL_NAME);
    });
    afterAll(() => tiny.dispose());

    it(`reads ${idType} ids and the width D from the sessions`, () => {
      expect(model.textEncoder.ids).toBe(idType);
      expect(model.textWidth).toBe(32);
      expect(model.tokenizer.maxLength).toBe(77);
    });

    it('"a photo of a cat": BOS, five word tokens, EOS, padding; e_c is [1,77,32] and finite', async () => {
      const { ids, embedding } = await encodeText(tiny.counting, model, 'A  photo of a CAT');
      const t = model.tokenizer;
      expect(ids).toHaveLength(77);
      expect(ids[0]).toBe(t.bosId);
      expect(ids.slice(1, 6)).toEqual(t.tokenize('a photo of a cat'));
      expect(ids[6]).toBe(t.eosId);
      expect(ids.slice(7).every((id) => id === t.padId)).toBe(true);
      expect(embedding.dims).toEqual([1, 77, 32]);
      expect(embedding.data.every(Number.isFinite)).toBe(true);
    });

    it('a batch of three gives the rows of three single runs; different texts differ', async () => {
      const texts = ['a photo of a cat', 'a dog on the grass', 'a zebra'];
      const ids = tokenizeAll(model, texts);
      const batched = await encodeTokenIds(tiny.counting, model, ids, { batch: 2 });
      expect(batched.dims).toEqual([3, 77, 32]);
      const rowSize = 77 * 32;
      for (let r = 0; r < 3; r++) {
        const single = (await encodeTokenIds(tiny.counting, model, [ids[r]!])).data;
        const row = batched.data.subarray(r * rowSize, (r + 1) * rowSize);
        let maxDiff = 0;
        for (let i = 0; i < rowSize; i++) maxDiff = Math.max(maxDiff, Math.abs(row[i]! - single[i]!));
        expect(maxDiff).toBeLessThan(1e-5);
      }
      let diff = 0;
      for (let i = 0; i < rowSize; i++) diff += Math.abs(batched.data[i]! - batched.data[rowSize + i]!);
      expect(diff).toBeGreaterThan(1e-3);
    });
  });
}
