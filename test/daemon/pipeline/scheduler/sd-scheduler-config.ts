// Stable Diffusion 1.4's published scheduler/scheduler_config.json (a PNDM config that DDIM reads; SD
// 1.5's differs only in `_diffusers_version`), as the scheduler tests' input.
export const SD_SCHEDULER_CONFIG = Object.freeze({
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.7.0.dev0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
});
