// Noise regularization of pix2pix-zero's DDIM inversion (DESIGN.md §3 step 4; Parmar et al. 2023,
// §3.1): the predicted ε is pushed towards uncorrelated Gaussian noise by plain gradient descent on ε
// itself (never through the UNet), with an autocorrelation loss L_ac over a pyramid of the latent and a
// KL loss L_kl towards N(0, 1). Both gradients are closed-form, computed here directly.
// Tensors are [1, C, h, w] (C = 4 for Stable Diffusion) flat in C order; data is float32, sums float64.
import { P2pzError } from '../../shared/protocol/index.js';
import type { Rng } from './random.js';

export interface RegularizationOptions {
  readonly outer: number;
  readonly inner: number;
  readonly lambdaAc: number;
  readonly lambdaKl: number;
}

export const REGULARIZATION_DEFAULTS: Readonly<RegularizationOptions> = Object.freeze({
  /** Outer iterations: each runs `inner` autocorrelation steps, then one KL step. */
  outer: 5,
  /** Autocorrelation steps per outer iteration, each with fresh roll offsets (the official num_ac_rolls). */
  inner: 5,
  /** λ_ac: each autocorrelation step is ε ← ε − (λ_ac / inner)·∇L_ac(ε). */
  lambdaAc: 20,
  /** λ_kl: each KL step is ε ← ε − λ_kl·∇L_kl(ε). */
  lambdaKl: 20,
});

export const REGULARIZATION_LIMITS = Object.freeze({
  maxOuter: 100,
  maxInner: 100,
  maxLambda: 1e4,
  /** The pyramid stops once a level's height is at most this. */
  minPyramidHeight: 8,
  /** ε added to the variance inside L_kl's logarithm. */
  klVarianceEpsilon: 1e-7,
});

/** A latent-shaped tensor, as onnxruntime's Tensor exposes it. */
export interface NoiseTensor {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

/** Roll offsets of one L_ac evaluation: offsets[channel][level]. */
export type RollOffsets = number[][];

export interface LevelShape {
  readonly height: number;
  readonly width: number;
}

interface LatentShape {
  readonly channels: number;
  readonly height: number;
  readonly width: number;
}

function latentShape(dims: readonly number[], length: number): LatentShape {
  const [b, c, h, w] = dims;
  if (dims.length !== 4 || b !== 1 || !c || !h || !w || c * h * w !== length) {
    throw new P2pzError('E_INTERNAL', `Noise regularization needs a [1,C,h,w] latent with matching data, got [${dims.join(',')}] with ${length} values.`);
  }
  return { channels: c, height: h, width: w };
}

/**
 * The pyramid of L_ac: the full h×w latent, then repeated 2×2 average pools (no rescaling, odd sizes
 * floored), a level being added while the current height is above 8 (as the official code's
 * `while True … if H <= 8: break`). A level is also never added once the width is 1, so very wide
 * or tall latents cannot reach an empty level.
 */
export function pyramidShapes(height: number, width: number): LevelShape[] {
  const levels: LevelShape[] = [{ height, width }];
  let h = height;
  let w = width;
  while (h > REGULARIZATION_LIMITS.minPyramidHeight && w >= 2) {
    h = Math.floor(h / 2);
    w = Math.floor(w / 2);
    levels.push({ height: h, width: w });
  }
  return levels;
}

/**
 * Fresh offsets for one L_ac evaluation, drawn channel by channel, level by level (the official
 * code's loop order): δ uniform on {1, …, ⌊S/2⌋−1}, S = that level's height (`rng.randrange(1, ⌊S/2⌋)`).
 * Where ⌊S/2⌋−1 < 1 (S < 4, only for latents under 4 rows) δ = 1, still consuming one draw
 * (`randrange(1, 2)`): the official code's δ = 0 would turn the term into mean(η²)², a pull towards
 * zero energy rather than a decorrelation.
 */
export function drawRollOffsets(dims: readonly number[], rng: Rng): RollOffsets {
  const [, c = 0, h = 0, w = 0] = dims;
  const levels = pyramidShapes(h, w);
  const out: RollOffsets = [];
  for (let ch = 0; ch < c; ch++) {
    out.push(levels.map((l) => rng.randrange(1, Math.max(2, Math.floor(l.height / 2)))));
  }
  return out;
}

/** 2×2 average pool, floor: out[i,j] = ¼ Σ_{a,b∈{0,1}} x[2i+a, 2j+b]; x [h,w] → [⌊h/2⌋,⌊w/2⌋]. */
function avgPool2(x: Float64Array, h: number, w: number): Float64Array<ArrayBuffer> {
  const ho = Math.floor(h / 2);
  const wo = Math.floor(w / 2);
  const out = new Float64Array(ho * wo);
  for (let i = 0; i < ho; i++) {
    const r0 = 2 * i * w;
    const r1 = r0 + w;
    for (let j = 0; j < wo; j++) {
      out[i * wo + j] = 0.25 * (x[r0 + 2 * j]! + x[r0 + 2 * j + 1]! + x[r1 + 2 * j]! + x[r1 + 2 * j + 1]!);
    }
  }
  return out;
}

/** The pyramid levels of one channel (float64 copies). */
function channelPyramid(data: ArrayLike<number>, offset: number, levels: readonly LevelShape[]): Float64Array[] {
  const first = levels[0]!;
  const base = new Float64Array(first.height * first.width);
  for (let i = 0; i < base.length; i++) base[i] = data[offset + i]!;
  const out: Float64Array[] = [base];
  for (let l = 1; l < levels.length; l++) {
    const prev = levels[l - 1]!;
    out.push(avgPool2(out[l - 1]!, prev.height, prev.width));
  }
  return out;
}

/** idx[j] = (j + shift) mod n for j = 0..n−1 (shift may be negative). */
function wrappedIndices(n: number, shift: number): Int32Array {
  const out = new Int32Array(n);
  const s = ((shift % n) + n) % n;
  for (let j = 0; j < n; j++) out[j] = j + s < n ? j + s : j + s - n;
  return out;
}

/**
 * The two autocorrelations of one level η [S,W] with offset δ (circular rolls, torch.roll semantics):
 *   A_H = mean(η ⊙ roll_H(η, δ)) = (1/SW) Σ_ij η[i,j]·η[(i−δ) mod S, j]
 *   A_W = mean(η ⊙ roll_W(η, δ)) = (1/SW) Σ_ij η[i,j]·η[i, (j−δ) mod W]
 */
function levelAutocorrelations(eta: Float64Array, h: number, w: number, delta: number): [number, number] {
  const rowsUp = wrappedIndices(h, -delta);
  const colsLeft = wrappedIndices(w, -delta);
  let sumH = 0;
  let sumW = 0;
  for (let i = 0; i < h; i++) {
    const row = i * w;
    const rowH = rowsUp[i]! * w;
    for (let j = 0; j < w; j++) {
      const v = eta[row + j]!;
      sumH += v * eta[rowH + j]!;
      sumW += v * eta[row + colsLeft[j]!]!;
    }
  }
  const n = h * w;
  return [sumH / n, sumW / n];
}

function checkOffsets(offsets: RollOffsets, shape: LatentShape, levels: readonly LevelShape[]): void {
  if (offsets.length !== shape.channels || offsets.some((o) => o.length !== levels.length || o.some((d) => !Number.isInteger(d) || d < 0))) {
    throw new P2pzError('E_INTERNAL', `Roll offsets must be [${shape.channels}][${levels.length}] non-negative integers.`);
  }
}

/**
 * L_ac(ε) = Σ_c Σ_ℓ (A_H(η_cℓ, δ_cℓ))² + (A_W(η_cℓ, δ_cℓ))², η_c0 = ε[0,c], η_c,ℓ+1 = pool(η_cℓ).
 * eps: [1,C,h,w] data; offsets: [C][levels].
 */
export function autocorrelationLoss(eps: ArrayLike<number>, dims: readonly number[], offsets: RollOffsets): number {
  return autocorrelationLossGradient(eps, dims, offsets, false).loss;
}

/**
 * L_ac and ∂L_ac/∂ε, closed form. Per level (N = S·W):
 *   ∂A_H/∂η[i,j] = (η[i−δ, j] + η[i+δ, j]) / N,  ∂A_W/∂η[i,j] = (η[i, j−δ] + η[i, j+δ]) / N  (indices mod S, W)
 *   ∂L/∂η_ℓ = 2·A_H·∂A_H/∂η + 2·A_W·∂A_W/∂η  + (from the level above) the pool's adjoint:
 *   ∂L/∂η_ℓ[2i+a, 2j+b] += ¼·∂L/∂η_{ℓ+1}[i, j]  (rows/columns dropped by flooring get nothing).
 * eps [1,C,h,w] → grad [1,C,h,w] (float64).
 */
export function autocorrelationLossGradient(
  eps: ArrayLike<number>,
  dims: readonly number[],
  offsets: RollOffsets,
  withGradient = true,
): { loss: number; grad: Float64Array } {
  const shape = latentShape(dims, eps.length);
  const levels = pyramidShapes(shape.height, shape.width);
  checkOffsets(offsets, shape, levels);
  const plane = shape.height * shape.width;
  const grad = new Float64Array(withGradient ? eps.length : 0);
  let loss = 0;
  for (let c = 0; c < shape.channels; c++) {
    const pyramid = channelPyramid(eps, c * plane, levels);
    const grads: Float64Array[] = [];
    for (let l = 0; l < levels.length; l++) {
      const { height: h, width: w } = levels[l]!;
      const eta = pyramid[l]!;
      const delta = offsets[c]![l]!;
      const [aH, aW] = levelAutocorrelations(eta, h, w, delta);
      loss += aH * aH + aW * aW;
      if (!withGradient) continue;
      const g = new Float64Array(h * w);
      const n = h * w;
      const cH = (2 * aH) / n;
      const cW = (2 * aW) / n;
      const rowsUp = wrappedIndices(h, -delta);
      const rowsDown = wrappedIndices(h, delta);
      const colsLeft = wrappedIndices(w, -delta);
      const colsRight = wrappedIndices(w, delta);
      for (let i = 0; i < h; i++) {
        const row = i * w;
        const up = rowsUp[i]! * w;
        const down = rowsDown[i]! * w;
        for (let j = 0; j < w; j++) {
          g[row + j] = cH * (eta[up + j]! + eta[down + j]!) + cW * (eta[row + colsLeft[j]!]! + eta[row + colsRight[j]!]!);
        }
      }
      grads.push(g);
    }
    if (!withGradient) continue;
    for (let l = levels.length - 1; l >= 1; l--) {
      const { height: ho, width: wo } = levels[l]!;
      const w = levels[l - 1]!.width;
      const upper = grads[l]!;
      const lower = grads[l - 1]!;
      for (let i = 0; i < ho; i++) {
        for (let j = 0; j < wo; j++) {
          const q = 0.25 * upper[i * wo + j]!;
          const r0 = 2 * i * w + 2 * j;
          lower[r0] = lower[r0]! + q;
          lower[r0 + 1] = lower[r0 + 1]! + q;
          lower[r0 + w] = lower[r0 + w]! + q;
          lower[r0 + w + 1] = lower[r0 + w + 1]! + q;
        }
      }
    }
    grad.set(grads[0]!, c * plane);
  }
  return { loss, grad };
}

function meanAndVariance(x: ArrayLike<number>): { mean: number; variance: number } {
  const n = x.length;
  if (n < 2) throw new P2pzError('E_INTERNAL', 'The KL loss needs at least two values.');
  let sum = 0;
  for (let i = 0; i < n; i++) sum += x[i]!;
  const mean = sum / n;
  let ss = 0;
  for (let i = 0; i < n; i++) {
    const d = x[i]! - mean;
    ss += d * d;
  }
  return { mean, variance: ss / (n - 1) };
}

/** L_kl(ε) = var + μ² − 1 − log(var + 1e-7) over all N elements, var unbiased (÷ N−1). */
export function klLoss(eps: ArrayLike<number>): number {
  const { mean, variance } = meanAndVariance(eps);
  return variance + mean * mean - 1 - Math.log(variance + REGULARIZATION_LIMITS.klVarianceEpsilon);
}

/**
 * L_kl and its gradient, closed form:
 *   ∂L_kl/∂ε_i = (1 − 1/(var + 1e-7)) · 2(ε_i − μ)/(N − 1) + 2μ/N.   eps [N] → grad [N] (float64).
 */
export function klLossGradient(eps: ArrayLike<number>): { loss: number; grad: Float64Array } {
  const n = eps.length;
  const { mean, variance } = meanAndVariance(eps);
  const v = variance + REGULARIZATION_LIMITS.klVarianceEpsilon;
  const loss = variance + mean * mean - 1 - Math.log(v);
  const a = ((1 - 1 / v) * 2) / (n - 1);
  const b = (2 * mean) / n;
  const grad = new Float64Array(n);
  for (let i = 0; i < n; i++) grad[i] = a * (eps[i]! - mean) + b;
  return { loss, grad };
}

function checkOptions(o: RegularizationOptions): void {
  const L = REGULARIZATION_LIMITS;
  const ok =
    Number.isInteger(o.outer) && o.outer >= 0 && o.outer <= L.maxOuter &&
    Number.isInteger(o.inner) && o.inner >= 0 && o.inner <= L.maxInner &&
    Number.isFinite(o.lambdaAc) && o.lambdaAc >= 0 && o.lambdaAc <= L.maxLambda &&
    Number.isFinite(o.lambdaKl) && o.lambdaKl >= 0 && o.lambdaKl <= L.maxLambda;
  if (!ok) {
    throw new P2pzError('E_BAD_REQUEST', `Regularization settings out of range: outer and inner are integers 0–${L.maxOuter}, λ_ac and λ_kl are 0–${L.maxLambda}.`);
  }
}

/**
 * pix2pix-zero's ε regularization:
 *   repeat outer times { repeat inner times { ε ← ε − (λ_ac/inner)·∇L_ac(ε; fresh offsets) };
 *                        ε ← ε − λ_kl·∇L_kl(ε) }
 * A zero λ skips its steps (and, for λ_ac, draws no offsets); outer = 0 returns ε unchanged.
 * eps [1,C,h,w] float32 → a new [1,C,h,w] float32 tensor, and the offsets used as
 * rolls[outer][inner][channel][level] (DUMP.md `k_rolls.json`; `[]` when outer = 0).
 */
export function regularizeNoise(
  eps: NoiseTensor,
  options: Partial<RegularizationOptions>,
  rng: Rng,
): { eps: NoiseTensor; rolls: RollOffsets[][] } {
  const o: RegularizationOptions = { ...REGULARIZATION_DEFAULTS, ...options };
  checkOptions(o);
  latentShape(eps.dims, eps.data.length);
  const e = Float32Array.from(eps.data);
  const rolls: RollOffsets[][] = [];
  for (let outer = 0; outer < o.outer; outer++) {
    const stepRolls: RollOffsets[] = [];
    if (o.lambdaAc > 0) {
      const rate = o.lambdaAc / o.inner;
      for (let inner = 0; inner < o.inner; inner++) {
        const offsets = drawRollOffsets(eps.dims, rng);
        const { grad } = autocorrelationLossGradient(e, eps.dims, offsets);
        for (let i = 0; i < e.length; i++) e[i] = e[i]! - rate * grad[i]!;
        stepRolls.push(offsets);
      }
    }
    if (o.lambdaKl > 0) {
      const { grad } = klLossGradient(e);
      for (let i = 0; i < e.length; i++) e[i] = e[i]! - o.lambdaKl * grad[i]!;
    }
    rolls.push(stepRolls);
  }
  return { eps: { data: e, dims: [...eps.dims] }, rolls };
}
