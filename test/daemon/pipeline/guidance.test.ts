// One cross-attention guidance step lowers the pix2pix-zero loss: the gradient graph is run at x and
// at x − λ·∂L/∂x and the loss falls by about λ‖∂L/∂x‖² (first order). At x⁰ equal to the reference
// latent with e_c, the caption branch's maps equal A_ref, so its gradient vanishes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareModel, type PreparedUNet } from '../../../daemon/onnx/prepare.js';
import { loadDiffusionModel, outputData, unetFeeds, type DiffusionModel } from '../../../daemon/pipeline/diffusion-model.js';
import { crossAttentionGuidance, type ReferenceMap } from '../../../daemon/pipeline/guidance.js';
import { Rng } from '../../../daemon/pipeline/random.js';
import { encodeText } from '../../../daemon/pipeline/text/text-encoder.js';
import { MODEL_NAME, tinyModels, type TinyModels } from './tiny-pipeline.js';

const h = 8;
const w = 8;
const n = 4 * h * w;
const t = 501;

describe('crossAttentionGuidance (tiny model, opset17: scalar float timestep)', () => {
  let tiny: TinyModels;
  let model: DiffusionModel;
  let single: PreparedUNet;
  let pair: PreparedUNet;
  let context: Float32Array;
  let zRef: Float32Array;
  let refs: ReferenceMap[];
  beforeAll(async () => {
    tiny = await tinyModels('opset17');
    model = await loadDiffusionModel(tiny.counting, MODEL_NAME);
    single = await prepareModel(tiny.modelDir, { height: 64, width: 64, batch: 1 });
    pair = await prepareModel(tiny.modelDir, { height: 64, width: 64, batch: 2 });
    const eC = (await encodeText(tiny.counting, model, 'a photo of a cat')).embedding.data;
    const eEdit = (await encodeText(tiny.counting, model, 'a photo of a dog')).embedding.data;
    context = new Float32Array(eC.length * 2);
    context.set(eC, 0);
    context.set(eEdit, eC.length);
    zRef = new Rng(7).fillNormal(new Float32Array(n));
    const out = await tiny.counting.run(single.xattnPath, unetFeeds(model, zRef, [1, 4, h, w], t, eC));
    refs = pair.manifest.sites.map((s, index) => ({
      index, heads: s.heads, queries: s.queries, tokens: s.tokens, data: outputData(out, s.output, s.heads * s.queries * s.tokens),
    }));
  });
  afterAll(() => tiny.dispose());

  it('lowers L by about λ‖∂L/∂x‖² (first order)', async () => {
    const z = new Rng(8).fillNormal(new Float32Array(n));
    const x = new Float32Array(2 * n);
    x.set(z, 0);
    x.set(z, n);
    const probe = await crossAttentionGuidance(tiny.counting, model, pair.gradPath, x, { h, w }, t, context, refs, 0);
    expect(probe.loss).toBeGreaterThan(0);
    let g2 = 0;
    for (const g of probe.grad) g2 += g * g;
    expect(g2).toBeGreaterThan(0);
    // A step that first-order theory says removes 1 % of L.
    const lambda = (0.01 * probe.loss) / g2;
    const step = await crossAttentionGuidance(tiny.counting, model, pair.gradPath, x, { h, w }, t, context, refs, lambda);
    expect(step.loss).toBe(probe.loss);
    for (let i = 0; i < x.length; i++) expect(step.x[i]).toBeCloseTo(x[i]! - lambda * probe.grad[i]!, 6);
    const after = await crossAttentionGuidance(tiny.counting, model, pair.gradPath, step.x, { h, w }, t, context, refs, 0);
    expect(after.loss).toBeLessThan(probe.loss);
    const ratio = (probe.loss - after.loss) / (lambda * g2);
    expect(ratio).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(1.5);
  });

  it('the caption branch at the reference latent has zero gradient; the edit branch does not', async () => {
    const x = new Float32Array(2 * n);
    x.set(zRef, 0);
    x.set(zRef, n);
    const r = await crossAttentionGuidance(tiny.counting, model, pair.gradPath, x, { h, w }, t, context, refs, 0.1);
    const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
    expect(norm(r.grad.subarray(0, n))).toBeLessThan(1e-6);
    expect(norm(r.grad.subarray(n))).toBeGreaterThan(1e-4);
  });
});
