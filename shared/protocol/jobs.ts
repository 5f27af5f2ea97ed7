// Jobs: one request type holds everything a job needs; one event stream reports on every job.
import { z } from 'zod';
import { EditParams } from './edit.js';
import { Provider } from './device.js';
import { ErrorBody } from './errors.js';

/** Server-generated ids (images, results) and client-chosen job ids share one safe alphabet. */
export const Id = z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, 'an id of 8–64 letters, digits, _ or -');

/**
 * `preview`: fast; the distilled GAN for the direction when installed, else a reduced diffusion run.
 * `render`: the full pix2pix-zero pipeline.
 * `caption`: only the caption the installed captioner writes for the image, the one a preview or
 * render of the same image then uses (the panel shows it before the render); no images come back.
 */
export const JobKind = z.enum(['preview', 'render', 'caption']);
export type JobKind = z.infer<typeof JobKind>;
/** The kinds that edit the image. */
export const EditJobKind = z.enum(['preview', 'render']);
export type EditJobKind = z.infer<typeof EditJobKind>;

const jobRequestFields = {
  /** Client-chosen id: resubmitting the same id with the same request returns the same job. */
  jobId: Id.optional(),
  /** The uploaded image (POST /v1/images). */
  imageId: Id,
  /** Installed diffusion model name; the daemon's default when absent. */
  model: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/).optional(),
  /** Send small step previews with `progress` events. */
  stepPreviews: z.boolean().default(false),
};
export const EditJobRequest = z.object({ ...jobRequestFields, kind: EditJobKind, edit: EditParams });
/** A caption needs no edit: without a captioner the job fails with E_MODEL_MISSING, and the caption is
 *  the template (`templateCaption`), which depends only on the source word. */
export const CaptionJobRequest = z.object({ ...jobRequestFields, kind: z.literal('caption') });
export const JobRequest = z.discriminatedUnion('kind', [EditJobRequest, CaptionJobRequest]);
export type JobRequest = z.infer<typeof JobRequest>;
export type JobRequestInput = z.input<typeof JobRequest>;

export const JobStateName = z.enum(['queued', 'running', 'finished', 'cancelled', 'error']);
export type JobStateName = z.infer<typeof JobStateName>;

/** Which engine produced a result. */
export const Engine = z.enum(['gan', 'diffusion-preview', 'diffusion', 'captioner']);
export type Engine = z.infer<typeof Engine>;

export const Stage = z.enum(['load', 'decode', 'encode', 'caption', 'direction', 'inversion', 'edit', 'vae-decode', 'generate', 'save']);
export type Stage = z.infer<typeof Stage>;

export const Timings = z.record(z.string().max(40), z.number().nonnegative());

export const ResultRef = z.object({
  id: Id,
  role: z.enum(['image', 'mask']),
  mime: z.literal('image/png'),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
});
export type ResultRef = z.infer<typeof ResultRef>;

/** What a full or diffusion-preview run says about itself: the caption it used and who wrote it,
 *  whether the attention mask could be made, and notes for the designer (why the template caption or
 *  no mask). */
export const JobDetails = z.object({
  caption: z.string().max(2000).optional(),
  captionOrigin: z.enum(['user', 'captioner', 'template']).optional(),
  captioner: z.string().max(100).optional(),
  /** How the source word was found in the caption, or that it was not (then there is no mask). */
  mask: z.enum(['exact', 'plural', 'prefix', 'unavailable']).optional(),
  notes: z.array(z.string().max(2000)).max(8).default([]),
  /** The uploaded image's size when it was over the output budget, so the results (their own sizes
   *  in ResultRef) are scaled down from it, the aspect kept (docs/SECURITY.md §R9). */
  scaledFrom: z.object({ width: z.number().int().positive(), height: z.number().int().positive() }).optional(),
});
export type JobDetails = z.infer<typeof JobDetails>;
export type JobDetailsInput = z.input<typeof JobDetails>;

/** Images come back from every engine but the captioner (a `caption` job), which returns none. */
export function resultsFitEngine(outcome: { readonly engine: Engine; readonly results: readonly unknown[] }): boolean {
  return outcome.engine === 'captioner' ? outcome.results.length === 0 : outcome.results.length >= 1;
}
const RESULTS_MESSAGE = { message: 'a caption job returns no images; every other job at least one', path: ['results'] };

export const JobOutcome = z.object({
  results: z.array(ResultRef).max(4),
  engine: Engine,
  details: JobDetails.optional(),
  /** Milliseconds per stage, plus `total` and `queued`. */
  timings: Timings,
  device: Provider,
}).refine(resultsFitEngine, RESULTS_MESSAGE);
export type JobOutcome = z.infer<typeof JobOutcome>;

export const JobState = z.object({
  jobId: Id,
  kind: JobKind,
  state: JobStateName,
  /** 1-based place in the queue while queued. */
  position: z.number().int().positive().optional(),
  outcome: JobOutcome.optional(),
  error: ErrorBody.optional(),
  createdAt: z.number(),
});
export type JobState = z.infer<typeof JobState>;
