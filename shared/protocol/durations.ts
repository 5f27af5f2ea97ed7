// How long a full render takes on this device, learned from the last ones: the daemon keeps, per
// device, what each finished render cost per UNet evaluation at its working size (durations.ts in
// daemon/jobs) and sends the samples with health; the panel estimates the next render from them
// before the designer presses Render ("about 40 min"), so a CPU user can pick a smaller size or fewer
// steps first.
import { z } from 'zod';

export const DurationSample = z.object({
  /** The working size (long side, pixels) the render ran at. */
  size: z.number().int().min(64).max(1024),
  steps: z.number().int().min(1).max(200),
  /** Seconds per UNet evaluation: the inversion and edit stages' time over `unetEvaluations(steps)`. */
  secondsPerEvaluation: z.number().nonnegative().max(86_400),
  /** Everything else: loading and preparing models, encoding, the edit direction, decoding. */
  overheadSeconds: z.number().nonnegative().max(86_400),
});
export type DurationSample = z.infer<typeof DurationSample>;

/** UNet evaluations of a render of `steps` DDIM steps: one per step of the inversion, of the
 *  reference pass and of the edit pass (the edit's includes its gradient through the UNet). */
export function unetEvaluations(steps: number): number {
  return 3 * steps;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export interface DurationEstimate {
  readonly seconds: number;
  /** The size the learned rate came from: the render's own, or another scaled by pixel count. */
  readonly fromSize: number;
}

/** The estimated duration of a render at `size` with `steps`, or undefined before any render ran on
 *  this device. Seconds per evaluation: the median at that size; without one, the nearest size's,
 *  scaled by the pixel count (the UNet's work grows with the latent's area). */
export function estimateRender(samples: readonly DurationSample[], job: { readonly size: number; readonly steps: number }): DurationEstimate | undefined {
  if (samples.length === 0) return undefined;
  const same = samples.filter((s) => s.size === job.size);
  const nearest = same.length ? job.size : [...samples].sort((a, b) => Math.abs(a.size - job.size) - Math.abs(b.size - job.size))[0]!.size;
  const at = samples.filter((s) => s.size === nearest);
  const perEvaluation = median(at.map((s) => s.secondsPerEvaluation)) * (job.size / nearest) ** 2;
  const overhead = median(at.map((s) => s.overheadSeconds));
  return { seconds: perEvaluation * unetEvaluations(job.steps) + overhead, fromSize: nearest };
}

/** "about 40 min", "about 1 h 20 min", "about 45 s". */
export function durationWords(seconds: number): string {
  if (seconds < 90) return `about ${Math.max(1, Math.round(seconds / 5) * 5)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  const h = Math.floor(minutes / 60);
  const m = Math.round((minutes % 60) / 10) * 10;
  return m === 0 || m === 60 ? `about ${m === 60 ? h + 1 : h} h` : `about ${h} h ${m} min`;
}
