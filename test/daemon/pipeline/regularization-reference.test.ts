// The optimised regularization kernels (reused workspace, stepped roll indices, fused pool adjoint
// and descent step) against a plain transcription of the closed form: fresh arrays per step,
// explicit index arrays for the rolls, the gradient stored, then ε − rate·∇ as a float32 tensor.
// Results must be bit-identical, on awkward shapes (odd sizes, rolls wider than the level, one
// column, one channel) and when calls of different shapes interleave.
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../daemon/pipeline/random.js';
import {
  autocorrelationLossGradient,
  drawRollOffsets,
  pyramidShapes,
  regularizeNoise,
  type RollOffsets,
} from '../../../daemon/pipeline/regularization.js';

/** idx[j] = (j + shift) mod n. */
function wrapped(n: number, shift: number): number[] {
  const s = ((shift % n) + n) % n;
  return Array.from({ length: n }, (_, j) => (j + s) % n);
}

/** L_ac and its gradient, straight from the formulas (float64). */
function referenceGradient(eps: ArrayLike<number>, dims: readonly number[], offsets: RollOffsets): { loss: number; grad: Float64Array } {
  const [, C = 0, H = 0, W = 0] = dims;
  const levels = pyramidShapes(H, W);
  const grad = new Float64Array(C * H * W);
  let loss = 0;
  for (let c = 0; c < C; c++) {
    const pyramid: Float64Array[] = [Float64Array.from({ length: H * W }, (_, k) => eps[c * H * W + k]!)];
    for (let l = 1; l < levels.length; l++) {
      const { height: ho, width: wo } = levels[l]!;
      const w = levels[l - 1]!.width;
      const x = pyramid[l - 1]!;
      pyramid.push(Float64Array.from({ length: ho * wo }, (_, k) => {
        const i = Math.floor(k / wo);
        const j = k % wo;
        return 0.25 * (x[2 * i * w + 2 * j]! + x[2 * i * w + 2 * j + 1]! + x[(2 * i + 1) * w + 2 * j]! + x[(2 * i + 1) * w + 2 * j + 1]!);
      }));
    }
    const grads: Float64Array[] = [];
    for (let l = 0; l < levels.length; l++) {
      const { height: h, width: w } = levels[l]!;
      const eta = pyramid[l]!;
      const d = offsets[c]![l]!;
      const up = wrapped(h, -d);
      const down = wrapped(h, d);
      const left = wrapped(w, -d);
      const right = wrapped(w, d);
      let sH = 0;
      let sW = 0;
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < w; j++) {
          sH += eta[i * w + j]! * eta[up[i]! * w + j]!;
          sW += eta[i * w + j]! * eta[i * w + left[j]!]!;
        }
      }
      const aH = sH / (h * w);
      const aW = sW / (h * w);
      loss += aH * aH + aW * aW;
      const cH = (2 * aH) / (h * w);
      const cW = (2 * aW) / (h * w);
      grads.push(Float64Array.from({ length: h * w }, (_, k) => {
        const i = Math.floor(k / w);
        const j = k % w;
        return cH * (eta[up[i]! * w + j]! + eta[down[i]! * w + j]!) + cW * (eta[i * w + left[j]!]! + eta[i * w + right[j]!]!);
      }));
    }
    for (let l = levels.length - 1; l >= 1; l--) {
      const { height: ho, width: wo } = levels[l]!;
      const w = levels[l - 1]!.width;
      for (let i = 0; i < ho; i++) {
        for (let j = 0; j < wo; j++) {
          const q = 0.25 * grads[l]![i * wo + j]!;
          for (const k of [2 * i * w + 2 * j, 2 * i * w + 2 * j + 1, (2 * i + 1) * w + 2 * j, (2 * i + 1) * w + 2 * j + 1]) {
            grads[l - 1]![k] = grads[l - 1]![k]! + q;
          }
        }
      }
    }
    grad.set(grads[0]!, c * H * W);
  }
  return { loss, grad };
}

/** The regularization loop on a float32 tensor, the offsets taken from a recorded run. */
function referenceRegularize(data: Float32Array, dims: readonly number[], rolls: RollOffsets[][], inner: number, lambdaAc: number, lambdaKl: number): Float32Array {
  const e = Float32Array.from(data);
  for (const step of rolls) {
    for (const offsets of step) {
      const { grad } = referenceGradient(e, dims, offsets);
      for (let i = 0; i < e.length; i++) e[i] = e[i]! - (lambdaAc / inner) * grad[i]!;
    }
    const n = e.length;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += e[i]!;
    const mean = sum / n;
    let ss = 0;
    for (let i = 0; i < n; i++) ss += (e[i]! - mean) * (e[i]! - mean);
    const v = ss / (n - 1) + 1e-7;
    const a = ((1 - 1 / v) * 2) / (n - 1);
    const b = (2 * mean) / n;
    for (let i = 0; i < n; i++) e[i] = e[i]! - lambdaKl * (a * (e[i]! - mean) + b);
  }
  return e;
}

function noise(seed: number, n: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, (_, i) => 1.3 * rng.normal() + Math.sin(i / 9));
}

describe('regularization kernels against the plain transcription', () => {
  // [channels, h, w]: square; odd; tall and narrow (rolls of up to 63 rows on 8 columns, a 1-column
  // level); wide; one channel; under 4 rows.
  const shapes: [number, number, number][] = [[4, 32, 32], [4, 19, 13], [4, 128, 8], [4, 9, 40], [1, 24, 24], [4, 3, 5]];

  it.each(shapes)('regularizeNoise on [1,%i,%i,%i] is bit-identical', (C, h, w) => {
    const dims = [1, C, h, w];
    const data = noise(C * 1000 + h * 10 + w, C * h * w);
    const { eps, rolls } = regularizeNoise({ data, dims }, { outer: 3, inner: 4, lambdaAc: 20, lambdaKl: 20 }, new Rng(h + w));
    const expected = referenceRegularize(data, dims, rolls, 4, 20, 20);
    expect(Array.from(eps.data)).toEqual(Array.from(expected));
    expect(Array.from(eps.data)).not.toEqual(Array.from(data));
  });

  it('gives the same results when calls of different shapes interleave', () => {
    const runs = shapes.map(([C, h, w]) => {
      const dims = [1, C, h, w];
      const data = noise(h * w, C * h * w);
      return { dims, data, first: regularizeNoise({ data, dims }, {}, new Rng(3)).eps.data };
    });
    for (const { dims, data, first } of [...runs].reverse()) {
      expect(Array.from(regularizeNoise({ data, dims }, {}, new Rng(3)).eps.data)).toEqual(Array.from(first));
    }
  });

  it.each(shapes)('autocorrelationLossGradient on [1,%i,%i,%i] is bit-identical, for float32 and float64 input', (C, h, w) => {
    const dims = [1, C, h, w];
    const rng = new Rng(C + h * w);
    const data = noise(h * 7 + w, C * h * w);
    // Offsets beyond half the level and beyond the width, as the formula allows.
    const offsets = drawRollOffsets(dims, rng).map((ch, c) => ch.map((d, l) => d + c * (l + 5)));
    const expected = referenceGradient(data, dims, offsets);
    for (const input of [data, Float64Array.from(data)]) {
      const { loss, grad } = autocorrelationLossGradient(input, dims, offsets);
      expect(loss).toBe(expected.loss);
      expect(Array.from(grad)).toEqual(Array.from(expected.grad));
    }
  });
});
