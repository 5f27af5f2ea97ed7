// The VAE of Stable Diffusion (docs/DESIGN.md §3 steps 1 and 7):
//   encode: x [1,3,H,W] in [-1,1] → z0 = s·μ (mode 'mean') or s·(μ + σ·n), n ~ N(0,1) from the seeded
//           generator (mode 'sample'); μ ‖ log σ² are the encoder's latent_parameters [1,8,h,w]
//           (log σ² clamped to [-30, 20] as diffusers does). An encoder exported with latent_sample
//           (the graph draws its own, unseeded noise) is run through its derived parameters graph
//           (vae-parameters.ts; derived here if the prepare step has not), so both modes hold for it.
//   decode: x = D(z / s) clamped to [-1,1], [1,3,H,W].
// s is the latent scale (0.18215 for SD 1.x unless the model says otherwise).
import { dirname } from 'node:path';
import { P2pzError } from '../../shared/protocol/index.js';
import { prepareVaeParameters } from '../onnx/vae-parameters.js';
import { floatTensor, outputData, type DiffusionModel } from './diffusion-model.js';
import type { ModelSessions } from './context.js';
import type { Rng } from './random.js';

export type VaeLatentMode = 'mean' | 'sample';

export const VAE_DEFAULTS = Object.freeze({
  /** Deterministic encoding: the posterior mean (the paper's code samples; both are supported). */
  latent: 'mean' as VaeLatentMode,
  /** Pixels per latent cell. */
  factor: 8,
});

export interface EncodedLatent {
  /** z0, [1,4,h,w]. */
  readonly z0: Float32Array;
  readonly mode: VaeLatentMode;
  /** The standard-normal noise n used in 'sample' mode (null in 'mean' mode). */
  readonly noise: Float32Array | null;
}

export async function vaeEncode(
  models: ModelSessions, model: DiffusionModel, x: Float32Array, height: number, width: number, mode: VaeLatentMode, rng: Rng,
): Promise<EncodedLatent> {
  const h = height / VAE_DEFAULTS.factor;
  const w = width / VAE_DEFAULTS.factor;
  if (model.vaeEncoder.kind === 'sample') {
    // A no-op when the prepare step made it (the check is a few stat calls).
    await prepareVaeParameters(dirname(dirname(await models.resolve(model.paths.vaeEncoder))));
  }
  const result = await models.run(model.vaeEncoder.parameters, { [model.vaeEncoder.input]: floatTensor(model.vaeEncoder.inputType, x, [1, 3, height, width]) });
  const s = model.latentScale;
  const plane = 4 * h * w;
  const params = outputData(result, model.vaeEncoder.output, 2 * plane);
  const z0 = new Float32Array(plane);
  let noise: Float32Array | null = null;
  if (mode === 'sample') {
    noise = rng.fillNormal(new Float32Array(plane));
    for (let i = 0; i < plane; i++) {
      const logvar = Math.min(20, Math.max(-30, params[plane + i]!));
      z0[i] = s * (params[i]! + Math.exp(0.5 * logvar) * noise[i]!);
    }
  } else {
    for (let i = 0; i < plane; i++) z0[i] = s * params[i]!;
  }
  return { z0, mode, noise };
}

/** x = clamp(D(z / s), −1, 1): z [1,4,h,w] → [1,3,8h,8w]. */
export async function vaeDecode(models: ModelSessions, model: DiffusionModel, z: Float32Array, h: number, w: number): Promise<Float32Array> {
  const s = model.latentScale;
  const input = floatTensor(model.vaeDecoder.inputType, z.map((v) => v / s), [1, 4, h, w]);
  const result = await models.run(model.paths.vaeDecoder, { [model.vaeDecoder.input]: input });
  const H = h * VAE_DEFAULTS.factor;
  const W = w * VAE_DEFAULTS.factor;
  const out = outputData(result, model.vaeDecoder.output);
  if (out.length !== 3 * H * W) throw new P2pzError('E_MODEL_INVALID', `The VAE decoder returned ${out.length} values, not 3×${H}×${W}.`);
  return out.map((v) => (v > 1 ? 1 : v < -1 ? -1 : Number.isNaN(v) ? 0 : v));
}
