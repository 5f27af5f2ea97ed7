import { describe, expect, it } from 'vitest';
import { NormalStream, hash32, mulberry32, tensorSeed } from '../../../../daemon/onnx/graph/prng.js';

describe('seeded PRNG', () => {
  it('mulberry32 matches the reference sequence for seed 0', () => {
    // Reference values from an independent Python transcription of the published C code (uint32 math).
    const next = mulberry32(0);
    expect([next(), next(), next()]).toEqual([1144304738, 1416247, 958946056]);
  });

  it('hash32 is stable and spreads names', () => {
    expect(hash32('conv_in.weight')).toBe(hash32('conv_in.weight'));
    expect(hash32('conv_in.weight')).not.toBe(hash32('conv_in.bias'));
    expect(tensorSeed(1, 'a')).not.toBe(tensorSeed(2, 'a'));
  });

  it('ziggurat normals match an independent transcription (seed 0, float32-rounded)', () => {
    // Python transcription of Marsaglia & Tsang's RNOR/nfix on the same mulberry32 stream; over the
    // first 10,000 draws 262 take the slow path (wedge or tail), so the last values would drift if the
    // slow path consumed draws differently.
    const first = [1.0991708981722006, 0.000931097469165925, 0.27880361976339385, 0.1396048746395959, 1.7019639991182998, -1.211268555579874];
    const last = [1.1354179486773521, -1.8445770948963711, 0.3146665049971828, -0.6700011034911355];
    const z = new NormalStream(0).fill(new Float32Array(10_000));
    expect(Array.from(z.subarray(0, 6))).toEqual(first.map(Math.fround));
    expect(Array.from(z.subarray(-4))).toEqual(last.map(Math.fround));
  });

  it('normals have mean ≈ 0, variance ≈ 1 and Gaussian tails', () => {
    const n = 400_000;
    const x = new NormalStream(42).fill(new Float32Array(n));
    let s = 0;
    let s2 = 0;
    let beyond2 = 0;
    let beyond35 = 0;
    for (const v of x) {
      s += v;
      s2 += v * v;
      if (Math.abs(v) > 2) beyond2++;
      if (Math.abs(v) > 3.5) beyond35++;
    }
    const mean = s / n;
    // Standard error of the mean is 1/√n ≈ 0.0016; of the variance ≈ √(2/n) ≈ 0.0022.
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(s2 / n - mean * mean - 1)).toBeLessThan(0.012);
    // P(|z| > 2) = 0.0455 (±0.0003 at this n); P(|z| > 3.5) = 4.65e-4 (≈186 expected): the tail beyond
    // the ziggurat's r = 3.44 is sampled.
    expect(Math.abs(beyond2 / n - 0.0455)).toBeLessThan(0.002);
    expect(beyond35).toBeGreaterThan(120);
    expect(beyond35).toBeLessThan(260);
  });

  it('the sequence does not depend on how it is split into chunks', () => {
    const whole = new NormalStream(5).fill(new Float32Array(11));
    const s = new NormalStream(5);
    const parts = [3, 1, 4, 3].map((k) => Array.from(s.fill(new Float32Array(k))));
    expect(parts.flat()).toEqual(Array.from(whole));
  });
});
