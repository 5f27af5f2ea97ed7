// Team mode (docs/TEAM.md): what a team endpoint and its GPU workers exchange. Jobs travel on a
// BullMQ queue in Redis (job data, progress, return value, failure reason, all JSON and parsed with
// these schemas on arrival); image bytes travel over the endpoint's authenticated HTTP routes
// (`/v1/team/jobs/:id/input`, `/v1/team/jobs/:id/outputs/:role`), so nothing needs a shared disk.
import { z } from 'zod';
import { Version } from './version.js';
import { ErrorBody } from './errors.js';
import { Engine, JobDetails, JobKind, Stage, Timings } from './jobs.js';
import { EditParams } from './edit.js';
import { Device } from './device.js';
import { PREVIEW_FRAME_LIMITS } from './preview-frame.js';

/** BullMQ job data: everything a worker needs but the image, which it fetches from the endpoint. */
export const TeamJobData = z.object({
  v: Version,
  kind: JobKind,
  model: z.string().optional(),
  /** Absent for a caption job only. */
  edit: EditParams.optional(),
  stepPreviews: z.boolean(),
  /** Bulk work (`p2pz distill pairs --queue`): the input PNG itself in base64, and the outputs wanted
   *  back in the job's return value, so that no endpoint is involved. Working-size images only. */
  inline: z.object({ input: z.string().max(8_000_000) }).optional(),
});
export type TeamJobData = z.infer<typeof TeamJobData>;

const StepSide = z.number().int().positive().max(PREVIEW_FRAME_LIMITS.maxStepSide);

/** BullMQ job progress: a stage and step, with an optional step preview (RGBA pixels in base64, at most
 *  128² of them: 87 KB). The quick preview's full-size frame does not travel through Redis: a team's
 *  client gets the preview from the job's PNG result. */
export const TeamProgress = z.object({
  v: Version,
  stage: Stage,
  step: z.number().int().nonnegative(),
  total: z.number().int().positive(),
  frame: z
    .object({
      width: StepSide,
      height: StepSide,
      rgba: z.string().max(Math.ceil((PREVIEW_FRAME_LIMITS.maxStepSide ** 2 * 4) / 3) * 4),
    })
    .optional(),
  /** The worker's device, so the endpoint can report where the job runs. */
  device: Device.optional(),
});
export type TeamProgress = z.infer<typeof TeamProgress>;

/** One output the worker has put on the endpoint before completing the job. */
export const TeamOutput = z.object({
  role: z.enum(['image', 'mask']),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  /** The PNG in base64, for an inline job only. */
  png: z.string().max(8_000_000).optional(),
});

/** BullMQ job return value. */
export const TeamJobResult = z.object({
  v: Version,
  engine: Engine,
  timings: Timings,
  /** None for a caption job (engine `captioner`). */
  outputs: z.array(TeamOutput).max(2),
  details: JobDetails.optional(),
  device: Device.optional(),
});
export type TeamJobResult = z.infer<typeof TeamJobResult>;

/** A failed job's reason (BullMQ keeps it as a string: this object as JSON). `cancelled` marks a run
 *  its worker stopped because the endpoint asked it to. */
export const TeamFailure = z.union([
  z.object({ v: Version, status: z.literal('failed'), error: ErrorBody }),
  z.object({ v: Version, status: z.literal('cancelled') }),
]);
export type TeamFailure = z.infer<typeof TeamFailure>;
