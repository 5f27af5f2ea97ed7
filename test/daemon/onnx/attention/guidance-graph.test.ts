// The guidance gradient graph of the tiny UNet (both exporter flavours): its loss equals the
// pix2pix-zero loss computed in JS from the cross-attention graph's maps, and ∂L/∂sample matches
// central finite differences of that JS loss on sampled coordinates.
// Step and tolerance: the UNet runs in float32, so the finite difference carries a rounding error
// ∝ 1/h (measured: 3.6e-3, 1.1e-3, 4e-4 of the largest |∂L/∂x| at h = 3e-3, 1e-2, 3e-2: rounding
// dominated, truncation ∝ h² still negligible at 3e-2 on sample values of size ~1). The bound is
// 5e-3 of the largest sampled |∂L/∂x|, far below the error of a wrong rule (a sign, a missing
// term: O(1)).
import { beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { prepareModel, type PreparedUNet } from '../../../../daemon/onnx/prepare.js';
import { uniform } from '../autodiff/op-harness.js';
import { guidanceLoss, tinyUNetFolder, unetFeeds, type Flavour } from './tiny-unet.js';

const LATENT = 8;

function maxRelDiff(a: ort.Tensor, b: ort.Tensor): number {
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  expect(a.dims).toEqual(b.dims);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < y.length; i++) {
    diff = Math.max(diff, Math.abs((x[i] ?? 0) - (y[i] ?? 0)));
    scale = Math.max(scale, Math.abs(y[i] ?? 0));
  }
  return diff / scale;
}
const BATCH = 2;

for (const flavour of ['opset14', 'opset17'] as Flavour[]) {
  describe(`guidance gradient graph (${flavour})`, () => {
    let prepared: PreparedUNet;
    let xattn: ort.InferenceSession;
    let grad: ort.InferenceSession;
    let refs: Float32Array[];
    let mapNames: string[];

    beforeAll(async () => {
      const { dir } = await tinyUNetFolder(flavour, 3);
      prepared = await prepareModel(dir, { height: LATENT * 8, width: LATENT * 8, batch: BATCH });
      xattn = await ort.InferenceSession.create(prepared.xattnPath);
      grad = await ort.InferenceSession.create(prepared.gradPath);
      mapNames = prepared.manifest.sites.map((s) => s.output);
      // Reference maps: row 0 of a run with another context (real attention maps, not noise).
      const refRun = await xattn.run(unetFeeds(flavour, BATCH, LATENT, LATENT, 99));
      refs = mapNames.map((n) => {
        const t = refRun[n] as ort.Tensor;
        const [, heads = 1, hw = 1, T = 1] = t.dims;
        return (t.data as Float32Array).slice(0, heads * hw * T);
      });
    });

    const refFeeds = (): Record<string, ort.Tensor> => Object.fromEntries(prepared.manifest.sites.map((s, l) => [
      s.output.replace('attn_map_', 'attn_ref_'), new ort.Tensor('float32', refs[l] as Float32Array, [s.heads, s.queries, s.tokens]),
    ]));

    async function jsLoss(feeds: Record<string, ort.Tensor>): Promise<number> {
      const r = await xattn.run(feeds);
      return guidanceLoss(mapNames.map((n) => r[n] as ort.Tensor), refs);
    }

    it('outputs the noise prediction, the maps and the loss of the cross-attention graph', async () => {
      const feeds = unetFeeds(flavour, BATCH, LATENT, LATENT, 5);
      const g = await grad.run({ ...feeds, ...refFeeds() });
      const x = await xattn.run(feeds);
      // Same values up to float32 reassociation: onnxruntime fuses differently once the backward
      // pass also reads intermediate tensors.
      for (const n of ['out_sample', ...mapNames]) expect(maxRelDiff(g[n] as ort.Tensor, x[n] as ort.Tensor), n).toBeLessThan(1e-5);
      const loss = Number((g.loss as ort.Tensor).data[0]);
      const expected = guidanceLoss(mapNames.map((n) => x[n] as ort.Tensor), refs);
      expect(expected).toBeGreaterThan(0);
      expect(Math.abs(loss - expected) / expected).toBeLessThan(1e-5);
      expect((g.grad_sample as ort.Tensor).dims).toEqual([BATCH, 4, LATENT, LATENT]);
    });

    it('∂L/∂sample matches central finite differences of L', async () => {
      const feeds = unetFeeds(flavour, BATCH, LATENT, LATENT, 11);
      const g = await grad.run({ ...feeds, ...refFeeds() });
      const analytic = (g.grad_sample as ort.Tensor).data as Float32Array;
      const sample = feeds.sample?.data as Float32Array;
      const n = sample.length;
      // Coordinates from both batch rows.
      const coords = [...uniform(21, 6, 0, n / 2).map(Math.floor), ...uniform(22, 6, n / 2, n).map(Math.floor)];
      const h = 3e-2;
      const errs: number[] = [];
      const scale: number[] = [];
      for (const j of coords) {
        const at = async (delta: number): Promise<number> => {
          const s = Float32Array.from(sample);
          s[j] = (s[j] ?? 0) + delta;
          return jsLoss({ ...feeds, sample: new ort.Tensor('float32', s, [BATCH, 4, LATENT, LATENT]) });
        };
        const numeric = ((await at(h)) - (await at(-h))) / (2 * h);
        errs.push(Math.abs((analytic[j] ?? 0) - numeric));
        scale.push(Math.abs(numeric));
      }
      const maxScale = Math.max(...scale);
      expect(maxScale).toBeGreaterThan(0);
      expect(Math.max(...errs) / maxScale).toBeLessThan(5e-3);
    });
  });
}
