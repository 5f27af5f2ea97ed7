// One job inside the worker: dispatch by kind to its pipeline, and turn the outcome into the IPC
// result message (docs/DESIGN.md §3):
//   render   the full pix2pix-zero edit (engine `diffusion`)
//   preview  the quick preview of pipeline/preview.ts: the direction's distilled GAN (engine `gan`),
//            else the reduced diffusion edit (engine `diffusion-preview`); `E_MODEL_MISSING` names
//            the direction when neither is installed.
//   caption  only the caption the installed captioner writes (engine `captioner`, no images): what the
//            panel shows before the render; E_MODEL_MISSING when no captioner is installed.
// Errors that are not `P2pzError`s are logged (scrubbed) and reported as `E_INTERNAL`: no stack or
// path crosses to the daemon. A job whose signal was aborted reports `cancelled`, whatever it threw.
// Both diffusion pipelines check the job's memory against the device up front (docs/SECURITY.md §R17, `memory`).
import { join } from 'node:path';
import { JobDetails, P2pzError, PROTOCOL_VERSION } from '../../shared/protocol/index.js';
import type { PreviewPixels, Stage, WorkerMessage, WorkerRunMessage } from '../../shared/protocol/index.js';
import { describeError } from '../log.js';
import type { Logger } from '../log.js';
import type { ModelSessions, PipelineOutcome } from '../pipeline/context.js';
import type { InversionCache } from '../pipeline/inversion-cache.js';
import { runCaptionJob } from '../pipeline/caption.js';
import { runPix2PixZero } from '../pipeline/pix2pix-zero.js';
import type { DeviceMemoryContext, DiffusionContext } from '../pipeline/pix2pix-zero.js';
import { runPreview } from '../pipeline/preview.js';

export const RUN_JOB_DEFAULTS = Object.freeze({
  /** Sub-folders of the run message's `cacheDir` (the CLI's `p2pz edit` uses the same names under
   *  `<home>/cache`, so both share them). */
  directionCache: 'directions',
  inversionCache: 'inversions',
});

export interface JobContext {
  readonly models: ModelSessions;
  /** Inverted latents z_T kept across jobs (on disk under `cacheDir` when the daemon gives one). */
  readonly inversionCache: InversionCache;
  readonly signal: AbortSignal;
  /** Sends a message to the daemon; resolves once it has left this process (the IPC write is done). */
  readonly send: (message: WorkerMessage) => Promise<void> | void;
  readonly log: Logger;
  /** The device and what the sessions hold, for the diffusion pipelines' up-front memory check (docs/SECURITY.md §R17). */
  readonly memory?: DeviceMemoryContext;
  /** A reusable buffer for a frame's pixels, where `send` copies a message before it returns (context.ts). */
  readonly framePixels?: (byteLength: number) => Uint8Array;
}

type ResultMessage = Extract<WorkerMessage, { type: 'done' | 'cancelled' | 'failed' }>;

/** A run message with its image: carried, or looked up among the uploads the worker holds
 *  (`held`: the timings then say `upload-held`, daemon/worker/held-uploads.ts). */
export type JobToRun = Omit<WorkerRunMessage, 'image' | 'uploadId'> & { readonly image: Uint8Array; readonly held?: boolean };

function pipelineFor(message: JobToRun, ctx: JobContext): Promise<PipelineOutcome> {
  let written: Promise<void> | void;
  const pipelineCtx: DiffusionContext = {
    models: ctx.models,
    signal: ctx.signal,
    progress: (stage: Stage, step: number, total: number, frame?: PreviewPixels) => {
      written = ctx.send({ v: PROTOCOL_VERSION, type: 'progress', jobId: message.jobId, stage, step, total, ...(frame ? { frame } : {}) });
    },
    flushed: async () => {
      await written;
    },
    inversionCache: ctx.inversionCache,
    ...(ctx.framePixels === undefined ? {} : { framePixels: ctx.framePixels }),
    ...(ctx.memory === undefined ? {} : { memory: ctx.memory }),
    ...(message.cacheDir === undefined ? {} : { directionCacheDir: join(message.cacheDir, RUN_JOB_DEFAULTS.directionCache) }),
  };
  if (message.kind === 'caption') return runCaptionJob(message.image, pipelineCtx);
  const { image, edit, model, stepPreviews } = message;
  if (edit === undefined) throw new P2pzError('E_BAD_REQUEST', `A ${message.kind} needs the edit's settings.`);
  const request = { image, edit, stepPreviews, ...(model === undefined ? {} : { model }) };
  return message.kind === 'preview' ? runPreview(request, pipelineCtx) : runPix2PixZero(request, pipelineCtx);
}

export async function runJob(message: JobToRun, ctx: JobContext): Promise<ResultMessage> {
  const { jobId } = message;
  try {
    const outcome = await pipelineFor(message, ctx);
    if (ctx.signal.aborted) return { v: PROTOCOL_VERSION, type: 'cancelled', jobId };
    return {
      v: PROTOCOL_VERSION, type: 'done', jobId, outputs: [...outcome.outputs], engine: outcome.engine,
      timings: message.held === true ? { 'upload-held': 0, ...outcome.timings } : outcome.timings,
      ...(outcome.report === undefined ? {} : { details: JobDetails.parse(outcome.report) }),
    };
  } catch (err) {
    if (ctx.signal.aborted) return { v: PROTOCOL_VERSION, type: 'cancelled', jobId };
    if (err instanceof P2pzError) return { v: PROTOCOL_VERSION, type: 'failed', jobId, error: err.toBody() };
    ctx.log.error('job.internal-error', { jobId, ...describeError(err) });
    return { v: PROTOCOL_VERSION, type: 'failed', jobId, error: new P2pzError('E_INTERNAL').toBody() };
  }
}
