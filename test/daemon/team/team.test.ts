// Team mode end to end (docs/TEAM.md): a real redis-server on a free port, a real endpoint
// (`startDaemon` with `team`) on 127.0.0.1:0, and GPU workers that run the real built worker process
// on the tiny models: in this process (startTeamWorker) and as separate `p2pz worker` processes where
// a test kills one. Checked: outputs byte-identical to a one-machine run, previews ahead of renders,
// step preview frames through Redis, a worker killed with SIGKILL mid-job (one retry note, exactly one result, stored once), a Redis
// restart with a job queued, cancel of a running job, three failures ending with the last error, a
// caption job answered by the worker's captioner ahead of a render that then uses it, and which tokens
// may use which routes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { homePaths } from '../../../daemon/config.js';
import { startDaemon, type RunningDaemon } from '../../../daemon/daemon.js';
import type { EngineHealth, EngineJob, EngineResult, JobEngine } from '../../../daemon/jobs/engine.js';
import { silentLogger } from '../../../daemon/log.js';
import { decodeImage } from '../../../daemon/image/decode.js';
import { writeTinyCaptioner } from '../../../daemon/onnx/tiny/blip-captioner.js';
import { captionImage, loadCaptioner } from '../../../daemon/pipeline/captioner/blip.js';
import { TokenStore } from '../../../daemon/server/tokens.js';
import { Queue } from 'bullmq';
import { TEAM_DEFAULTS, type TeamSettings } from '../../../daemon/team/settings.js';
import { startTeamWorker, type RunningTeamWorker } from '../../../daemon/team/team-worker.js';
import { CLIENT_HEADER, ImageUploadResponse, PROTOCOL_VERSION, ServerEvent, type JobRequestInput } from '../../../shared/protocol/index.js';
import { SessionCache } from '../../../daemon/worker/sessions.js';
import { WorkerSupervisor } from '../../../daemon/worker/supervisor.js';
import { BUILT_WORKER, installTinyModels } from '../../fixtures/tiny-models.js';
import { EventClient, send } from '../server/helpers.js';
import { startRedis, type TestRedis } from '../../fixtures/redis-server.js';

const CLI = join(import.meta.dirname, '../../../bin/p2pz.js');
const CLIENT = 'team_client_0001';
/** Short locks so that a killed worker's job is noticed in seconds, not the default 30 s. */
const FAST: Partial<TeamSettings> = { lockDurationMs: 2_000, stalledIntervalMs: 1_000, retryDelayMs: 200, cancelGraceMs: 5_000 };
const TINY = { gan: { source: 'cat', target: 'dog', size: 64, seed: 3 }, diffusion: true } as const;

let redis: TestRedis;
let home: string;
let workerHome: string;
let endpoint: RunningDaemon;
let cliToken: string;
let workerToken: string;
let workerTokenFile: string;
let clientToken: string;
let input: Buffer;
const workers: RunningTeamWorker[] = [];
const processes: ChildProcess[] = [];
const clients: EventClient[] = [];

async function inputPng(): Promise<Buffer> {
  const w = 96;
  const h = 64;
  const rgba = Buffer.alloc(w * h * 4);
  for (let i = 0; i < w * h; i++) rgba.set([(i * 7) % 256, (i * 3) % 256, (i * 11) % 256, 255], i * 4);
  return sharp(rgba, { raw: { width: w, height: h, channels: 4 } }).png().toBuffer();
}

beforeAll(async () => {
  redis = await startRedis();
  home = await mkdtemp(join(tmpdir(), 'p2pz-team-endpoint-'));
  workerHome = await mkdtemp(join(tmpdir(), 'p2pz-team-worker-'));
  // The endpoint has no models of its own; each worker machine has them installed.
  await installTinyModels(homePaths(workerHome).models, TINY);
  const tokens = await TokenStore.open(homePaths(home));
  workerToken = (await tokens.issue('gpu-1', 'worker')).token;
  clientToken = (await tokens.issue('designer', 'client')).token;
  cliToken = tokens.cliToken();
  workerTokenFile = join(workerHome, 'worker-token');
  await writeFile(workerTokenFile, `${workerToken}\n`, { mode: 0o600 });
  endpoint = await startDaemon({ port: 0, home, log: silentLogger, team: { connection: redis.connection, settings: FAST } });
  input = await inputPng();
}, 60_000);

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.close();
  for (const child of processes.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  // A graceful close: a force-closed BullMQ worker can still take a job from its blocking fetch.
  await Promise.all(workers.splice(0).map((w) => w.close()));
});

afterAll(async () => {
  await endpoint?.close();
  await redis?.close();
  await rm(home, { recursive: true, force: true });
  await rm(workerHome, { recursive: true, force: true });
});

/** The real built worker on the CPU with the worker machine's models and caches (the edit direction
 *  is computed once, as on a real GPU machine). */
function gpuEngine(): JobEngine {
  return new WorkerSupervisor({ modelsDir: homePaths(workerHome).models, cacheDir: homePaths(workerHome).cache, workerPath: BUILT_WORKER, device: 'cpu', log: silentLogger });
}

function inProcessWorker(engine: JobEngine = gpuEngine()): RunningTeamWorker {
  const worker = startTeamWorker({ connection: redis.connection, endpoint: endpoint.url, token: workerToken, engine, settings: FAST, log: silentLogger });
  workers.push(worker);
  return worker;
}

/** `p2pz worker` as its own process (the real CLI), taking jobs for the endpoint. */
function processWorker(): ChildProcess {
  const child = spawn(
    process.execPath,
    [CLI, 'worker', '--queue', redis.url, '--endpoint', endpoint.url, '--token-file', workerTokenFile, '--device', 'cpu', '--lock-duration-ms', String(FAST.lockDurationMs)],
    { env: { ...process.env, P2PZ_HOME: workerHome, P2PZ_LOG: 'error' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  processes.push(child);
  return child;
}

async function waitForOutput(child: ChildProcess, pattern: RegExp): Promise<void> {
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker did not print ${pattern}: ${out}`)), 120_000);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      if (pattern.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  });
}

async function upload(token = clientToken): Promise<string> {
  const reply = await send(endpoint, { method: 'POST', path: '/v1/images', headers: { authorization: `Bearer ${token}`, [CLIENT_HEADER]: CLIENT, 'content-type': 'image/png' }, body: input });
  expect(reply.status).toBe(201);
  return ImageUploadResponse.parse(reply.json).imageId;
}

/** Omit over each member of a union (TypeScript's Omit keeps only the keys all members share). */
type EachOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

async function submit(job: EachOmit<JobRequestInput, 'imageId'>, imageId: string): Promise<void> {
  const reply = await send(endpoint, {
    method: 'POST',
    path: '/v1/jobs',
    headers: { authorization: `Bearer ${clientToken}`, [CLIENT_HEADER]: CLIENT },
    json: { v: PROTOCOL_VERSION, imageId, ...job },
  });
  expect(reply.status, JSON.stringify(reply.json)).toBe(202);
}

async function events(): Promise<EventClient> {
  const client = EventClient.connect(endpoint);
  clients.push(client);
  await client.opened;
  client.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token: clientToken, clientId: CLIENT });
  await client.next((e) => e.type === 'welcome', 10_000);
  return client;
}

function ending(client: EventClient, jobId: string, timeoutMs = 300_000): Promise<ServerEvent> {
  return client.next((e) => e.jobId === jobId && ['finished', 'cancelled', 'error'].includes(String(e.type)), timeoutMs).then((e) => ServerEvent.parse(e));
}

function typesOf(client: EventClient, jobId: string): string[] {
  return client.events.filter((e) => e.jobId === jobId).map((e) => String(e.type));
}

async function resultBytes(event: ServerEvent, role: 'image' | 'mask' = 'image'): Promise<Buffer> {
  if (event.type !== 'finished') throw new Error(`job ended with ${JSON.stringify(event)}`);
  const ref = event.outcome.results.find((r) => r.role === role);
  const reply = await send(endpoint, { method: 'GET', path: `/v1/results/${ref?.id}`, headers: { authorization: `Bearer ${clientToken}` } });
  expect(reply.status).toBe(200);
  return reply.bytes;
}

/** What one machine makes of the same job: the built worker run directly, no queue. */
async function oneMachine(job: EngineJob): Promise<EngineResult> {
  const engine = gpuEngine();
  try {
    return await engine.run(job, () => undefined, new AbortController().signal);
  } finally {
    await engine.close();
  }
}

const RENDER = { source: 'cat', target: 'dog', size: 64, steps: 6, regSteps: 1, seed: 5 } as const;

describe('a team endpoint with GPU workers on a real Redis', () => {
  it('runs previews and renders on two workers with outputs identical to a one-machine run', async () => {
    inProcessWorker();
    inProcessWorker();
    const client = await events();
    const imageId = await upload();
    await submit({ jobId: 'team_preview_01', kind: 'preview', edit: { source: 'cat', target: 'dog' } }, imageId);
    await submit({ jobId: 'team_render_001', kind: 'render', model: 'tiny-sd', edit: RENDER, stepPreviews: true }, imageId);
    const [preview, render] = await Promise.all([ending(client, 'team_preview_01'), ending(client, 'team_render_001')]);
    // Step previews travel through Redis as frames (one RGBA pixel per latent cell); the quick
    // preview's full-size frame does not (the client takes its PNG result).
    const steps = client.frames.filter((f) => f.header.jobId === 'team_render_001');
    expect(steps.length).toBeGreaterThan(0);
    expect(steps.every((f) => f.header.role === 'step' && f.header.stage === 'edit' && f.header.width === 8 && f.header.height === 8)).toBe(true);
    expect(client.frames.filter((f) => f.header.jobId === 'team_preview_01')).toEqual([]);
    expect(client.refusedFrames).toEqual([]);

    const local = await oneMachine({ jobId: 'local_preview_1', kind: 'preview', image: Uint8Array.from(input), model: undefined, edit: { source: 'cat', target: 'dog', steps: 50, cfg: 5, xa: 0.1, regSteps: 5, size: 512, editScale: 1, seed: 42, mask: true, blend: false }, stepPreviews: false });
    if (local.status !== 'done') throw new Error(JSON.stringify(local));
    expect(Buffer.compare(await resultBytes(preview), Buffer.from(local.outputs[0]?.png ?? []))).toBe(0);

    const localRender = await oneMachine({ jobId: 'local_render_01', kind: 'render', image: Uint8Array.from(input), model: 'tiny-sd', edit: { ...RENDER, cfg: 5, xa: 0.1, editScale: 1, mask: true, blend: false }, stepPreviews: false });
    if (localRender.status !== 'done') throw new Error(JSON.stringify(localRender));
    for (const output of localRender.outputs) {
      expect(Buffer.compare(await resultBytes(render, output.role), Buffer.from(output.png)), output.role).toBe(0);
    }
    const health = await send(endpoint, { method: 'GET', path: '/v1/health' });
    expect(health.json).toMatchObject({ team: { workers: expect.any(Number) } });
    client.ws.close();
  }, 600_000);

  it('runs a preview submitted after queued renders first', async () => {
    const client = await events();
    const imageId = await upload();
    // No worker yet (the last test's have disconnected): everything waits in Redis, in BullMQ's priority order.
    const probe = new Queue(TEAM_DEFAULTS.queueName, { connection: redis.connection });
    for (let i = 0; i < 100 && (await probe.getWorkersCount()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await probe.getWorkersCount()).toBe(0);
    await submit({ jobId: 'prio_render_001', kind: 'render', model: 'tiny-sd', edit: RENDER }, imageId);
    await submit({ jobId: 'prio_render_002', kind: 'render', model: 'tiny-sd', edit: RENDER }, imageId);
    await submit({ jobId: 'prio_preview_01', kind: 'preview', edit: { source: 'cat', target: 'dog' } }, imageId);
    // The endpoint answers 202 before its add reaches Redis: start the worker once all three are there.
    const waitingInRedis = async (): Promise<number> => (await probe.getJobCounts('prioritized', 'wait')).prioritized ?? 0;
    for (let i = 0; i < 100 && (await waitingInRedis()) < 3; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await waitingInRedis()).toBe(3);
    await probe.close();
    inProcessWorker();
    await Promise.all(['prio_render_001', 'prio_render_002', 'prio_preview_01'].map((id) => ending(client, id)));
    const order = client.events.filter((e) => e.type === 'finished').map((e) => e.jobId);
    expect(order.indexOf('prio_preview_01')).toBeLessThan(order.indexOf('prio_render_001'));
    expect(order.indexOf('prio_preview_01')).toBeLessThan(order.indexOf('prio_render_002'));
    client.ws.close();
  }, 600_000);

  it('hands the job of a worker killed mid-job to another: one retry note, one result, stored once', async () => {
    const client = await events();
    const imageId = await upload();
    const doomed = processWorker();
    await waitForOutput(doomed, /taking jobs/);
    const before = (await readdir(homePaths(home).results)).length;
    await submit({ jobId: 'kill_render_001', kind: 'render', model: 'tiny-sd', edit: { ...RENDER, steps: 40 } }, imageId);
    await client.next((e) => e.jobId === 'kill_render_001' && e.type === 'progress', 300_000);
    doomed.kill('SIGKILL');
    inProcessWorker();
    const end = await ending(client, 'kill_render_001');
    expect(end.type).toBe('finished');
    const types = typesOf(client, 'kill_render_001');
    expect(types.filter((t) => t === 'retrying')).toHaveLength(1);
    expect(types.filter((t) => ['finished', 'cancelled', 'error'].includes(t))).toEqual(['finished']);
    // The image and its mask, one file each: the first attempt's outputs were never stored.
    const added = (await readdir(homePaths(home).results)).length - before;
    expect(added).toBe(end.type === 'finished' ? end.outcome.results.length : -1);
    client.ws.close();
  }, 600_000);

  it('keeps a queued job through a Redis restart, and both sides reconnect', async () => {
    const client = await events();
    const imageId = await upload();
    await submit({ jobId: 'restart_prev_01', kind: 'preview', edit: { source: 'cat', target: 'dog' } }, imageId);
    await new Promise((r) => setTimeout(r, 300));
    await redis.stop();
    await redis.start();
    inProcessWorker();
    const end = await ending(client, 'restart_prev_01');
    expect(end.type).toBe('finished');
    client.ws.close();
  }, 400_000);

  it('stops a running job on its worker when the client cancels, and the worker takes the next job', async () => {
    inProcessWorker();
    const client = await events();
    const imageId = await upload();
    await submit({ jobId: 'cancel_render_1', kind: 'render', model: 'tiny-sd', edit: { ...RENDER, steps: 60 } }, imageId);
    await client.next((e) => e.jobId === 'cancel_render_1' && e.type === 'progress', 300_000);
    const reply = await send(endpoint, { method: 'DELETE', path: '/v1/jobs/cancel_render_1', headers: { authorization: `Bearer ${clientToken}`, [CLIENT_HEADER]: CLIENT } });
    expect(reply.status).toBe(200);
    expect((await ending(client, 'cancel_render_1')).type).toBe('cancelled');
    await submit({ jobId: 'after_cancel_01', kind: 'preview', edit: { source: 'cat', target: 'dog' } }, imageId);
    // The worker is free again: the cancelled run stopped, and the next job runs.
    expect((await ending(client, 'after_cancel_01')).type).toBe('finished');
    client.ws.close();
  }, 400_000);

  it('ends a job that fails three times with the last error', async () => {
    let attempt = 0;
    const crashing: JobEngine = {
      async run() {
        attempt += 1;
        return { status: 'failed', error: { code: 'E_WORKER_CRASHED', message: `crash number ${attempt}` } };
      },
      health: (): EngineHealth => ({ state: 'ready', restarts: 0, recentCrashes: 0, device: null }),
      close: async () => undefined,
    };
    inProcessWorker(crashing);
    const client = await events();
    await submit({ jobId: 'fail_three_0001', kind: 'preview', edit: { source: 'cat', target: 'dog' } }, await upload());
    const end = await ending(client, 'fail_three_0001');
    expect(end).toMatchObject({ type: 'error', error: { code: 'E_WORKER_CRASHED', message: 'crash number 3' } });
    expect(typesOf(client, 'fail_three_0001').filter((t) => t === 'retrying')).toHaveLength(2);
    client.ws.close();
  }, 300_000);

  // Last among the jobs that run: from here on the worker machine has a captioner installed.
  it('answers a caption job from the worker\'s captioner ahead of a queued render, and the render uses that caption', async () => {
    const models = homePaths(workerHome).models;
    await writeTinyCaptioner(join(models, 'captioner', 'tiny-blip'));
    const sessions = new SessionCache({ modelsDir: models, executionProviders: ['cpu'] });
    const decoded = await decodeImage(input);
    const expected = (await captionImage(sessions, await loadCaptioner(sessions, 'tiny-blip'), decoded.rgb, decoded.width, decoded.height)).caption;
    await sessions.releaseAll();
    expect(expected).not.toBe('');

    const client = await events();
    const imageId = await upload();
    const probe = new Queue(TEAM_DEFAULTS.queueName, { connection: redis.connection });
    for (let i = 0; i < 100 && (await probe.getWorkersCount()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await probe.getWorkersCount()).toBe(0);
    await submit({ jobId: 'team_capt_rend1', kind: 'render', model: 'tiny-sd', edit: RENDER }, imageId);
    await submit({ jobId: 'team_caption_01', kind: 'caption' }, imageId);
    const waitingInRedis = async (): Promise<number> => (await probe.getJobCounts('prioritized', 'wait')).prioritized ?? 0;
    for (let i = 0; i < 100 && (await waitingInRedis()) < 2; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await waitingInRedis()).toBe(2);
    await probe.close();
    inProcessWorker();
    const [caption, render] = await Promise.all([ending(client, 'team_caption_01'), ending(client, 'team_capt_rend1')]);
    if (caption.type !== 'finished' || render.type !== 'finished') throw new Error(JSON.stringify([caption, render]));
    expect(caption.outcome).toMatchObject({ engine: 'captioner', results: [], details: { caption: expected, captionOrigin: 'captioner', captioner: 'tiny-blip' } });
    expect(render.outcome.details).toMatchObject({ caption: expected, captionOrigin: 'captioner', captioner: 'tiny-blip' });
    const order = client.events.filter((e) => e.type === 'finished').map((e) => e.jobId);
    expect(order.indexOf('team_caption_01')).toBeLessThan(order.indexOf('team_capt_rend1'));
    client.ws.close();
  }, 600_000);

  it('lets a worker token reach only the team routes, and only worker tokens reach them', async () => {
    const asWorker = { authorization: `Bearer ${workerToken}`, [CLIENT_HEADER]: CLIENT };
    const refusedJob = await send(endpoint, { method: 'POST', path: '/v1/jobs', headers: asWorker, json: { v: PROTOCOL_VERSION, imageId: 'abcdefgh', kind: 'preview', edit: { source: 'cat', target: 'dog' } } });
    expect([refusedJob.status, (refusedJob.json as { code?: string }).code]).toEqual([401, 'E_UNAUTHORIZED']);
    const refusedUpload = await send(endpoint, { method: 'POST', path: '/v1/images', headers: { ...asWorker, 'content-type': 'image/png' }, body: input });
    expect(refusedUpload.status).toBe(401);
    const ws = EventClient.connect(endpoint);
    await ws.opened;
    ws.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token: workerToken, clientId: CLIENT });
    await ws.next((e) => e.type === 'protocol-error', 10_000);
    ws.ws.close();
    for (const token of [clientToken, cliToken]) {
      const reply = await send(endpoint, { method: 'GET', path: '/v1/team/jobs/abcdefghijkl/input', headers: { authorization: `Bearer ${token}` } });
      expect(reply.status).toBe(401);
    }
    const unknown = await send(endpoint, { method: 'GET', path: '/v1/team/jobs/abcdefghijkl/input', headers: asWorker });
    expect(unknown.status).toBe(404);
  }, 30_000);
});
