// The panel's job runner, driven through a real Connection by a scripted DaemonClient: one layer from
// upload to result, the upload cache, an expired upload sent again, a batch cancelled half way, a
// cancel that lands before the job id is known, errors, a lost stream, and a revoked token.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EditParams, encodePreviewFrame, PROTOCOL_VERSION, type ImageBytes, type JobOutcome } from '../../../shared/protocol/index.js';
import type { PanelResult } from '../../../plugin/ui/host.js';
import { JobRunner, type JobProgress } from '../../../plugin/ui/job-runner.js';
import type { Problem } from '../../../plugin/ui/problems.js';
import { connectionRig, unhandledRejectionsDuring, type ConnectionRig } from './connection-rig.js';
import type { FakeDaemonClient } from './fake-daemon-client.js';

const edit = EditParams.parse({ source: 'cat', target: 'dog', mask: true });

/** A 2×1 preview frame of `jobId` whose first pixel is `first`, encoded as the daemon sends it. */
function frameOf(jobId: string, kind: 'render' | 'preview', role: 'step' | 'result', first: number[]): Uint8Array {
  const header = { v: PROTOCOL_VERSION, type: 'preview-frame', jobId, kind, role, stage: role === 'step' ? 'inversion' : 'generate', step: 1, total: 1, width: 2, height: 1, format: 'rgba8' } as const;
  return encodePreviewFrame(header, Uint8Array.from([...first, 0, 0, 0, 255]));
}

function image(nodeId: string, fill = 1): ImageBytes {
  return { nodeId, bytes: new Uint8Array([137, 80, 78, 71, fill, fill]), mime: 'image/png', read: 'image-fill' };
}

interface RunnerRig {
  readonly runner: JobRunner;
  readonly conn: ConnectionRig;
  readonly client: FakeDaemonClient;
  readonly log: string[];
  readonly progress: JobProgress[];
  readonly shown: { entries: readonly PanelResult[]; outcome: JobOutcome | null }[];
  readonly failures: Problem[];
  /** What readImages answers. */
  images: ImageBytes[];
}

async function runnerRig(): Promise<RunnerRig> {
  const conn = connectionRig();
  await conn.connection.start(7777, 'tok_1');
  conn.client().stream.welcome();
  const log: string[] = [];
  const progress: JobProgress[] = [];
  const shown: RunnerRig['shown'] = [];
  const failures: Problem[] = [];
  const rig: { images: ImageBytes[] } = { images: [image('1:1')] };
  const runner = new JobRunner(conn.connection, { readImages: async (ids) => rig.images.filter((i) => ids.includes(i.nodeId)) }, {
    started: (kind) => log.push(`started ${kind}`),
    progress: (p) => progress.push(p),
    previewFrame: (frame, finished) => log.push(`${frame.header.role} frame ${frame.header.width}×${frame.header.height} [${frame.rgba.slice(0, 4).join(',')}] after ${finished.length}`),
    results: (entries, outcome) => shown.push({ entries: [...entries], outcome }),
    cancelled: (kept) => log.push(`cancelled ${kept}`),
    failed: (problem) => failures.push(problem),
    ended: () => log.push('ended'),
  });
  return Object.assign(rig, { runner, conn, client: conn.client(), log, progress, shown, failures });
}

/** Waits until the daemon has `n` submitted jobs. */
async function submitted(client: FakeDaemonClient, n: number): Promise<string> {
  await vi.waitFor(() => expect(client.submitted).toHaveLength(n));
  return client.lastJobId;
}

describe('JobRunner', () => {
  let rig: RunnerRig;
  beforeEach(async () => {
    rig = await runnerRig();
  });
  afterEach(() => {
    rig.conn.connection.stop();
    vi.restoreAllMocks();
  });

  it('runs one layer: reads, uploads, submits, follows the events and its step frames, fetches the result and its mask', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const running = rig.runner.run('render', ['1:1'], edit);
    const jobId = await submitted(rig.client, 1);
    expect(rig.runner.busy).toBe(true);
    expect(rig.client.uploads.map((u) => u.bytes)).toEqual([rig.images[0]?.bytes]);
    expect(rig.client.submitted[0]).toMatchObject({ jobId, kind: 'render', imageId: rig.client.uploads[0]?.imageId, edit, stepPreviews: true });
    const stream = rig.client.stream;
    stream.emit({ v: PROTOCOL_VERSION, type: 'queued', jobId, kind: 'render', position: 3 });
    stream.emit({ v: PROTOCOL_VERSION, type: 'started', jobId, kind: 'render' });
    stream.emit({ v: PROTOCOL_VERSION, type: 'progress', jobId, kind: 'render', stage: 'inversion', step: 5, total: 50 });
    stream.binary(frameOf(jobId, 'render', 'step', [9, 8, 7, 255]));
    // Another job's frame, and a malformed one, are not this job's.
    stream.binary(frameOf('job_someone_else', 'render', 'step', [1, 1, 1, 255]));
    stream.binary(new Uint8Array([0x50, 0x32, 0x50, 0x46, 0, 0, 0, 99]));
    const outcome = rig.client.outcome('diffusion', true);
    const healthBefore = rig.client.healthCalls;
    stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'render', outcome });
    await running;

    expect(rig.progress).toEqual([
      { phase: 'reading' },
      { phase: 'uploading', batch: null },
      { phase: 'queued', batch: null, position: 3 },
      { phase: 'starting', batch: null },
      { phase: 'stage', batch: null, stage: 'inversion', step: 5, total: 50, overall: expect.closeTo(0.213, 12), remainingMs: null },
    ]);
    expect(rig.log).toEqual(['started render', 'step frame 2×1 [9,8,7,255] after 0', 'ended']);
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/^p2pz: E_BAD_FRAME: .*header length 99 is out of bounds/));
    expect(rig.failures).toEqual([]);
    expect(rig.shown).toHaveLength(1);
    const [result] = rig.shown[0]?.entries ?? [];
    expect(rig.shown[0]?.outcome).toEqual(outcome);
    expect(result?.nodeId).toBe('1:1');
    expect(result?.image.bytes).toEqual(rig.client.results.get(outcome.results[0]?.id ?? ''));
    expect(result?.mask?.bytes).toEqual(rig.client.results.get(outcome.results[1]?.id ?? ''));
    expect(result?.edit).toMatchObject({ source: 'cat', target: 'dog', seed: 42, kind: 'render', engine: 'diffusion', originalId: '1:1' });
    expect(result?.url).toMatch(/^blob:/);
    expect(rig.runner.results).toEqual([result]);
    expect(rig.runner.busy).toBe(false);
    expect(rig.client.healthCalls).toBe(healthBefore + 1); // health asked again after the job
  });

  it('uploads an image once: the same layer with the same pixels reuses it, changed pixels upload again', async () => {
    const finish = async (n: number): Promise<void> => {
      const jobId = await submitted(rig.client, n);
      rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'preview', outcome: rig.client.outcome() });
    };
    let running = rig.runner.run('preview', ['1:1'], edit);
    await finish(1);
    await running;
    running = rig.runner.run('preview', ['1:1'], edit);
    await finish(2);
    await running;
    expect(rig.client.uploads).toHaveLength(1);
    expect(rig.client.submitted[1]).toMatchObject({ kind: 'preview', stepPreviews: false, imageId: rig.client.uploads[0]?.imageId });

    rig.images = [image('1:1', 2)];
    running = rig.runner.run('preview', ['1:1'], edit);
    await finish(3);
    await running;
    expect(rig.client.uploads).toHaveLength(2);
    expect(rig.client.submitted[2]?.imageId).toBe(rig.client.uploads[1]?.imageId);
  });

  it('uploads again and resubmits when the daemon no longer knows the upload', async () => {
    let running = rig.runner.run('preview', ['1:1'], edit);
    let jobId = await submitted(rig.client, 1);
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'preview', outcome: rig.client.outcome() });
    await running;

    rig.client.knownImages.clear(); // the upload expired (or the daemon restarted)
    running = rig.runner.run('preview', ['1:1'], edit);
    jobId = await submitted(rig.client, 2);
    expect(rig.client.uploads).toHaveLength(2);
    expect(rig.client.submitted[1]?.imageId).toBe(rig.client.uploads[1]?.imageId);
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'preview', outcome: rig.client.outcome() });
    await running;
    expect(rig.failures).toEqual([]);
    expect(rig.shown).toHaveLength(2);
  });

  it('runs a batch one layer after the other; a cancel keeps the finished layers and skips the rest', async () => {
    rig.images = [image('1:1', 1), image('2:2', 2), image('3:3', 3)];
    const running = rig.runner.run('preview', ['1:1', '2:2', '3:3'], edit);
    let jobId = await submitted(rig.client, 1);
    rig.client.stream.binary(frameOf(jobId, 'preview', 'result', [10, 20, 30, 40]));
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'preview', outcome: rig.client.outcome() });
    jobId = await submitted(rig.client, 2);
    expect(rig.shown.at(-1)?.entries.map((e) => e.nodeId)).toEqual(['1:1']);
    // The second layer's quick preview is shown after the first layer's result.
    rig.client.stream.binary(frameOf(jobId, 'preview', 'result', [50, 60, 70, 80]));

    rig.runner.cancel();
    expect(rig.runner.cancelling).toBe(true);
    expect(rig.progress.at(-1)).toEqual({ phase: 'cancelling' });
    expect(rig.client.stream.sent).toEqual([{ v: PROTOCOL_VERSION, type: 'cancel', jobId }]);
    rig.runner.cancel(); // a second click sends nothing more
    expect(rig.client.stream.sent).toHaveLength(1);
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'cancelled', jobId, kind: 'preview' });
    await running;

    expect(rig.client.submitted).toHaveLength(2);
    expect(rig.progress.filter((p) => p.phase === 'uploading')).toEqual([
      { phase: 'uploading', batch: { index: 0, count: 3 } },
      { phase: 'uploading', batch: { index: 1, count: 3 } },
    ]);
    expect(rig.log).toEqual(['started preview', 'result frame 2×1 [10,20,30,40] after 0', 'result frame 2×1 [50,60,70,80] after 1', 'cancelled 1', 'ended']);
    expect(rig.runner.results.map((r) => r.nodeId)).toEqual(['1:1']);
  });

  it('a cancel that comes before the daemon accepted the job is sent once the job id is known', async () => {
    let release: () => void = () => undefined;
    const submit = rig.client.submitJob.bind(rig.client);
    vi.spyOn(rig.client, 'submitJob').mockImplementation(async (request) => {
      const state = await submit(request);
      await new Promise<void>((r) => (release = r));
      return state;
    });
    const running = rig.runner.run('render', ['1:1'], edit);
    const jobId = await submitted(rig.client, 1);
    rig.runner.cancel();
    expect(rig.client.stream.sent).toEqual([{ v: PROTOCOL_VERSION, type: 'cancel', jobId }]);
    release();
    await vi.waitFor(() => expect(rig.client.stream.sent).toHaveLength(2));
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'cancelled', jobId, kind: 'render' });
    await running;
    expect(rig.log).toContain('cancelled 0');
  });

  it('a cancelled job that finished nothing shows the earlier results again and keeps them', async () => {
    let running = rig.runner.run('preview', ['1:1'], edit);
    let jobId = await submitted(rig.client, 1);
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'preview', outcome: rig.client.outcome() });
    await running;
    const earlier = rig.runner.results;
    const revoked = vi.spyOn(URL, 'revokeObjectURL');

    running = rig.runner.run('render', ['1:1'], edit);
    jobId = await submitted(rig.client, 2);
    rig.runner.cancel();
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'cancelled', jobId, kind: 'render' });
    await running;
    expect(rig.shown.at(-1)).toEqual({ entries: earlier, outcome: null });
    expect(rig.runner.results).toBe(earlier);
    expect(revoked).not.toHaveBeenCalled();
  });

  it('new results replace the old ones, whose object URLs are revoked', async () => {
    let running = rig.runner.run('preview', ['1:1'], edit);
    let jobId = await submitted(rig.client, 1);
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'preview', outcome: rig.client.outcome() });
    await running;
    const old = rig.runner.results[0]?.url;
    const revoked = vi.spyOn(URL, 'revokeObjectURL');
    running = rig.runner.run('preview', ['1:1'], edit);
    jobId = await submitted(rig.client, 2);
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'preview', outcome: rig.client.outcome() });
    await running;
    expect(revoked).toHaveBeenCalledWith(old);
    expect(rig.runner.results[0]?.url).not.toBe(old);
  });

  it('drops the results a host no longer shows (a replaced image), revoking their object URLs', async () => {
    rig.images = [image('1:1', 1), image('2:2', 2)];
    const running = rig.runner.run('preview', ['1:1', '2:2'], edit);
    for (const n of [1, 2]) {
      const jobId = await submitted(rig.client, n);
      rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'preview', outcome: rig.client.outcome() });
    }
    await running;
    const [first, second] = rig.runner.results;
    const revoked = vi.spyOn(URL, 'revokeObjectURL');
    expect(rig.runner.keepResults(() => true)).toBe(false);
    expect(revoked).not.toHaveBeenCalled();
    expect(rig.runner.keepResults((r) => r.nodeId === '2:2')).toBe(true);
    expect(rig.runner.results).toEqual([second]);
    expect(revoked.mock.calls).toEqual([[first?.url]]);
  });

  it('a job error becomes the problem to show, with the daemon\'s message and command', async () => {
    const running = rig.runner.run('render', ['1:1'], edit);
    const jobId = await submitted(rig.client, 1);
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'error', jobId, kind: 'render', error: { code: 'E_MODEL_MISSING', message: 'The model this edit needs is not installed.', hint: 'Run `p2pz models install sd`.' } });
    await running;
    expect(rig.failures).toEqual([{ title: 'The model this edit needs is not installed.', hint: 'Run p2pz models install sd.', command: 'p2pz models install sd', note: null, pair: false }]);
    expect(rig.log).toEqual(['started render', 'ended']);
    expect(rig.runner.busy).toBe(false);
    expect(rig.runner.results).toEqual([]);
  });

  it('a job error that arrives before the submit is answered is the problem to show, not an unhandled rejection', async () => {
    rig.client.beforeSubmitAnswer = (job) => rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'error', jobId: job.jobId, kind: 'preview', error: { code: 'E_MODEL_MISSING', message: 'No quick preview is installed for cat → dog.', hint: 'Render instead.' } });
    expect(await unhandledRejectionsDuring(() => rig.runner.run('preview', ['1:1'], edit))).toEqual([]);
    expect(rig.failures).toMatchObject([{ title: 'No quick preview is installed for cat → dog.' }]);
  });

  it('a stream lost mid-job fails the job', async () => {
    const running = rig.runner.run('render', ['1:1'], edit);
    await submitted(rig.client, 1);
    rig.client.stream.drop(1006);
    await running;
    expect(rig.failures[0]).toMatchObject({ title: 'The p2pz daemon is shutting down. The connection to the daemon was lost.', command: 'npm start' });
  });

  it('a token the daemon refuses sends the panel back to pairing, not to a job problem', async () => {
    rig.client.setToken(null); // the daemon forgot it: uploads answer E_UNAUTHORIZED
    await rig.runner.run('preview', ['1:1'], edit);
    expect(rig.failures).toEqual([]);
    expect(rig.conn.connection.state).toBe('unpaired');
    expect(rig.conn.pairing.at(-1)).toBe(true);
  });

  it('runs one job at a time', async () => {
    const first = rig.runner.run('preview', ['1:1'], edit);
    const jobId = await submitted(rig.client, 1);
    await rig.runner.run('render', ['1:1'], edit);
    expect(rig.client.submitted).toHaveLength(1);
    rig.client.stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'preview', outcome: rig.client.outcome() });
    await first;
    expect(rig.log.filter((l) => l.startsWith('started'))).toEqual(['started preview']);
  });
});
