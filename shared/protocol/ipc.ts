// Worker IPC: the daemon (supervisor) and the worker process that owns every onnxruntime session.
// Messages travel over Node's IPC channel with `serialization: 'advanced'`, so image bytes cross as
// Uint8Array without base64.
import { z } from 'zod';
import { Version } from './version.js';
import { ErrorBody } from './errors.js';
import { Engine, Id, JobDetails, JobKind, Stage, Timings } from './jobs.js';
import { EditParams } from './edit.js';
import { Device } from './device.js';
import { fitsPreviewFrame, PreviewPixels } from './preview-frame.js';

// `z.custom`, not `z.instanceof`: the latter types the bytes as `Uint8Array<ArrayBuffer>`, which a
// Buffer or a view of any ArrayBufferLike (what callers hold) is not.
const Bytes = z.custom<Uint8Array>((value) => value instanceof Uint8Array, 'bytes (a Uint8Array)');

// ---- supervisor → worker ----
export const WorkerRunMessage = z.object({
  v: Version,
  type: z.literal('run'),
  jobId: Id,
  kind: JobKind,
  /** The uploaded image, still encoded: decoding untrusted images happens in the worker. */
  image: Bytes.optional(),
  /** Instead of `image`: an upload the worker holds, from a `prefetch` that named it
   *  (daemon/worker/held-uploads.ts). */
  uploadId: Id.optional(),
  /** Absolute path of the models directory; the worker loads nothing from elsewhere. */
  modelsDir: z.string(),
  /** Absolute path of a folder the worker may keep derived caches in (edit directions); none when absent. */
  cacheDir: z.string().optional(),
  model: z.string().optional(),
  /** Every kind but `caption` needs it (the worker fails such a job with E_BAD_REQUEST). */
  edit: EditParams.optional(),
  stepPreviews: z.boolean(),
}).refine((m) => (m.image === undefined) !== (m.uploadId === undefined), { message: 'a run message carries the image or names a held upload' });
/** An upload a preview may soon read: the worker may decode it while idle (daemon/pipeline/gan-prefetch.ts).
 *  It answers nothing. Named (`uploadId`), its bytes are kept for a later `run` that names the same
 *  upload; the decode stays a hint that no job's result depends on. */
export const WorkerPrefetchMessage = z.object({
  v: Version,
  type: z.literal('prefetch'),
  image: Bytes,
  modelsDir: z.string(),
  /** The upload's id: the worker keeps the bytes under it until a later `prefetch` drops it
   *  (daemon/worker/held-uploads.ts). */
  uploadId: Id.optional(),
  /** Held uploads the worker lets go of now. */
  drop: z.array(Id).max(64).optional(),
});
/** The daemon has read the frame the worker wrote to the frame file (daemon/worker/frame-file.ts). */
export const WorkerFrameReadMessage = z.object({ v: Version, type: z.literal('frame-read') });
export const WorkerCancelMessage = z.object({ v: Version, type: z.literal('cancel'), jobId: Id });
export const WorkerShutdownMessage = z.object({ v: Version, type: z.literal('shutdown') });
export const SupervisorMessage = z.discriminatedUnion('type', [WorkerRunMessage, WorkerPrefetchMessage, WorkerFrameReadMessage, WorkerCancelMessage, WorkerShutdownMessage]);
export type SupervisorMessage = z.infer<typeof SupervisorMessage>;
export type WorkerRunMessage = z.infer<typeof WorkerRunMessage>;

// ---- worker → supervisor ----
/** A frame's size and role, its pixels in the frame file: the limits of PreviewPixels. */
export const FrameInFile = z
  .object({ role: z.enum(['result', 'step']), width: z.number().int().positive(), height: z.number().int().positive() })
  .refine((f) => fitsPreviewFrame(f.role, f.width, f.height), { message: 'the frame is larger than a preview frame may be' });
export type FrameInFile = z.infer<typeof FrameInFile>;
export const WorkerReadyMessage = z.object({ v: Version, type: z.literal('ready'), device: Device, pid: z.number().int() });
export const WorkerProgressMessage = z.object({
  v: Version,
  type: z.literal('progress'),
  jobId: Id,
  stage: Stage,
  step: z.number().int().nonnegative(),
  total: z.number().int().positive(),
  /** Preview pixels for a preview frame (preview-frame.ts): the quick preview's image, or a step preview. */
  frame: PreviewPixels.optional(),
  /** A frame whose width·height·4 bytes of RGBA the worker wrote to the frame file instead
   *  (daemon/worker/frame-file.ts); never with `frame`. */
  frameFile: FrameInFile.optional(),
}).refine((m) => m.frame === undefined || m.frameFile === undefined, { message: 'a progress message carries one frame' });
export const WorkerOutput = z.object({
  role: z.enum(['image', 'mask']),
  png: Bytes,
  width: z.number().int().positive(),
  height: z.number().int().positive(),
});
export const WorkerDoneMessage = z.object({
  v: Version,
  type: z.literal('done'),
  jobId: Id,
  /** None for a caption job (engine `captioner`), at least one for every other. */
  outputs: z.array(WorkerOutput).max(4),
  engine: Engine,
  timings: Timings,
  details: JobDetails.optional(),
});
/** The worker cannot run any job on this machine (e.g. `--device cuda` without a loadable CUDA): it
 *  says why and exits; restarting it would not help, so the supervisor stops and refuses jobs with
 *  this error. */
export const WorkerUnavailableMessage = z.object({ v: Version, type: z.literal('unavailable'), error: ErrorBody });
export const WorkerCancelledMessage = z.object({ v: Version, type: z.literal('cancelled'), jobId: Id });
export const WorkerFailedMessage = z.object({ v: Version, type: z.literal('failed'), jobId: Id, error: ErrorBody });
export const WorkerMessage = z.discriminatedUnion('type', [
  WorkerReadyMessage,
  WorkerProgressMessage,
  WorkerDoneMessage,
  WorkerCancelledMessage,
  WorkerFailedMessage,
  WorkerUnavailableMessage,
]);
export type WorkerMessage = z.infer<typeof WorkerMessage>;
export type WorkerDoneMessage = z.infer<typeof WorkerDoneMessage>;
