// A full render through the real daemon: startDaemon on 127.0.0.1:0 with the built worker, a tiny
// model installed in a temporary P2PZ_HOME, a paired client on the event stream. A non-square RGBA
// upload comes back at exactly its size with its alpha and a mask, the same bytes for the same seed;
// a cancel mid-edit gives exactly one `cancelled` event, no decode and no stored result; an 8000×8000
// JPEG of a few hundred bytes comes back within the 16 MP output budget.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_HEADER, HealthResponse, ImageUploadResponse, JobOutcome, JobResponse, PROTOCOL_VERSION, ServerEvent } from '../../../shared/protocol/index.js';
import { startDaemon, type RunningDaemon } from '../../../daemon/daemon.js';
import { silentLogger } from '../../../daemon/log.js';
import { writeTinyCaptioner } from '../../../daemon/onnx/tiny/blip-captioner.js';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import { EventClient, send } from '../server/helpers.js';
import { headerOnlyJpeg } from '../image/fixtures.js';
import { pixels, rgbaPng } from './tiny-pipeline.js';

const WORKER = join(process.cwd(), 'dist/daemon/worker.js');
const CLIENT = 'client-render-1';
const W = 66;
const H = 90;

let home: string;
let daemon: RunningDaemon;
let token: string;
let events: EventClient;
let input: Awaited<ReturnType<typeof rgbaPng>>;
let imageId: string;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'p2pz-render-'));
  await writeTinyStableDiffusion(join(home, 'models', 'tiny-sd'), { flavour: 'opset14' });
  daemon = await startDaemon({ port: 0, home, log: silentLogger, device: 'cpu', supervisor: { workerPath: WORKER, env: { CUDA_VISIBLE_DEVICES: '' } } });
  const { code } = daemon.pairingCode();
  token = ((await send(daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code } })).json as { token: string }).token;
  events = EventClient.connect(daemon, { Origin: 'null' });
  await events.opened;
  events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: CLIENT });
  await events.next((e) => e['type'] === 'welcome');
  input = await rgbaPng(W, H);
  const uploaded = await send(daemon, { method: 'POST', path: '/v1/images', token, body: input.png, headers: { 'Content-Type': 'image/png' } });
  imageId = ImageUploadResponse.parse(uploaded.json).imageId;
});

afterAll(async () => {
  events?.ws.close();
  await daemon?.close();
  await rm(home, { recursive: true, force: true });
});

function submit(jobId: string, edit: Record<string, unknown>): ReturnType<typeof send> {
  return send(daemon, {
    method: 'POST', path: '/v1/jobs', token, headers: { [CLIENT_HEADER]: CLIENT },
    json: { v: PROTOCOL_VERSION, jobId, kind: 'render', imageId, model: 'tiny-sd', edit: { source: 'cat', target: 'dog', size: 64, regSteps: 1, seed: 9, ...edit } },
  });
}

async function finished(jobId: string): Promise<JobOutcome> {
  const e = await events.next((x) => x['jobId'] === jobId && (x['type'] === 'finished' || x['type'] === 'error'), 90_000);
  expect(e['type'], JSON.stringify(e)).toBe('finished');
  return JobOutcome.parse(e['outcome']);
}

async function download(id: string): Promise<Buffer> {
  const r = await send(daemon, { path: `/v1/results/${id}`, token });
  expect(r.status).toBe(200);
  return r.bytes;
}

describe('render job through the daemon', () => {
  it('returns the edit at the upload\'s exact size with alpha, and its mask; the same bytes for the same seed', async () => {
    expect((await submit('render-job-0001', { steps: 2 })).status).toBe(202);
    const outcome = await finished('render-job-0001');
    expect(outcome.engine).toBe('diffusion');
    const image = outcome.results.find((r) => r.role === 'image')!;
    const mask = outcome.results.find((r) => r.role === 'mask')!;
    expect([image.width, image.height, mask.width, mask.height]).toEqual([W, H, W, H]);
    const bytes = await download(image.id);
    const px = await pixels(bytes);
    expect([px.width, px.height, px.channels]).toEqual([W, H, 4]);
    for (let p = 0; p < W * H; p++) expect(px.data[4 * p + 3]).toBe(input.raw[4 * p + 3]);
    expect((await pixels(await download(mask.id))).channels).toBe(1);
    // No captioner installed: the template caption, and the job says so.
    expect(outcome.details).toEqual({
      caption: 'a photo of a cat', captionOrigin: 'template', mask: 'exact',
      notes: [expect.stringMatching(/^No captioner is installed, so the caption is the template "a photo of a cat"/)],
    });

    const stages = events.events.filter((e) => e['jobId'] === 'render-job-0001' && e['type'] === 'progress').map((e) => e['stage']);
    for (const s of ['load', 'decode', 'encode', 'caption', 'direction', 'inversion', 'edit', 'vae-decode']) expect(stages).toContain(s);
    for (const e of events.events) expect(ServerEvent.safeParse(e).success).toBe(true);

    expect((await submit('render-job-0002', { steps: 2 })).status).toBe(202);
    const again = await finished('render-job-0002');
    expect((await download(again.results.find((r) => r.role === 'image')!.id)).equals(bytes)).toBe(true);
  });

  it('a quick preview without a GAN is a reduced diffusion run that says so, with step previews', async () => {
    const jobId = 'preview-job-0001';
    const reply = await send(daemon, {
      method: 'POST', path: '/v1/jobs', token, headers: { [CLIENT_HEADER]: CLIENT },
      json: { v: PROTOCOL_VERSION, jobId, kind: 'preview', imageId, stepPreviews: true, edit: { source: 'cat', target: 'dog', size: 64, steps: 3, regSteps: 0, seed: 9 } },
    });
    expect(reply.status).toBe(202);
    const outcome = await finished(jobId);
    expect(outcome.engine).toBe('diffusion-preview');
    const image = outcome.results.find((r) => r.role === 'image')!;
    expect([image.width, image.height]).toEqual([W, H]);
    // Step previews as binary frames, one per edit step; no result frame (that is the GAN's).
    const frames = events.frames.filter((f) => f.header.jobId === jobId);
    expect(frames.map((f) => [f.header.role, f.header.stage, f.header.step, f.header.width, f.header.height])).toEqual([1, 2, 3].map((step) => ['step', 'edit', step, 8, 8]));
    expect(events.refusedFrames).toEqual([]);
  });

  it('a cancel during the edit: exactly one `cancelled`, no vae-decode after it, no result', async () => {
    const jobId = 'render-job-cancel';
    expect((await submit(jobId, { steps: 20, target: 'zebra' })).status).toBe(202);
    await events.next((e) => e['jobId'] === jobId && e['type'] === 'progress' && e['stage'] === 'edit' && (e['step'] as number) >= 1, 90_000);
    const cancelAt = events.events.length;
    events.sendJson({ v: PROTOCOL_VERSION, type: 'cancel', jobId });
    await events.next((e) => e['jobId'] === jobId && e['type'] === 'cancelled', 30_000);
    // Let anything late arrive, then check the whole stream of this job.
    await new Promise((r) => setTimeout(r, 500));
    const mine = events.events.filter((e) => e['jobId'] === jobId);
    expect(mine.filter((e) => e['type'] === 'cancelled')).toHaveLength(1);
    expect(mine.some((e) => e['type'] === 'finished' || e['type'] === 'error')).toBe(false);
    const after = events.events.slice(cancelAt).filter((e) => e['jobId'] === jobId);
    expect(after.some((e) => e['type'] === 'progress' && (e['stage'] === 'vae-decode' || e['stage'] === 'save'))).toBe(false);
    expect(mine.some((e) => e['type'] === 'progress' && e['stage'] === 'vae-decode')).toBe(false);
    const state = JobResponse.parse((await send(daemon, { path: `/v1/jobs/${jobId}`, token, headers: { [CLIENT_HEADER]: CLIENT } })).json);
    expect(state.job.state).toBe('cancelled');
    expect(state.job.outcome).toBeUndefined();
  });

  it('a 1×1 upload fails with E_BAD_REQUEST and a hint, and the daemon goes on serving', async () => {
    const tiny = await sharp({ create: { width: 1, height: 1, channels: 3, background: { r: 1, g: 2, b: 3 } } }).png().toBuffer();
    const up = await send(daemon, { method: 'POST', path: '/v1/images', token, body: tiny, headers: { 'Content-Type': 'image/png' } });
    const small = ImageUploadResponse.parse(up.json).imageId;
    const jobId = 'render-job-1x1';
    const reply = await send(daemon, {
      method: 'POST', path: '/v1/jobs', token, headers: { [CLIENT_HEADER]: CLIENT },
      json: { v: PROTOCOL_VERSION, jobId, kind: 'render', imageId: small, model: 'tiny-sd', edit: { source: 'cat', target: 'dog', size: 64, steps: 1, regSteps: 0 } },
    });
    expect(reply.status).toBe(202);
    const e = await events.next((x) => x['jobId'] === jobId && (x['type'] === 'finished' || x['type'] === 'error'), 60_000);
    expect(e).toMatchObject({ type: 'error', error: { code: 'E_BAD_REQUEST', message: expect.stringContaining('1×1 pixels'), hint: expect.stringContaining('larger layer') } });
    expect((await send(daemon, { path: '/v1/health' })).status).toBe(200);
  });

  it('an 8000×8000 JPEG of a few hundred bytes comes back at 4096×4096 (the output budget), and the job\'s details say so (docs/SECURITY.md §R9)', { timeout: 180_000 }, async () => {
    const jpeg = await headerOnlyJpeg(8000, 8000);
    expect(jpeg.byteLength).toBeLessThan(400);
    const up = await send(daemon, { method: 'POST', path: '/v1/images', token, body: jpeg, headers: { 'Content-Type': 'image/jpeg' } });
    expect(ImageUploadResponse.parse(up.json)).toMatchObject({ width: 8000, height: 8000, format: 'jpeg' });
    const jobId = 'render-job-large';
    const reply = await send(daemon, {
      method: 'POST', path: '/v1/jobs', token, headers: { [CLIENT_HEADER]: CLIENT },
      json: { v: PROTOCOL_VERSION, jobId, kind: 'render', imageId: ImageUploadResponse.parse(up.json).imageId, model: 'tiny-sd', edit: { source: 'cat', target: 'dog', size: 64, steps: 1, regSteps: 0 } },
    });
    expect(reply.status).toBe(202);
    const outcome = await finished(jobId);
    expect(outcome.results.length).toBeGreaterThanOrEqual(1);
    for (const r of outcome.results) expect([r.width, r.height]).toEqual([4096, 4096]);
    expect(outcome.details?.scaledFrom).toEqual({ width: 8000, height: 8000 });
    expect(outcome.details?.notes[0]).toMatch(/^The image is 8000×8000 px, more than the 16 MP a result may have, so the result is 4096×4096 px/);
    const px = await pixels(await download(outcome.results.find((r) => r.role === 'image')!.id));
    expect([px.width, px.height]).toEqual([4096, 4096]);
  });

  it('with a captioner installed, a job without a caption is captioned by it; health lists it; details say the mask is unavailable', async () => {
    await writeTinyCaptioner(join(home, 'models', 'captioner', 'tiny-blip'));
    const health = HealthResponse.parse((await send(daemon, { path: '/v1/health' })).json);
    expect(health.models).toContainEqual({ name: 'tiny-blip', kind: 'captioner', demo: false });
    expect((await submit('render-job-caption', { steps: 1, mask: true })).status).toBe(202);
    const outcome = await finished('render-job-caption');
    expect(outcome.details).toMatchObject({ captionOrigin: 'captioner', captioner: 'tiny-blip', mask: 'unavailable' });
    const caption = outcome.details!.caption!;
    expect(caption.length).toBeGreaterThan(0);
    expect(outcome.details!.notes).toEqual([`The caption "${caption}" does not name "cat" (nor a plural of it), so no mask was made.`]);
    expect(outcome.results.map((r) => r.role)).toEqual(['image']);
    // The user's caption still wins, and names the source: the mask is back.
    expect((await submit('render-job-own-caption', { steps: 1, mask: true, caption: 'two cats on a sofa' })).status).toBe(202);
    const own = await finished('render-job-own-caption');
    expect(own.details).toEqual({ caption: 'two cats on a sofa', captionOrigin: 'user', mask: 'plural', notes: [] });
    expect(own.results.map((r) => r.role)).toEqual(['image', 'mask']);
  });
});
