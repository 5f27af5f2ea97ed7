// DDIM inversion (η = 0): the exact mirror of `DdimScheduler`, as diffusers' `DDIMInverseScheduler`
// (≥ 0.22) with the same config, and as docs/DESIGN.md §3 step 4 states it. Timesteps run low → high
// (t_0 = steps_offset first); each step moves the latent from the previous timestep's noise level to
// t's with the same ε:
//   x̂0 = (z − √(1−ᾱ_prev)·ε)/√ᾱ_prev;  z ← √ᾱ_t·x̂0 + √(1−ᾱ_t)·ε,
// with ᾱ_prev = ᾱ[t − ⌊T/N⌋] (the previous timestep of the schedule) and, at the first step, the
// sampler's final ᾱ: ᾱ[0] for Stable Diffusion (set_alpha_to_one false), 1 when set_alpha_to_one.
// Sampling back through `DdimScheduler` with the same ε at each t therefore returns to z0 exactly
// (up to rounding). Unlike pix2pix-zero's own scheduler copy, no step is skipped and ᾱ is not shifted
// by one index.
import { P2pzError } from '../../../shared/protocol/index.js';
import { ddimTransfer, leadingTimesteps, type Sample, type SchedulerStep } from './ddim.js';
import { alphasCumprod, type SchedulerConfig } from './scheduler-config.js';

export class DdimInverseScheduler {
  readonly config: SchedulerConfig;
  /** ᾱ_t for t = 0..T−1, float64. */
  readonly alphasCumprod: Float64Array;
  /** ᾱ_prev at the first inversion step: 1 when set_alpha_to_one, else ᾱ_0 (the sampler's final ᾱ). */
  readonly initialAlphaCumprod: number;
  #timesteps: readonly number[] = [];
  #stepRatio = 0;

  constructor(config: SchedulerConfig) {
    this.config = config;
    this.alphasCumprod = alphasCumprod(config);
    this.initialAlphaCumprod = config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  /** Inversion order, low → high (e.g. SD, N = 50: 1, 21, …, 981). Empty until setTimesteps. */
  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  setTimesteps(numInferenceSteps: number): void {
    this.#timesteps = Object.freeze(leadingTimesteps(this.config, numInferenceSteps));
    this.#stepRatio = Math.floor(this.config.num_train_timesteps / numInferenceSteps);
  }

  /**
   * z at noise level ᾱ_prev → z at ᾱ_t (formulas in the header); ε = ε_θ(z, t) evaluated at the
   * target timestep t, as in diffusers and pix2pix-zero. eps, z: [B,C,h,w] flat.
   */
  step<T extends Sample>(eps: Sample, t: number, z: T): SchedulerStep<T> {
    if (this.#stepRatio === 0) throw new P2pzError('E_INTERNAL', 'DDIM inversion: setTimesteps() must be called before step().');
    const T = this.config.num_train_timesteps;
    if (!Number.isInteger(t) || t < 0 || t >= T) {
      throw new P2pzError('E_INTERNAL', `DDIM inversion: timestep ${t} is outside [0, ${T}).`);
    }
    const prevT = Math.min(t - this.#stepRatio, T - 1);
    const alphaPrev = prevT >= 0 ? this.alphasCumprod[prevT]! : this.initialAlphaCumprod;
    const alphaT = this.alphasCumprod[t]!;
    return ddimTransfer(eps, z, alphaPrev, alphaT, this.config.clip_sample ? this.config.clip_sample_range : null);
  }
}
