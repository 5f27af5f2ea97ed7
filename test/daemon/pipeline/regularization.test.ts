// pix2pix-zero's noise regularization: losses pinned to a NumPy transcription of the official
// `auto_corr_loss` / `kl_divergence` (same MT19937 stream for data and offsets), gradients checked
// against float64 central differences, and the descent's behaviour.
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../daemon/pipeline/random.js';
import {
  autocorrelationLoss,
  autocorrelationLossGradient,
  drawRollOffsets,
  klLoss,
  klLossGradient,
  pyramidShapes,
  regularizeNoise,
  type RollOffsets,
} from '../../../daemon/pipeline/regularization.js';

/** Uniform data in [-1, 1) from rng.random(), as `rng.random()*2-1` in CPython. */
function uniformData(rng: Rng, n: number): Float64Array {
  return Float64Array.from({ length: n }, () => rng.random() * 2 - 1);
}

/** Spatially correlated noise: white noise plus a smooth per-channel pattern, [1,4,h,w] float32. */
function correlatedNoise(seed: number, h: number, w: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(4 * h * w);
  for (let c = 0; c < 4; c++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) out[(c * h + i) * w + j] = 1.5 * rng.normal() + 2 * Math.sin((i + 2 * c) / 5) * Math.cos(j / 7) + 0.4;
  return out;
}

describe('pyramidShapes', () => {
  it('pools by 2 with flooring while the height is above 8', () => {
    expect(pyramidShapes(64, 64)).toEqual([{ height: 64, width: 64 }, { height: 32, width: 32 }, { height: 16, width: 16 }, { height: 8, width: 8 }]);
    expect(pyramidShapes(19, 13)).toEqual([{ height: 19, width: 13 }, { height: 9, width: 6 }, { height: 4, width: 3 }]);
    expect(pyramidShapes(8, 96)).toEqual([{ height: 8, width: 96 }]);
    expect(pyramidShapes(9, 9)).toEqual([{ height: 9, width: 9 }, { height: 4, width: 4 }]);
  });

  it('never produces an empty level for tall, narrow latents', () => {
    expect(pyramidShapes(128, 8)).toEqual([{ height: 128, width: 8 }, { height: 64, width: 4 }, { height: 32, width: 2 }, { height: 16, width: 1 }]);
  });
});

describe('autocorrelationLoss and klLoss', () => {
  // Golden values: the official loop order (channel, then level) in NumPy with np.roll, mean over
  // 2×2 blocks, δ = random.randrange(1, max(2, S//2)), after drawing the data from the same Random(seed).
  it.each([
    [11, 19, 13, 0.004768536935686115, [[6, 1, 1], [3, 2, 1], [2, 2, 1], [7, 3, 1]], 0.4326760558592998],
    [12, 32, 24, 0.002830923009914409, [[11, 6, 1], [5, 1, 1], [7, 7, 1], [5, 6, 1]], 0.4266679859911411],
  ])('seed %i, [1,4,%i,%i] matches the NumPy reference', (seed, h, w, lac, offsets, lkl) => {
    const rng = new Rng(seed);
    const data = uniformData(rng, 4 * h * w);
    const dims = [1, 4, h, w];
    const drawn = drawRollOffsets(dims, rng);
    expect(drawn).toEqual(offsets);
    expect(autocorrelationLoss(data, dims, drawn)).toBeCloseTo(lac, 15);
    expect(klLoss(data)).toBeCloseTo(lkl, 14);
  });

  it('draws offsets in {1, …, S/2−1}, and 1 for levels under 4 rows', () => {
    const rng = new Rng(3);
    for (let k = 0; k < 50; k++) {
      const o = drawRollOffsets([1, 4, 64, 64], rng);
      expect(o.length).toBe(4);
      for (const ch of o) {
        expect(ch.length).toBe(4);
        [64, 32, 16, 8].forEach((s, l) => {
          expect(ch[l]).toBeGreaterThanOrEqual(1);
          expect(ch[l]).toBeLessThanOrEqual(s / 2 - 1);
        });
      }
    }
    expect(drawRollOffsets([1, 2, 3, 5], new Rng(1))).toEqual([[1], [1]]);
    const seen = new Set(Array.from({ length: 400 }, () => drawRollOffsets([1, 1, 16, 16], rng)[0]![0]));
    expect([...seen].sort((a, b) => a! - b!)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('refuses offsets of the wrong shape and latents that are not [1,C,h,w]', () => {
    expect(() => autocorrelationLoss(new Float64Array(16), [1, 1, 4, 4], [[1, 1]])).toThrow(/Roll offsets/);
    expect(() => autocorrelationLoss(new Float64Array(32), [2, 1, 4, 4], [[1]])).toThrow(/\[1,C,h,w\]/);
    expect(() => autocorrelationLoss(new Float64Array(15), [1, 1, 4, 4], [[1]])).toThrow(/\[1,C,h,w\]/);
  });
});

describe('closed-form gradients', () => {
  function centralDifference(f: (x: Float64Array) => number, x: Float64Array, i: number, step: number): number {
    const plus = Float64Array.from(x);
    const minus = Float64Array.from(x);
    plus[i] = plus[i]! + step;
    minus[i] = minus[i]! - step;
    return (f(plus) - f(minus)) / (2 * step);
  }

  it.each([
    [19, 13],
    [16, 16],
    [10, 7],
    [2, 3],
  ])('∇L_ac matches central differences on [1,4,%i,%i] (float64)', (h, w) => {
    const rng = new Rng(h * 100 + w);
    const dims = [1, 4, h, w];
    const x = uniformData(rng, 4 * h * w);
    // Odd offsets larger than half the level are allowed by the formula; exercise wrap-around too.
    const offsets: RollOffsets = drawRollOffsets(dims, rng).map((ch, c) => ch.map((d, l) => (c === 3 ? d + 3 * l + 2 : d)));
    const { loss, grad } = autocorrelationLossGradient(x, dims, offsets);
    expect(loss).toBeCloseTo(autocorrelationLoss(x, dims, offsets), 15);
    let maxAbs = 0;
    let maxErr = 0;
    for (let i = 0; i < x.length; i++) {
      const fd = centralDifference((y) => autocorrelationLoss(y, dims, offsets), x, i, 1e-5);
      maxAbs = Math.max(maxAbs, Math.abs(fd));
      maxErr = Math.max(maxErr, Math.abs(fd - grad[i]!));
    }
    expect(maxAbs).toBeGreaterThan(1e-6);
    expect(maxErr).toBeLessThan(1e-9 + 1e-6 * maxAbs);
  });

  it('∇L_kl matches central differences (float64)', () => {
    const rng = new Rng(21);
    const x = uniformData(rng, 4 * 6 * 5).map((v) => 1.7 * v + 0.3);
    const { loss, grad } = klLossGradient(x);
    expect(loss).toBeCloseTo(klLoss(x), 15);
    for (let i = 0; i < x.length; i++) {
      const fd = centralDifference(klLoss, x, i, 1e-6);
      expect(Math.abs(fd - grad[i]!)).toBeLessThan(1e-8);
    }
  });
});

describe('regularizeNoise', () => {
  const dims = [1, 4, 32, 32];

  /** L_ac averaged over every admissible offset (δ the same on all channels and levels). */
  function meanAutocorrelation(data: Float32Array): number {
    let total = 0;
    let count = 0;
    for (let d = 1; d <= 3; d++) {
      total += autocorrelationLoss(data, dims, Array.from({ length: 4 }, () => [d, d, d]));
      count++;
    }
    return total / count;
  }

  it('lowers L_ac and L_kl with the paper defaults', () => {
    const data = correlatedNoise(1, 32, 32);
    const { eps, rolls } = regularizeNoise({ data, dims }, {}, new Rng(42));
    expect(eps.dims).toEqual(dims);
    expect(eps.data).toBeInstanceOf(Float32Array);
    expect(meanAutocorrelation(eps.data)).toBeLessThan(0.5 * meanAutocorrelation(data));
    expect(klLoss(eps.data)).toBeLessThan(0.9 * klLoss(data));
    expect(rolls.length).toBe(5);
    for (const step of rolls) {
      expect(step.length).toBe(5);
      for (const offsets of step) expect(offsets.map((ch) => ch.length)).toEqual([3, 3, 3, 3]);
    }
    expect(data[0]).toBe(correlatedNoise(1, 32, 32)[0]); // the input is not modified
  });

  it('is the identity with zero outer steps (reg-steps 0), recording no offsets', () => {
    const data = correlatedNoise(2, 32, 32);
    const { eps, rolls } = regularizeNoise({ data, dims }, { outer: 0 }, new Rng(1));
    expect(Array.from(eps.data)).toEqual(Array.from(data));
    expect(eps.data).not.toBe(data);
    expect(rolls).toEqual([]);
  });

  it('skips the autocorrelation steps, and draws nothing, when λ_ac = 0', () => {
    const data = correlatedNoise(3, 32, 32);
    const rng = new Rng(8);
    const { eps, rolls } = regularizeNoise({ data, dims }, { lambdaAc: 0 }, rng);
    expect(rolls).toEqual([[], [], [], [], []]);
    expect(rng.uint32()).toBe(new Rng(8).uint32());
    expect(klLoss(eps.data)).toBeLessThan(klLoss(data));
  });

  it('applies exactly ε − (λ_ac/inner)·∇L_ac then ε − λ_kl·∇L_kl for one outer step', () => {
    const data = correlatedNoise(4, 32, 32);
    const { eps, rolls } = regularizeNoise({ data, dims }, { outer: 1, inner: 2, lambdaAc: 20, lambdaKl: 20 }, new Rng(5));
    let e = Float32Array.from(data);
    for (const offsets of rolls[0]!) {
      const { grad } = autocorrelationLossGradient(e, dims, offsets);
      e = e.map((v, i) => v - 10 * grad[i]!);
    }
    const { grad } = klLossGradient(e);
    e = e.map((v, i) => v - 20 * grad[i]!);
    expect(Array.from(eps.data)).toEqual(Array.from(e));
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const data = correlatedNoise(5, 32, 32);
    const a = regularizeNoise({ data, dims }, {}, new Rng(7));
    const b = regularizeNoise({ data, dims }, {}, new Rng(7));
    const c = regularizeNoise({ data, dims }, {}, new Rng(8));
    expect(Array.from(a.eps.data)).toEqual(Array.from(b.eps.data));
    expect(a.rolls).toEqual(b.rolls);
    expect(a.rolls).not.toEqual(c.rolls);
    expect(Array.from(a.eps.data)).not.toEqual(Array.from(c.eps.data));
  });

  it('refuses out-of-range settings', () => {
    const data = correlatedNoise(6, 32, 32);
    expect(() => regularizeNoise({ data, dims }, { outer: -1 }, new Rng(1))).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
    expect(() => regularizeNoise({ data, dims }, { inner: 1.5 }, new Rng(1))).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
    expect(() => regularizeNoise({ data, dims }, { lambdaKl: Number.NaN }, new Rng(1))).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
  });
});
