// The worker supervisor against a scripted fake worker (fixtures/fake-worker.mjs): crashes fail the
// job with E_WORKER_CRASHED and the next job works after a restart (docs/SECURITY.md §R16), repeated crashes are a crash
// loop reported in health, a job deaf to cancel gets its worker killed after the grace period (docs/SECURITY.md §R15),
// a malformed message counts as a crash, and close() leaves no child process behind (docs/SECURITY.md §R23).
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterEach, describe, expect, it } from 'vitest';
import { WorkerSupervisor } from '../../../daemon/worker/supervisor.js';
import type { SupervisorOptions } from '../../../daemon/worker/supervisor.js';
import type { EngineProgress } from '../../../daemon/jobs/engine.js';
import { engineJob, memoryLogger, processExists, waitFor } from './helpers.js';

const FAKE_WORKER = fileURLToPath(new URL('./fixtures/fake-worker.mjs', import.meta.url));

const open: WorkerSupervisor[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

function supervisor(options: Partial<SupervisorOptions> = {}): WorkerSupervisor & { log: ReturnType<typeof memoryLogger> } {
  const log = memoryLogger();
  const s = new WorkerSupervisor({
    modelsDir: '/nonexistent-models',
    workerPath: FAKE_WORKER,
    restartBackoffMs: 20,
    restartBackoffMaxMs: 200,
    crashWindowMs: 60_000,
    crashLoopThreshold: 3,
    cancelGraceMs: 300,
    shutdownGraceMs: 2_000,
    log,
    ...options,
  });
  open.push(s);
  return Object.assign(s, { log });
}

const never = (): AbortSignal => new AbortController().signal;

describe('WorkerSupervisor', () => {
  it('runs a job on the worker and relays progress', async () => {
    const s = supervisor();
    const progress: EngineProgress[] = [];
    const result = await s.run(engineJob('ok'), (p) => progress.push(p), never());
    expect(result).toEqual({
      status: 'done',
      outputs: [{ role: 'image', png: new Uint8Array([137, 80, 78, 71]), width: 1, height: 1 }],
      engine: 'gan',
      timings: { generate: 1 },
    });
    expect(progress).toEqual([{ stage: 'generate', step: 0, total: 1 }]);
    expect(s.health()).toEqual({ state: 'ready', restarts: 0, recentCrashes: 0, device: { provider: 'cpu', reason: 'fake worker' } });
  });

  it('sends an upload the worker holds by its id, and its bytes once the ledger has dropped it', async () => {
    const s = supervisor();
    const quiet = (): void => {};
    await s.run(engineJob('ok'), quiet, never()); // the worker is ready: hints reach it
    const upload = (n: number): Uint8Array => new Uint8Array(1000 + n).fill(n);
    s.prefetch(upload(0), 'img_aaaaaaaa');
    expect(await s.run(engineJob('input', { image: upload(0), imageId: 'img_aaaaaaaa' }), quiet, never())).toMatchObject({ status: 'done', timings: { held: 1000 } });
    // Bytes without an id (a CLI job), and an id never announced, go as bytes.
    expect(await s.run(engineJob('input', { image: upload(1) }), quiet, never())).toMatchObject({ timings: { carried: 1001 } });
    expect(await s.run(engineJob('input', { image: upload(2), imageId: 'img_unknown0' }), quiet, never())).toMatchObject({ timings: { carried: 1002 } });
    // Four more uploads: the ledger drops the least recently used one (img_aaaaaaaa), and so does the worker.
    ['img_bbbbbbbb', 'img_cccccccc', 'img_dddddddd', 'img_eeeeeeee'].forEach((id, k) => s.prefetch(upload(3 + k), id));
    expect(await s.run(engineJob('input', { image: upload(0), imageId: 'img_aaaaaaaa' }), quiet, never())).toMatchObject({ timings: { carried: 1000 } });
    expect(await s.run(engineJob('input', { image: upload(3), imageId: 'img_bbbbbbbb' }), quiet, never())).toMatchObject({ timings: { held: 1003 } });
    // Using an upload makes it the most recently used: img_cccccccc goes first now, img_bbbbbbbb stays.
    s.prefetch(upload(7), 'img_ffffffff');
    expect(await s.run(engineJob('input', { image: upload(4), imageId: 'img_cccccccc' }), quiet, never())).toMatchObject({ timings: { carried: 1004 } });
    expect(await s.run(engineJob('input', { image: upload(3), imageId: 'img_bbbbbbbb' }), quiet, never())).toMatchObject({ timings: { held: 1003 } });
  });

  it('says which uploads a job may come without: held ones, while the worker is ready and idle', async () => {
    const s = supervisor();
    const quiet = (): void => {};
    await s.run(engineJob('ok'), quiet, never());
    expect(s.holds('img_kept0000')).toBe(false);
    s.prefetch(new Uint8Array(10).fill(3), 'img_kept0000');
    expect(s.holds('img_kept0000')).toBe(true);
    expect(s.holds('img_other000')).toBe(false);
    // Without bytes, by its id: the worker reads the ones it holds.
    expect(await s.run(engineJob('input', { image: new Uint8Array(), imageId: 'img_kept0000' }), quiet, never())).toMatchObject({ status: 'done', timings: { held: 10 } });
    // A job without bytes for an upload the worker does not hold is refused, never run on nothing.
    expect(await s.run(engineJob('input', { image: new Uint8Array(), imageId: 'img_other000' }), quiet, never())).toMatchObject({ status: 'failed', error: { code: 'E_INTERNAL' } });
    // Busy: a job given now would wait, and the worker may be gone by then.
    const slow = s.run(engineJob('slow'), quiet, never());
    expect(s.holds('img_kept0000')).toBe(false);
    await slow;
    // A new worker after a crash holds nothing.
    expect(await s.run(engineJob('segfault'), quiet, never())).toMatchObject({ status: 'failed', error: { code: 'E_WORKER_CRASHED' } });
    await waitFor(() => s.health().state === 'ready', 'ready again');
    expect(s.holds('img_kept0000')).toBe(false);
  });

  it('a new worker holds no upload: after a crash the bytes go again', async () => {
    const s = supervisor();
    const quiet = (): void => {};
    await s.run(engineJob('ok'), quiet, never());
    s.prefetch(new Uint8Array(10), 'img_kept0000');
    expect(await s.run(engineJob('input', { image: new Uint8Array(10), imageId: 'img_kept0000' }), quiet, never())).toMatchObject({ timings: { held: 10 } });
    expect(await s.run(engineJob('segfault'), quiet, never())).toMatchObject({ status: 'failed', error: { code: 'E_WORKER_CRASHED' } });
    expect(await s.run(engineJob('input', { image: new Uint8Array(10), imageId: 'img_kept0000' }), quiet, never())).toMatchObject({ status: 'done', timings: { carried: 10 } });
  });

  it('refuses a job id the worker would drop, at once, and runs the next job', async () => {
    const s = supervisor();
    const refused = await s.run(engineJob('ok', { jobId: 'x' }), () => {}, never());
    expect(refused).toMatchObject({ status: 'failed', error: { code: 'E_BAD_REQUEST' } });
    expect((await s.run(engineJob('ok'), () => {}, never())).status).toBe('done');
  });

  it.each([
    ['segfault', /SIGSEGV/],
    ['abort', /SIGABRT/],
    ['exit', /exited with code 3/],
  ])('a worker dying by %s fails the job with E_WORKER_CRASHED; the next job runs on a new worker', async (how, crash) => {
    const s = supervisor();
    await waitFor(() => s.workerPid !== undefined && s.health().state === 'ready', 'first ready');
    const firstPid = s.workerPid;
    const result = await s.run(engineJob(how), () => {}, never());
    expect(result.status).toBe('failed');
    expect(result.status === 'failed' && result.error.code).toBe('E_WORKER_CRASHED');
    expect(s.health().lastCrash).toMatch(crash);
    expect(s.health().recentCrashes).toBe(1);
    expect(['restarting', 'ready']).toContain(s.health().state);

    const next = await s.run(engineJob('ok'), () => {}, never());
    expect(next.status).toBe('done');
    expect(s.health().restarts).toBe(1);
    expect(s.workerPid).not.toBe(firstPid);
    expect(processExists(firstPid ?? -1)).toBe(false);
  });

  it.each(['devicelost', 'devicefailed'])('a job failing with %s keeps its error; the worker is replaced at once (not a crash) and the next job runs on a fresh one', async (how) => {
    const s = supervisor();
    await waitFor(() => s.workerPid !== undefined && s.health().state === 'ready', 'first ready');
    const firstPid = s.workerPid;
    const result = await s.run(engineJob(how), () => {}, never());
    expect(result.status === 'failed' && result.error.code).toBe(how === 'devicelost' ? 'E_DEVICE_LOST' : 'E_DEVICE_FAILED');
    // Sent at once, before the replacement is ready: it waits for the new worker, never reaches the old one.
    const next = await s.run(engineJob('ok'), () => {}, never());
    expect(next.status).toBe('done');
    expect(s.workerPid).not.toBe(firstPid);
    expect(processExists(firstPid ?? -1)).toBe(false);
    expect(s.health()).toMatchObject({ state: 'ready', restarts: 1, recentCrashes: 0 });
    expect(s.health().lastCrash).toBeUndefined();
    expect(s.log.lines.some((l) => l.startsWith('warn worker.device_reset '))).toBe(true);
  });

  it('reports a crash loop and refuses jobs with E_ENGINE_UNAVAILABLE until the backoff has passed', async () => {
    // Backoff 20 ms · 2^(n−1): the third crash waits 80 ms before the restart.
    const s = supervisor({ restartBackoffMs: 20, restartBackoffMaxMs: 5_000 });
    for (let i = 0; i < 3; i++) {
      const r = await s.run(engineJob('segfault'), () => {}, never());
      expect(r.status === 'failed' && r.error.code).toBe('E_WORKER_CRASHED');
    }
    expect(s.health().state).toBe('crash-loop');
    expect(s.health().recentCrashes).toBe(3);
    const refused = await s.run(engineJob('ok'), () => {}, never());
    expect(refused.status === 'failed' && refused.error).toMatchObject({ code: 'E_ENGINE_UNAVAILABLE' });
    expect(refused.status === 'failed' && refused.error.message).toMatch(/SIGSEGV/);
    expect(s.log.lines.some((l) => l.includes('worker.crash_loop'))).toBe(true);

    await waitFor(() => s.health().state === 'ready', 'the restart after the backoff');
    const after = await s.run(engineJob('ok'), () => {}, never());
    expect(after.status).toBe('done');
    expect(s.health().restarts).toBe(3);
  });

  it('a crash loop before the worker is ever ready refuses the waiting job', async () => {
    const s = supervisor({ env: { FAKE_WORKER_START: 'crash' }, restartBackoffMs: 10 });
    const result = await s.run(engineJob('ok'), () => {}, never());
    expect(result.status === 'failed' && result.error.code).toBe('E_ENGINE_UNAVAILABLE');
    expect(s.health().state).toBe('crash-loop');
    expect(s.health().device).toBeNull();
  });

  it('kills and restarts a worker whose job ignores cancel past the grace period (R15)', async () => {
    const s = supervisor({ cancelGraceMs: 300 });
    const controller = new AbortController();
    const progress: EngineProgress[] = [];
    const pending = s.run(engineJob('busy'), (p) => progress.push(p), controller.signal);
    await waitFor(() => progress.length > 0, 'the busy job to start');
    const busyPid = s.workerPid;
    controller.abort();
    expect(await pending).toEqual({ status: 'cancelled' });
    expect(processExists(busyPid ?? -1)).toBe(false);
    expect(s.log.lines.some((l) => l.includes('worker.cancel_timeout'))).toBe(true);
    // Killing a deaf job is not a crash.
    expect(s.health().recentCrashes).toBe(0);

    const next = await s.run(engineJob('ok'), () => {}, never());
    expect(next.status).toBe('done');
    expect(s.health().restarts).toBe(1);
    expect(s.workerPid).not.toBe(busyPid);
  });

  it('a cooperative cancel stops the job at a step boundary without killing the worker (R14)', async () => {
    const s = supervisor({ cancelGraceMs: 10_000 });
    const controller = new AbortController();
    const progress: EngineProgress[] = [];
    const pending = s.run(engineJob('slow'), (p) => progress.push(p), controller.signal);
    await waitFor(() => progress.length >= 3, 'a few steps');
    const pid = s.workerPid;
    controller.abort();
    const seenAtCancel = progress.length;
    expect(await pending).toEqual({ status: 'cancelled' });
    // No progress is relayed after the cancel, and the worker lives on.
    expect(progress.length).toBe(seenAtCancel);
    expect(s.workerPid).toBe(pid);
    expect(s.health()).toMatchObject({ state: 'ready', restarts: 0, recentCrashes: 0 });
  });

  it('a job cancelled before it starts resolves cancelled without reaching the worker', async () => {
    const s = supervisor();
    const controller = new AbortController();
    controller.abort();
    expect(await s.run(engineJob('segfault'), () => {}, controller.signal)).toEqual({ status: 'cancelled' });
    await waitFor(() => s.health().state === 'ready', 'ready');
    expect(s.health().recentCrashes).toBe(0);
  });

  it('treats a malformed message from the worker as a crash', async () => {
    const s = supervisor();
    const result = await s.run(engineJob('malformed'), () => {}, never());
    expect(result.status === 'failed' && result.error.code).toBe('E_WORKER_CRASHED');
    expect(s.health().lastCrash).toBe('the engine sent a malformed message');
    expect(s.health().recentCrashes).toBe(1);
    expect((await s.run(engineJob('ok'), () => {}, never())).status).toBe('done');
  });

  it('kills a worker that never says ready', async () => {
    const s = supervisor({ env: { FAKE_WORKER_START: 'silent' }, readyTimeoutMs: 200, crashLoopThreshold: 1 });
    const result = await s.run(engineJob('ok'), () => {}, never());
    expect(result.status === 'failed' && result.error.code).toBe('E_ENGINE_UNAVAILABLE');
    expect(s.health().lastCrash).toMatch(/did not start within/);
  });

  it("carries the worker's stderr into the daemon log as plain lines", async () => {
    const s = supervisor();
    expect((await s.run(engineJob('log'), () => {}, never())).status).toBe('done');
    await waitFor(() => s.log.lines.some((l) => l.includes('provider failed')), 'the log line');
    const lines = s.log.lines.filter((l) => l.includes('worker.log'));
    expect(lines).toEqual([`info worker.log ${JSON.stringify({ line: '2026-01-01 [E:onnxruntime] provider failed' })}`]);
  });

  it('runs one job at a time', async () => {
    const s = supervisor();
    const controller = new AbortController();
    const first = s.run(engineJob('slow'), () => {}, controller.signal);
    const second = await s.run(engineJob('ok'), () => {}, never());
    expect(second.status === 'failed' && second.error.code).toBe('E_INTERNAL');
    controller.abort();
    expect(await first).toEqual({ status: 'cancelled' });
  });

  it('keeps onnxruntime and image decoding out of the daemon process (R16)', async () => {
    const result = await build({
      entryPoints: [fileURLToPath(new URL('../../../daemon/worker/supervisor.ts', import.meta.url))],
      bundle: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const packages = Object.values(result.metafile.outputs).flatMap((o) => o.imports.filter((i) => i.external).map((i) => i.path));
    expect(packages).toContain('node:child_process');
    expect(packages.filter((p) => /onnxruntime|sharp/.test(p))).toEqual([]);
  });

  it('close() stops the worker, leaves no process behind and refuses later jobs', async () => {
    const s = supervisor();
    await waitFor(() => s.workerPid !== undefined && s.health().state === 'ready', 'ready');
    const pid = s.workerPid ?? -1;
    expect(processExists(pid)).toBe(true);
    await s.close();
    expect(processExists(pid)).toBe(false);
    expect(s.health().state).toBe('stopped');
    expect(s.workerPid).toBeUndefined();
    const late = await s.run(engineJob('ok'), () => {}, never());
    expect(late.status === 'failed' && late.error.code).toBe('E_SHUTTING_DOWN');
  });

  it('close() kills a worker that ignores shutdown after the grace period', async () => {
    const s = supervisor({ shutdownGraceMs: 200, cancelGraceMs: 60_000 });
    const progress: EngineProgress[] = [];
    const pending = s.run(engineJob('busy'), (p) => progress.push(p), never());
    await waitFor(() => progress.length > 0, 'the busy job to start');
    const pid = s.workerPid ?? -1;
    await s.close();
    expect(processExists(pid)).toBe(false);
    const result = await pending;
    expect(result.status === 'failed' && result.error.code).toBe('E_SHUTTING_DOWN');
    expect(s.log.lines.some((l) => l.includes('worker.shutdown_timeout'))).toBe(true);
  });
});
