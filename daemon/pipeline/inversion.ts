// Regularized DDIM inversion of pix2pix-zero (docs/DESIGN.md §3 step 4): for t ascending,
//   ε = ε_θ(z, t, e_c)           (no CFG; one UNet call at batch 1)
//   ε ← regularize(ε)           (L_ac pyramid + L_kl, closed-form gradients: regularization.ts)
//   z ← √ᾱ_t·x̂0 + √(1−ᾱ_t)·ε,  x̂0 = (z − √(1−ᾱ_prev)·ε)/√ᾱ_prev   (DdimInverseScheduler)
// z0 [1,4,h,w] → z_T [1,4,h,w]. The signal is checked before every step.
import { unetFeeds, outputData, type DiffusionModel } from './diffusion-model.js';
import type { ModelSessions } from './context.js';
import type { Rng } from './random.js';
import { regularizeNoise, type RegularizationOptions } from './regularization.js';
import { DdimInverseScheduler } from './scheduler/ddim-inverse.js';
import type { StepObserver } from './step-observer.js';
import type { UNetCall } from './unet-roles.js';

export interface InversionOptions {
  readonly steps: number;
  readonly regularization: RegularizationOptions;
  readonly rng: Rng;
  readonly signal?: AbortSignal;
  /** After step k (1-based count of steps done). */
  readonly onStep?: (done: number, total: number) => void;
  /** Sees each step's ε, regularized ε, roll offsets and z. */
  readonly observer?: Pick<StepObserver, 'inversionStep'>;
  /** The UNet at batch 1 (the pipeline's `single` role); the model's own UNet file when absent. */
  readonly unet?: UNetCall;
}

export async function invertDdim(
  models: ModelSessions,
  model: DiffusionModel,
  z0: Float32Array,
  latent: { readonly h: number; readonly w: number },
  captionEmbedding: Float32Array,
  options: InversionOptions,
): Promise<Float32Array> {
  const scheduler = new DdimInverseScheduler(model.scheduler);
  scheduler.setTimesteps(options.steps);
  const dims = [1, 4, latent.h, latent.w] as const;
  let z = z0;
  const timesteps = scheduler.timesteps;
  const unet: UNetCall = options.unet ?? ((feeds) => models.run(model.paths.unet, feeds));
  for (let k = 0; k < timesteps.length; k++) {
    options.signal?.throwIfAborted();
    const t = timesteps[k]!;
    const out = await unet(unetFeeds(model, z, dims, t, captionEmbedding));
    const eps = outputData(out, 'out_sample', z.length).slice();
    const reg = options.regularization.outer > 0
      ? regularizeNoise({ data: eps, dims }, options.regularization, options.rng)
      : { eps: { data: eps, dims }, rolls: [] };
    z = scheduler.step(reg.eps.data, t, z).prevSample;
    await options.observer?.inversionStep(k, { eps, epsReg: reg.eps.data, rolls: reg.rolls, z, dims });
    options.onStep?.(k + 1, timesteps.length);
  }
  return z;
}
