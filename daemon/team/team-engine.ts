// The team endpoint's JobEngine (`p2pz serve --queue redis://…`, docs/TEAM.md): instead of a local
// worker process, every job the JobQueue starts goes onto a BullMQ queue in Redis, where the GPU
// workers (`p2pz worker`, team-worker.ts) take it. The JobQueue above stays as it is (admission,
// per-token bounds, one event stream per client, exactly one terminal event, result storage); only
// its concurrency is raised, so that BullMQ orders the jobs (previews first) and hands them out.
//
// What crosses where: job data, progress (with small step preview frames) and the result's description
// travel through Redis; the input image and the output PNGs travel over the endpoint's HTTP routes
// (server/routes/team.ts) under a worker token, held here only while the job runs. Outputs a worker
// puts are kept per role and overwritten by a later attempt, and are handed to the JobQueue (which
// stores them) only when BullMQ reports the job completed: a job retried after a crash is stored once.
//
// BullMQ behaviour this relies on (checked against bullmq 6.7 on redis-server 7.0 in
// test/daemon/team/): QueueEvents emits `active` at every start of a job (so a second `active` is a
// retry), `delayed` after a failure that will be retried, `failed` only once no attempt is left,
// `stalled` when a worker's lock expired; `Job.remove()` refuses a job a worker holds the lock of.
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import {
  P2pzError,
  PROTOCOL_VERSION,
  TeamFailure,
  TeamJobResult,
  TeamProgress,
  type Device,
  type ErrorBody,
  type TeamJobData,
} from '../../shared/protocol/index.js';
import type { EngineHealth, EngineJob, EngineOutput, EngineProgress, EngineResult, JobEngine } from '../jobs/engine.js';
import { newId } from '../jobs/ids.js';
import { describeError, silentLogger, type Logger } from '../log.js';
import type { RedisConnection } from './redis-url.js';
import { TEAM_DEFAULTS, type TeamSettings } from './settings.js';

/** What the worker routes may do with a running team job. */
export interface TeamExchange {
  /** The input image of a running job; undefined when no such job runs. */
  input(teamJobId: string): Uint8Array | undefined;
  /** Keeps one output of a running job (a later attempt's replaces it); false when no such job runs. */
  putOutput(teamJobId: string, output: EngineOutput): boolean;
}

interface ActiveJob {
  readonly image: Uint8Array;
  readonly outputs: Map<EngineOutput['role'], EngineOutput>;
  readonly onProgress: (p: EngineProgress) => void;
  /** Starts seen: the second and later are retries. */
  starts: number;
  cancelled: boolean;
  settle(result: EngineResult): void;
}

export type TeamEngineOptions = Partial<TeamSettings> & {
  readonly log?: Logger;
  /** Bulk work without an endpoint (`p2pz distill pairs --queue`): each job carries its input PNG
   *  and gets its outputs back through Redis instead of the endpoint's HTTP routes. */
  readonly inline?: boolean;
};

export class TeamEngine implements JobEngine, TeamExchange {
  private readonly active = new Map<string, ActiveJob>();
  private workers = 0;
  private device: Device | null = null;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  private constructor(
    private readonly queue: Queue,
    private readonly events: QueueEvents,
    private readonly publisher: Redis,
    private readonly settings: TeamSettings,
    private readonly log: Logger,
    private readonly inline: boolean,
  ) {
    events.on('active', ({ jobId }) => this.onStart(jobId));
    events.on('progress', ({ jobId, data }) => this.onProgress(jobId, data));
    events.on('completed', ({ jobId, returnvalue }) => this.onCompleted(jobId, returnvalue));
    events.on('failed', ({ jobId, failedReason }) => this.onFailed(jobId, failedReason));
    events.on('removed', ({ jobId }) => this.active.get(jobId)?.settle({ status: 'cancelled' }));
    events.on('error', (err) => log.warn('team.events-error', describeError(err)));
    queue.on('error', (err) => log.warn('team.queue-error', describeError(err)));
    publisher.on('error', (err) => log.warn('team.publisher-error', describeError(err)));
    this.timer = setInterval(() => void this.countWorkers(), settings.workerCountIntervalMs);
    this.timer.unref();
  }

  static async open(connection: RedisConnection, options: TeamEngineOptions = {}): Promise<TeamEngine> {
    const { log = silentLogger, inline = false, ...overrides } = options;
    const settings: TeamSettings = { ...TEAM_DEFAULTS, ...overrides };
    const queue = new Queue(settings.queueName, { connection });
    const events = new QueueEvents(settings.queueName, { connection });
    const publisher = new Redis({ ...connection, lazyConnect: true });
    try {
      await Promise.all([queue.waitUntilReady(), events.waitUntilReady(), publisher.connect()]);
    } catch (err) {
      await Promise.allSettled([queue.close(), events.close(), publisher.quit()]);
      throw new P2pzError('E_ENGINE_UNAVAILABLE', `The job queue's Redis did not answer (${describeError(err).detail}).`, 'Start Redis, check the --queue URL, and start p2pz again.');
    }
    const engine = new TeamEngine(queue, events, publisher, settings, log, inline);
    await engine.countWorkers();
    return engine;
  }

  run(job: EngineJob, onProgress: (p: EngineProgress) => void, signal: AbortSignal): Promise<EngineResult> {
    const id = newId();
    return new Promise<EngineResult>((resolve) => {
      let settled = false;
      const entry: ActiveJob = {
        image: job.image,
        outputs: new Map(),
        onProgress,
        starts: 0,
        cancelled: false,
        settle: (result) => {
          if (settled) return;
          settled = true;
          this.active.delete(id);
          signal.removeEventListener('abort', onAbort);
          resolve(entry.cancelled && result.status !== 'cancelled' ? { status: 'cancelled' } : result);
        },
      };
      const onAbort = (): void => void this.cancel(id, entry);
      this.active.set(id, entry);
      if (signal.aborted) return entry.settle({ status: 'cancelled' });
      signal.addEventListener('abort', onAbort, { once: true });
      const data: TeamJobData = {
        v: PROTOCOL_VERSION,
        kind: job.kind,
        ...(job.model === undefined ? {} : { model: job.model }),
        ...(job.edit === undefined ? {} : { edit: job.edit }),
        stepPreviews: job.stepPreviews,
        ...(this.inline ? { inline: { input: Buffer.from(job.image).toString('base64') } } : {}),
      };
      this.queue
        .add(job.kind, data, {
          jobId: id,
          priority: job.kind === 'render' ? this.settings.renderPriority : job.kind === 'preview' ? this.settings.previewPriority : this.settings.captionPriority,
          attempts: this.settings.attempts,
          backoff: { type: 'fixed', delay: this.settings.retryDelayMs },
          removeOnComplete: true,
          removeOnFail: true,
        })
        .then(
          () => this.log.info('team.job-queued', { teamJobId: id, jobId: job.jobId, kind: job.kind }),
          (err: unknown) => {
            this.log.error('team.add-failed', describeError(err));
            entry.settle({ status: 'failed', error: new P2pzError('E_ENGINE_UNAVAILABLE', 'The job queue could not be reached.', 'Check that Redis is running, then try again.').toBody() });
          },
        );
    });
  }

  input(teamJobId: string): Uint8Array | undefined {
    const entry = this.active.get(teamJobId);
    return entry === undefined || entry.cancelled ? undefined : entry.image;
  }

  putOutput(teamJobId: string, output: EngineOutput): boolean {
    const entry = this.active.get(teamJobId);
    if (entry === undefined || entry.cancelled) return false;
    entry.outputs.set(output.role, output);
    return true;
  }

  health(): EngineHealth {
    const connected = this.publisher.status === 'ready';
    return {
      state: this.closed ? 'stopped' : connected ? (this.active.size > 0 ? 'busy' : 'ready') : 'restarting',
      restarts: 0,
      recentCrashes: 0,
      device: this.device,
      team: { workers: this.workers },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const entry of this.active.values()) entry.settle({ status: 'cancelled' });
    await Promise.allSettled([this.events.close(), this.queue.close(), this.publisher.quit()]);
  }

  /** A queued job is removed from the queue; a running one is asked to stop through the cancel channel,
   *  and is reported cancelled when its worker confirms or the grace period ends. */
  private async cancel(id: string, entry: ActiveJob): Promise<void> {
    entry.cancelled = true;
    try {
      const job = await this.queue.getJob(id);
      if (job === undefined) return entry.settle({ status: 'cancelled' });
      const state = await job.getState();
      if (state === 'waiting' || state === 'prioritized' || state === 'delayed' || state === 'waiting-children') {
        await job.remove();
        return entry.settle({ status: 'cancelled' });
      }
    } catch (err) {
      // Taken by a worker between the two calls (remove refuses a locked job): stop it instead.
      this.log.debug('team.remove-refused', describeError(err));
    }
    await this.publisher.publish(this.settings.cancelChannel, id).catch((err: unknown) => this.log.warn('team.cancel-publish-failed', describeError(err)));
    setTimeout(() => entry.settle({ status: 'cancelled' }), this.settings.cancelGraceMs).unref();
  }

  private onStart(id: string): void {
    const entry = this.active.get(id);
    if (entry === undefined) return;
    entry.starts += 1;
    if (entry.starts < 2 || entry.cancelled) return;
    entry.outputs.clear();
    entry.onProgress({ stage: 'load', step: 0, total: 1, retry: { attempt: entry.starts, attempts: this.settings.attempts + this.settings.maxStalledCount } });
  }

  private onProgress(id: string, data: unknown): void {
    const entry = this.active.get(id);
    const parsed = TeamProgress.safeParse(data);
    if (entry === undefined || entry.cancelled || !parsed.success) return;
    const { stage, step, total, frame, device } = parsed.data;
    if (device !== undefined) this.device = device;
    const rgba = frame === undefined ? undefined : new Uint8Array(Buffer.from(frame.rgba, 'base64'));
    // A frame whose pixels do not match its size is dropped; the progress still counts.
    const pixels = frame === undefined || rgba?.byteLength !== frame.width * frame.height * 4 ? undefined : { role: 'step' as const, width: frame.width, height: frame.height, rgba };
    entry.onProgress(pixels === undefined ? { stage, step, total } : { stage, step, total, frame: pixels });
  }

  private onCompleted(id: string, value: unknown): void {
    const entry = this.active.get(id);
    if (entry === undefined) return;
    const parsed = TeamJobResult.safeParse(typeof value === 'string' ? safeJson(value) : value);
    if (!parsed.success) return entry.settle(failed('E_INTERNAL', 'A GPU worker returned a result this endpoint cannot read.'));
    const outputs: EngineOutput[] = [];
    for (const want of parsed.data.outputs) {
      const output = want.png === undefined ? entry.outputs.get(want.role) : { role: want.role, width: want.width, height: want.height, png: Buffer.from(want.png, 'base64') };
      if (output === undefined || output.width !== want.width || output.height !== want.height) {
        return entry.settle(failed('E_INTERNAL', `A GPU worker finished without delivering its ${want.role}.`));
      }
      outputs.push(output);
    }
    if (parsed.data.device !== undefined) this.device = parsed.data.device;
    const { engine, timings, details } = parsed.data;
    entry.settle({ status: 'done', outputs, engine, timings, ...(details === undefined ? {} : { details }) });
  }

  private onFailed(id: string, reason: string): void {
    const entry = this.active.get(id);
    if (entry === undefined) return;
    const parsed = TeamFailure.safeParse(safeJson(reason));
    if (parsed.success) {
      return entry.settle(parsed.data.status === 'cancelled' ? { status: 'cancelled' } : { status: 'failed', error: parsed.data.error });
    }
    // BullMQ's own reasons (a job that stalled too often): its workers kept dying.
    this.log.warn('team.job-failed', { teamJobId: id, reason: reason.slice(0, 200) });
    entry.settle(failed('E_WORKER_CRASHED', 'The GPU workers running this edit stopped unexpectedly.'));
  }

  private async countWorkers(): Promise<void> {
    try {
      this.workers = await this.queue.getWorkersCount();
    } catch (err) {
      this.log.debug('team.count-workers-failed', describeError(err));
    }
  }
}

function failed(code: 'E_INTERNAL' | 'E_WORKER_CRASHED', detail: string): EngineResult {
  const error: ErrorBody = new P2pzError(code, detail).toBody();
  return { status: 'failed', error };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
