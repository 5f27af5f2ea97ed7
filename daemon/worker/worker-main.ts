// The worker process (bundled as dist/daemon/worker.js): the only process that loads onnxruntime.
// Forked by the supervisor with `serialization: 'advanced'`; every message it receives is parsed with
// the protocol schema. It chooses the execution provider, says `ready` with the device, then runs one
// job at a time. `session.run()` blocks this event loop for a whole model call, so a `cancel` is read
// between awaits and honoured at the pipeline's next stage or step boundary. `shutdown` cancels the
// running job, releases every session and exits; losing the parent (IPC disconnect) exits at once, so
// a killed daemon leaves no orphan worker holding the GPU (docs/SECURITY.md §R23). Each job gets the provider and what the
// sessions hold, so the diffusion pipelines can refuse a job that cannot fit before loading it (docs/SECURITY.md §R17).
// While no job runs, it makes uploads the daemon announces (`prefetch`) ready for their quick preview
// (prefetch-queue.ts); a job that arrives starts at once. After `ready` it warms the preview's pixel
// code on a small image (image/warm-up.ts). A large frame's pixels go through the frame file the daemon
// hands down as a descriptor (`--frame-fd`, frame-file.ts), not the IPC channel.
import { join } from 'node:path';
import { z } from 'zod';
import { P2pzError, PROTOCOL_VERSION, SupervisorMessage } from '../../shared/protocol/index.js';
import type { Device, WorkerMessage, WorkerRunMessage } from '../../shared/protocol/index.js';
import { addScrubRoot, createLogger, describeError } from '../log.js';
import { freeDeviceMemory, memoryPlanWords, memorySource, type DeviceMemoryProbe } from '../models/device-memory.js';
import type { DeviceMemoryContext } from '../pipeline/pix2pix-zero.js';
import { warmUpPreviewPixels } from '../image/warm-up.js';
import { prefetchGanInput } from '../pipeline/gan-prefetch.js';
import { InversionCache } from '../pipeline/inversion-cache.js';
import { FrameFileWriter, frameFileFlag } from './frame-file.js';
import { PrefetchQueue } from './prefetch-queue.js';
import { devicePreference, processExecution } from './providers.js';
import type { ExecutionChoice } from './providers.js';
import { RUN_JOB_DEFAULTS, runJob } from './run-job.js';
import { SessionCache } from './sessions.js';

const log = createLogger();

const WORKER_DEFAULTS = Object.freeze({
  /** Environment variable: the free device memory, in MiB, that jobs are planned against instead of
   *  asking the device (`os.freemem()` / nvidia-smi): for a GPU nvidia-smi cannot see, or to keep
   *  memory for other programs. Unset: ask the device. */
  freeMemoryEnvVar: 'P2PZ_FREE_MEMORY_MIB',
});

const FreeMemoryMib = z.string().trim().regex(/^\d{1,9}$/).transform(Number);

/** The configured free memory in MiB, or none (ask the device). */
function configuredFreeMib(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env[WORKER_DEFAULTS.freeMemoryEnvVar];
  if (raw === undefined || raw.trim() === '') return undefined;
  const parsed = FreeMemoryMib.safeParse(raw);
  if (!parsed.success) {
    log.warn('worker.bad_free_memory', { variable: WORKER_DEFAULTS.freeMemoryEnvVar, expected: 'whole MiB' });
    return undefined;
  }
  return parsed.data;
}

const configuredMib = configuredFreeMib(process.env);
/** The configured budget as a probe for every memory source. */
const memoryProbe: DeviceMemoryProbe | undefined =
  configuredMib === undefined ? undefined : { freemem: () => configuredMib * 2 ** 20, nvidiaSmi: async () => `${configuredMib}\n` };

/** The device as health shows it, with how its memory is planned (docs/SECURITY.md §R17). */
async function withMemoryPlan(device: Device): Promise<Device> {
  const known = (await freeDeviceMemory(device.provider, memoryProbe)) !== undefined;
  return { ...device, memory: memoryPlanWords(memorySource(device.provider), known, configuredMib) };
}

interface Running {
  readonly jobId: string;
  readonly controller: AbortController;
}

let running: Running | undefined;
/** The last job's result, until it has been handed to the IPC channel (shutdown waits for it). */
let settled: Promise<void> = Promise.resolve();
let sessions: SessionCache | undefined;
let inversions: { readonly cacheDir: string | undefined; readonly cache: InversionCache } | undefined;
let stopping = false;
/** The models directory the last prefetch named (the daemon sends the same one with every message). */
let prefetchFiles: SessionCache | undefined;
const prefetches = new PrefetchQueue({
  idle: () => running === undefined && !stopping,
  // Set with each `prefetch` message before its upload is queued; without it there is no models folder to look in.
  prefetch: (image, idle) => (prefetchFiles === undefined ? Promise.resolve('no-generator' as const) : prefetchGanInput(image, prefetchFiles, idle)),
  log,
});

/** Uploads held by id, exactly as the supervisor's ledger says (held-uploads.ts): a run message may
 *  name one instead of carrying its bytes. The same objects the prefetch decoded, so the preview
 *  cache finds them by identity without hashing them again (preview-input-cache.ts). */
const heldUploads = new Map<string, Uint8Array>();

/** One frame buffer, reused: `send` serializes a message before it returns (Node's IPC with
 *  `serialization: 'advanced'`), so the pixels may be overwritten by the next frame right after. */
let frameBuffer: Uint8Array | undefined;
function framePixels(byteLength: number): Uint8Array {
  if (frameBuffer?.byteLength !== byteLength) frameBuffer = new Uint8Array(byteLength);
  return frameBuffer;
}

function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(viaFrameFile(message), undefined, {}, () => resolve());
  });
}

/** The frame file the daemon handed down (frame-file.ts), when it gave one. */
const frameWriter = ((): FrameFileWriter | undefined => {
  const fd = frameFileFlag(process.argv);
  return fd === undefined ? undefined : new FrameFileWriter(fd);
})();

/** A progress message with a large frame: its pixels written to the frame file, the message without
 *  them; any other message (or when the file is not free) as it is. */
function viaFrameFile(message: WorkerMessage): WorkerMessage {
  if (message.type !== 'progress' || message.frame === undefined || frameWriter === undefined) return message;
  const { frame, ...rest } = message;
  try {
    if (!frameWriter.write(frame.rgba)) return message;
  } catch (err) {
    log.debug('worker.frame_file_failed', describeError(err));
    return message;
  }
  return { ...rest, frameFile: { role: frame.role, width: frame.width, height: frame.height } };
}

/** The `--device` value the supervisor passes, if any. */
function deviceFlag(argv: readonly string[]): string | undefined {
  const i = argv.indexOf('--device');
  return i >= 0 ? argv[i + 1] : undefined;
}

/** One session cache per models directory (the daemon sends the same one with every job). */
function sessionsFor(modelsDir: string, execution: ExecutionChoice): SessionCache {
  if (sessions?.modelsDir !== modelsDir) {
    void sessions?.releaseAll();
    sessions = new SessionCache({ modelsDir, executionProviders: execution.executionProviders, sessionOptions: execution.sessionOptions });
  }
  return sessions;
}

/** One inversion cache per cache folder: on disk there when the daemon names one, else in memory. */
function inversionsFor(cacheDir: string | undefined): InversionCache {
  if (!inversions || inversions.cacheDir !== cacheDir) {
    const cache = new InversionCache(cacheDir === undefined ? {} : { dir: join(cacheDir, RUN_JOB_DEFAULTS.inversionCache) });
    inversions = { cacheDir, cache };
  }
  return inversions.cache;
}

function startJob(message: WorkerRunMessage, execution: ExecutionChoice): void {
  if (running || stopping) {
    void send({ v: PROTOCOL_VERSION, type: 'failed', jobId: message.jobId, error: new P2pzError('E_INTERNAL', 'The engine runs one job at a time.').toBody() });
    return;
  }
  const { image: carried, uploadId, ...rest } = message;
  const image = carried ?? (uploadId === undefined ? undefined : heldUploads.get(uploadId));
  if (image === undefined) {
    // The supervisor names only what its ledger says this process holds (held-uploads.ts).
    log.error('worker.upload_not_held', { jobId: message.jobId });
    void send({ v: PROTOCOL_VERSION, type: 'failed', jobId: message.jobId, error: new P2pzError('E_INTERNAL', 'The engine no longer holds the uploaded image.', 'Submit the job again.').toBody() });
    return;
  }
  const job: Running = { jobId: message.jobId, controller: new AbortController() };
  running = job;
  // The worker may not know the daemon's data folder (a --home of its own): these two it is told.
  addScrubRoot('<data>/models', message.modelsDir);
  if (message.cacheDir !== undefined) addScrubRoot('<data>/cache', message.cacheDir);
  const models = sessionsFor(message.modelsDir, execution);
  const memory: DeviceMemoryContext = {
    provider: execution.device.provider,
    heldBytes: (modelDir) => models.heldBytes(modelDir),
    ...(memoryProbe === undefined ? {} : { probe: memoryProbe }),
  };
  const ctx = {
    models,
    memory,
    inversionCache: inversionsFor(message.cacheDir),
    signal: job.controller.signal,
    send,
    framePixels,
    log,
  };
  settled = runJob({ ...rest, image, ...(carried === undefined ? { held: true } : {}) }, ctx).then(async (result) => {
    // Free before the result leaves: the next `run` may arrive as soon as the supervisor reads it.
    if (running === job) running = undefined;
    await send(result);
    prefetches.resume();
  });
}

async function shutdown(code: number): Promise<never> {
  stopping = true;
  running?.controller.abort();
  await settled;
  await sessions?.releaseAll();
  process.exit(code);
}

async function main(): Promise<void> {
  if (!process.send) {
    process.stderr.write('The p2pz worker is started by the daemon (p2pz serve), not by hand.\n');
    process.exit(2);
  }
  // Losing the parent means nobody can use our results: exit now, even mid-job.
  process.on('disconnect', () => process.exit(0));

  let execution: ExecutionChoice | undefined;
  const pending: WorkerRunMessage[] = [];
  process.on('message', (raw) => {
    const parsed = SupervisorMessage.safeParse(raw);
    if (!parsed.success) {
      log.error('worker.malformed_message', { issue: parsed.error.issues[0]?.message });
      return;
    }
    const message = parsed.data;
    switch (message.type) {
      case 'run':
        if (execution) startJob(message, execution);
        else pending.push(message);
        return;
      case 'frame-read':
        frameWriter?.read();
        return;
      case 'prefetch':
        // The ledger first: the supervisor's record of what this process holds must stay exact.
        for (const id of message.drop ?? []) heldUploads.delete(id);
        if (message.uploadId !== undefined) heldUploads.set(message.uploadId, message.image);
        if (!execution || stopping) return;
        prefetchFiles = sessionsFor(message.modelsDir, execution);
        prefetches.push(message.image);
        return;
      case 'cancel':
        if (running?.jobId === message.jobId) running.controller.abort();
        return;
      case 'shutdown':
        void shutdown(0);
        return;
    }
  });

  try {
    execution = await processExecution(devicePreference(deviceFlag(process.argv), process.env));
  } catch (err) {
    log.error('worker.unavailable', describeError(err));
    const error = (err instanceof P2pzError ? err : new P2pzError('E_INTERNAL', 'The engine could not start.')).toBody();
    await send({ v: PROTOCOL_VERSION, type: 'unavailable', error });
    process.exit(1);
  }
  await send({ v: PROTOCOL_VERSION, type: 'ready', device: await withMemoryPlan(execution.device), pid: process.pid });
  for (const message of pending.splice(0)) startJob(message, execution);
  try {
    await warmUpPreviewPixels();
  } catch (err) {
    log.debug('worker.warm_up_failed', describeError(err));
  }
}

void main();
