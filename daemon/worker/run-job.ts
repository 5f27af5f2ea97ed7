// One job inside the worker: dispatch by kind to its pipeline, and turn the outcome into the IPC
// result message. `preview` runs the distilled GAN for the direction; `render` (the full
// pix2pix-zero pipeline) is not installed in this build and answers `E_MODEL_MISSING`.
// Errors that are not `P2pzError`s are logged (scrubbed) and reported as `E_INTERNAL`: no stack or
// path crosses to the daemon. A job whose signal was aborted reports `cancelled`, whatever it threw.
import { P2pzError, PROTOCOL_VERSION } from '../../shared/protocol/index.js';
import type { Stage, WorkerMessage, WorkerRunMessage } from '../../shared/protocol/index.js';
import { describeError } from '../log.js';
import type { Logger } from '../log.js';
import { runGanPreview } from '../pipeline/gan-preview.js';
import type { ModelSessions, PipelineOutcome } from '../pipeline/gan-preview.js';

export interface JobContext {
  readonly models: ModelSessions;
  readonly signal: AbortSignal;
  readonly send: (message: WorkerMessage) => void;
  readonly log: Logger;
}

type ResultMessage = Extract<WorkerMessage, { type: 'done' | 'cancelled' | 'failed' }>;

function pipelineFor(message: WorkerRunMessage, ctx: JobContext): Promise<PipelineOutcome> {
  const pipelineCtx = {
    models: ctx.models,
    signal: ctx.signal,
    progress: (stage: Stage, step: number, total: number) =>
      ctx.send({ v: PROTOCOL_VERSION, type: 'progress', jobId: message.jobId, stage, step, total }),
  };
  switch (message.kind) {
    case 'preview':
      return runGanPreview(message.image, message.edit, pipelineCtx);
    case 'render':
      return Promise.reject(
        new P2pzError('E_MODEL_MISSING', 'The full-quality render is not available in this build.', 'Use the quick preview for now.'),
      );
  }
}

export async function runJob(message: WorkerRunMessage, ctx: JobContext): Promise<ResultMessage> {
  const { jobId } = message;
  try {
    const outcome = await pipelineFor(message, ctx);
    if (ctx.signal.aborted) return { v: PROTOCOL_VERSION, type: 'cancelled', jobId };
    return { v: PROTOCOL_VERSION, type: 'done', jobId, outputs: [...outcome.outputs], engine: outcome.engine, timings: outcome.timings };
  } catch (err) {
    if (ctx.signal.aborted) return { v: PROTOCOL_VERSION, type: 'cancelled', jobId };
    if (err instanceof P2pzError) return { v: PROTOCOL_VERSION, type: 'failed', jobId, error: err.toBody() };
    ctx.log.error('job.internal_error', { jobId, ...describeError(err) });
    return { v: PROTOCOL_VERSION, type: 'failed', jobId, error: new P2pzError('E_INTERNAL').toBody() };
  }
}
