// DDIM and DDIM inversion against the numbers diffusers publishes in
// tests/schedulers/test_scheduler_ddim.py and test_scheduler_ddim_inverse.py (their deterministic
// dummy sample and dummy model sample·t/(t+1), 10 steps, linear betas, clip_sample), plus the
// inversion → sampling round trip that pix2pix-zero relies on.
import { describe, expect, it } from 'vitest';
import { DdimInverseScheduler } from '../../../../daemon/pipeline/scheduler/ddim-inverse.js';
import { DdimScheduler } from '../../../../daemon/pipeline/scheduler/ddim.js';
import { parseSchedulerConfig, type SchedulerConfigInput } from '../../../../daemon/pipeline/scheduler/scheduler-config.js';
import { Rng } from '../../../../daemon/pipeline/random.js';
import { SD_SCHEDULER_CONFIG } from './sd-scheduler-config.js';

/** diffusers' test config: linear β 0.0001 → 0.02, 1000 train steps, clip_sample. */
const DIFFUSERS_TEST_CONFIG: SchedulerConfigInput = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  clip_sample: true,
};

/** diffusers' dummy_sample_deter: [4,3,8,8], arange(768) laid out as (C,H,W,B) / 768, permuted to (B,C,H,W). */
function dummySampleDeter(): Float32Array {
  const out = new Float32Array(768);
  for (let b = 0; b < 4; b++)
    for (let c = 0; c < 3; c++)
      for (let h = 0; h < 8; h++)
        for (let w = 0; w < 8; w++) out[((b * 3 + c) * 8 + h) * 8 + w] = (c * 256 + h * 32 + w * 4 + b) / 768;
  return out;
}

/** diffusers' dummy_model: ε = sample · t / (t + 1). */
function dummyModel(sample: Float32Array, t: number): Float32Array {
  return sample.map((v) => (v * t) / (t + 1));
}

function fullLoop(scheduler: DdimScheduler | DdimInverseScheduler): { sum: number; mean: number } {
  scheduler.setTimesteps(10);
  let sample = dummySampleDeter();
  for (const t of scheduler.timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
  let sum = 0;
  for (const v of sample) sum += Math.abs(v);
  return { sum, mean: sum / sample.length };
}

describe('DdimScheduler', () => {
  it('computes ᾱ in float64 for the SD scaled_linear schedule', () => {
    const s = new DdimScheduler(parseSchedulerConfig(SD_SCHEDULER_CONFIG));
    // numpy: cumprod(1 - linspace(sqrt(0.00085), sqrt(0.012), 1000)**2) in float64
    expect(s.alphasCumprod[0]).toBeCloseTo(0.99915, 15);
    expect(s.alphasCumprod[1]).toBeCloseTo(0.9982960278384514, 14);
    expect(s.alphasCumprod[500]).toBeCloseTo(0.2763326838229746, 13);
    expect(s.alphasCumprod[999]).toBeCloseTo(0.004660098513077238, 14);
    expect(s.finalAlphaCumprod).toBe(s.alphasCumprod[0]);
  });

  it('uses leading spacing with steps_offset, high to low (diffusers test_steps_offset)', () => {
    const s = new DdimScheduler(parseSchedulerConfig({ ...DIFFUSERS_TEST_CONFIG, steps_offset: 1 }));
    s.setTimesteps(5);
    expect(s.timesteps).toEqual([801, 601, 401, 201, 1]);
    const sd = new DdimScheduler(parseSchedulerConfig(SD_SCHEDULER_CONFIG));
    sd.setTimesteps(50);
    expect(sd.timesteps.length).toBe(50);
    expect(sd.timesteps[0]).toBe(981);
    expect(sd.timesteps[1]).toBe(961);
    expect(sd.timesteps[49]).toBe(1);
    sd.setTimesteps(30); // ⌊1000/30⌋ = 33
    expect(sd.timesteps.slice(0, 2)).toEqual([958, 925]);
    expect(sd.timesteps.at(-1)).toBe(1);
  });

  it('matches diffusers test_variance', () => {
    const s = new DdimScheduler(parseSchedulerConfig(DIFFUSERS_TEST_CONFIG));
    expect(Math.abs(s.variance(0, 0) - 0)).toBeLessThan(1e-5);
    expect(Math.abs(s.variance(420, 400) - 0.14771)).toBeLessThan(1e-5);
    expect(Math.abs(s.variance(980, 960) - 0.3246)).toBeLessThan(1e-5);
    expect(Math.abs(s.variance(487, 486) - 0.00979)).toBeLessThan(1e-5);
    expect(Math.abs(s.variance(999, 998) - 0.02)).toBeLessThan(1e-5);
  });

  it('matches diffusers test_full_loop_no_noise', () => {
    const { sum, mean } = fullLoop(new DdimScheduler(parseSchedulerConfig(DIFFUSERS_TEST_CONFIG)));
    expect(Math.abs(sum - 172.0067)).toBeLessThan(1e-2);
    expect(Math.abs(mean - 0.223967)).toBeLessThan(1e-3);
  });

  it('matches diffusers test_full_loop_with_set_alpha_to_one / no_set_alpha_to_one', () => {
    const one = fullLoop(new DdimScheduler(parseSchedulerConfig({ ...DIFFUSERS_TEST_CONFIG, set_alpha_to_one: true, beta_start: 0.01 })));
    expect(Math.abs(one.sum - 149.8295)).toBeLessThan(1e-2);
    expect(Math.abs(one.mean - 0.1951)).toBeLessThan(1e-3);
    const noOne = fullLoop(new DdimScheduler(parseSchedulerConfig({ ...DIFFUSERS_TEST_CONFIG, set_alpha_to_one: false, beta_start: 0.01 })));
    expect(Math.abs(noOne.sum - 149.0784)).toBeLessThan(1e-2);
    expect(Math.abs(noOne.mean - 0.1941)).toBeLessThan(1e-3);
  });

  it('returns the sample float type and refuses misuse', () => {
    const s = new DdimScheduler(parseSchedulerConfig(SD_SCHEDULER_CONFIG));
    expect(() => s.step(new Float32Array(4), 981, new Float32Array(4))).toThrow(/setTimesteps/);
    expect(() => s.setTimesteps(0)).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
    expect(() => s.setTimesteps(1001)).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
    s.setTimesteps(50);
    expect(s.step(new Float32Array(4), 981, new Float32Array(4)).prevSample).toBeInstanceOf(Float32Array);
    expect(s.step(new Float32Array(4), 981, new Float64Array(4)).prevSample).toBeInstanceOf(Float64Array);
    expect(() => s.step(new Float32Array(3), 981, new Float32Array(4))).toThrow(/3 values/);
    expect(() => s.step(new Float32Array(4), 1000, new Float32Array(4))).toThrow(/outside/);
  });
});

describe('DdimInverseScheduler', () => {
  it('runs the same timesteps low to high (diffusers test_steps_offset)', () => {
    const s = new DdimInverseScheduler(parseSchedulerConfig({ ...DIFFUSERS_TEST_CONFIG, steps_offset: 1 }));
    s.setTimesteps(5);
    expect(s.timesteps).toEqual([1, 201, 401, 601, 801]);
  });

  it('matches diffusers test_full_loop_no_noise for DDIMInverseScheduler', () => {
    const { sum, mean } = fullLoop(new DdimInverseScheduler(parseSchedulerConfig(DIFFUSERS_TEST_CONFIG)));
    expect(Math.abs(sum - 671.6816)).toBeLessThan(1e-2);
    expect(Math.abs(mean - 0.8746)).toBeLessThan(1e-3);
  });

  it('matches diffusers test_full_loop_with_set_alpha_to_one / no_set_alpha_to_one for DDIMInverseScheduler', () => {
    const one = fullLoop(new DdimInverseScheduler(parseSchedulerConfig({ ...DIFFUSERS_TEST_CONFIG, set_alpha_to_one: true, beta_start: 0.01 })));
    expect(Math.abs(one.sum - 539.9622)).toBeLessThan(1e-2);
    expect(Math.abs(one.mean - 0.7031)).toBeLessThan(1e-3);
    const noOne = fullLoop(new DdimInverseScheduler(parseSchedulerConfig({ ...DIFFUSERS_TEST_CONFIG, set_alpha_to_one: false, beta_start: 0.01 })));
    expect(Math.abs(noOne.sum - 542.6722)).toBeLessThan(1e-2);
    expect(Math.abs(noOne.mean - 0.7066)).toBeLessThan(1e-3);
  });

  it('starts from ᾱ[0] with the SD config (DESIGN §3.4) and otherwise uses the previous timestep', () => {
    const config = parseSchedulerConfig(SD_SCHEDULER_CONFIG);
    const inv = new DdimInverseScheduler(config);
    inv.setTimesteps(50);
    expect(inv.initialAlphaCumprod).toBe(inv.alphasCumprod[0]);
    // ε = 0: z ← √(ᾱ_t/ᾱ_prev)·z, so the ratio of one step reveals the ᾱ pair used.
    const z = new Float64Array([1]);
    const eps = new Float64Array([0]);
    expect(inv.step(eps, 1, z).prevSample[0]).toBeCloseTo(Math.sqrt(inv.alphasCumprod[1]! / inv.alphasCumprod[0]!), 15);
    expect(inv.step(eps, 21, z).prevSample[0]).toBeCloseTo(Math.sqrt(inv.alphasCumprod[21]! / inv.alphasCumprod[1]!), 15);
    // ε = 1, z = 0: x̂0 = −√(1−ᾱ_prev)/√ᾱ_prev; z' = √ᾱ_t·x̂0 + √(1−ᾱ_t).
    const a0 = inv.alphasCumprod[961]!;
    const a1 = inv.alphasCumprod[981]!;
    const expected = Math.sqrt(a1) * (-Math.sqrt(1 - a0) / Math.sqrt(a0)) + Math.sqrt(1 - a1);
    expect(inv.step(new Float64Array([1]), 981, new Float64Array([0])).prevSample[0]).toBeCloseTo(expected, 14);
  });

  it('inverts and samples back to z0 when ε does not depend on z (float64)', () => {
    const config = parseSchedulerConfig(SD_SCHEDULER_CONFIG);
    const inv = new DdimInverseScheduler(config);
    const ddim = new DdimScheduler(config);
    inv.setTimesteps(50);
    ddim.setTimesteps(50);
    const n = 4 * 8 * 8;
    const epsAt = new Map<number, Float64Array>();
    for (const t of inv.timesteps) epsAt.set(t, new Rng(t).fillNormal(new Float64Array(n)));
    const z0 = new Rng(1234).fillNormal(new Float64Array(n));
    let z = z0;
    for (const t of inv.timesteps) z = inv.step(epsAt.get(t)!, t, z).prevSample;
    let moved = 0;
    for (let i = 0; i < n; i++) moved = Math.max(moved, Math.abs(z[i]! - z0[i]!));
    expect(moved).toBeGreaterThan(0.5);
    for (const t of ddim.timesteps) z = ddim.step(epsAt.get(t)!, t, z).prevSample;
    let err = 0;
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(z[i]! - z0[i]!));
    expect(err).toBeLessThan(1e-9);
  });
});
