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

  it('polar Box–Muller normals match an independent transcription (seed 0, float32-rounded)', () => {
    // Python: mulberry32 as above, u,v = 2·x/2³² − 1 until 0 < s < 1, z = (u,v)·√(−2 ln s / s).
    const golden = [-0.4034575269723847, -0.5158221090715174, -1.7398624146230837, 2.39895877381072, 1.2091170465346344, 1.563024716115332];
    expect(Array.from(new NormalStream(0).fill(new Float32Array(6)))).toEqual(golden.map(Math.fround));
  });

  it('Box–Muller normals have mean ≈ 0 and variance ≈ 1', () => {
    const n = 200_000;
    const x = new NormalStream(42).fill(new Float32Array(n));
    let s = 0;
    let s2 = 0;
    for (const v of x) {
      s += v;
      s2 += v * v;
    }
    const mean = s / n;
    // Standard error of the mean is 1/√n ≈ 0.0022; of the variance ≈ √(2/n) ≈ 0.0032.
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(s2 / n - mean * mean - 1)).toBeLessThan(0.015);
  });

  it('the sequence does not depend on how it is split into chunks', () => {
    const whole = new NormalStream(5).fill(new Float32Array(11));
    const s = new NormalStream(5);
    const parts = [3, 1, 4, 3].map((k) => Array.from(s.fill(new Float32Array(k))));
    expect(parts.flat()).toEqual(Array.from(whole));
  });
});
