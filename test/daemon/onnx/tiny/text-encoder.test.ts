import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphOf, readModel } from '../../../../daemon/onnx/graph/model-io.js';
import { int64ToNumber } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { SD15_SHAPED, writeTinyStableDiffusion } from '../../../../daemon/onnx/tiny/stable-diffusion.js';
import { writeTextEncoder } from '../../../../daemon/onnx/tiny/text-encoder.js';
import type { TextEncoderConfig } from '../../../../daemon/onnx/tiny/text-encoder.js';
import { data, ids, maxAbsDiff } from './fixtures.js';

const CFG: TextEncoderConfig = {
  vocabSize: 300, hiddenSize: 32, layers: 2, heads: 4, intermediateSize: 48, maxPositions: 77, activation: 'quick_gelu', layerNormEps: 1e-5,
};
let dir: string;
const sessions: Record<string, ort.InferenceSession> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-text-encoder-'));
  for (const flavour of ['opset14', 'opset17'] as const) {
    await writeTextEncoder(join(dir, flavour, 'model.onnx'), CFG, { seed: 5, flavour, weights: 'inline' });
    sessions[flavour] = await ort.InferenceSession.create(join(dir, flavour, 'model.onnx'));
  }
  await writeTextEncoder(join(dir, 'gelu', 'model.onnx'), { ...CFG, activation: 'gelu' }, { seed: 5, flavour: 'opset17', weights: 'inline' });
  sessions.gelu = await ort.InferenceSession.create(join(dir, 'gelu', 'model.onnx'));
});
afterAll(async () => {
  for (const s of Object.values(sessions)) await s.release();
  await rm(dir, { recursive: true, force: true });
});

// <|startoftext|> a photo … <|endoftext|> padding, as token ids in [0, 300).
const PROMPT = [298, 40, 120, 7, 40, 200, 299, ...Array<number>(70).fill(299)];

async function encode(flavour: string, tokens: readonly number[]): Promise<Float32Array> {
  const type = flavour === 'opset14' ? 'int32' : 'int64';
  const out = await sessions[flavour]!.run({ input_ids: ids(type, tokens, [tokens.length / 77, 77]) });
  expect(out.last_hidden_state?.dims).toEqual([tokens.length / 77, 77, CFG.hiddenSize]);
  return data(out.last_hidden_state);
}

describe('tiny CLIP text encoder', () => {
  it.each(['opset14', 'opset17'])('is causal (%s): a later token leaves earlier positions bit-identical', async (flavour) => {
    const changed = [...PROMPT];
    changed[5] = 17;
    const [a, b] = [await encode(flavour, PROMPT), await encode(flavour, changed)];
    const D = CFG.hiddenSize;
    expect(Array.from(b.subarray(0, 5 * D))).toEqual(Array.from(a.subarray(0, 5 * D)));
    expect(maxAbsDiff(a.subarray(5 * D, 6 * D), b.subarray(5 * D, 6 * D))).toBeGreaterThan(1e-3);
    // Later positions attend to position 5 too.
    expect(maxAbsDiff(a.subarray(40 * D, 41 * D), b.subarray(40 * D, 41 * D))).toBeGreaterThan(1e-6);
  });

  it('gives the same result in both flavours (decomposed vs fused LayerNorm, int32 vs int64 ids)', async () => {
    const [a, b] = [await encode('opset14', PROMPT), await encode('opset17', PROMPT)];
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-4);
    // The output is LayerNorm'd with γ ≈ 1, so each position's RMS is near 1 (not a degenerate graph).
    let s2 = 0;
    for (const v of a.subarray(0, CFG.hiddenSize)) s2 += v * v;
    expect(Math.sqrt(s2 / CFG.hiddenSize)).toBeGreaterThan(0.5);
  });

  it('batches rows independently', async () => {
    const other = PROMPT.map((t, i) => (i > 0 && i < 6 ? (t * 7) % 298 : t));
    const both = await encode('opset17', [...PROMPT, ...other]);
    const one = await encode('opset17', PROMPT);
    expect(maxAbsDiff(both.subarray(0, one.length), one)).toBeLessThan(1e-5);
  });

  it('QuickGELU and GELU variants differ; the opset14 graph has no fused LayerNormalization', async () => {
    const [quick, gelu] = [await encode('opset17', PROMPT), await encode('gelu', PROMPT)];
    expect(maxAbsDiff(quick, gelu)).toBeGreaterThan(1e-4);
    const ops14 = new Set((graphOf(await readModel(join(dir, 'opset14', 'model.onnx'))).node ?? []).map((n) => n.opType));
    const ops17 = new Set((graphOf(await readModel(join(dir, 'opset17', 'model.onnx'))).node ?? []).map((n) => n.opType));
    expect(ops14.has('LayerNormalization')).toBe(false);
    expect(['ReduceMean', 'Pow', 'Sqrt', 'Div'].every((op) => ops14.has(op))).toBe(true);
    expect(ops17.has('LayerNormalization')).toBe(true);
  });

  it("SD15_SHAPED has CLIP ViT-L/14's 123,060,480 text-model parameters and external weights", async () => {
    const sd = join(dir, 'sd15');
    await writeTinyStableDiffusion(sd, { preset: SD15_SHAPED, components: ['text_encoder'], fill: 'sparse-zeros' });
    const g = graphOf(await readModel(join(sd, 'text_encoder', 'model.onnx')));
    let params = 0;
    for (const t of g.initializer ?? []) {
      // Buffers, not parameters: position ids and the causal mask.
      if (t.name === 'text_model.embeddings.position_ids' || t.name === 'text_model.causal_attention_mask') continue;
      params += (t.dims ?? []).reduce<number>((a, d) => a * int64ToNumber(d), 1);
    }
    expect(params).toBe(123_060_480);
    expect(g.initializer?.find((t) => t.name === 'text_model.embeddings.token_embedding.weight')?.dataLocation).toBe(1);
  });
});
