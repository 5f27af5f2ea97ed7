// The contracts every pipeline shares (the GAN preview, pix2pix-zero and its stages, the distillation
// pairs): access to the models directory and its sessions, what a pipeline is given (sessions, cancel
// signal, progress) and what it gives back (PNG outputs, engine, timings).
import type { InferenceSession } from 'onnxruntime-node';
import type { Engine, JobDetailsInput, PreviewPixels, Stage } from '../../shared/protocol/index.js';

/** Access to the models directory: every file is resolved (and contained, docs/SECURITY.md §R19) before it is read. */
export interface ModelFiles {
  readonly modelsDir: string;
  /** The real path of a file inside the models directory; rejects with a `P2pzError` otherwise. */
  resolve(path: string): Promise<string>;
}

/** Sessions over the models directory (the worker's SessionCache): paths are resolved and contained,
 *  onnxruntime's failures mapped to coded errors. */
export interface ModelSessions extends ModelFiles {
  get(path: string): Promise<Pick<InferenceSession, 'inputNames' | 'outputNames' | 'inputMetadata' | 'outputMetadata'>>;
  run(path: string, feeds: InferenceSession.FeedsType): Promise<InferenceSession.ReturnType>;
}

export interface PipelineContext {
  readonly models: ModelSessions;
  /** Aborted on cancel; checked at every stage boundary. */
  readonly signal: AbortSignal;
  /** `frame`: preview pixels for the client (shared/protocol/preview-frame.ts): a step preview, or the
   *  quick preview's image as soon as it exists. */
  readonly progress: (stage: Stage, step: number, total: number, frame?: PreviewPixels) => void;
  /** Resolves once the progress sent so far has left the process. A large frame is written in pieces
   *  as the daemon reads them, and only while this process's event loop runs: a pipeline that goes on
   *  with synchronous work right after a frame would hold the frame back until that work is done. */
  readonly flushed?: () => Promise<void>;
  /** A buffer of `byteLength` bytes that a frame's pixels may be written into instead of a fresh one:
   *  given where `progress` copies the frame before it returns (the worker's IPC serializes the
   *  message then), so the same buffer serves the next frame. */
  readonly framePixels?: (byteLength: number) => Uint8Array;
}

export interface PipelineOutcome {
  readonly outputs: readonly { readonly role: 'image' | 'mask'; readonly png: Uint8Array; readonly width: number; readonly height: number }[];
  readonly engine: Engine;
  /** Milliseconds per stage. */
  readonly timings: Record<string, number>;
  /** What the run says about itself for the job's details (caption, mask, notes). */
  readonly report?: JobDetailsInput;
}
