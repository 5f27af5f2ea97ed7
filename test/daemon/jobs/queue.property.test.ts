// The job queue against a small model of itself, over random sequences of submits (two clients, both
// kinds), cancels and engine outcomes: admission matches the bounds, the engine receives jobs in the
// model's order (previews first, FIFO within a kind) and never two at once, every event is a valid
// ServerEvent, and after close() every admitted job has exactly one terminal event of the right type.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { JobQueue } from '../../../daemon/jobs/queue.js';
import { ResultStore } from '../../../daemon/jobs/results.js';
import { JobRequest, P2pzError, ServerEvent } from '../../../shared/protocol/index.js';
import type { JobEvent, JobKind } from '../../../shared/protocol/index.js';
import { ScriptedEngine } from './scripted-engine.js';

const CLIENTS = ['client-one', 'client-two'] as const;
const BOUNDS = { maxQueued: 5, maxQueuedPerClient: 3 };
const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

type Op =
  | { readonly op: 'submit'; readonly client: 0 | 1; readonly kind: JobKind }
  | { readonly op: 'cancel'; readonly pick: number }
  | { readonly op: 'end-run'; readonly as: 'done' | 'failed' | 'cancelled' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('submit' as const), client: fc.constantFrom(0 as const, 1 as const), kind: fc.constantFrom<JobKind>('preview', 'render') }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('cancel' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('end-run' as const), as: fc.constantFrom('done' as const, 'failed' as const, 'cancelled' as const) }) },
);

interface ModelJob {
  readonly client: string;
  readonly jobId: string;
  readonly kind: JobKind;
  /** The terminal event this job must end with. */
  expected: 'finished' | 'error' | 'cancelled' | undefined;
}

let dir: string;
let store: ResultStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-queue-model-'));
  store = await ResultStore.open(dir, { sweepIntervalMs: 0 });
});

afterAll(async () => {
  store.close();
  await rm(dir, { recursive: true, force: true });
});

it('matches the model over random submit / cancel / engine-outcome sequences', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
      const engine = new ScriptedEngine();
      const queue = new JobQueue(engine, store, BOUNDS);
      const seen: { client: string; event: JobEvent }[] = [];
      for (const client of CLIENTS) queue.subscribe(client, (event) => seen.push({ client, event }));

      const jobs: ModelJob[] = [];
      const waiting: Record<JobKind, ModelJob[]> = { caption: [], preview: [], render: [] };
      let running: ModelJob | undefined;
      let runsSeen = 0;

      /** Waits until the queue rests: the engine runs exactly the job the queue counts as running. */
      const settle = async (): Promise<void> => {
        await vi.waitFor(
          () => {
            if (engine.active !== queue.counts().running) throw new Error('moving');
          },
          { timeout: 5000, interval: 1 },
        );
        for (; runsSeen < engine.runs.length; runsSeen += 1) {
          const next = waiting.preview.shift() ?? waiting.render.shift();
          expect(engine.runs[runsSeen]?.job.jobId).toBe(next?.jobId);
          running = next;
        }
      };

      for (const [i, step] of ops.entries()) {
        if (step.op === 'submit') {
          const client = CLIENTS[step.client];
          const jobId = `job-${String(i).padStart(4, '0')}`;
          const pendingJobs = [...waiting.preview, ...waiting.render, ...(running ? [running] : [])];
          const full =
            pendingJobs.length >= BOUNDS.maxQueued ||
            pendingJobs.filter((j) => j.client === client).length >= BOUNDS.maxQueuedPerClient;
          const request = JobRequest.parse({ jobId, kind: step.kind, imageId: 'upload-0001', edit: { source: 'cat', target: 'dog' } });
          let admitted = true;
          try {
            queue.submit(client, request, PNG);
          } catch (error) {
            expect(error instanceof P2pzError && error.code).toBe('E_QUEUE_FULL');
            admitted = false;
          }
          expect(admitted).toBe(!full);
          if (admitted) {
            const job: ModelJob = { client, jobId, kind: step.kind, expected: undefined };
            jobs.push(job);
            waiting[step.kind].push(job);
          }
        } else if (step.op === 'cancel') {
          const job = jobs[step.pick % Math.max(1, jobs.length)];
          if (!job) continue;
          const state = queue.cancel(job.client, job.jobId);
          const lane = waiting[job.kind];
          if (lane.includes(job)) {
            lane.splice(lane.indexOf(job), 1);
            job.expected = 'cancelled';
            expect(state.state).toBe('cancelled');
          } else if (running === job) {
            job.expected = 'cancelled';
            running = undefined;
            expect(state.state).toBe('cancelled');
          } else {
            expect(state.state).toBe(job.expected);
          }
        } else if (running) {
          const run = engine.runOf(running.jobId);
          if (step.as === 'done') {
            run.resolve({ status: 'done', outputs: [{ role: 'image', png: PNG, width: 8, height: 8 }], engine: 'gan', timings: {} });
          } else if (step.as === 'failed') {
            run.resolve({ status: 'failed', error: { code: 'E_DEVICE_OOM', message: 'out of memory' } });
          } else {
            run.resolve({ status: 'cancelled' });
          }
          running.expected = step.as === 'done' ? 'finished' : step.as === 'failed' ? 'error' : 'cancelled';
          running = undefined;
        }
        await settle();
        expect(engine.maxActive).toBeLessThanOrEqual(1);
      }

      await queue.close();
      for (const job of [...waiting.preview, ...waiting.render, ...(running ? [running] : [])]) job.expected = 'cancelled';
      for (const { event } of seen) expect(ServerEvent.safeParse(event).error).toBeUndefined();
      for (const job of jobs) {
        const events = seen.filter((s) => s.client === job.client && s.event.jobId === job.jobId).map((s) => s.event.type);
        const terminals = events.filter((t) => t === 'finished' || t === 'error' || t === 'cancelled');
        expect(terminals).toEqual([job.expected]);
        expect(events.at(-1)).toBe(job.expected);
        expect(events[0]).toBe('queued');
      }
    }),
    { numRuns: 60 },
  );
});
