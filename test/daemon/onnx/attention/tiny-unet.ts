// Shared by the attention tests: a tiny SD 1.x UNet folder per flavour, seeded inputs, and the
// pix2pix-zero loss computed in JS (float64) from cross-attention maps.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { writeTinyStableDiffusion, type TinyStableDiffusionInfo } from '../../../../daemon/onnx/tiny/stable-diffusion.js';
import { TINY_SD } from '../../../../daemon/onnx/tiny/stable-diffusion.js';
import { uniform } from '../autodiff/op-harness.js';

export type Flavour = 'opset14' | 'opset17';

export async function tinyUNetFolder(flavour: Flavour, seed = 0): Promise<{ dir: string; info: TinyStableDiffusionInfo }> {
  const dir = await mkdtemp(join(tmpdir(), `p2pz-unet-${flavour}-`));
  const info = await writeTinyStableDiffusion(dir, { flavour, seed, components: ['unet'] });
  return { dir, info };
}

export const TINY_TEXT_WIDTH = TINY_SD.unet.crossAttentionDim;

/** UNet feeds for batch B at latent h×w: sample ~ U(−1,1)·2, timestep per flavour, context ~ U(−1,1). */
export function unetFeeds(flavour: Flavour, batch: number, h: number, w: number, seed: number): Record<string, ort.Tensor> {
  const sample = Float32Array.from(uniform(seed, batch * 4 * h * w, -2, 2));
  const context = Float32Array.from(uniform(seed + 1, batch * 77 * TINY_TEXT_WIDTH));
  const timestep = flavour === 'opset14'
    ? new ort.Tensor('int64', BigInt64Array.from(Array.from({ length: batch }, () => 501n)), [batch])
    : new ort.Tensor('float32', Float32Array.from([501]), []);
  return {
    sample: new ort.Tensor('float32', sample, [batch, 4, h, w]),
    timestep,
    encoder_hidden_states: new ort.Tensor('float32', context, [batch, 77, TINY_TEXT_WIDTH]),
  };
}

/** L = Σ_l 1/(B·heads) Σ_{b,k} ‖A_l[b,k] − A_ref,l[k]‖²_F in float64; maps are [B, heads, hw, T]. */
export function guidanceLoss(maps: readonly ort.Tensor[], refs: readonly Float32Array[]): number {
  let total = 0;
  maps.forEach((m, l) => {
    const [B = 1, heads = 1, hw = 1, T = 1] = m.dims;
    const a = m.data as Float32Array;
    const ref = refs[l] as Float32Array;
    const per = heads * hw * T;
    let s = 0;
    for (let b = 0; b < B; b++) for (let j = 0; j < per; j++) {
      const d = (a[b * per + j] ?? 0) - (ref[j] ?? 0);
      s += d * d;
    }
    total += s / (B * heads);
  });
  return total;
}
