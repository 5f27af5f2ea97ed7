// A GPU worker of a team (`p2pz worker --queue redis://… --endpoint https://…`, docs/TEAM.md). It
// takes jobs from the team's BullMQ queue one at a time and runs each on its own JobEngine: the same
// WorkerSupervisor and onnxruntime worker process as the local daemon, so a job runs exactly as it
// would on one machine. For each job it fetches the input image from the endpoint, reports progress
// through BullMQ, puts the outputs on the endpoint, then completes the job with their description.
// HTTP calls carry the worker's own token, a kind that may use only the `/v1/team/` routes.
//
// Failures: an error that the same input would raise again (a bad image, a missing model) fails the
// job at once (BullMQ's UnrecoverableError); an engine fault (a crashed worker process, an internal
// error) throws a plain error, so BullMQ runs the job again, up to TEAM_DEFAULTS.attempts times.
// A cancel from the endpoint arrives on a Redis channel and aborts the run at its next step.
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import {
  P2pzError,
  PROTOCOL_VERSION,
  TeamJobData,
  type ErrorBody,
  type ErrorCode,
  type TeamFailure,
  type TeamJobResult,
  type TeamProgress,
} from '../../shared/protocol/index.js';
import type { EngineOutput, JobEngine } from '../jobs/engine.js';
import { describeError, silentLogger, type Logger } from '../log.js';
import type { RedisConnection } from './redis-url.js';
import { TEAM_DEFAULTS, type TeamSettings } from './settings.js';

/** Engine faults worth another attempt (on this worker or another); every other code is final. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set(['E_WORKER_CRASHED', 'E_INTERNAL', 'E_ENGINE_UNAVAILABLE', 'E_TIMEOUT']);

export interface TeamWorkerOptions {
  readonly connection: RedisConnection;
  /** The endpoint's base URL, e.g. `https://p2pz.studio.example` (no trailing slash needed). */
  readonly endpoint: string;
  /** A worker token (`p2pz tokens create NAME --worker` on the endpoint). */
  readonly token: string;
  readonly engine: JobEngine;
  readonly settings?: Partial<TeamSettings>;
  readonly log?: Logger;
  /** fetch, replaceable in tests of the transport's failures. */
  readonly fetch?: typeof fetch;
}

export interface RunningTeamWorker {
  /** Resolves once the BullMQ worker is connected and waiting for jobs. */
  readonly ready: Promise<void>;
  /** Finishes (or, with `force`, abandons) the running job, then disconnects; closes the engine. */
  close(force?: boolean): Promise<void>;
}

export function startTeamWorker(options: TeamWorkerOptions): RunningTeamWorker {
  const settings: TeamSettings = { ...TEAM_DEFAULTS, ...options.settings };
  const log = options.log ?? silentLogger;
  const http = options.fetch ?? fetch;
  const base = options.endpoint.replace(/\/+$/, '');
  const auth = { authorization: `Bearer ${options.token}` };

  const call = async (path: string, init: RequestInit = {}): Promise<Response> => {
    let res: Response;
    try {
      res = await http(`${base}${path}`, { ...init, headers: { ...auth, ...init.headers } });
    } catch (err) {
      throw new P2pzError('E_ENGINE_UNAVAILABLE', `The team endpoint could not be reached (${describeError(err).detail}).`);
    }
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      // 404: the endpoint no longer runs this job (cancelled, or the endpoint restarted): nothing to do.
      if (res.status === 404) throw new UnrecoverableError(JSON.stringify(cancelledReason()));
      throw new P2pzError(res.status === 401 ? 'E_UNAUTHORIZED' : 'E_ENGINE_UNAVAILABLE', `The team endpoint answered ${res.status} ${text.slice(0, 200)}`);
    }
    return res;
  };

  const runJob = async (job: Job, _token: string | undefined, signal: AbortSignal | undefined): Promise<TeamJobResult> => {
    const data = TeamJobData.safeParse(job.data);
    if (!data.success) throw new UnrecoverableError(JSON.stringify(failure(new P2pzError('E_PROTOCOL_VERSION', 'A job on the team queue has a form this worker does not know.').toBody())));
    const id = encodeURIComponent(job.id ?? '');
    const abort = signal ?? new AbortController().signal;
    try {
      const inline = data.data.inline;
      const image = inline === undefined ? new Uint8Array(await (await call(`/v1/team/jobs/${id}/input`)).arrayBuffer()) : Buffer.from(inline.input, 'base64');
      let device = options.engine.health().device ?? undefined;
      const result = await options.engine.run(
        { jobId: job.id ?? 'team-job', kind: data.data.kind, image, model: data.data.model, ...(data.data.edit === undefined ? {} : { edit: data.data.edit }), stepPreviews: data.data.stepPreviews },
        (p) => {
          device ??= options.engine.health().device ?? undefined;
          const progress: TeamProgress = {
            v: PROTOCOL_VERSION,
            stage: p.stage,
            step: p.step,
            total: p.total,
            // Step frames only: the quick preview's frame is too large for Redis (TeamProgress).
            ...(p.frame?.role === 'step' ? { frame: { width: p.frame.width, height: p.frame.height, rgba: Buffer.from(p.frame.rgba).toString('base64') } } : {}),
            ...(device === undefined ? {} : { device }),
          };
          job.updateProgress(progress).catch((err: unknown) => log.debug('team.progress-failed', describeError(err)));
        },
        abort,
      );
      if (result.status === 'cancelled' || abort.aborted) throw new UnrecoverableError(JSON.stringify(cancelledReason()));
      if (result.status === 'failed') {
        const reason = JSON.stringify(failure(result.error));
        throw RETRYABLE.has(result.error.code) ? new Error(reason) : new UnrecoverableError(reason);
      }
      if (inline === undefined) for (const output of result.outputs) await putOutput(id, output);
      device = options.engine.health().device ?? device;
      return {
        v: PROTOCOL_VERSION,
        engine: result.engine,
        timings: result.timings,
        outputs: result.outputs.map(({ role, width, height, png }) => ({ role, width, height, ...(inline === undefined ? {} : { png: Buffer.from(png).toString('base64') }) })),
        ...(result.details === undefined ? {} : { details: result.details }),
        ...(device === undefined ? {} : { device }),
      };
    } catch (err) {
      if (err instanceof UnrecoverableError || (err instanceof Error && isTeamReason(err.message))) throw err;
      const body = err instanceof P2pzError ? err.toBody() : new P2pzError('E_INTERNAL').toBody();
      log.warn('team.job-error', { jobId: job.id, code: body.code });
      const reason = JSON.stringify(failure(body));
      throw RETRYABLE.has(body.code) ? new Error(reason) : new UnrecoverableError(reason);
    }
  };

  const putOutput = async (id: string, output: EngineOutput): Promise<void> => {
    await call(`/v1/team/jobs/${id}/outputs/${output.role}`, {
      method: 'PUT',
      headers: { 'content-type': 'image/png' },
      body: Buffer.from(output.png),
    });
  };

  const worker = new Worker(settings.queueName, runJob, {
    connection: options.connection,
    concurrency: 1,
    lockDuration: settings.lockDurationMs,
    stalledInterval: settings.stalledIntervalMs,
    maxStalledCount: settings.maxStalledCount,
    autorun: true,
  });
  worker.on('error', (err) => log.warn('team.worker-error', describeError(err)));
  worker.on('failed', (job, err) => log.info('team.job-failed', { jobId: job?.id, reason: err.message.slice(0, 200) }));
  worker.on('completed', (job) => log.info('team.job-completed', { jobId: job.id }));

  const subscriber = new Redis({ ...options.connection, lazyConnect: true });
  subscriber.on('error', (err) => log.warn('team.subscriber-error', describeError(err)));
  subscriber.on('message', (_channel: string, jobId: string) => {
    if (worker.cancelJob(jobId, 'cancelled by the endpoint')) log.info('team.job-cancel', { jobId });
  });
  const ready = Promise.all([worker.waitUntilReady(), subscriber.connect().then(() => subscriber.subscribe(settings.cancelChannel))]).then(() => undefined);

  let closing: Promise<void> | undefined;
  return {
    ready,
    close: (force = false) => {
      closing ??= (async () => {
        await Promise.allSettled([worker.close(force), subscriber.quit()]);
        await options.engine.close();
      })();
      return closing;
    },
  };
}

function failure(error: ErrorBody): TeamFailure {
  return { v: PROTOCOL_VERSION, status: 'failed', error };
}

function cancelledReason(): TeamFailure {
  return { v: PROTOCOL_VERSION, status: 'cancelled' };
}

function isTeamReason(message: string): boolean {
  return message.startsWith(`{"v":${PROTOCOL_VERSION},"status":`);
}
