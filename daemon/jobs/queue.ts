// The job queue in front of the one GPU: admits jobs within per-client and global bounds (docs/SECURITY.md §R13), runs
// one at a time through the JobEngine (previews ahead of queued renders), stores each job's outputs in
// the ResultStore, and reports every job to its client as one event stream that ends in exactly one
// terminal event: `finished`, `cancelled` or `error` (docs/SECURITY.md §R14). Finished jobs are remembered for a while,
// then forgotten. Jobs belong to the client that submitted them; other clients cannot see them.
import { encodePreviewFrameParts, JobOutcome, P2pzError, PreviewFrameHeader, PROTOCOL_VERSION, ProgressEvent } from '../../shared/protocol/index.js';
import type { Device, Provider } from '../../shared/protocol/index.js';
import type {
  ErrorBody,
  ErrorCode,
  JobEvent,
  JobKind,
  JobRequest,
  JobState,
  JobStateName,
  ResultRef,
} from '../../shared/protocol/index.js';
import { describeError, silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { EngineOutput, EngineProgress, EngineResult, JobEngine } from './engine.js';
import { newId } from './ids.js';
import type { ResultStore } from './results.js';
import { WaitingLine } from './waiting-line.js';

export const QUEUE_DEFAULTS = Object.freeze({
  /** Jobs one token may have waiting or running at once, whatever client ids it uses; one more is
   *  refused with E_QUEUE_FULL (docs/SECURITY.md §Per-token limits). */
  maxQueuedPerToken: 8,
  /** Jobs one client id (of a token) may have waiting or running at once: a share of its token's. */
  maxQueuedPerClient: 8,
  /** Jobs of all clients waiting or running at once; one more is refused with E_QUEUE_FULL. */
  maxQueued: 32,
  /** A finished, cancelled or failed job can be looked up (and resubmitted idempotently) this long (1 hour). */
  keepFinishedMs: 3600_000,
  /** Ended jobs remembered at most (each is small, but submit-and-cancel can make many); beyond it the
   *  ones that ended first are forgotten early. */
  maxEnded: 10_000,
  /** On close(): how long the running job may take to stop cooperatively before the engine is closed
   *  (which stops its worker by force if it must). */
  closeGraceMs: 10_000,
  /** Jobs run at once: 1 for the local worker (one GPU); a team endpoint (daemon/team) hands every
   *  admitted job to the shared queue at once and lets its workers take them. */
  concurrency: 1,
});
/** The settings above, each a number of its own. */
export type QueueSettings = { readonly [K in keyof typeof QUEUE_DEFAULTS]: number };
export type QueueOptions = Partial<QueueSettings> & {
  /** Clock in epoch milliseconds (job timestamps and timings). */
  now?: () => number;
  /** Job outcomes and internal faults (an engine that rejects, a failing store or listener). */
  log?: Logger;
  /** Told of every finished job with its request and the device it ran on (the duration log). */
  onFinished?: (request: JobRequest, outcome: JobOutcome, device: Device | null) => void;
};

export type JobListener = (event: JobEvent) => void;
/** Receives a job's preview frames, encoded as they go on the wire: the parts of one binary message, in
 *  order, header then pixels (shared/protocol/preview-frame.ts, encodePreviewFrameParts). */
export type FrameListener = (frame: PreviewFrameParts, header: PreviewFrameHeader) => void;
export type PreviewFrameParts = readonly [Uint8Array, Uint8Array];

interface Subscriber {
  readonly event: JobListener;
  readonly frame: FrameListener | undefined;
}

/** A job's input: the bytes themselves (tests, the CLI), or a stored upload the job reads when it
 *  starts, so that a waiting job holds no image in memory (docs/SECURITY.md §Memory bound). */
export type JobImage = Uint8Array | { read(): Promise<Uint8Array>; release(): void };

function releaseImage(image: JobImage | undefined): void {
  if (image !== undefined && !(image instanceof Uint8Array)) image.release();
}

/** How a job ends: the three terminal states, each with what its event carries. */
type Ending =
  | { readonly state: 'finished'; readonly outcome: JobOutcome }
  | { readonly state: 'cancelled' }
  | { readonly state: 'error'; readonly error: ErrorBody };

interface Job {
  readonly clientId: string;
  /** The token behind the client: the per-token bound counts its jobs. */
  readonly owner: string;
  readonly jobId: string;
  readonly kind: JobKind;
  readonly request: JobRequest;
  /** Canonical JSON of `request`: an idempotent resubmit must match it exactly. */
  readonly requestKey: string;
  readonly createdAt: number;
  /** The upload (or a hold on its file), kept only until the job starts. */
  image: JobImage | undefined;
  /** `cancelled` is set at once when a running job is cancelled; its event follows when the engine returns. */
  state: JobStateName;
  /** The last position announced in a `queued` event. */
  position: number | undefined;
  startedAt: number | undefined;
  /** Set with the terminal event; the job is forgotten `keepFinishedMs` later. */
  endedAt: number | undefined;
  outcome: JobOutcome | undefined;
  error: ErrorBody | undefined;
  /** Aborts the engine's run while the job is running. */
  abort: AbortController | undefined;
}

export class JobQueue {
  private readonly settings: QueueSettings;
  private readonly now: () => number;
  private readonly log: Logger;
  /** clientId → jobId → job: job ids are client-chosen, so they are scoped by client. */
  private readonly jobs = new Map<string, Map<string, Job>>();
  private readonly waiting = new WaitingLine<Job>();
  /** Ended jobs in the order they ended, to forget them in that order. */
  private readonly ended: Job[] = [];
  private readonly listeners = new Map<string, Set<Subscriber>>();
  /** The jobs the engine is running, each with the promise that settles when its run has returned. */
  private readonly running = new Map<Job, Promise<void>>();
  /** Set by close(): no job is admitted or started any more. */
  private closed = false;
  private closing: Promise<void> | undefined;

  private readonly onFinished: QueueOptions['onFinished'];

  constructor(
    private readonly engine: JobEngine,
    private readonly results: ResultStore,
    options: QueueOptions = {},
  ) {
    const { now, log, onFinished, ...settings } = options;
    this.onFinished = onFinished;
    this.settings = { ...QUEUE_DEFAULTS, ...settings };
    this.now = now ?? (() => Date.now());
    this.log = log ?? silentLogger;
  }

  /**
   * Queues a validated request with the upload's bytes and returns the job's state. Resubmitting a
   * jobId with the same request returns the existing job's state; with a different request it throws
   * E_JOB_CONFLICT. Throws E_QUEUE_FULL beyond the bounds and E_SHUTTING_DOWN after close().
   * `owner` names the token behind `clientId` (the client itself when it has no token of its own).
   * The queue owns `image` from here: a stored upload is released when it is not admitted, when it
   * has been read at the start, or when the job ends before starting.
   */
  submit(clientId: string, request: JobRequest, image: JobImage, owner: string = clientId): JobState {
    try {
      return this.admit(clientId, request, image, owner);
    } catch (error) {
      releaseImage(image);
      throw error;
    }
  }

  private admit(clientId: string, request: JobRequest, image: JobImage, owner: string): JobState {
    if (this.closed) throw new P2pzError('E_SHUTTING_DOWN');
    this.forgetExpired();
    const requestKey = canonicalJson(request);
    const existing = request.jobId === undefined ? undefined : this.jobs.get(clientId)?.get(request.jobId);
    if (existing) {
      if (existing.requestKey !== requestKey) throw new P2pzError('E_JOB_CONFLICT');
      releaseImage(image);
      return snapshot(existing);
    }
    this.checkBounds(clientId, owner);

    const job: Job = {
      clientId,
      owner,
      jobId: request.jobId ?? newId(),
      kind: request.kind,
      request,
      requestKey,
      createdAt: this.now(),
      image,
      state: 'queued',
      position: undefined,
      startedAt: undefined,
      endedAt: undefined,
      outcome: undefined,
      error: undefined,
      abort: undefined,
    };
    let clientJobs = this.jobs.get(clientId);
    if (!clientJobs) this.jobs.set(clientId, (clientJobs = new Map()));
    clientJobs.set(job.jobId, job);
    this.waiting.push(job);
    this.announcePositions();
    this.pump();
    return snapshot(job);
  }

  /** The state of one of this client's jobs; E_NOT_FOUND for unknown, forgotten or other clients' jobs. */
  get(clientId: string, jobId: string): JobState {
    this.forgetExpired();
    return snapshot(this.find(clientId, jobId));
  }

  /**
   * Cancels a job and returns its state at once. A queued job leaves the queue and gets its
   * `cancelled` event now; a running job's engine run is aborted, its state says `cancelled` now, and
   * its one `cancelled` event follows when the engine returns (its outputs are never stored). A job
   * that has already ended is left as it is.
   */
  cancel(clientId: string, jobId: string): JobState {
    this.forgetExpired();
    const job = this.find(clientId, jobId);
    if (job.state === 'queued') {
      this.waiting.remove(job);
      this.end(job, { state: 'cancelled' });
      this.announcePositions();
    } else if (job.state === 'running') {
      job.state = 'cancelled';
      job.abort?.abort();
    }
    return snapshot(job);
  }

  /** Cancels every queued and running job of this client (its page was closed); returns how many. */
  cancelClient(clientId: string): number {
    this.forgetExpired();
    const active = [...(this.jobs.get(clientId)?.values() ?? [])].filter((job) => job.state === 'queued' || job.state === 'running');
    for (const job of active) this.cancel(clientId, job.jobId);
    return active.length;
  }

  /** Listens to the events of this client's jobs, and with `onFrame` to their preview frames (the
   *  quick preview's image; step previews of jobs that asked for them); returns the function that stops
   *  listening. */
  subscribe(clientId: string, listener: JobListener, onFrame?: FrameListener): () => void {
    let set = this.listeners.get(clientId);
    if (!set) this.listeners.set(clientId, (set = new Set()));
    const subscriber: Subscriber = { event: listener, frame: onFrame };
    set.add(subscriber);
    const own = set;
    return () => {
      own.delete(subscriber);
      if (own.size === 0 && this.listeners.get(clientId) === own) this.listeners.delete(clientId);
    };
  }

  /** Passes an upload on to the engine as a hint that a job may soon read it (JobEngine.prefetch). */
  prefetch(image: Uint8Array, imageId?: string): void {
    if (this.closed) return;
    try {
      this.engine.prefetch?.(image, imageId);
    } catch (error) {
      this.log.warn('job.prefetch-failed', describeError(error));
    }
  }

  /** `running` counts a cancelled job until its engine run has returned: the GPU is still busy. */
  counts(): { running: number; queued: number } {
    return { running: this.running.size, queued: this.waiting.size };
  }

  /** Refuses new jobs, cancels every job, waits for the running one to stop, then closes the engine. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = this.shutdown();
    }
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (let job = this.waiting.shift(); job; job = this.waiting.shift()) this.end(job, { state: 'cancelled' });
    const running = [...this.running];
    for (const [job] of running) {
      if (job.state === 'running') job.state = 'cancelled';
      job.abort?.abort();
    }
    const settled = Promise.all(running.map(([, done]) => done));
    if (running.length > 0) {
      let grace: NodeJS.Timeout | undefined;
      const graceOver = new Promise<void>((resolve) => {
        grace = setTimeout(resolve, this.settings.closeGraceMs);
      });
      await Promise.race([settled, graceOver]);
      clearTimeout(grace);
    }
    await this.engine.close();
    await settled;
  }

  private checkBounds(clientId: string, owner: string): void {
    const pending = [...this.waiting, ...this.running.keys()];
    if (pending.length >= this.settings.maxQueued) {
      throw new P2pzError('E_QUEUE_FULL', `At most ${this.settings.maxQueued} edits can wait at once.`);
    }
    const token = pending.filter((job) => job.owner === owner).length;
    if (token >= this.settings.maxQueuedPerToken) {
      throw new P2pzError('E_QUEUE_FULL', `At most ${this.settings.maxQueuedPerToken} edits of one pairing can wait at once.`);
    }
    const own = pending.filter((job) => job.clientId === clientId).length;
    if (own >= this.settings.maxQueuedPerClient) {
      throw new P2pzError('E_QUEUE_FULL', `At most ${this.settings.maxQueuedPerClient} of your edits can wait at once.`);
    }
  }

  private find(clientId: string, jobId: string): Job {
    const job = this.jobs.get(clientId)?.get(jobId);
    if (!job) throw new P2pzError('E_NOT_FOUND', 'No such job.');
    return job;
  }

  /** Starts waiting jobs while the engine has room (`concurrency`). */
  private pump(): void {
    while (this.running.size < this.settings.concurrency && !this.closed) {
      const job = this.waiting.shift();
      if (!job) return;
      this.start(job);
    }
  }

  private start(job: Job): void {
    const image = job.image;
    const abort = new AbortController();
    job.image = undefined;
    job.state = 'running';
    job.position = undefined;
    job.startedAt = this.now();
    job.abort = abort;
    // The engine is called a microtask later, after `running` is set and `started` is sent.
    const settled = Promise.resolve()
      .then(() => this.execute(job, image, abort.signal))
      .catch((error: unknown) => {
        this.log.error('job.internal-error', { jobId: job.jobId, ...describeError(error) });
        if (job.endedAt === undefined) this.end(job, { state: 'error', error: errorBody('E_INTERNAL') });
      })
      .finally(() => {
        this.running.delete(job);
        job.abort = undefined;
        this.pump();
      });
    this.running.set(job, settled);
    this.emit(job, { ...eventBase(job), type: 'started' });
    this.announcePositions();
  }

  /** Runs `job` on the engine and ends it with exactly one terminal event. Never rejects. */
  private async execute(job: Job, input: JobImage | undefined, signal: AbortSignal): Promise<void> {
    let image: Uint8Array;
    // A stored upload's id goes with its bytes (EngineJob.imageId); bytes given directly have none.
    const imageId = input === undefined || input instanceof Uint8Array ? undefined : job.request.imageId;
    try {
      // Cancelled in the same tick as it started: the engine never sees it.
      if (signal.aborted) return this.end(job, { state: 'cancelled' });
      // A stored upload is read now, when the job starts, and never before; not at all when the engine
      // holds it (asked in the tick `run` is called: nothing is awaited in between).
      const held = imageId !== undefined && this.engine.holds?.(imageId) === true;
      image = input === undefined || held ? new Uint8Array() : input instanceof Uint8Array ? input : await input.read();
    } catch (error) {
      return this.end(job, { state: 'error', error: error instanceof P2pzError ? error.toBody() : errorBody('E_INTERNAL') });
    } finally {
      releaseImage(input);
    }
    if (signal.aborted) return this.end(job, { state: 'cancelled' });
    let result: EngineResult;
    try {
      result = await this.engine.run(
        {
          jobId: job.jobId,
          kind: job.kind,
          image,
          ...(imageId === undefined ? {} : { imageId }),
          model: job.request.model,
          ...(job.request.kind === 'caption' ? {} : { edit: job.request.edit }),
          stepPreviews: job.request.stepPreviews,
        },
        (progress) => this.reportProgress(job, progress, signal),
        signal,
      );
    } catch (error) {
      // The engine contract says run() never rejects; if it does, the job fails without details.
      this.log.error('job.engine-rejected', { jobId: job.jobId, ...describeError(error) });
      result = { status: 'failed', error: errorBody('E_INTERNAL') };
    }

    if (signal.aborted || result.status === 'cancelled') return this.end(job, { state: 'cancelled' });
    if (result.status === 'failed') return this.end(job, { state: 'error', error: result.error });

    let refs: ResultRef[];
    try {
      refs = await this.store(result.outputs);
    } catch (error) {
      this.log.error('job.store-failed', { jobId: job.jobId, ...describeError(error) });
      return this.end(job, { state: 'error', error: error instanceof P2pzError ? error.toBody() : errorBody('E_INTERNAL') });
    }
    // A cancel that arrived while the outputs were being stored still wins.
    if (signal.aborted) {
      await this.discard(refs);
      return this.end(job, { state: 'cancelled' });
    }
    const endedAt = this.now();
    const outcome = JobOutcome.safeParse({
      results: refs,
      engine: result.engine,
      ...(result.details === undefined ? {} : { details: result.details }),
      timings: {
        ...result.timings,
        queued: (job.startedAt ?? job.createdAt) - job.createdAt,
        total: endedAt - job.createdAt,
      },
      device: this.device(),
    });
    if (!outcome.success) {
      this.log.error('job.invalid-outcome', { jobId: job.jobId, detail: outcome.error.issues[0]?.message });
      await this.discard(refs);
      return this.end(job, { state: 'error', error: errorBody('E_INTERNAL') });
    }
    this.end(job, { state: 'finished', outcome: outcome.data });
    try {
      this.onFinished?.(job.request, outcome.data, this.engine.health().device);
    } catch (error) {
      this.log.warn('job.finished-listener-failed', describeError(error));
    }
  }

  /** The engine reports its device in health(); a job cannot finish before the worker is ready, so
   *  the `cpu` fallback only covers an engine that does not know. */
  private device(): Provider {
    try {
      return this.engine.health().device?.provider ?? 'cpu';
    } catch {
      return 'cpu';
    }
  }

  /** Stores every output; on any failure removes those already stored and rethrows. */
  private async store(outputs: readonly EngineOutput[]): Promise<ResultRef[]> {
    const refs: ResultRef[] = [];
    try {
      for (const output of outputs) {
        const file = await this.results.put(output.png, {
          mime: 'image/png',
          width: output.width,
          height: output.height,
          role: output.role,
        });
        refs.push({ id: file.id, role: output.role, mime: 'image/png', width: output.width, height: output.height });
      }
    } catch (error) {
      await this.discard(refs);
      throw error;
    }
    return refs;
  }

  private async discard(refs: readonly ResultRef[]): Promise<void> {
    await Promise.all(refs.map((ref) => this.results.delete(ref.id).catch(() => undefined)));
  }

  /** Forwards engine progress while the job runs and is not cancelled. Preview pixels go first, as a
   *  preview frame: always the quick preview's image (role `result`), step previews when the client
   *  asked for them; pixels the frame schema refuses (too large) are dropped, the event still goes. */
  private reportProgress(job: Job, progress: EngineProgress, signal: AbortSignal): void {
    if (signal.aborted || job.state !== 'running') return;
    if (progress.retry !== undefined) {
      this.log.warn('job.retrying', { jobId: job.jobId, ...progress.retry });
      return this.emit(job, { ...eventBase(job), type: 'retrying', ...progress.retry });
    }
    const event = {
      ...eventBase(job),
      type: 'progress' as const,
      stage: progress.stage,
      step: progress.step,
      total: progress.total,
    };
    const frame = progress.frame;
    if (frame !== undefined && (frame.role === 'result' || job.request.stepPreviews)) {
      const { role, width, height, rgba } = frame;
      const header = PreviewFrameHeader.safeParse({ ...event, type: 'preview-frame', role, width, height, format: 'rgba8' });
      if (header.success && rgba.byteLength === width * height * 4) this.emitFrame(job, header.data, rgba);
      else this.log.warn('job.frame-dropped', { jobId: job.jobId, width, height });
    }
    const parsed = ProgressEvent.safeParse(event);
    if (parsed.success) this.emit(job, parsed.data);
  }

  /** Sends a preview frame to the client's frame listeners, encoded once for all of them. */
  private emitFrame(job: Job, header: PreviewFrameHeader, rgba: Uint8Array): void {
    const subscribers = [...(this.listeners.get(job.clientId) ?? [])].filter((s) => s.frame !== undefined);
    if (subscribers.length === 0) return;
    const bytes = encodePreviewFrameParts(header, rgba);
    for (const s of subscribers) {
      try {
        s.frame?.(bytes, header);
      } catch (error) {
        this.log.warn('job.listener-failed', { jobId: job.jobId, ...describeError(error) });
      }
    }
  }

  /** Sets a job's final state and sends its one terminal event. */
  private end(job: Job, ending: Ending): void {
    job.state = ending.state;
    releaseImage(job.image);
    job.image = undefined;
    job.position = undefined;
    job.outcome = ending.state === 'finished' ? ending.outcome : undefined;
    job.error = ending.state === 'error' ? ending.error : undefined;
    job.endedAt = this.now();
    this.ended.push(job);
    this.log.info('job.ended', {
      jobId: job.jobId,
      kind: job.kind,
      state: ending.state,
      error: job.error?.code,
      detail: job.error?.message,
      engine: job.outcome?.engine,
      totalMs: job.endedAt - job.createdAt,
    });
    const base = eventBase(job);
    switch (ending.state) {
      case 'finished':
        return this.emit(job, { ...base, type: 'finished', outcome: ending.outcome });
      case 'error':
        return this.emit(job, { ...base, type: 'error', error: ending.error });
      case 'cancelled':
        return this.emit(job, { ...base, type: 'cancelled' });
    }
  }

  /** Sends a `queued` event to every waiting job whose position changed. */
  private announcePositions(): void {
    let position = 0;
    for (const job of this.waiting) {
      position += 1;
      if (job.position === position) continue;
      job.position = position;
      this.emit(job, { ...eventBase(job), type: 'queued', position });
    }
  }

  private forgetExpired(): void {
    const cutoff = this.now() - this.settings.keepFinishedMs;
    const expired = (job: Job | undefined): boolean => job !== undefined && (job.endedAt ?? Infinity) <= cutoff;
    while (this.ended.length > this.settings.maxEnded || expired(this.ended[0])) {
      const job = this.ended.shift();
      if (!job) break;
      const clientJobs = this.jobs.get(job.clientId);
      if (clientJobs?.get(job.jobId) === job) clientJobs.delete(job.jobId);
      if (clientJobs?.size === 0) this.jobs.delete(job.clientId);
    }
  }

  private emit(job: Job, event: JobEvent): void {
    const set = this.listeners.get(job.clientId);
    if (!set) return;
    for (const subscriber of [...set]) {
      try {
        subscriber.event(event);
      } catch (error) {
        // A failing listener (e.g. a socket that just closed) must not stop the queue or other listeners.
        this.log.warn('job.listener-failed', { jobId: job.jobId, ...describeError(error) });
      }
    }
  }
}

function eventBase(job: Job): { v: typeof PROTOCOL_VERSION; jobId: string; kind: JobKind } {
  return { v: PROTOCOL_VERSION, jobId: job.jobId, kind: job.kind };
}

function snapshot(job: Job): JobState {
  return {
    jobId: job.jobId,
    kind: job.kind,
    state: job.state,
    ...(job.state === 'queued' && job.position !== undefined ? { position: job.position } : {}),
    ...(job.outcome ? { outcome: job.outcome } : {}),
    ...(job.error ? { error: job.error } : {}),
    createdAt: job.createdAt,
  };
}

function errorBody(code: ErrorCode): ErrorBody {
  return new P2pzError(code).toBody();
}

/** JSON with object keys sorted at every level, so equal requests give equal strings. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}
