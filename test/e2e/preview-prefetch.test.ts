// Uploads decoded ahead of their quick preview (daemon/pipeline/gan-prefetch.ts), through the whole
// stack: the real daemon on 127.0.0.1:0, its real worker process and onnxruntime, a generated
// image-to-image generator installed as the cat → dog GAN preview. The worker says how it found a
// preview's input in the job's stage timings (`decode`: decoded by the job; `decoded-before`: kept;
// `decode-wait`: the prefetch's decode was under way): a preview after its upload must not decode again.
// Prefetching is only a head start: bad uploads get the same error codes as before, a damaged image
// fails its job with E_IMAGE_DECODE and the daemon keeps serving, and uploads during a running job do
// not change that job's result. The frames here (160² RGBA) go through the frame file, job after job.
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthResponse, ImageUploadResponse, PROTOCOL_VERSION, ServerEvent, type JobOutcome } from '../../shared/protocol/index.js';
import type { RunningDaemon } from '../../daemon/daemon.js';
import type { WorkerSupervisor } from '../../daemon/worker/supervisor.js';
import { cliEventStream, codeOf, EventClient, send } from '../daemon/server/helpers.js';
import { startTinyDaemon, type TinyDaemon } from '../fixtures/tiny-models.js';

/** 160² RGBA is 100 KiB: the frames go through the frame file (daemon/worker/frame-file.ts). */
const SIDE = 160;
const CLIENT = 'prefetch_client_1';
let tiny: TinyDaemon;
let supervisor: WorkerSupervisor | undefined;
let daemon: RunningDaemon;
let events: EventClient;
let auth: Record<string, string>;
let jobs = 0;

/** Another opaque SIDE² photo-like PNG for each `seed`. */
function photo(seed: number): Promise<Buffer> {
  const rgb = Buffer.alloc(SIDE * SIDE * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 7 + seed * 101 + ((i * seed) % 13)) & 255;
  return sharp(rgb, { raw: { width: SIDE, height: SIDE, channels: 3 } }).png().toBuffer();
}

async function upload(png: Uint8Array, contentType = 'image/png'): Promise<{ status: number; imageId: string; code: string | undefined }> {
  const answer = await send(daemon, { method: 'POST', path: '/v1/images', headers: { ...auth, 'content-type': contentType }, body: Buffer.from(png) });
  return { status: answer.status, imageId: answer.status === 201 ? ImageUploadResponse.parse(answer.json).imageId : '', code: codeOf(answer) };
}

/** Submits a preview of `imageId` and waits for its end: the outcome, or the error's code. */
async function preview(imageId: string): Promise<{ jobId: string; outcome?: JobOutcome; error?: string }> {
  const jobId = `prefetch_job_${String(jobs++).padStart(4, '0')}`;
  const submit = await send(daemon, {
    method: 'POST',
    path: '/v1/jobs',
    headers: auth,
    json: { v: PROTOCOL_VERSION, jobId, kind: 'preview', imageId, edit: { source: 'cat', target: 'dog' } },
  });
  expect(submit.status).toBe(202);
  return ended(jobId);
}

async function ended(jobId: string): Promise<{ jobId: string; outcome?: JobOutcome; error?: string }> {
  const end = ServerEvent.parse(await events.next((e) => e.jobId === jobId && ['finished', 'error', 'cancelled'].includes(String(e.type)), 60_000));
  if (end.type === 'finished') return { jobId, outcome: end.outcome };
  if (end.type === 'error') return { jobId, error: end.error.code };
  throw new Error(`${jobId} ended with ${end.type}`);
}

/** How the worker found the preview's input: the one decode stage in its timings. */
function inputStage(outcome: JobOutcome | undefined): string[] {
  return Object.keys(outcome?.timings ?? {}).filter((k) => ['decode', 'decoded-before', 'decode-wait'].includes(k));
}

function frameOf(jobId: string): Buffer {
  const frames = events.frames.filter((f) => f.header.jobId === jobId);
  expect(frames).toHaveLength(1);
  return Buffer.from(frames[0]?.rgba ?? []);
}

beforeAll(async () => {
  tiny = await startTinyDaemon('p2pz-prefetch-', {
    gan: { source: 'cat', target: 'dog', size: SIDE, seed: 3 },
    wrap: (worker) => {
      supervisor = worker as WorkerSupervisor;
      return worker;
    },
  });
  daemon = tiny.daemon;
  ({ auth, events } = await cliEventStream(daemon, CLIENT));
  // Uploads are announced to a ready worker only (a hint is not kept for one that is starting).
  for (let i = 0; i < 600; i++) {
    const health = HealthResponse.parse((await send(daemon, { path: '/v1/health' })).json);
    if (health.worker.state === 'ready') break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

afterAll(async () => {
  events?.ws.close();
  await tiny?.close();
});

describe('uploads decoded ahead of their preview', () => {
  it('a preview after its upload does not decode it again, and gives the same pixels as a decoding one', async () => {
    const png = await photo(1);
    const first = await upload(png);
    expect(first.status).toBe(201);
    const job = await preview(first.imageId);
    expect(job.outcome?.engine).toBe('gan');
    // Kept already, or the prefetch's decode was under way and the job waited for it: never a second decode.
    expect(inputStage(job.outcome)).toHaveLength(1);
    expect(inputStage(job.outcome)[0]).toMatch(/^(decoded-before|decode-wait)$/);
    // The daemon does not read an upload the worker holds from disk (JobEngine.holds): with its file
    // gone behind the daemon's back, the preview still runs.
    const stored = (await readdir(daemon.paths.uploads)).filter((f) => f.startsWith(`${first.imageId}.`));
    expect(stored).toHaveLength(1);
    await rm(join(daemon.paths.uploads, stored[0] as string));
    const again = await preview(first.imageId);
    expect(again.error).toBeUndefined();
    expect(inputStage(again.outcome)).toEqual(['decoded-before']);
    expect(frameOf(again.jobId)).toEqual(frameOf(job.jobId));
    // Both went to the worker by the upload's id, without its bytes (daemon/worker/held-uploads.ts).
    expect(Object.keys(job.outcome?.timings ?? {})).toContain('upload-held');
    expect(Object.keys(again.outcome?.timings ?? {})).toContain('upload-held');
    // The same pixels through other bytes (the image at PNG level 9: another cache key, decoded anew).
    const other = await sharp(png).png({ compressionLevel: 9 }).toBuffer();
    expect(Buffer.compare(other, png)).not.toBe(0);
    const otherUpload = await upload(other);
    const decodedJob = await preview(otherUpload.imageId);
    expect(inputStage(decodedJob.outcome)).toHaveLength(1);
    expect(frameOf(decodedJob.jobId)).toEqual(frameOf(job.jobId));
  });

  it('uploads while a job runs leave that job alone, and each is previewed correctly afterwards', async () => {
    const a = await upload(await photo(2));
    const reference = await preview(a.imageId);
    // A job of A, with five more uploads (beyond the worker's four waiting ones) sent while it runs.
    const jobId = `prefetch_job_${String(jobs++).padStart(4, '0')}`;
    const submit = await send(daemon, {
      method: 'POST',
      path: '/v1/jobs',
      headers: auth,
      json: { v: PROTOCOL_VERSION, jobId, kind: 'preview', imageId: a.imageId, edit: { source: 'cat', target: 'dog' } },
    });
    expect(submit.status).toBe(202);
    const pngs = await Promise.all([3, 4, 5, 6, 7].map(photo));
    const uploads = await Promise.all(pngs.map((png) => upload(png)));
    expect(uploads.map((u) => u.status)).toEqual([201, 201, 201, 201, 201]);
    const during = await ended(jobId);
    expect(during.outcome?.engine).toBe('gan');
    expect(frameOf(jobId)).toEqual(frameOf(reference.jobId));
    // Every upload previews, and the frames are those of a decode of each image (the second preview of
    // the same upload is kept, so both must agree, and differ between images).
    const frames: Buffer[] = [];
    const held: boolean[] = [];
    for (const u of uploads) {
      const job = await preview(u.imageId);
      expect(job.outcome?.engine).toBe('gan');
      held.push('upload-held' in (job.outcome?.timings ?? {}));
      const again = await preview(u.imageId);
      expect(inputStage(again.outcome)).toEqual(['decoded-before']);
      expect(frameOf(again.jobId)).toEqual(frameOf(job.jobId));
      frames.push(frameOf(job.jobId));
    }
    expect(new Set(frames.map((f) => f.toString('base64'))).size).toBe(frames.length);
    // The worker holds the last four uploads: the first of the five went with its bytes again. (Each
    // preview makes its upload the most recently used, so the later ones are still held.)
    expect(held).toEqual([false, true, true, true, true]);
    // Those frames went through the frame file, one after the other: it holds the last one.
    const frameFile = supervisor?.frameFile;
    expect(frameFile?.read(SIDE * SIDE * 4)).toEqual(new Uint8Array(frames.at(-1) ?? []));
  });

  it('bad uploads keep their error codes, a damaged image fails its own preview, and the daemon keeps serving', async () => {
    const png = await photo(8);
    // Refused at the route, before anything reaches the engine.
    expect((await upload(png, 'image/jpeg')).code).toBe('E_IMAGE_FORMAT');
    expect((await upload(Buffer.from('not an image at all'), 'image/png')).code).toBe('E_IMAGE_FORMAT');
    // A PNG whose header is fine (the route accepts it) and whose pixel data is not: the worker's
    // prefetch fails and keeps nothing; the preview decodes it and reports the decode error.
    const damaged = Buffer.from(png);
    const idat = damaged.indexOf('IDAT');
    expect(idat).toBeGreaterThan(0);
    damaged.fill(0x55, idat + 8, Math.min(damaged.length - 12, idat + 200));
    const bad = await upload(damaged);
    expect(bad.status).toBe(201);
    const failed = await preview(bad.imageId);
    expect(failed.error).toBe('E_IMAGE_DECODE');
    const failedAgain = await preview(bad.imageId);
    expect(failedAgain.error).toBe('E_IMAGE_DECODE');
    const good = await upload(png);
    const ok = await preview(good.imageId);
    expect(ok.outcome?.engine).toBe('gan');
    expect(inputStage(ok.outcome)[0]).toMatch(/^(decoded-before|decode-wait)$/);
  });
});
