// The job queue with a scripted engine and a real ResultStore in a temporary folder: order, one job at
// a time, bounds, idempotent resubmit, cancel (queued and running), failures, forgetting, close().
// Every event any test sees is checked against the protocol's ServerEvent schema, and every job gets at
// most one terminal event with nothing after it.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JobQueue, QUEUE_DEFAULTS } from '../../../daemon/jobs/queue.js';
import type { QueueOptions } from '../../../daemon/jobs/queue.js';
import { ResultStore } from '../../../daemon/jobs/results.js';
import type { EngineOutput, EngineResult } from '../../../daemon/jobs/engine.js';
import { decodePreviewFrame, JobRequest, JobState, P2pzError, PROTOCOL_VERSION, ServerEvent } from '../../../shared/protocol/index.js';
import type { JobEvent, JobKind, JobRequestInput, PreviewFrame } from '../../../shared/protocol/index.js';
import { createLogger } from '../../../daemon/log.js';
import { ScriptedEngine } from './scripted-engine.js';

const ALICE = 'client-alice';
const BOB = 'client-bob';
const IMAGE = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 7, 7, 7]);
const IMAGE_PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);
const MASK_PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 9, 9]);
const OUTPUTS: EngineOutput[] = [
  { role: 'image', png: IMAGE_PNG, width: 640, height: 480 },
  { role: 'mask', png: MASK_PNG, width: 640, height: 480 },
];
const TERMINAL = new Set(['finished', 'cancelled', 'error']);

interface Seen {
  readonly clientId: string;
  readonly event: JobEvent;
}

let dir: string;
let store: ResultStore;
let engine: ScriptedEngine;
let queue: JobQueue;
let clock: number;
let seen: Seen[];
let frames: { clientId: string; frame: PreviewFrame }[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-queue-'));
  store = await ResultStore.open(join(dir, 'results'), { sweepIntervalMs: 0, now: () => clock });
  engine = new ScriptedEngine();
  clock = 1_000_000;
  seen = [];
  frames = [];
  queue = makeQueue();
  listen(ALICE);
  listen(BOB);
});

afterEach(async () => {
  vi.useRealTimers();
  engine.cancelOnAbort = true;
  await queue.close();
  store.close();
  await rm(dir, { recursive: true, force: true });
  for (const { event } of seen) expect(ServerEvent.safeParse(event).error).toBeUndefined();
  const ended = new Set<string>();
  for (const { clientId, event } of seen) {
    const key = `${clientId}/${event.jobId}`;
    expect(ended.has(key), `event after the terminal event of ${key}: ${event.type}`).toBe(false);
    if (TERMINAL.has(event.type)) ended.add(key);
  }
});

function makeQueue(options: QueueOptions = {}): JobQueue {
  return new JobQueue(engine, store, { now: () => clock, ...options });
}

function listen(clientId: string, target: JobQueue = queue): () => void {
  return target.subscribe(
    clientId,
    (event) => seen.push({ clientId, event }),
    (parts) => frames.push({ clientId, frame: decodePreviewFrame(Uint8Array.from([...parts[0], ...parts[1]])) }),
  );
}

/** Opaque RGBA pixels, w×h, with a pattern. */
function rgba(w: number, h: number): Uint8Array {
  return Uint8Array.from({ length: w * h * 4 }, (_, i) => (i % 4 === 3 ? 255 : (i * 29) & 255));
}

function request(kind: JobKind, jobId?: string, extra: Partial<JobRequestInput> = {}): JobRequest {
  return JobRequest.parse({ kind, imageId: 'upload-0001', edit: { source: 'cat', target: 'dog' }, jobId, ...extra });
}

function eventsOf(jobId: string, clientId = ALICE): JobEvent[] {
  return seen.filter((s) => s.clientId === clientId && s.event.jobId === jobId).map((s) => s.event);
}

function typesOf(jobId: string, clientId = ALICE): string[] {
  return eventsOf(jobId, clientId).map((e) => e.type);
}

function done(timings: Record<string, number> = { inversion: 12, edit: 30 }, outputs = OUTPUTS): EngineResult {
  return { status: 'done', outputs, engine: 'diffusion', timings };
}

async function until(check: () => boolean): Promise<void> {
  await vi.waitFor(
    () => {
      if (!check()) throw new Error('not yet');
    },
    { timeout: 5000, interval: 2 },
  );
}

async function untilTerminal(jobId: string, clientId = ALICE): Promise<JobEvent> {
  await until(() => eventsOf(jobId, clientId).some((e) => TERMINAL.has(e.type)));
  const event = eventsOf(jobId, clientId).find((e) => TERMINAL.has(e.type));
  if (!event) throw new Error('unreachable');
  return event;
}

/** Waits until the engine has been called for job `jobId`. */
async function untilRunning(jobId: string): Promise<void> {
  await until(() => engine.runs.some((r) => r.job.jobId === jobId && !r.settled));
}

function codeOf(fn: () => unknown): { code: string; status: number } {
  try {
    fn();
  } catch (error) {
    if (error instanceof P2pzError) return { code: error.code, status: error.status };
    throw error;
  }
  throw new Error('expected a P2pzError');
}

describe('order and one job at a time', () => {
  it('runs a preview ahead of queued renders, FIFO within a kind, never two at once', async () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    queue.submit(ALICE, request('render', 'render-B'), IMAGE);
    queue.submit(BOB, request('render', 'render-C'), IMAGE);
    queue.submit(ALICE, request('preview', 'preview-1'), IMAGE);
    queue.submit(BOB, request('preview', 'preview-2'), IMAGE);

    expect(queue.get(ALICE, 'render-B').position).toBe(3);
    expect(queue.get(BOB, 'render-C').position).toBe(4);
    expect(queue.get(ALICE, 'preview-1').position).toBe(1);
    expect(queue.get(BOB, 'preview-2').position).toBe(2);
    expect(queue.counts()).toEqual({ running: 1, queued: 4 });

    const order: string[] = [];
    for (const expected of ['render-A', 'preview-1', 'preview-2', 'render-B', 'render-C']) {
      await untilRunning(expected);
      order.push(expected);
      expect(engine.active).toBe(1);
      engine.runOf(expected).resolve(done());
    }
    expect(order).toEqual(['render-A', 'preview-1', 'preview-2', 'render-B', 'render-C']);
    await untilTerminal('render-C', BOB);
    expect(engine.runs.map((r) => r.job.jobId)).toEqual(order);
    expect(engine.maxActive).toBe(1);
    expect(queue.counts()).toEqual({ running: 0, queued: 0 });
  });

  it('runs a caption ahead of queued previews and renders, without an edit; it finishes with no results and its caption', async () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    queue.submit(ALICE, request('preview', 'preview-1'), IMAGE);
    queue.submit(ALICE, JobRequest.parse({ kind: 'caption', imageId: 'upload-0001', jobId: 'caption-1' }), IMAGE);
    expect(queue.get(ALICE, 'caption-1').position).toBe(1);
    expect(queue.get(ALICE, 'preview-1').position).toBe(2);
    await untilRunning('render-A');
    engine.runOf('render-A').resolve(done());
    await untilRunning('caption-1');
    const job = engine.runOf('caption-1').job;
    expect(job.kind).toBe('caption');
    expect(job.edit).toBeUndefined();
    const details = { caption: 'a cat on a sofa', captionOrigin: 'captioner' as const, captioner: 'blip', notes: [] };
    engine.runOf('caption-1').resolve({ status: 'done', outputs: [], engine: 'captioner', timings: { caption: 3 }, details });
    const end = await untilTerminal('caption-1');
    expect(end.type === 'finished' && end.outcome).toMatchObject({ results: [], engine: 'captioner', details });
    await untilRunning('preview-1');
    engine.runOf('preview-1').resolve(done());
    await untilTerminal('preview-1');
  });

  it('refuses an outcome whose images do not fit its engine: a caption with images, a render without', async () => {
    queue.submit(ALICE, JobRequest.parse({ kind: 'caption', imageId: 'upload-0001', jobId: 'caption-2' }), IMAGE);
    queue.submit(ALICE, request('render', 'render-Z'), IMAGE);
    await untilRunning('caption-2');
    engine.runOf('caption-2').resolve({ status: 'done', outputs: OUTPUTS, engine: 'captioner', timings: {} });
    expect(await untilTerminal('caption-2')).toMatchObject({ type: 'error', error: { code: 'E_INTERNAL' } });
    await untilRunning('render-Z');
    engine.runOf('render-Z').resolve({ status: 'done', outputs: [], engine: 'diffusion', timings: {} });
    expect(await untilTerminal('render-Z')).toMatchObject({ type: 'error', error: { code: 'E_INTERNAL' } });
  });

  it('runs up to `concurrency` jobs at once (a team endpoint), previews still first, bounds counting the running', async () => {
    await queue.close();
    queue = makeQueue({ concurrency: 2, maxQueued: 4 });
    listen(ALICE);
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    queue.submit(ALICE, request('render', 'render-B'), IMAGE);
    queue.submit(ALICE, request('render', 'render-C'), IMAGE);
    queue.submit(ALICE, request('preview', 'preview-1'), IMAGE);
    expect(() => queue.submit(ALICE, request('preview', 'preview-2'), IMAGE)).toThrow(/At most 4 edits/);
    await untilRunning('render-A');
    await untilRunning('render-B');
    expect(queue.counts()).toEqual({ running: 2, queued: 2 });
    engine.runOf('render-B').resolve(done());
    await untilRunning('preview-1');
    expect(engine.active).toBe(2);
    engine.runOf('render-A').resolve(done());
    await untilRunning('render-C');
    engine.runOf('preview-1').resolve(done());
    engine.runOf('render-C').resolve(done());
    await untilTerminal('render-C');
    expect(engine.runs.map((r) => r.job.jobId)).toEqual(['render-A', 'render-B', 'preview-1', 'render-C']);
    expect(engine.maxActive).toBe(2);
  });

  it('announces each change of position with a queued event', async () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    queue.submit(ALICE, request('render', 'render-B'), IMAGE);
    queue.submit(ALICE, request('preview', 'preview-1'), IMAGE);
    const positions = (jobId: string): number[] =>
      eventsOf(jobId).flatMap((e) => (e.type === 'queued' ? [e.position] : []));
    expect(positions('render-A')).toEqual([1]);
    expect(positions('render-B')).toEqual([1, 2]);
    expect(positions('preview-1')).toEqual([1]);

    await untilRunning('render-A');
    engine.runOf('render-A').resolve(done());
    await untilRunning('preview-1');
    expect(positions('render-B')).toEqual([1, 2, 1]);
    expect(queue.get(ALICE, 'render-B').position).toBe(1);
  });

  it('reports queued, started, progress and finished with stored results and timings', async () => {
    clock = 5_000;
    const first = queue.submit(ALICE, request('render', 'render-A', { stepPreviews: true }), IMAGE);
    expect(first).toMatchObject({ jobId: 'render-A', kind: 'render', createdAt: 5_000 });
    expect(JobState.safeParse(first).success).toBe(true);
    clock = 5_500;
    const second = queue.submit(ALICE, request('render', 'render-B', { stepPreviews: true }), IMAGE);
    expect(second).toMatchObject({ state: 'queued', position: 1, createdAt: 5_500 });

    await untilRunning('render-A');
    const runA = engine.runOf('render-A');
    expect(runA.job).toMatchObject({ kind: 'render', image: IMAGE, model: undefined, stepPreviews: true });
    expect(runA.job.edit).toMatchObject({ source: 'cat', target: 'dog', steps: 50 });
    clock = 8_000;
    runA.resolve(done());
    await untilRunning('render-B');
    const runB = engine.runOf('render-B');
    runB.progress({ stage: 'inversion', step: 3, total: 50, frame: { role: 'step', width: 2, height: 3, rgba: rgba(2, 3) } });
    runB.progress({ stage: 'edit', step: 50, total: 50 });
    clock = 13_500;
    runB.resolve(done());
    const terminal = await untilTerminal('render-B');

    expect(typesOf('render-B')).toEqual(['queued', 'started', 'progress', 'progress', 'finished']);
    const progress = eventsOf('render-B').filter((e) => e.type === 'progress');
    expect(progress[0]).toMatchObject({ stage: 'inversion', step: 3, total: 50 });
    // The step preview went to Alice alone, as one binary frame with exactly the engine's pixels.
    expect(frames.map((f) => [f.clientId, f.frame.header])).toEqual([
      [ALICE, { v: PROTOCOL_VERSION, type: 'preview-frame', jobId: 'render-B', kind: 'render', role: 'step', stage: 'inversion', step: 3, total: 50, width: 2, height: 3, format: 'rgba8' }],
    ]);
    expect(frames[0]?.frame.rgba).toEqual(rgba(2, 3));

    if (terminal.type !== 'finished') throw new Error(`expected finished, got ${terminal.type}`);
    const { outcome } = terminal;
    expect(outcome.engine).toBe('diffusion');
    expect(outcome.device).toBe('cuda');
    // queued: started at 8000, submitted at 5500; total: ended at 13500.
    expect(outcome.timings).toEqual({ inversion: 12, edit: 30, queued: 2_500, total: 8_000 });
    expect(outcome.results.map((r) => [r.role, r.mime, r.width, r.height])).toEqual([
      ['image', 'image/png', 640, 480],
      ['mask', 'image/png', 640, 480],
    ]);
    const [image, mask] = outcome.results;
    expect((await store.get(image?.id ?? ''))?.bytes).toEqual(Buffer.from(IMAGE_PNG));
    expect((await store.get(mask?.id ?? ''))?.meta).toMatchObject({ role: 'mask', mime: 'image/png' });
    expect(queue.get(ALICE, 'render-B')).toEqual({
      jobId: 'render-B',
      kind: 'render',
      state: 'finished',
      outcome,
      createdAt: 5_500,
    });
  });

  it('does not read a stored upload the engine holds: the job goes with its id and no bytes', async () => {
    const held = new Set(['upload-0001']);
    engine.holds = (id: string): boolean => held.has(id);
    const reads: string[] = [];
    const stored = (id: string): { read(): Promise<Uint8Array>; release(): void } => ({
      read: async () => {
        reads.push(id);
        return IMAGE;
      },
      release: () => {},
    });
    queue.submit(ALICE, request('preview', 'held-job-1'), stored('upload-0001'));
    await until(() => engine.runs.length === 1);
    expect(engine.runs[0]?.job).toMatchObject({ imageId: 'upload-0001', image: new Uint8Array() });
    engine.runs[0]?.resolve(done());
    // An upload the engine does not hold is read when the job starts, and goes with its bytes.
    queue.submit(ALICE, request('preview', 'read-job-1', { imageId: 'upload-0002' }), stored('upload-0002'));
    await until(() => engine.runs.length === 2);
    expect(engine.runs[1]?.job).toMatchObject({ imageId: 'upload-0002', image: IMAGE });
    engine.runs[1]?.resolve(done());
    expect(reads).toEqual(['upload-0002']);
    await until(() => typesOf('read-job-1').includes('finished'));
  });

  it('generates a job id when the client gives none', () => {
    const state = queue.submit(ALICE, request('preview'), IMAGE);
    expect(state.jobId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(queue.get(ALICE, state.jobId).jobId).toBe(state.jobId);
    expect(queue.submit(ALICE, request('preview'), IMAGE).jobId).not.toBe(state.jobId);
  });
});

describe('progress', () => {
  it('drops step frames the client did not ask for and frames over the limits; the events still go', async () => {
    queue.submit(ALICE, request('render', 'no-previews'), IMAGE);
    await untilRunning('no-previews');
    engine.runOf('no-previews').progress({ stage: 'edit', step: 1, total: 2, frame: { role: 'step', width: 2, height: 2, rgba: rgba(2, 2) } });
    engine.runOf('no-previews').resolve(done());
    queue.submit(ALICE, request('render', 'huge-preview', { stepPreviews: true }), IMAGE);
    await untilRunning('huge-preview');
    // Past the engine's own check: a step frame larger than a thumbnail, pixels that do not match.
    engine.runOf('huge-preview').progress({ stage: 'edit', step: 1, total: 2, frame: { role: 'step', width: 200, height: 2, rgba: rgba(200, 2) } });
    engine.runOf('huge-preview').progress({ stage: 'edit', step: 2, total: 2, frame: { role: 'step', width: 2, height: 2, rgba: rgba(2, 1) } });
    engine.runOf('huge-preview').resolve(done());
    await untilTerminal('huge-preview');

    expect(frames).toEqual([]);
    expect(eventsOf('no-previews').filter((e) => e.type === 'progress')).toHaveLength(1);
    expect(eventsOf('huge-preview').filter((e) => e.type === 'progress').map((e) => e.type === 'progress' && e.step)).toEqual([1, 2]);
  });

  it("sends the quick preview's result frame whether or not step previews were asked for, before its progress event", async () => {
    queue.submit(ALICE, request('preview', 'quick-one'), IMAGE);
    await untilRunning('quick-one');
    const order: string[] = [];
    queue.subscribe(ALICE, (event) => order.push(event.type), (_bytes, header) => order.push(`frame ${header.role}`));
    engine.runOf('quick-one').progress({ stage: 'generate', step: 1, total: 1, frame: { role: 'result', width: 5, height: 4, rgba: rgba(5, 4) } });
    engine.runOf('quick-one').resolve(done());
    await untilTerminal('quick-one');
    expect(order).toEqual(['frame result', 'progress', 'finished']);
    expect(frames.map((f) => [f.clientId, f.frame.header.role, f.frame.header.width, f.frame.header.height])).toEqual([[ALICE, 'result', 5, 4]]);
    expect(frames[0]?.frame.rgba).toEqual(rgba(5, 4));
  });

  it('forwards no progress after a cancel', async () => {
    engine.cancelOnAbort = false;
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    await untilRunning('render-A');
    const run = engine.runOf('render-A');
    run.progress({ stage: 'inversion', step: 1, total: 50 });
    queue.cancel(ALICE, 'render-A');
    run.progress({ stage: 'inversion', step: 2, total: 50 });
    run.resolve({ status: 'cancelled' });
    await untilTerminal('render-A');
    expect(typesOf('render-A')).toEqual(['queued', 'started', 'progress', 'cancelled']);
  });
});

describe('bounds', () => {
  it('refuses a client beyond maxQueuedPerClient with E_QUEUE_FULL (429), other clients still welcome', () => {
    expect(QUEUE_DEFAULTS.maxQueuedPerClient).toBe(8);
    for (let i = 0; i < 8; i += 1) queue.submit(ALICE, request('render', `alice-job-${i}`), IMAGE);
    expect(codeOf(() => queue.submit(ALICE, request('preview', 'alice-job-8'), IMAGE))).toEqual({
      code: 'E_QUEUE_FULL',
      status: 429,
    });
    expect(() => queue.get(ALICE, 'alice-job-8')).toThrow(P2pzError);
    expect(eventsOf('alice-job-8')).toEqual([]);
    expect(queue.submit(BOB, request('render', 'bob-job-0'), IMAGE).state).toBe('queued');
    expect(queue.counts()).toEqual({ running: 1, queued: 8 });
  });

  it('bounds a token across its client ids (maxQueuedPerToken); client ids only subdivide it', () => {
    queue = makeQueue({ maxQueuedPerToken: 3, maxQueuedPerClient: 2 });
    const TOKEN = 'token-one';
    queue.submit(ALICE, request('render', 'alice-job-0'), IMAGE, TOKEN);
    queue.submit(ALICE, request('render', 'alice-job-1'), IMAGE, TOKEN);
    expect(codeOf(() => queue.submit(ALICE, request('render', 'alice-job-2'), IMAGE, TOKEN)).code).toBe('E_QUEUE_FULL');
    queue.submit(BOB, request('render', 'bob-job-0'), IMAGE, TOKEN);
    expect(codeOf(() => queue.submit(BOB, request('render', 'bob-job-1'), IMAGE, TOKEN)).code).toBe('E_QUEUE_FULL');
    expect(codeOf(() => queue.submit('carol-client-key-00000', request('render', 'carol-job-0'), IMAGE, TOKEN)).code).toBe('E_QUEUE_FULL');
    // Another token is bounded on its own.
    expect(queue.submit('dave-client-key-000000', request('render', 'dave-job-0'), IMAGE, 'token-two').state).toBe('queued');
  });

  it('refuses everyone beyond maxQueued, and admits again once a job has ended', async () => {
    queue = makeQueue({ maxQueued: 3, maxQueuedPerClient: 2 });
    listen(ALICE);
    listen(BOB);
    queue.submit(ALICE, request('render', 'alice-job-0'), IMAGE);
    queue.submit(ALICE, request('render', 'alice-job-1'), IMAGE);
    expect(codeOf(() => queue.submit(ALICE, request('render', 'alice-job-2'), IMAGE)).code).toBe('E_QUEUE_FULL');
    queue.submit(BOB, request('render', 'bob-job-0'), IMAGE);
    expect(codeOf(() => queue.submit(BOB, request('render', 'bob-job-1'), IMAGE)).code).toBe('E_QUEUE_FULL');

    queue.cancel(BOB, 'bob-job-0');
    expect(queue.submit(BOB, request('render', 'bob-job-1'), IMAGE).state).toBe('queued');
    await untilRunning('alice-job-0');
    engine.runOf('alice-job-0').resolve(done());
    await untilTerminal('alice-job-0');
    expect(queue.submit(ALICE, request('render', 'alice-job-2'), IMAGE).state).toBe('queued');
  });
});

describe('idempotent resubmit', () => {
  it('returns the existing job for the same id and request, without running it twice', async () => {
    const first = queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    queue.submit(ALICE, request('render', 'render-B'), IMAGE);
    const eventsBefore = seen.length;
    // Defaults written out explicitly parse to the same request.
    const again = queue.submit(
      ALICE,
      request('render', 'render-B', { stepPreviews: false, edit: { target: 'dog', source: 'cat', steps: 50 } }),
      IMAGE,
    );
    expect(again).toEqual(queue.get(ALICE, 'render-B'));
    expect(again.position).toBe(1);
    expect(queue.submit(ALICE, request('render', 'render-A'), IMAGE)).toEqual({ ...first, state: 'running' });
    expect(seen.length).toBe(eventsBefore);
    expect(queue.counts()).toEqual({ running: 1, queued: 1 });

    await untilRunning('render-A');
    engine.runOf('render-A').resolve(done());
    await untilTerminal('render-A');
    expect(queue.submit(ALICE, request('render', 'render-A'), IMAGE).state).toBe('finished');
    expect(engine.runs.filter((r) => r.job.jobId === 'render-A')).toHaveLength(1);
  });

  it('throws E_JOB_CONFLICT (409) for the same id with a different request', () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    const conflict = request('render', 'render-A', { edit: { source: 'cat', target: 'fox' } });
    expect(codeOf(() => queue.submit(ALICE, conflict, IMAGE))).toEqual({ code: 'E_JOB_CONFLICT', status: 409 });
    expect(codeOf(() => queue.submit(ALICE, request('preview', 'render-A'), IMAGE)).code).toBe('E_JOB_CONFLICT');
    // Job ids are scoped by client: another client may use the same id for anything.
    expect(queue.submit(BOB, conflict, IMAGE)).toMatchObject({ jobId: 'render-A', state: 'queued' });
    expect(eventsOf('render-A', BOB).map((e) => e.type)).toEqual(['queued']);
  });
});

describe('clients', () => {
  it('hides other clients\' jobs behind E_NOT_FOUND and sends events only to the owner', async () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    expect(codeOf(() => queue.get(BOB, 'render-A'))).toEqual({ code: 'E_NOT_FOUND', status: 404 });
    expect(codeOf(() => queue.cancel(BOB, 'render-A')).code).toBe('E_NOT_FOUND');
    expect(codeOf(() => queue.get(ALICE, 'never-submitted')).code).toBe('E_NOT_FOUND');
    await untilRunning('render-A');
    expect(engine.runOf('render-A').signal.aborted).toBe(false);
    expect(seen.filter((s) => s.clientId === BOB)).toEqual([]);
  });

  it('survives a throwing listener and stops sending after unsubscribe', async () => {
    const calls: string[] = [];
    queue.subscribe(ALICE, () => {
      calls.push('throwing');
      throw new Error('socket closed');
    });
    const stop = queue.subscribe(ALICE, (e) => calls.push(e.type));
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    stop();
    await untilRunning('render-A');
    engine.runOf('render-A').resolve(done());
    await untilTerminal('render-A');
    expect(calls).toEqual(['throwing', 'queued', 'throwing', 'started', 'throwing']);
    expect(typesOf('render-A')).toEqual(['queued', 'started', 'finished']);
  });

  it('stays one at a time when a listener submits and cancels from inside an event', async () => {
    queue.subscribe(ALICE, (event) => {
      if (event.type === 'started' && event.jobId === 'render-A') {
        queue.submit(ALICE, request('render', 'render-B'), IMAGE);
        queue.submit(ALICE, request('render', 'render-C'), IMAGE);
      }
      if (event.type === 'queued' && event.jobId === 'render-C') queue.cancel(ALICE, 'render-B');
    });
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    expect(queue.counts()).toEqual({ running: 1, queued: 1 });
    expect(queue.get(ALICE, 'render-C').position).toBe(1);
    await untilRunning('render-A');
    engine.runOf('render-A').resolve(done());
    await untilRunning('render-C');
    expect(engine.maxActive).toBe(1);
    expect(typesOf('render-B')).toEqual(['queued', 'cancelled']);
  });

  it('forgets an ended job keepFinishedMs after it ended', async () => {
    queue.submit(ALICE, request('preview', 'preview-1'), IMAGE);
    await untilRunning('preview-1');
    clock += 100;
    engine.runOf('preview-1').resolve(done());
    await untilTerminal('preview-1');
    clock += QUEUE_DEFAULTS.keepFinishedMs - 1;
    expect(queue.get(ALICE, 'preview-1').state).toBe('finished');
    clock += 1;
    expect(codeOf(() => queue.get(ALICE, 'preview-1')).code).toBe('E_NOT_FOUND');
    // Forgotten: the id is free for a new job, which starts a new event history.
    seen.length = 0;
    expect(queue.submit(ALICE, request('render', 'preview-1'), IMAGE).state).toBe('running');
  });

  it('forgets the jobs that ended first beyond maxEnded', () => {
    queue = makeQueue({ maxEnded: 2 });
    queue.submit(ALICE, request('render', 'blocking-job'), IMAGE);
    for (const jobId of ['render-A', 'render-B', 'render-C']) {
      queue.submit(ALICE, request('render', jobId), IMAGE);
      queue.cancel(ALICE, jobId);
    }
    expect(codeOf(() => queue.get(ALICE, 'render-A')).code).toBe('E_NOT_FOUND');
    expect(queue.get(ALICE, 'render-B').state).toBe('cancelled');
    expect(queue.get(ALICE, 'render-C').state).toBe('cancelled');
  });
});

describe('cancel', () => {
  it('cancels a queued job at once: one event, never run, the line moves up', () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    queue.submit(ALICE, request('render', 'render-B'), IMAGE);
    queue.submit(ALICE, request('render', 'render-C'), IMAGE);
    const state = queue.cancel(ALICE, 'render-B');
    expect(state).toMatchObject({ jobId: 'render-B', state: 'cancelled' });
    expect(state).not.toHaveProperty('position');
    expect(typesOf('render-B')).toEqual(['queued', 'cancelled']);
    expect(queue.get(ALICE, 'render-C').position).toBe(1);
    expect(queue.cancel(ALICE, 'render-B').state).toBe('cancelled');
    expect(typesOf('render-B')).toEqual(['queued', 'cancelled']);
    expect(queue.counts()).toEqual({ running: 1, queued: 1 });
  });

  it('cancels a running job: acknowledged at once, the engine sees the abort, one cancelled event', async () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    queue.submit(ALICE, request('render', 'render-B'), IMAGE);
    await untilRunning('render-A');
    const run = engine.runOf('render-A');
    engine.cancelOnAbort = false;

    expect(queue.cancel(ALICE, 'render-A').state).toBe('cancelled');
    expect(queue.get(ALICE, 'render-A').state).toBe('cancelled');
    expect(run.signal.aborted).toBe(true);
    // Acknowledged, but the engine has not returned: no event yet, and the GPU is still busy.
    expect(typesOf('render-A')).toEqual(['queued', 'started']);
    expect(queue.counts()).toEqual({ running: 1, queued: 1 });
    expect(queue.cancel(ALICE, 'render-A').state).toBe('cancelled');

    run.resolve({ status: 'cancelled' });
    await untilTerminal('render-A');
    await untilRunning('render-B');
    expect(typesOf('render-A')).toEqual(['queued', 'started', 'cancelled']);
    expect(engine.maxActive).toBe(1);
  });

  it('reports a job that finishes anyway after the cancel as cancelled and stores none of its outputs', async () => {
    engine.cancelOnAbort = false;
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    await untilRunning('render-A');
    queue.cancel(ALICE, 'render-A');
    engine.runOf('render-A').resolve(done());
    await untilTerminal('render-A');
    await until(() => queue.counts().running === 0);

    expect(typesOf('render-A')).toEqual(['queued', 'started', 'cancelled']);
    expect(queue.get(ALICE, 'render-A')).not.toHaveProperty('outcome');
    expect(store.usage()).toEqual({ files: 0, bytes: 0 });
    expect(await readdir(join(dir, 'results'))).toEqual([]);
  });

  it('lets a cancel that arrives while the outputs are being stored win, and removes them', async () => {
    const realPut = store.put.bind(store);
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const put = vi.spyOn(store, 'put').mockImplementation(async (bytes, meta) => {
      const file = await realPut(bytes, meta);
      await gate;
      return file;
    });
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    await untilRunning('render-A');
    engine.runOf('render-A').resolve(done());
    await until(() => put.mock.calls.length === 1 && store.usage().files === 1);
    expect(queue.cancel(ALICE, 'render-A').state).toBe('cancelled');
    release();
    await untilTerminal('render-A');
    await until(() => queue.counts().running === 0);
    expect(typesOf('render-A')).toEqual(['queued', 'started', 'cancelled']);
    expect(store.usage().files).toBe(0);
    expect(await readdir(join(dir, 'results'))).toEqual([]);
  });

  it('never hands a job cancelled in the tick it started to the engine', async () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    queue.cancel(ALICE, 'render-A');
    await untilTerminal('render-A');
    expect(engine.runs).toEqual([]);
    expect(typesOf('render-A')).toEqual(['queued', 'started', 'cancelled']);
  });
});

describe('failures', () => {
  it('reports an engine failure as an error event and goes on with the next job', async () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    queue.submit(ALICE, request('render', 'render-B'), IMAGE);
    await untilRunning('render-A');
    const error = { code: 'E_DEVICE_OOM' as const, message: 'The device ran out of memory during the edit.', hint: 'Use a smaller working size.' };
    engine.runOf('render-A').resolve({ status: 'failed', error });
    const terminal = await untilTerminal('render-A');
    expect(terminal).toEqual({ v: 1, type: 'error', jobId: 'render-A', kind: 'render', error });
    expect(queue.get(ALICE, 'render-A')).toMatchObject({ state: 'error', error });
    await untilRunning('render-B');
  });

  it('turns an engine that rejects into E_INTERNAL without details, and logs it scrubbed', async () => {
    const lines: string[] = [];
    queue = makeQueue({ log: createLogger({ sink: (line) => lines.push(line) }) });
    listen(ALICE);
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    await untilRunning('render-A');
    engine.runOf('render-A').reject(new Error('bad state in /home/someone/secret'));
    const terminal = await untilTerminal('render-A');
    expect(terminal.type === 'error' && terminal.error.code).toBe('E_INTERNAL');
    expect(JSON.stringify(terminal)).not.toContain('secret');
    expect(lines.find((l) => l.includes('job.engine-rejected'))).toContain('"bad state in <path>"');
    expect(lines.find((l) => l.includes('job.ended'))).toMatch(/jobId=render-A kind=render state=error error=E_INTERNAL/);
    expect(lines.join('\n')).not.toContain('secret');
  });

  it('fails the job and keeps nothing when its outputs cannot be stored', async () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    await untilRunning('render-A');
    await rm(join(dir, 'results'), { recursive: true });
    engine.runOf('render-A').resolve(done());
    const terminal = await untilTerminal('render-A');
    expect(terminal.type === 'error' && terminal.error.code).toBe('E_INTERNAL');
    expect(store.usage().files).toBe(0);
  });

  it('fails the job and removes its stored outputs when the engine reports an invalid outcome', async () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    await untilRunning('render-A');
    engine.runOf('render-A').resolve(done({ edit: -1 }));
    const terminal = await untilTerminal('render-A');
    expect(terminal.type === 'error' && terminal.error.code).toBe('E_INTERNAL');
    await until(() => store.usage().files === 0);
    expect(await readdir(join(dir, 'results'))).toEqual([]);
  });
});

describe('close', () => {
  it('refuses new jobs, cancels every job with one event each, and closes the engine after the run stopped', async () => {
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    queue.submit(ALICE, request('render', 'render-B'), IMAGE);
    queue.submit(BOB, request('preview', 'preview-1'), IMAGE);
    await untilRunning('render-A');
    const closing = queue.close();
    expect(codeOf(() => queue.submit(ALICE, request('render', 'render-C'), IMAGE))).toEqual({
      code: 'E_SHUTTING_DOWN',
      status: 503,
    });
    await closing;
    expect(engine.runOf('render-A').signal.aborted).toBe(true);
    expect(engine.activeAtClose).toEqual([0]);
    expect(typesOf('render-A')).toEqual(['queued', 'started', 'cancelled']);
    // render-B moved from 1 to 2 when preview-1 arrived.
    expect(typesOf('render-B')).toEqual(['queued', 'queued', 'cancelled']);
    expect(typesOf('preview-1', BOB)).toEqual(['queued', 'cancelled']);
    expect(engine.runs).toHaveLength(1);
    expect(queue.counts()).toEqual({ running: 0, queued: 0 });
    expect(queue.close()).toBe(closing);
  });

  it('closes the engine after closeGraceMs when the running job ignores the abort', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    engine.cancelOnAbort = false;
    queue.submit(ALICE, request('render', 'render-A'), IMAGE);
    await untilRunning('render-A');
    let closed = false;
    const closing = queue.close().then(() => {
      closed = true;
    });
    await vi.advanceTimersByTimeAsync(QUEUE_DEFAULTS.closeGraceMs - 1);
    expect(engine.activeAtClose).toEqual([]);
    expect(closed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await closing;
    // The engine was closed with the run still going; closing it ended the run.
    expect(engine.activeAtClose).toEqual([1]);
    expect(typesOf('render-A')).toEqual(['queued', 'started', 'cancelled']);
  });
});
