// The contract between the job queue and whatever runs a job. The real implementation is the worker
// supervisor (daemon/worker/supervisor.ts), which owns the onnxruntime worker process; tests of the
// queue use a scripted fake. The queue runs one job at a time (one GPU).
import type { Device, EditParams, Engine as EngineName, ErrorBody, JobDetails, JobKind, PreviewPixels, Stage } from '../../shared/protocol/index.js';

export interface EngineJob {
  readonly jobId: string;
  readonly kind: JobKind;
  /** The uploaded image, still encoded (PNG, JPEG or WebP); the engine decodes it. Empty when the
   *  engine said it holds `imageId` (`holds`): the upload is then not read from disk at all. */
  readonly image: Uint8Array;
  /** The stored upload `image` was read from (POST /v1/images), when it was one: an engine that was
   *  given it as a hint (`prefetch`) may use what it holds instead of passing the bytes on. */
  readonly imageId?: string;
  readonly model: string | undefined;
  /** Every kind but `caption` has one. */
  readonly edit?: EditParams;
  readonly stepPreviews: boolean;
}

export interface EngineProgress {
  readonly stage: Stage;
  readonly step: number;
  readonly total: number;
  /** Preview pixels for a preview frame: a step preview, or the quick preview's image as soon as it
   *  exists (before the job's PNG result). */
  readonly frame?: PreviewPixels;
  /** Set by a team engine (daemon/team) when the job starts again after its GPU worker stopped or
   *  failed: the queue reports it as a `retrying` event instead of progress. */
  readonly retry?: { readonly attempt: number; readonly attempts: number };
}

export interface EngineOutput {
  readonly role: 'image' | 'mask';
  readonly png: Uint8Array;
  readonly width: number;
  readonly height: number;
}

export type EngineResult =
  | { readonly status: 'done'; readonly outputs: readonly EngineOutput[]; readonly engine: EngineName; readonly timings: Record<string, number>; readonly details?: JobDetails }
  | { readonly status: 'cancelled' }
  | { readonly status: 'failed'; readonly error: ErrorBody };

export interface EngineHealth {
  readonly state: 'starting' | 'ready' | 'busy' | 'restarting' | 'crash-loop' | 'stopped';
  readonly restarts: number;
  readonly recentCrashes: number;
  readonly lastCrash?: string;
  readonly device: Device | null;
  /** A team engine: the GPU workers connected to its queue. */
  readonly team?: { readonly workers: number };
}

export interface JobEngine {
  /**
   * Runs one job. Resolves (never rejects) with its result. When `signal` aborts, the engine stops at
   * the next step boundary and resolves `{status: 'cancelled'}`; it never decodes after a cancel.
   * A worker crash resolves `{status: 'failed', error: E_WORKER_CRASHED}`.
   */
  run(job: EngineJob, onProgress: (p: EngineProgress) => void, signal: AbortSignal): Promise<EngineResult>;
  /** An upload that a job (a quick preview) may soon read: an engine may prepare it in its idle time
   *  (the worker decodes it, pipeline/gan-prefetch.ts). A hint: it never delays or changes a job, and
   *  an engine without it just does nothing. */
  prefetch?(image: Uint8Array, imageId?: string): void;
  /** Whether a job started now on stored upload `imageId` may come without its bytes, because the
   *  engine holds them from a hint. The queue asks right before it calls `run`, in the same tick, so
   *  the answer still holds when the job arrives. An engine without it is always given the bytes. */
  holds?(imageId: string): boolean;
  health(): EngineHealth;
  /** Stops the worker (cooperatively, then by force) and resolves when it has exited. */
  close(): Promise<void>;
}
