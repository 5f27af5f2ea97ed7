// The VAE on the tiny model: z0 = s·μ in 'mean' mode and s·(μ + σ·n) with n from the seeded
// generator in 'sample' mode (σ = exp(½·clamp(log σ²))), checked against the encoder's raw output;
// the decoder's output is clamped to [-1,1] at 8× the latent size.
import { Tensor } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDiffusionModel, outputData, type DiffusionModel } from '../../../daemon/pipeline/diffusion-model.js';
import { Rng } from '../../../daemon/pipeline/random.js';
import { vaeDecode, vaeEncode } from '../../../daemon/pipeline/vae.js';
import { MODEL_NAME, tinyModels, type TinyModels } from './tiny-pipeline.js';

describe('VAE (tiny model)', () => {
  let tiny: TinyModels;
  let model: DiffusionModel;
  const x = Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.sin(i * 0.37));
  beforeAll(async () => {
    tiny = await tinyModels('opset14');
    model = await loadDiffusionModel(tiny.counting, MODEL_NAME);
  });
  afterAll(() => tiny.dispose());

  it('mean and sample modes against the encoder\'s latent_parameters', async () => {
    expect(model.vaeEncoder.kind).toBe('parameters');
    expect(model.latentScale).toBe(0.18215);
    const raw = outputData(await tiny.counting.run(model.paths.vaeEncoder, { sample: new Tensor('float32', x, [1, 3, 64, 64]) }), 'latent_parameters');
    const n = 4 * 8 * 8;
    const mean = await vaeEncode(tiny.counting, model, x, 64, 64, 'mean', new Rng(5));
    expect(mean.mode).toBe('mean');
    expect(mean.noise).toBeNull();
    for (let i = 0; i < n; i++) expect(mean.z0[i]).toBeCloseTo(0.18215 * raw[i]!, 6);
    const sample = await vaeEncode(tiny.counting, model, x, 64, 64, 'sample', new Rng(5));
    const noise = new Rng(5).fillNormal(new Float32Array(n));
    expect([...sample.noise!]).toEqual([...noise]);
    for (let i = 0; i < n; i++) {
      const sigma = Math.exp(0.5 * Math.min(20, Math.max(-30, raw[n + i]!)));
      expect(sample.z0[i]).toBeCloseTo(0.18215 * (raw[i]! + sigma * noise[i]!), 5);
    }
  });

  it('decodes [1,4,8,8] to [1,3,64,64] within [-1,1]', async () => {
    const z = Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => 3 * Math.cos(i));
    const img = await vaeDecode(tiny.counting, model, z, 8, 8);
    expect(img).toHaveLength(3 * 64 * 64);
    expect(img.every((v) => v >= -1 && v <= 1)).toBe(true);
  });
});
