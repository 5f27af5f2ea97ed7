// Noise regularization of pix2pix-zero's DDIM inversion (docs/DESIGN.md §3 step 4; Parmar et al. 2023,
// §3.1): the predicted ε is pushed towards uncorrelated Gaussian noise by plain gradient descent on ε
// itself (never through the UNet), with an autocorrelation loss L_ac over a pyramid of the latent and a
// KL loss L_kl towards N(0, 1). Both gradients are closed-form, computed here directly.
// Tensors are [1, C, h, w] (C = 4 for Stable Diffusion) flat in C order; ε steps as float32 values
// (held in reused float64 buffers, rounded at every step), sums and gradients are float64.
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
  return drawOffsets(c, pyramidShapes(h, w), rng);
}

function drawOffsets(channels: number, levels: readonly LevelShape[], rng: Rng): RollOffsets {
  const out: RollOffsets = [];
  for (let ch = 0; ch < channels; ch++) {
    const deltas: number[] = [];
    for (const l of levels) deltas.push(rng.randrange(1, Math.max(2, Math.floor(l.height / 2))));
    out.push(deltas);
  }
  return out;
}

/**
 * Float64 buffers for one latent shape: η_ℓ and ∂L/∂η_ℓ per pyramid level [h_ℓ·w_ℓ], the two
 * autocorrelations A_H, A_W per level, and two copies of ε [C·h·w] with per-channel views (a descent
 * step reads one and writes the other). The kernels run synchronously, so one workspace serves every
 * call of a shape; the last shape's is kept, and a regularization allocates no buffers per step.
 */
interface PyramidWorkspace {
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly levels: readonly LevelShape[];
  /** η_ℓ; eta[0] holds η_0 only when it is loaded from a caller's latent. */
  readonly eta: readonly Float64Array[];
  readonly grad: readonly Float64Array[];
  readonly aH: Float64Array;
  readonly aW: Float64Array;
  readonly latents: readonly [Float64Array, Float64Array];
  /** planes[k][c]: channel c of latents[k]. */
  readonly planes: readonly [readonly Float64Array[], readonly Float64Array[]];
}

let lastWorkspace: PyramidWorkspace | undefined;

function pyramidWorkspace(shape: LatentShape): PyramidWorkspace {
  const { channels, height, width } = shape;
  const last = lastWorkspace;
  if (last && last.channels === channels && last.height === height && last.width === width) return last;
  const levels = pyramidShapes(height, width);
  const plane = height * width;
  const latents = [new Float64Array(channels * plane), new Float64Array(channels * plane)] as const;
  const planesOf = (x: Float64Array): Float64Array[] => Array.from({ length: channels }, (_, c) => x.subarray(c * plane, (c + 1) * plane));
  lastWorkspace = {
    channels,
    height,
    width,
    levels,
    eta: levels.map((l) => new Float64Array(l.height * l.width)),
    grad: levels.map((l) => new Float64Array(l.height * l.width)),
    aH: new Float64Array(levels.length),
    aW: new Float64Array(levels.length),
    latents,
    planes: [planesOf(latents[0]), planesOf(latents[1])],
  };
  return lastWorkspace;
}

/** (−δ) mod n for δ ≥ 0: the index a backward roll by δ reads at position 0. */
function backwardStart(delta: number, n: number): number {
  const s = delta % n;
  return s === 0 ? 0 : n - s;
}

/** 2×2 average pool, floor: out[i,j] = ¼ Σ_{a,b∈{0,1}} x[2i+a, 2j+b]; x [h,w] → out [⌊h/2⌋,⌊w/2⌋]. */
function avgPool2(x: Float64Array, h: number, w: number, out: Float64Array): void {
  const ho = h >> 1;
  const wo = w >> 1;
  for (let i = 0; i < ho; i++) {
    const r0 = 2 * i * w;
    const r1 = r0 + w;
    const o = i * wo;
    for (let j = 0; j < wo; j++) {
      const c = 2 * j;
      out[o + j] = 0.25 * (x[r0 + c]! + x[r0 + c + 1]! + x[r1 + c]! + x[r1 + c + 1]!);
    }
  }
}

/**
 * The two autocorrelations of one level η [S,W] with offset δ (circular rolls, torch.roll semantics):
 *   A_H = mean(η ⊙ roll_H(η, δ)) = (1/SW) Σ_ij η[i,j]·η[(i−δ) mod S, j]
 *   A_W = mean(η ⊙ roll_W(η, δ)) = (1/SW) Σ_ij η[i,j]·η[i, (j−δ) mod W]
 * Written to ws.aH[l], ws.aW[l]; summed in row-major order, the rolled indices stepped and wrapped.
 */
function levelAutocorrelations(ws: PyramidWorkspace, l: number, eta: Float64Array, delta: number): void {
  const { height: h, width: w } = ws.levels[l]!;
  const left0 = backwardStart(delta, w);
  let up = backwardStart(delta, h);
  let sumH = 0;
  let sumW = 0;
  for (let i = 0; i < h; i++) {
    const row = i * w;
    const rowUp = up * w;
    let left = left0;
    for (let j = 0; j < w; j++) {
      const v = eta[row + j]!;
      sumH += v * eta[rowUp + j]!;
      sumW += v * eta[row + left]!;
      if (++left === w) left = 0;
    }
    if (++up === h) up = 0;
  }
  const n = h * w;
  ws.aH[l] = sumH / n;
  ws.aW[l] = sumW / n;
}

/**
 * ∂L/∂η_ℓ into ws.grad[l], given ∂L/∂η_{ℓ+1} already in ws.grad[ℓ+1] (N = S·W, indices mod S, W):
 *   g[i,j] = (2A_H/N)·(η[i−δ, j] + η[i+δ, j]) + (2A_W/N)·(η[i, j−δ] + η[i, j+δ])
 *            + ¼·∂L/∂η_{ℓ+1}[⌊i/2⌋, ⌊j/2⌋]   (the pool's adjoint; not for rows/columns the pool dropped)
 * With `descent` (level 0 only), g is not stored: descent[i,j] = fround(η[i,j] − rate·g[i,j])
 * instead (ε's float32 step, η being ε's channel).
 */
function levelGradient(
  ws: PyramidWorkspace,
  l: number,
  eta: Float64Array,
  delta: number,
  descent: Float64Array | null,
  rate: number,
): void {
  const { height: h, width: w } = ws.levels[l]!;
  const g = descent ?? ws.grad[l]!;
  const parent = l + 1 < ws.levels.length ? ws.grad[l + 1]! : null;
  const ho = parent ? h >> 1 : 0;
  const wo = w >> 1;
  const n = h * w;
  const cH = (2 * ws.aH[l]!) / n;
  const cW = (2 * ws.aW[l]!) / n;
  const left0 = backwardStart(delta, w);
  const right0 = delta % w;
  let up = backwardStart(delta, h);
  let down = delta % h;
  for (let i = 0; i < h; i++) {
    const row = i * w;
    const rowUp = up * w;
    const rowDown = down * w;
    const pi = i >> 1;
    const pRow = pi * wo;
    const withParent = parent !== null && pi < ho ? 2 * wo : 0;
    let left = left0;
    let right = right0;
    let j = 0;
    if (descent) {
      for (; j < withParent; j++) {
        const v = cH * (eta[rowUp + j]! + eta[rowDown + j]!) + cW * (eta[row + left]! + eta[row + right]!) + 0.25 * parent![pRow + (j >> 1)]!;
        g[row + j] = Math.fround(eta[row + j]! - rate * v);
        if (++left === w) left = 0;
        if (++right === w) right = 0;
      }
      for (; j < w; j++) {
        const v = cH * (eta[rowUp + j]! + eta[rowDown + j]!) + cW * (eta[row + left]! + eta[row + right]!);
        g[row + j] = Math.fround(eta[row + j]! - rate * v);
        if (++left === w) left = 0;
        if (++right === w) right = 0;
      }
    } else {
      for (; j < withParent; j++) {
        g[row + j] = cH * (eta[rowUp + j]! + eta[rowDown + j]!) + cW * (eta[row + left]! + eta[row + right]!) + 0.25 * parent![pRow + (j >> 1)]!;
        if (++left === w) left = 0;
        if (++right === w) right = 0;
      }
      for (; j < w; j++) {
        g[row + j] = cH * (eta[rowUp + j]! + eta[rowDown + j]!) + cW * (eta[row + left]! + eta[row + right]!);
        if (++left === w) left = 0;
        if (++right === w) right = 0;
      }
    }
    if (++up === h) up = 0;
    if (++down === h) down = 0;
  }
}

/**
 * One channel η_0 [h,w]: its pyramid, its terms of L_ac added to `loss` (channel, then level order,
 * as the official code sums), then, `withGradient`, ∂L_ac/∂η_0 top-down through the levels: into
 * ws.grad[0], or, when `descent` is given, applied as ε's step of size `rate` into it.
 */
function channelAutocorrelation(
  ws: PyramidWorkspace,
  eta0: Float64Array,
  deltas: readonly number[],
  loss: number,
  withGradient: boolean,
  descent: Float64Array | null = null,
  rate = 0,
): number {
  const { levels, eta } = ws;
  let sum = loss;
  for (let l = 0; l < levels.length; l++) {
    const x = l === 0 ? eta0 : eta[l]!;
    if (l > 0) avgPool2(l === 1 ? eta0 : eta[l - 1]!, levels[l - 1]!.height, levels[l - 1]!.width, x);
    levelAutocorrelations(ws, l, x, deltas[l]!);
    const aH = ws.aH[l]!;
    const aW = ws.aW[l]!;
    sum += aH * aH + aW * aW;
  }
  if (!withGradient) return sum;
  for (let l = levels.length - 1; l >= 0; l--) {
    levelGradient(ws, l, l === 0 ? eta0 : eta[l]!, deltas[l]!, l === 0 ? descent : null, rate);
  }
  return sum;
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
  const ws = pyramidWorkspace(shape);
  checkOffsets(offsets, shape, ws.levels);
  const plane = shape.height * shape.width;
  const grad = new Float64Array(withGradient ? eps.length : 0);
  const eta0 = ws.eta[0]!;
  let loss = 0;
  for (let c = 0; c < shape.channels; c++) {
    for (let k = 0; k < plane; k++) eta0[k] = eps[c * plane + k]!;
    loss = channelAutocorrelation(ws, eta0, offsets[c]!, loss, withGradient);
    if (withGradient) grad.set(ws.grad[0]!, c * plane);
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
 * The affine form of ∇L_kl: ∂L_kl/∂ε_i = a·(ε_i − μ) + b with
 *   a = (1 − 1/(var + 1e-7))·2/(N − 1),  b = 2μ/N.
 */
function klGradientTerms(eps: ArrayLike<number>): { loss: number; mean: number; a: number; b: number } {
  const n = eps.length;
  const { mean, variance } = meanAndVariance(eps);
  const v = variance + REGULARIZATION_LIMITS.klVarianceEpsilon;
  return {
    loss: variance + mean * mean - 1 - Math.log(v),
    mean,
    a: ((1 - 1 / v) * 2) / (n - 1),
    b: (2 * mean) / n,
  };
}

/**
 * L_kl and its gradient, closed form:
 *   ∂L_kl/∂ε_i = (1 − 1/(var + 1e-7)) · 2(ε_i − μ)/(N − 1) + 2μ/N.   eps [N] → grad [N] (float64).
 */
export function klLossGradient(eps: ArrayLike<number>): { loss: number; grad: Float64Array } {
  const { loss, mean, a, b } = klGradientTerms(eps);
  const grad = new Float64Array(eps.length);
  for (let i = 0; i < grad.length; i++) grad[i] = a * (eps[i]! - mean) + b;
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
 * rolls[outer][inner][channel][level] (docs/DUMP.md `k_rolls.json`; `[]` when outer = 0).
 */
export function regularizeNoise(
  eps: NoiseTensor,
  options: Partial<RegularizationOptions>,
  rng: Rng,
): { eps: NoiseTensor; rolls: RollOffsets[][] } {
  const o: RegularizationOptions = { ...REGULARIZATION_DEFAULTS, ...options };
  checkOptions(o);
  const shape = latentShape(eps.dims, eps.data.length);
  const ws = pyramidWorkspace(shape);
  // ε is kept in float64 with float32 values (every step rounds with fround, as a float32 tensor
  // would), so that each channel is η_0 of its pyramid as it stands; steps alternate between the
  // workspace's two copies.
  let from: 0 | 1 = 0;
  ws.latents[from].set(eps.data);
  const rolls: RollOffsets[][] = [];
  for (let outer = 0; outer < o.outer; outer++) {
    const stepRolls: RollOffsets[] = [];
    if (o.lambdaAc > 0) {
      const rate = o.lambdaAc / o.inner;
      for (let inner = 0; inner < o.inner; inner++) {
        const offsets = drawOffsets(shape.channels, ws.levels, rng);
        const to: 0 | 1 = from === 0 ? 1 : 0;
        // ∇L_ac of channel c depends on channel c only: each channel steps as soon as it is known.
        for (let c = 0; c < shape.channels; c++) {
          channelAutocorrelation(ws, ws.planes[from][c]!, offsets[c]!, 0, true, ws.planes[to][c]!, rate);
        }
        from = to;
        stepRolls.push(offsets);
      }
    }
    if (o.lambdaKl > 0) {
      const e = ws.latents[from];
      const { mean, a, b } = klGradientTerms(e);
      const lambda = o.lambdaKl;
      for (let i = 0; i < e.length; i++) e[i] = Math.fround(e[i]! - lambda * (a * (e[i]! - mean) + b));
    }
    rolls.push(stepRolls);
  }
  const e = new Float32Array(ws.latents[from]);
  return { eps: { data: e, dims: [...eps.dims] }, rolls };
}
