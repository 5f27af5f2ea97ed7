// scheduler_config.json parsing: SD configs accepted, every unsupported setting refused by name.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alphasCumprod, loadSchedulerConfig, parseSchedulerConfig, stableDiffusionSchedule } from '../../../../daemon/pipeline/scheduler/scheduler-config.js';
import { SD_SCHEDULER_CONFIG } from './sd-scheduler-config.js';

describe('parseSchedulerConfig', () => {
  it('accepts the Stable Diffusion config and ignores foreign keys', () => {
    const c = parseSchedulerConfig(SD_SCHEDULER_CONFIG);
    expect(c).toMatchObject({ beta_schedule: 'scaled_linear', steps_offset: 1, set_alpha_to_one: false, clip_sample: false, timestep_spacing: 'leading', prediction_type: 'epsilon' });
    expect(c).not.toHaveProperty('skip_prk_steps');
  });

  it("fills diffusers' DDIMScheduler defaults", () => {
    expect(parseSchedulerConfig({})).toMatchObject({ num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', set_alpha_to_one: true, clip_sample: true, steps_offset: 0 });
  });

  it.each([
    [{ timestep_spacing: 'trailing' }, /timestep_spacing "trailing" is not supported/],
    [{ timestep_spacing: 'linspace' }, /timestep_spacing "linspace"/],
    [{ prediction_type: 'v_prediction' }, /prediction_type "v_prediction" is not supported/],
    [{ beta_schedule: 'squaredcos_cap_v2' }, /beta_schedule "squaredcos_cap_v2" is not supported/],
    [{ thresholding: true }, /thresholding/],
    [{ rescale_betas_zero_snr: true }, /rescale_betas_zero_snr/],
    [{ num_train_timesteps: 'many' }, /num_train_timesteps/],
    [{ trained_betas: [0.1, 0.2] }, /trained_betas has 2 values/],
    [{ steps_offset: 1000 }, /steps_offset 1000/],
  ])('refuses %j with E_MODEL_INVALID', (patch, message) => {
    let caught: unknown;
    try {
      parseSchedulerConfig({ ...SD_SCHEDULER_CONFIG, ...patch });
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: 'E_MODEL_INVALID' });
    expect((caught as Error).message).toMatch(message);
    expect((caught as Error).message).toMatch(/^The installed model is damaged or incomplete\. scheduler_config\.json: /);
  });

  it('uses trained_betas when given', () => {
    const betas = Array.from({ length: 10 }, (_, i) => 0.01 * (i + 1));
    const ac = alphasCumprod(parseSchedulerConfig({ num_train_timesteps: 10, trained_betas: betas }));
    expect(ac[0]).toBeCloseTo(0.99, 15);
    expect(ac[1]).toBeCloseTo(0.99 * 0.98, 15);
  });

  it('builds the linear schedule (numpy float64: ᾱ[420] = 0.1639264738456896, ᾱ[999] = 4.035829765375676e-05)', () => {
    const ac = alphasCumprod(parseSchedulerConfig({}));
    expect(ac[420]).toBeCloseTo(0.1639264738456896, 13);
    expect(ac[999]! / 4.035829765375676e-5).toBeCloseTo(1, 11);
  });
});

describe('stableDiffusionSchedule', () => {
  it('keeps a current SD config as it is', () => {
    const config = parseSchedulerConfig(SD_SCHEDULER_CONFIG);
    expect(stableDiffusionSchedule(config)).toBe(config);
  });
  it('corrects an outdated or partial config as Stable Diffusion pipelines do: steps_offset 1, no clipping', () => {
    const partial = parseSchedulerConfig({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 });
    expect([partial.steps_offset, partial.clip_sample]).toEqual([0, true]);
    const corrected = stableDiffusionSchedule(partial);
    expect([corrected.steps_offset, corrected.clip_sample]).toEqual([1, false]);
    expect(corrected.beta_end).toBe(0.012);
  });
});

describe('loadSchedulerConfig', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pz-sched-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a file', async () => {
    const file = join(dir, 'ok.json');
    await writeFile(file, JSON.stringify(SD_SCHEDULER_CONFIG));
    expect((await loadSchedulerConfig(file)).beta_end).toBe(0.012);
  });

  it('reports a missing file as E_MODEL_MISSING and garbage as E_MODEL_INVALID', async () => {
    await expect(loadSchedulerConfig(join(dir, 'nope.json'))).rejects.toMatchObject({ code: 'E_MODEL_MISSING' });
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{"beta_start": ');
    await expect(loadSchedulerConfig(bad)).rejects.toMatchObject({ code: 'E_MODEL_INVALID', message: expect.stringMatching(/not valid JSON/) });
    const huge = join(dir, 'huge.json');
    await writeFile(huge, ' '.repeat(300 * 1024));
    await expect(loadSchedulerConfig(huge)).rejects.toMatchObject({ code: 'E_MODEL_INVALID', message: expect.stringMatching(/larger than/) });
    await expect(loadSchedulerConfig(dir)).rejects.toMatchObject({ code: 'E_MODEL_INVALID', message: expect.stringMatching(/regular file/) });
  });
});
