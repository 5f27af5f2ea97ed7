// The schema of diffusers' `scheduler/scheduler_config.json` as p2pz reads it, and the β/ᾱ schedule it
// defines. Only what DDIM with ε-prediction and "leading" timestep spacing needs is accepted; any
// other setting is refused with a message that names it, rather than silently sampling differently.
import { readFile, stat } from 'node:fs/promises';
import { z } from 'zod';
import { P2pzError } from '../../../shared/protocol/index.js';

export const SCHEDULER_CONFIG_LIMITS = Object.freeze({
  /** Largest scheduler_config.json read (real ones are under 1 KB; trained_betas may add ~20 KB). */
  maxFileBytes: 256 * 1024,
});

/** A diffusers scheduler config. Defaults are diffusers' `DDIMScheduler` defaults; unknown keys
 *  (`_class_name`, `skip_prk_steps`, …) are ignored. */
export const SchedulerConfig = z.object({
  num_train_timesteps: z.number().int().min(2).max(100_000).default(1000),
  beta_start: z.number().gt(0).lt(1).default(0.0001),
  beta_end: z.number().gt(0).lt(1).default(0.02),
  beta_schedule: z.string().default('linear'),
  trained_betas: z.array(z.number().gt(0).lt(1)).nullable().default(null),
  steps_offset: z.number().int().min(0).default(0),
  set_alpha_to_one: z.boolean().default(true),
  clip_sample: z.boolean().default(true),
  clip_sample_range: z.number().gt(0).default(1),
  timestep_spacing: z.string().default('leading'),
  prediction_type: z.string().default('epsilon'),
  thresholding: z.boolean().default(false),
  rescale_betas_zero_snr: z.boolean().default(false),
});
export type SchedulerConfig = z.infer<typeof SchedulerConfig>;
export type SchedulerConfigInput = z.input<typeof SchedulerConfig>;

/**
 * The configuration as Stable Diffusion pipelines run it: diffusers' StableDiffusionPipeline (and the
 * official pix2pix-zero BasePipeline) correct outdated SD configs on load to `steps_offset = 1` and
 * `clip_sample = false`. Current SD 1.x configs already say so; older or partial ones (keys missing,
 * so the class defaults 0 and true apply) would otherwise sample a shifted, clipped schedule.
 */
export function stableDiffusionSchedule(config: SchedulerConfig): SchedulerConfig {
  return config.steps_offset === 1 && !config.clip_sample ? config : { ...config, steps_offset: 1, clip_sample: false };
}

const SUPPORTED_BETA_SCHEDULES = ['linear', 'scaled_linear'] as const;

function invalid(detail: string): P2pzError {
  return new P2pzError('E_MODEL_INVALID', `scheduler_config.json: ${detail}`);
}

/** Validates a parsed scheduler_config.json; throws E_MODEL_INVALID naming any unsupported setting. */
export function parseSchedulerConfig(json: unknown): SchedulerConfig {
  const parsed = SchedulerConfig.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(`${issue?.path.join('.') || 'config'}: ${issue?.message ?? 'invalid'}.`);
  }
  const c = parsed.data;
  if (c.trained_betas === null && !(SUPPORTED_BETA_SCHEDULES as readonly string[]).includes(c.beta_schedule)) {
    throw invalid(`beta_schedule "${c.beta_schedule}" is not supported (p2pz supports "linear" and "scaled_linear").`);
  }
  if (c.trained_betas !== null && c.trained_betas.length !== c.num_train_timesteps) {
    throw invalid(`trained_betas has ${c.trained_betas.length} values but num_train_timesteps is ${c.num_train_timesteps}.`);
  }
  if (c.timestep_spacing !== 'leading') {
    throw invalid(`timestep_spacing "${c.timestep_spacing}" is not supported (p2pz uses "leading" spacing, as Stable Diffusion 1.x does).`);
  }
  if (c.prediction_type !== 'epsilon') {
    throw invalid(`prediction_type "${c.prediction_type}" is not supported (p2pz needs an ε-prediction model such as Stable Diffusion 1.x).`);
  }
  if (c.thresholding) throw invalid('thresholding is not supported.');
  if (c.rescale_betas_zero_snr) throw invalid('rescale_betas_zero_snr is not supported.');
  if (c.steps_offset >= c.num_train_timesteps) {
    throw invalid(`steps_offset ${c.steps_offset} must be below num_train_timesteps ${c.num_train_timesteps}.`);
  }
  return c;
}

/** Reads and validates `<modelDir>/scheduler/scheduler_config.json` (or any given file). */
export async function loadSchedulerConfig(file: string): Promise<SchedulerConfig> {
  let text: string;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw invalid('not a regular file.');
    if (info.size > SCHEDULER_CONFIG_LIMITS.maxFileBytes) throw invalid(`larger than ${SCHEDULER_CONFIG_LIMITS.maxFileBytes} bytes.`);
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof P2pzError) throw err;
    throw new P2pzError('E_MODEL_MISSING', 'The scheduler configuration (scheduler/scheduler_config.json) is missing.');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw invalid('not valid JSON.');
  }
  return parseSchedulerConfig(json);
}

/**
 * ᾱ_t = Π_{s≤t} (1 − β_s), t = 0..T−1, in float64, with
 *   "linear":        β_t = linspace(β_start, β_end, T)_t
 *   "scaled_linear": β_t = linspace(√β_start, √β_end, T)_t²
 * or the config's trained_betas. Shape [T].
 */
export function alphasCumprod(config: SchedulerConfig): Float64Array {
  const T = config.num_train_timesteps;
  const betas = new Float64Array(T);
  if (config.trained_betas !== null) {
    betas.set(config.trained_betas);
  } else {
    const scaled = config.beta_schedule === 'scaled_linear';
    const lo = scaled ? Math.sqrt(config.beta_start) : config.beta_start;
    const hi = scaled ? Math.sqrt(config.beta_end) : config.beta_end;
    for (let t = 0; t < T; t++) {
      const b = lo + ((hi - lo) * t) / (T - 1);
      betas[t] = scaled ? b * b : b;
    }
  }
  const out = new Float64Array(T);
  let prod = 1;
  for (let t = 0; t < T; t++) {
    prod *= 1 - betas[t]!;
    out[t] = prod;
  }
  return out;
}
