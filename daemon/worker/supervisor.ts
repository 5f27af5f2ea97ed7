// The worker supervisor: the `JobEngine` the job queue talks to. It forks the worker process that owns
// every onnxruntime session (daemon/worker/worker-main.ts, bundled as dist/daemon/worker.js), hands it
// one job at a time over IPC, and stays up when the worker dies (docs/SECURITY.md §R16): the running job fails with
// `E_WORKER_CRASHED`, the worker is restarted with exponential backoff, and repeated crashes within a
// window are reported as `crash-loop` (jobs are refused with `E_ENGINE_UNAVAILABLE` until the backoff
// has passed). A cancelled job that does not stop within a grace period gets its worker killed and
// restarted (docs/SECURITY.md §R15). Every message from the worker is parsed with the protocol schema; a malformed one
// is treated as a crash. A job that failed because the GPU was lost or its provider failed
// (`E_DEVICE_LOST`, `E_DEVICE_FAILED`) leaves the provider's device context unusable for the whole
// process (onnxruntime keeps one WebGPU/CUDA context per process), so that worker is replaced at once,
// without counting a crash, and the next job runs on a fresh device.
//
// The HTTP process never imports onnxruntime: only the worker does (a CUDA fault must not take the
// daemon down), so this file imports nothing from providers.ts or sessions.ts but types.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Id, P2pzError, PROTOCOL_VERSION, WorkerMessage } from '../../shared/protocol/index.js';
import type { Device, ErrorBody, ErrorCode, FrameInFile, PreviewPixels, SupervisorMessage } from '../../shared/protocol/index.js';
import type { EngineHealth, EngineJob, EngineProgress, EngineResult, JobEngine } from '../jobs/engine.js';
import { createLogger, describeError } from '../log.js';
import type { Logger } from '../log.js';
import { FRAME_FILE_DEFAULTS, FrameFileReader } from './frame-file.js';
import { HeldUploads } from './held-uploads.js';
import type { DevicePreference } from './providers.js';

export const SUPERVISOR_DEFAULTS = Object.freeze({
  /** The bundled worker next to the bundle that holds this code (dist/daemon/worker.js). */
  workerPath: fileURLToPath(new URL('./worker.js', import.meta.url)),
  /** First restart delay after a crash; each further crash in the window multiplies it by `restartBackoffFactor`. */
  restartBackoffMs: 500,
  restartBackoffFactor: 2,
  restartBackoffMaxMs: 30_000,
  /** Crashes counted for the crash-loop verdict are those within this window. */
  crashWindowMs: 60_000,
  /** This many crashes within the window = crash loop. */
  crashLoopThreshold: 3,
  /** How long a cancelled job may keep running before its worker is killed (docs/SECURITY.md §R15). */
  cancelGraceMs: 5_000,
  /** How long close() waits for the worker to exit after `shutdown` before SIGKILL. */
  shutdownGraceMs: 3_000,
  /** A worker that has not said `ready` by then (provider probe hung, import failed silently) is killed. */
  readyTimeoutMs: 60_000,
  /** Uploads announced to the worker for the quick preview (`prefetch`): at most this many bytes on
   *  the channel at once; an upload that would pass it is not announced (its preview decodes it). */
  prefetchMaxBytes: 16 * 1024 * 1024,
});

/** Where the worker runs and what it is given. */
export interface WorkerLaunch {
  /** Absolute path of the models directory; the worker loads nothing from elsewhere. */
  readonly modelsDir: string;
  /** Absolute path of a folder the worker may keep derived caches in (edit directions Δ); none when absent. */
  readonly cacheDir?: string;
  readonly workerPath?: string | URL;
  /** Passed to the worker as `--device` (the CLI's flag). When absent the worker reads `P2PZ_DEVICE`
   *  from its environment, else uses `auto`: CUDA when it loads, else the CPU. */
  readonly device?: DevicePreference;
  /** Variables added to (or, when `undefined`, removed from) the worker's copy of this process's environment. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Node options for the worker (default none: the daemon's own flags are not inherited). */
  readonly execArgv?: readonly string[];
  readonly log?: Logger;
}

/** The timing and crash-loop settings, one per SUPERVISOR_DEFAULTS entry (documented there). */
export type SupervisorTimings = { readonly [K in Exclude<keyof typeof SUPERVISOR_DEFAULTS, 'workerPath'>]: number };
export type SupervisorOptions = WorkerLaunch & Partial<SupervisorTimings>;

type Settings = SupervisorTimings & {
  readonly modelsDir: string;
  readonly workerPath: string;
  readonly cacheDir: string | undefined;
  readonly device: DevicePreference | undefined;
  readonly execArgv: readonly string[];
};

/** One forked worker process and what is known about it. */
interface WorkerHandle {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  ready: boolean;
  alive: boolean;
  /** Why we killed it (or what it did wrong), when it is our doing. */
  killReason?: string;
  /** Killed because a cancelled job outlived the grace period: not a crash. */
  killedForCancel: boolean;
  /** Killed after its device was lost or its provider failed: replaced at once, not a crash. */
  killedForDevice?: boolean;
  /** The uploads this process holds (held-uploads.ts): a new process starts with none. */
  readonly held: HeldUploads;
}

/** Failures that leave the worker's device context unusable (see the file header). */
const FRESH_DEVICE_CODES: ReadonlySet<ErrorCode> = new Set(['E_DEVICE_LOST', 'E_DEVICE_FAILED']);

interface RunningJob {
  readonly job: EngineJob;
  readonly onProgress: (p: EngineProgress) => void;
  readonly signal: AbortSignal;
  readonly onAbort: () => void;
  sent: boolean;
  cancelRequested: boolean;
  graceTimer?: NodeJS.Timeout;
  resolve(result: EngineResult): void;
}

/** A line of onnxruntime's native logger (`<time> [E:onnxruntime:<logger>, <file>:<line> <fn>] …`), or
 *  of Dawn, its WebGPU provider's library, which prints `Warning: Couldn't load Vulkan: …` followed by
 *  `    at operator() (<file>.cpp:<line>)` when a device probe fails (seen on this project's CI). */
const ONNXRUNTIME_LOG_LINE = /^\S+ \S+ \[[VIWEF]:onnxruntime:|^Warning: |^\s+at \S.* \(\S+\.(?:cpp|cc|h):\d+\)$/;
const ANSI_ESCAPE = /\x1b\[[0-9;]*[A-Za-z]/g;

const failed = (code: ErrorCode, detail?: string): EngineResult => ({ status: 'failed', error: new P2pzError(code, detail).toBody() });
const CANCELLED: EngineResult = Object.freeze({ status: 'cancelled' });

export class WorkerSupervisor implements JobEngine {
  readonly #settings: Settings;
  readonly #env: NodeJS.ProcessEnv;
  readonly #log: Logger;
  #state: EngineHealth['state'] = 'starting';
  #worker: WorkerHandle | undefined;
  #device: Device | null = null;
  #restarts = 0;
  #crashTimes: number[] = [];
  #lastCrash: string | undefined;
  /** Set when the worker said it cannot run on this machine: restarting would not help. */
  #unavailable: ErrorBody | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #readyTimer: NodeJS.Timeout | undefined;
  #current: RunningJob | undefined;
  #closing: Promise<void> | undefined;
  /** Bytes of `prefetch` messages not yet written to the worker's channel. */
  #prefetchBytes = 0;
  /** Where the worker puts large frames (frame-file.ts). */
  #frames: FrameFileReader | undefined;

  constructor(options: SupervisorOptions) {
    const { workerPath: defaultWorkerPath, ...timingDefaults } = SUPERVISOR_DEFAULTS;
    const workerPath = options.workerPath ?? defaultWorkerPath;
    // Each timing from the options when given, else its default.
    const timings = Object.fromEntries(
      Object.entries(timingDefaults).map(([key, value]) => [key, options[key as keyof SupervisorTimings] ?? value]),
    ) as SupervisorTimings;
    this.#settings = {
      ...timings,
      modelsDir: resolvePath(options.modelsDir),
      cacheDir: options.cacheDir === undefined ? undefined : resolvePath(options.cacheDir),
      workerPath: workerPath instanceof URL ? fileURLToPath(workerPath) : workerPath,
      device: options.device,
      execArgv: options.execArgv ?? [],
    };
    this.#env = { ...process.env };
    for (const [key, value] of Object.entries(options.env ?? {})) {
      if (value === undefined) delete this.#env[key];
      else this.#env[key] = value;
    }
    this.#log = options.log ?? createLogger();
    try {
      this.#frames = new FrameFileReader();
    } catch (err) {
      // Frames then travel inline on the IPC channel, as they always could.
      this.#log.warn('worker.frame_file_unavailable', describeError(err));
    }
    this.#spawn();
  }

  /** The worker's process id while one is running (tests check that none is left behind). */
  get workerPid(): number | undefined {
    return this.#worker?.alive ? this.#worker.child.pid : undefined;
  }

  /** The frame file (tests read the last frame from it and check that it has no name on disk). */
  get frameFile(): FrameFileReader | undefined {
    return this.#frames;
  }

  health(): EngineHealth {
    const lastCrash = this.#lastCrash;
    return {
      state: this.#state,
      restarts: this.#restarts,
      recentCrashes: this.#recentCrashes(Date.now()),
      ...(lastCrash === undefined ? {} : { lastCrash }),
      device: this.#device,
    };
  }

  run(job: EngineJob, onProgress: (p: EngineProgress) => void, signal: AbortSignal): Promise<EngineResult> {
    const refusal = this.#refusal();
    if (refusal) return Promise.resolve(refusal);
    if (this.#current) return Promise.resolve(failed('E_INTERNAL', 'The engine runs one job at a time.'));
    // The worker drops a run message its schema refuses, and the job would wait forever: refuse here.
    if (!Id.safeParse(job.jobId).success) return Promise.resolve(failed('E_BAD_REQUEST', 'A job id is 8–64 letters, digits, _ or -.'));
    if (signal.aborted) return Promise.resolve(CANCELLED);
    return new Promise<EngineResult>((resolve) => {
      const running: RunningJob = {
        job,
        onProgress,
        signal,
        sent: false,
        cancelRequested: false,
        onAbort: () => this.#cancel(running),
        resolve: (result) => {
          if (this.#current !== running) return;
          this.#current = undefined;
          clearTimeout(running.graceTimer);
          signal.removeEventListener('abort', running.onAbort);
          if (this.#state === 'busy') this.#state = 'ready';
          resolve(result);
        },
      };
      this.#current = running;
      signal.addEventListener('abort', running.onAbort, { once: true });
      this.#dispatch();
    });
  }

  prefetch(image: Uint8Array, imageId?: string): void {
    const worker = this.#worker;
    // A hint: a worker that is not ready (starting, restarting, gone) is not sent one, nor an upload
    // beyond what the channel may hold for hints (the daemon's memory bound, docs/SECURITY.md §Memory bound).
    if (this.#closing || !worker?.ready || !worker.alive || !worker.child.connected) return;
    if (this.#prefetchBytes + image.byteLength > this.#settings.prefetchMaxBytes) return;
    // The worker keeps what the ledger says, dropping what it gives up (held-uploads.ts).
    const drop = imageId === undefined ? undefined : worker.held.add(imageId, image.byteLength);
    const named = drop === undefined ? {} : { uploadId: imageId, ...(drop.length > 0 ? { drop } : {}) };
    this.#prefetchBytes += image.byteLength;
    worker.child.send({ v: PROTOCOL_VERSION, type: 'prefetch', image, modelsDir: this.#settings.modelsDir, ...named } satisfies SupervisorMessage, () => {
      this.#prefetchBytes -= image.byteLength;
    });
  }

  /** Whether a job given now would be sent to the worker by `imageId` alone (see #dispatch): the
   *  worker is ready for it and holds that upload. */
  holds(imageId: string): boolean {
    const worker = this.#worker;
    return this.#current === undefined && this.#refusal() === undefined && worker?.ready === true && worker.alive && worker.held.has(imageId);
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown().finally(() => {
      try {
        this.#frames?.close();
      } catch (err) {
        this.#log.warn('worker.frame_file_cleanup_failed', describeError(err));
      }
    });
    return this.#closing;
  }

  // ---- jobs ----

  /** Why a job cannot be taken now, if it cannot. */
  #refusal(): EngineResult | undefined {
    if (this.#closing) return failed('E_SHUTTING_DOWN');
    if (this.#unavailable) return { status: 'failed', error: this.#unavailable };
    if (this.#state === 'crash-loop') {
      return failed('E_ENGINE_UNAVAILABLE', this.#lastCrash ? `Last failure: ${this.#lastCrash}.` : undefined);
    }
    return undefined;
  }

  /** Sends the waiting job to a ready worker, or refuses it when the engine cannot take it. */
  #dispatch(): void {
    const running = this.#current;
    if (!running || running.sent) return;
    const refusal = this.#refusal();
    if (refusal) {
      running.resolve(refusal);
      return;
    }
    const worker = this.#worker;
    if (!worker?.ready || !worker.alive) return; // sent once the worker says `ready`
    const { job } = running;
    // An upload the worker holds goes by its id: no copy of the bytes on the channel.
    const byId = job.imageId !== undefined && worker.held.use(job.imageId);
    if (!byId && job.imageId !== undefined && job.image.byteLength === 0) {
      // Came without its bytes (`holds` said yes) to a worker without them: cannot happen while run()
      // follows `holds` in the same tick, but a job never runs on an empty image.
      running.resolve(failed('E_INTERNAL', 'The upload was neither held by the worker nor given.'));
      return;
    }
    running.sent = true;
    this.#state = 'busy';
    this.#send(worker, {
      v: PROTOCOL_VERSION,
      type: 'run',
      jobId: job.jobId,
      kind: job.kind,
      ...(byId ? { uploadId: job.imageId } : { image: job.image }),
      modelsDir: this.#settings.modelsDir,
      ...(this.#settings.cacheDir === undefined ? {} : { cacheDir: this.#settings.cacheDir }),
      ...(job.model === undefined ? {} : { model: job.model }),
      ...(job.edit === undefined ? {} : { edit: job.edit }),
      stepPreviews: job.stepPreviews,
    });
  }

  #cancel(running: RunningJob): void {
    if (this.#current !== running || running.cancelRequested) return;
    running.cancelRequested = true;
    const worker = this.#worker;
    if (!running.sent || !worker?.alive) {
      running.resolve(CANCELLED);
      return;
    }
    this.#send(worker, { v: PROTOCOL_VERSION, type: 'cancel', jobId: running.job.jobId });
    running.graceTimer = setTimeout(() => {
      if (this.#current !== running || this.#worker !== worker) return;
      this.#log.warn('worker.cancel_timeout', { jobId: running.job.jobId, graceMs: this.#settings.cancelGraceMs });
      worker.killedForCancel = true;
      this.#kill(worker, 'a cancelled job did not stop in time');
    }, this.#settings.cancelGraceMs);
  }

  #onMessage(worker: WorkerHandle, raw: unknown): void {
    if (worker !== this.#worker || !worker.alive) return;
    const parsed = WorkerMessage.safeParse(raw);
    if (!parsed.success) {
      this.#log.error('worker.malformed_message', { issue: parsed.error.issues[0]?.message });
      this.#kill(worker, 'the engine sent a malformed message');
      return;
    }
    const msg = parsed.data;
    if (msg.type === 'ready') {
      clearTimeout(this.#readyTimer);
      worker.ready = true;
      this.#device = msg.device;
      this.#state = this.#current ? 'busy' : 'ready';
      this.#log.info('worker.ready', { pid: msg.pid, provider: msg.device.provider, reason: msg.device.reason });
      this.#dispatch();
      return;
    }
    if (msg.type === 'unavailable') {
      clearTimeout(this.#readyTimer);
      this.#unavailable = msg.error;
      this.#lastCrash = clip(msg.error.message);
      this.#log.error('worker.unavailable', { error: msg.error.code, detail: msg.error.message });
      this.#kill(worker, 'the engine cannot run on this machine');
      return;
    }
    // A frame in the frame file is read at once, whoever's it is, and the file handed back.
    const frame = msg.type === 'progress' ? (msg.frameFile === undefined ? msg.frame : this.#readFrame(worker, msg.frameFile)) : undefined;
    const running = this.#current;
    if (!running?.sent || msg.jobId !== running.job.jobId) return; // a late message about a finished job
    switch (msg.type) {
      case 'progress':
        if (!running.cancelRequested) {
          const { stage, step, total } = msg;
          running.onProgress(frame === undefined ? { stage, step, total } : { stage, step, total, frame });
        }
        return;
      case 'done':
        running.resolve(running.cancelRequested ? CANCELLED : { status: 'done', outputs: msg.outputs, engine: msg.engine, timings: msg.timings, ...(msg.details === undefined ? {} : { details: msg.details }) });
        return;
      case 'cancelled':
        running.resolve(CANCELLED);
        return;
      case 'failed':
        if (FRESH_DEVICE_CODES.has(msg.error.code)) {
          // Not ready for another job: the next one waits for the replacement's `ready`.
          worker.ready = false;
          worker.killedForDevice = true;
          this.#log.warn('worker.device_reset', { jobId: running.job.jobId, error: msg.error.code });
          this.#kill(worker, 'its device was lost or its provider failed');
        }
        running.resolve(running.cancelRequested ? CANCELLED : { status: 'failed', error: msg.error });
        return;
    }
  }

  /** The frame the worker wrote to the frame file; undefined (the frame dropped: the job's PNG still
   *  follows) when the file holds less. */
  #readFrame(worker: WorkerHandle, frame: FrameInFile): PreviewPixels | undefined {
    let rgba: Uint8Array | undefined;
    try {
      rgba = this.#frames?.read(frame.width * frame.height * 4);
    } catch (err) {
      this.#log.warn('worker.frame_file_failed', describeError(err));
    }
    this.#send(worker, { v: PROTOCOL_VERSION, type: 'frame-read' });
    if (rgba === undefined) return undefined;
    return { role: frame.role, width: frame.width, height: frame.height, rgba };
  }

  // ---- the process ----

  #spawn(): void {
    this.#restartTimer = undefined;
    const s = this.#settings;
    const frames = this.#frames;
    const args = [...(s.device === undefined ? [] : ['--device', s.device]), ...(frames === undefined ? [] : [FRAME_FILE_DEFAULTS.flag, String(FRAME_FILE_DEFAULTS.fd)])];
    const child = fork(s.workerPath, args, {
      serialization: 'advanced',
      env: this.#env,
      execArgv: [...s.execArgv],
      // The frame file goes to the worker as its descriptor FRAME_FILE_DEFAULTS.fd (index 4 here).
      stdio: frames === undefined ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe', 'ipc', frames.fd],
    });
    const worker: WorkerHandle = {
      child,
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
      ready: false,
      alive: true,
      killedForCancel: false,
      held: new HeldUploads(),
    };
    this.#worker = worker;
    if (this.#state !== 'starting') this.#state = 'restarting';
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      // onnxruntime colours its own log lines; the daemon log is plain text.
      createInterface({ input: stream }).on('line', (raw) => {
        const line = raw.replace(ANSI_ESCAPE, '').trim();
        if (line === '') return;
        // onnxruntime's own log lines (such as the CUDA loader's or Dawn's failure on a machine without
        // that device, whose reason health already shows) belong to the debug log, not to every start's output.
        if (ONNXRUNTIME_LOG_LINE.test(line)) this.#log.debug('worker.onnxruntime', { line });
        else this.#log.info('worker.log', { line });
      });
    }
    child.on('message', (raw) => this.#onMessage(worker, raw));
    child.on('error', (err) => this.#log.warn('worker.process_error', describeError(err)));
    child.once('exit', (code, signal) => this.#onExit(worker, code, signal));
    clearTimeout(this.#readyTimer);
    this.#readyTimer = setTimeout(() => {
      if (this.#worker === worker && !worker.ready) this.#kill(worker, `the engine did not start within ${Math.round(s.readyTimeoutMs / 1000)} s`);
    }, s.readyTimeoutMs);
  }

  #send(worker: WorkerHandle, message: SupervisorMessage): void {
    if (!worker.child.connected) return; // its exit is on the way and will settle the job
    worker.child.send(message, (err) => {
      if (err) this.#log.warn('worker.send_failed', describeError(err));
    });
  }

  #kill(worker: WorkerHandle, reason: string): void {
    if (!worker.alive) return;
    worker.killReason ??= reason;
    worker.child.kill('SIGKILL');
  }

  #onExit(worker: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void {
    worker.alive = false;
    if (worker !== this.#worker) return;
    clearTimeout(this.#readyTimer);
    const running = this.#current;
    const sent = running?.sent === true;

    if (this.#closing) {
      this.#state = 'stopped';
      running?.resolve(running.cancelRequested ? CANCELLED : failed('E_SHUTTING_DOWN'));
      return;
    }
    if (this.#unavailable) {
      this.#state = 'stopped';
      running?.resolve({ status: 'failed', error: this.#unavailable });
      return;
    }
    if (worker.killedForDevice) {
      if (running && sent) running.resolve(running.cancelRequested ? CANCELLED : failed('E_DEVICE_LOST'));
      this.#restarts++;
      this.#spawn();
      return;
    }
    if (worker.killedForCancel) {
      this.#log.info('worker.killed_after_cancel', { jobId: running?.job.jobId });
      if (running) running.resolve(CANCELLED);
      this.#restarts++;
      this.#spawn();
      return;
    }

    const how = worker.killReason ?? (signal ? `the engine process was killed by ${signal}` : `the engine process exited with code ${code ?? 'unknown'}`);
    const now = Date.now();
    this.#crashTimes.push(now);
    const recent = this.#recentCrashes(now);
    this.#lastCrash = clip(how);
    this.#log.error('worker.crashed', { reason: how, recentCrashes: recent, jobId: sent ? running?.job.jobId : undefined });
    if (running && sent) running.resolve(running.cancelRequested ? CANCELLED : failed('E_WORKER_CRASHED'));

    const s = this.#settings;
    const delay = Math.min(s.restartBackoffMaxMs, s.restartBackoffMs * s.restartBackoffFactor ** Math.max(0, recent - 1));
    this.#state = recent >= s.crashLoopThreshold ? 'crash-loop' : 'restarting';
    if (this.#state === 'crash-loop') this.#log.error('worker.crash_loop', { recentCrashes: recent, retryInMs: delay });
    this.#dispatch(); // a job still waiting for a worker is refused in a crash loop
    this.#restartTimer = setTimeout(() => {
      this.#restarts++;
      this.#spawn();
    }, delay);
  }

  #recentCrashes(now: number): number {
    const since = now - this.#settings.crashWindowMs;
    this.#crashTimes = this.#crashTimes.filter((t) => t > since);
    return this.#crashTimes.length;
  }

  async #shutdown(): Promise<void> {
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    const running = this.#current;
    if (running && !running.sent) running.resolve(failed('E_SHUTTING_DOWN'));
    const worker = this.#worker;
    if (!worker?.alive) {
      this.#state = 'stopped';
      running?.resolve(failed('E_SHUTTING_DOWN'));
      return;
    }
    this.#send(worker, { v: PROTOCOL_VERSION, type: 'shutdown' });
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#settings.shutdownGraceMs);
    });
    const outcome = await Promise.race([worker.exited.then(() => 'exited' as const), grace]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.#log.warn('worker.shutdown_timeout', { graceMs: this.#settings.shutdownGraceMs });
      this.#kill(worker, 'the engine did not stop in time');
      await worker.exited;
    }
    this.#state = 'stopped';
  }
}

function clip(text: string): string {
  return text.length > 300 ? `${text.slice(0, 299)}…` : text;
}
