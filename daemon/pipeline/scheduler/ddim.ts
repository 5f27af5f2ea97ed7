// DDIM sampling with η = 0 (Song et al., "Denoising Diffusion Implicit Models", eq. 12), as diffusers'
// `DDIMScheduler` with ε-prediction and "leading" timestep spacing. The contract is diffusers':
// `setTimesteps(N)`, then for t of `timesteps` (high → low): z ← step(ε_θ(z, t), t, z).
// ᾱ is kept in float64; tensors are flat arrays in C order, any shape (typically [B,4,h,w]).
import { P2pzError } from '../../../shared/protocol/index.js';
import { alphasCumprod, type SchedulerConfig } from './scheduler-config.js';

export type Sample = Float32Array | Float64Array;

/** Output of one step: the next latent and the predicted x̂0, both of the input's float type. */
export interface SchedulerStep<T extends Sample> {
  readonly prevSample: T;
  readonly predOriginalSample: T;
}

/**
 * "leading" spacing: t_k = k·⌊T/N⌋ + steps_offset, k = 0..N−1 (ascending; samplers reverse it).
 * Throws E_BAD_REQUEST unless 1 ≤ N ≤ T.
 */
export function leadingTimesteps(config: SchedulerConfig, numInferenceSteps: number): number[] {
  const T = config.num_train_timesteps;
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > T) {
    throw new P2pzError('E_BAD_REQUEST', `The number of steps must be an integer from 1 to ${T}, got ${numInferenceSteps}.`);
  }
  const ratio = Math.floor(T / numInferenceSteps);
  const out: number[] = [];
  for (let k = 0; k < numInferenceSteps; k++) out.push(k * ratio + config.steps_offset);
  return out;
}

/**
 * One deterministic DDIM transfer from noise level ᾱ_from to ᾱ_to with the same ε:
 *   x̂0 = (z − √(1−ᾱ_from)·ε) / √ᾱ_from        (clamped to ±clipRange when clipRange is set)
 *   z' = √ᾱ_to · x̂0 + √(1−ᾱ_to) · ε
 * eps, z: same length (any shape); results have z's float type. Arithmetic in float64.
 */
export function ddimTransfer<T extends Sample>(
  eps: Sample,
  z: T,
  alphaFrom: number,
  alphaTo: number,
  clipRange: number | null,
): SchedulerStep<T> {
  if (eps.length !== z.length) {
    throw new P2pzError('E_INTERNAL', `DDIM step: ε has ${eps.length} values but the latent has ${z.length}.`);
  }
  const n = z.length;
  const make = (): T => (z instanceof Float64Array ? new Float64Array(n) : new Float32Array(n)) as T;
  const prev = make();
  const x0 = make();
  const sqrtFrom = Math.sqrt(alphaFrom);
  const sqrtOneMinusFrom = Math.sqrt(1 - alphaFrom);
  const sqrtTo = Math.sqrt(alphaTo);
  const sqrtOneMinusTo = Math.sqrt(1 - alphaTo);
  for (let i = 0; i < n; i++) {
    const e = eps[i]!;
    let x = (z[i]! - sqrtOneMinusFrom * e) / sqrtFrom;
    if (clipRange !== null) x = Math.min(clipRange, Math.max(-clipRange, x));
    x0[i] = x;
    prev[i] = sqrtTo * x + sqrtOneMinusTo * e;
  }
  return { prevSample: prev, predOriginalSample: x0 };
}

/** The DDIM sampler (η = 0). */
export class DdimScheduler {
  readonly config: SchedulerConfig;
  /** ᾱ_t for t = 0..T−1, float64. */
  readonly alphasCumprod: Float64Array;
  /** ᾱ used after the last step (t_prev < 0): 1 when set_alpha_to_one, else ᾱ_0. */
  readonly finalAlphaCumprod: number;
  #timesteps: readonly number[] = [];
  #stepRatio = 0;

  constructor(config: SchedulerConfig) {
    this.config = config;
    this.alphasCumprod = alphasCumprod(config);
    this.finalAlphaCumprod = config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  /** Sampling order, high → low (e.g. SD, N = 50: 981, 961, …, 1). Empty until setTimesteps. */
  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  setTimesteps(numInferenceSteps: number): void {
    this.#timesteps = Object.freeze(leadingTimesteps(this.config, numInferenceSteps).reverse());
    this.#stepRatio = Math.floor(this.config.num_train_timesteps / numInferenceSteps);
  }

  #alphaAt(t: number, fallback: number): number {
    return t >= 0 ? this.alphasCumprod[t]! : fallback;
  }

  /**
   * z_t → z_{t−⌊T/N⌋} (η = 0): x̂0 = (z − √(1−ᾱ_t)·ε)/√ᾱ_t; z' = √ᾱ_prev·x̂0 + √(1−ᾱ_prev)·ε,
   * ᾱ_prev = ᾱ[t − ⌊T/N⌋], or finalAlphaCumprod below 0. eps, z: [B,C,h,w] flat.
   */
  step<T extends Sample>(eps: Sample, t: number, z: T): SchedulerStep<T> {
    this.#checkTimestep(t);
    const alphaT = this.alphasCumprod[t]!;
    const alphaPrev = this.#alphaAt(t - this.#stepRatio, this.finalAlphaCumprod);
    return ddimTransfer(eps, z, alphaT, alphaPrev, this.config.clip_sample ? this.config.clip_sample_range : null);
  }

  /** σ_t² of DDIM (η = 1): (1−ᾱ_prev)/(1−ᾱ_t) · (1 − ᾱ_t/ᾱ_prev) (diffusers' _get_variance). */
  variance(t: number, prevT: number): number {
    const alphaT = this.alphasCumprod[t]!;
    const alphaPrev = this.#alphaAt(prevT, this.finalAlphaCumprod);
    if (alphaT === alphaPrev) return 0;
    return ((1 - alphaPrev) / (1 - alphaT)) * (1 - alphaT / alphaPrev);
  }

  #checkTimestep(t: number): void {
    if (this.#stepRatio === 0) throw new P2pzError('E_INTERNAL', 'DDIM: setTimesteps() must be called before step().');
    if (!Number.isInteger(t) || t < 0 || t >= this.config.num_train_timesteps) {
      throw new P2pzError('E_INTERNAL', `DDIM: timestep ${t} is outside [0, ${this.config.num_train_timesteps}).`);
    }
  }
}
