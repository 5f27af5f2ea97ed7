// scheduler/scheduler_config.json with Stable Diffusion 1.x's values (as shipped with SD 1.4/1.5:
// a PNDMScheduler config; pipelines read the β schedule from it and use their own sampler).
// β_i = (linspace(√0.00085, √0.012, 1000)_i)² ("scaled_linear"), steps_offset 1, no ᾱ_final = 1.

export const SD1_SCHEDULER_CONFIG = Object.freeze({
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
});

export function schedulerConfigJson(): string {
  return JSON.stringify(SD1_SCHEDULER_CONFIG, null, 2) + '\n';
}
