// What the pix2pix-zero pipeline shows whoever watches it step by step, as diffusers' step callbacks
// (callback_on_step_end) do: the edit's inputs once they are known, each inversion step, z_T, each
// reference and edit step, the final latent and the decoded image. The loop calls these hooks and
// nothing else; what is done with them (the replay dump of `p2pz edit --dump`: dump/dump-observer.ts)
// lives outside it. Arrays are handed over, not copied: an observer must not change them.
import type { EditParams } from '../../shared/protocol/index.js';
import type { SentenceBanks } from './directions/edit-direction.js';
import type { RegularizationOptions } from './regularization.js';
import type { VaeLatentMode } from './vae.js';

/** Stages 1–4 done: the edit's settings and inputs. Shapes in the paper's symbols. */
export interface EditInputs {
  readonly edit: EditParams;
  /** Sampler order, high → low. */
  readonly timesteps: readonly number[];
  readonly regularization: RegularizationOptions;
  /** Working size in pixels. */
  readonly size: { readonly height: number; readonly width: number };
  /** [1,4,h,w]. */
  readonly latentDims: readonly number[];
  readonly latentScale: number;
  readonly vaeLatent: VaeLatentMode;
  readonly caption: string;
  /** x [1,3,H,W] in [-1,1]. */
  readonly x: Float32Array;
  /** z0 = s·E(x) [1,4,h,w], and the standard-normal draw when it was sampled. */
  readonly z0: Float32Array;
  readonly noise: Float32Array | null;
  /** The caption's token ids [1,T] and e_c [1,T,D]. */
  readonly captionIds: readonly number[];
  readonly eC: Float32Array;
  /** Δ [1,T,D] and the sentence banks it was taken from. */
  readonly delta: Float32Array;
  readonly banks: SentenceBanks;
  readonly T: number;
  readonly D: number;
}

/** One regularized DDIM inversion step k: ε before and after regularization, the roll offsets, z_{k+1}. */
export interface InversionStep {
  readonly eps: Float32Array;
  readonly epsReg: Float32Array;
  readonly rolls: unknown;
  readonly z: Float32Array;
  readonly dims: readonly number[];
}

/** One reference step k: its input z_ref and ε_ref = ε_θ(z_ref, t, e_c). */
export interface ReferenceStep {
  readonly z: Float32Array;
  readonly eps: Float32Array;
}

/** One edit step k: its input z, ∂L/∂x [2,4,h,w], [ε⁰, ε¹] [2,4,h,w] and L. */
export interface EditStep {
  readonly z: Float32Array;
  readonly grad: Float32Array;
  readonly eps: Float32Array;
  readonly loss: number;
}

export interface StepObserver {
  /** True when the observer needs every inversion step run (a cached z_T is then not used). */
  readonly needsInversion: boolean;
  inputs(inputs: EditInputs): Promise<void>;
  inversionStep(k: number, step: InversionStep): Promise<void>;
  inverted(zT: Float32Array): Promise<void>;
  referenceStep(k: number, step: ReferenceStep): Promise<void>;
  editStep(k: number, step: EditStep): Promise<void>;
  /** z after the last edit step, before decoding. */
  edited(z: Float32Array): Promise<void>;
  /** x_edit = D(z/s) [1,3,H,W]. */
  decoded(image: Float32Array): Promise<void>;
}

const done = Promise.resolve();

/** Watches nothing. */
export const NO_OBSERVER: StepObserver = Object.freeze({
  needsInversion: false,
  inputs: () => done,
  inversionStep: () => done,
  inverted: () => done,
  referenceStep: () => done,
  editStep: () => done,
  edited: () => done,
  decoded: () => done,
});
