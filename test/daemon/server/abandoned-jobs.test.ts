// Jobs of a closed page: when a client's last event stream closes, its queued and running jobs are
// cancelled after a grace period; a stream of the same client that opens within it (a reload that
// keeps its client id) keeps the render going, and the render's events reach the new stream.
// The real daemon with an engine that runs each job until the test releases it or it is aborted.
import { afterEach, describe, expect, it } from 'vitest';
import type { EngineHealth, EngineJob, EngineProgress, EngineResult, JobEngine } from '../../../daemon/jobs/engine.js';
import { CLIENT_HEADER, ImageUploadResponse, JobResponse, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import { EventClient, PNG_1X1, send, startTestDaemon, type TestDaemon } from './helpers.js';

/** Each run holds until `finish()` or its abort signal. */
class HeldEngine implements JobEngine {
  readonly runs: Array<{ job: EngineJob; aborted: boolean; finish: () => void }> = [];

  run(job: EngineJob, onProgress: (p: EngineProgress) => void, signal: AbortSignal): Promise<EngineResult> {
    onProgress({ stage: 'generate', step: 1, total: 2 });
    return new Promise((resolve) => {
      const entry = {
        job,
        aborted: false,
        finish: () => resolve({ status: 'done', outputs: [{ role: 'image', png: PNG_1X1, width: 1, height: 1 }], engine: 'gan', timings: { generate: 1 } }),
      };
      this.runs.push(entry);
      signal.addEventListener('abort', () => {
        entry.aborted = true;
        resolve({ status: 'cancelled' });
      }, { once: true });
    });
  }

  health(): EngineHealth {
    return { state: 'ready', restarts: 0, recentCrashes: 0, device: { provider: 'cpu', reason: 'test' } };
  }

  async close(): Promise<void> {}
}

const GRACE_MS = 600;
let t: TestDaemon | undefined;
let engine: HeldEngine;
afterEach(async () => {
  await t?.stop();
  t = undefined;
});

async function start(): Promise<TestDaemon> {
  engine = new HeldEngine();
  t = await startTestDaemon({ engine, ws: { abandonedJobGraceMs: GRACE_MS } });
  return t;
}

async function stream(d: TestDaemon, clientId: string): Promise<EventClient> {
  const events = EventClient.connect(d.daemon, { Origin: 'null' });
  await events.opened;
  events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token: d.token, clientId });
  await events.next((e) => e['type'] === 'welcome');
  return events;
}

async function submit(d: TestDaemon, clientId: string): Promise<string> {
  const up = ImageUploadResponse.parse((await send(d.daemon, { method: 'POST', path: '/v1/images', token: d.token, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } })).json);
  const reply = await send(d.daemon, {
    method: 'POST',
    path: '/v1/jobs',
    token: d.token,
    headers: { [CLIENT_HEADER]: clientId },
    json: { v: PROTOCOL_VERSION, kind: 'preview', imageId: up.imageId, edit: { source: 'cat', target: 'dog' } },
  });
  expect(reply.status).toBeLessThan(300);
  return JobResponse.parse(reply.json).job.jobId;
}

async function stateOf(d: TestDaemon, clientId: string, jobId: string): Promise<string> {
  return JobResponse.parse((await send(d.daemon, { path: `/v1/jobs/${jobId}`, token: d.token, headers: { [CLIENT_HEADER]: clientId } })).json).job.state;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(20);
  }
}

describe('jobs of a closed page', () => {
  it("closing a client's last stream cancels its running and queued jobs after the grace period", async () => {
    const d = await start();
    const page = await stream(d, 'client-closed-tab');
    const running = await submit(d, 'client-closed-tab');
    const queued = await submit(d, 'client-closed-tab');
    await until(() => engine.runs.length === 1, 5_000);
    expect(await stateOf(d, 'client-closed-tab', queued)).toBe('queued');
    page.ws.close();
    await page.closed;
    // Within the grace period nothing happens.
    await sleep(GRACE_MS / 3);
    expect(engine.runs[0]?.aborted).toBe(false);
    await until(() => engine.runs[0]?.aborted === true, 5_000);
    expect(await stateOf(d, 'client-closed-tab', running)).toBe('cancelled');
    expect(await stateOf(d, 'client-closed-tab', queued)).toBe('cancelled');
    // The queued one never reached the engine.
    await sleep(50);
    expect(engine.runs.length).toBe(1);
  });

  it('a reload (same client id back within the grace period) keeps the render, and its events reach the new stream', async () => {
    const d = await start();
    const first = await stream(d, 'client-reloaded');
    const jobId = await submit(d, 'client-reloaded');
    await until(() => engine.runs.length === 1, 5_000);
    first.ws.close();
    await first.closed;
    await sleep(GRACE_MS / 3);
    const second = await stream(d, 'client-reloaded');
    await sleep(GRACE_MS * 2);
    expect(engine.runs[0]?.aborted).toBe(false);
    expect(await stateOf(d, 'client-reloaded', jobId)).toBe('running');
    engine.runs[0]?.finish();
    const finished = await second.next((e) => e['type'] === 'finished' && e['jobId'] === jobId);
    expect(finished['jobId']).toBe(jobId);
    second.ws.close();
  });

  it('one of two streams closing, another client closing, or a client that never streamed: nothing is cancelled', async () => {
    const d = await start();
    const a1 = await stream(d, 'client-two-tabs');
    const a2 = await stream(d, 'client-two-tabs');
    const other = await stream(d, 'client-other-page');
    const jobA = await submit(d, 'client-two-tabs');
    const jobHttp = await submit(d, 'client-http-only');
    await until(() => engine.runs.length === 1, 5_000);
    a1.ws.close();
    other.ws.close();
    await sleep(GRACE_MS * 2);
    expect(engine.runs[0]?.aborted).toBe(false);
    expect(await stateOf(d, 'client-two-tabs', jobA)).toBe('running');
    expect(await stateOf(d, 'client-http-only', jobHttp)).toBe('queued');
    a2.ws.close();
  });
});
