// End to end through the whole stack: the real daemon on 127.0.0.1:0 with its real worker process and
// onnxruntime, a generated image-to-image generator installed as the cat → dog GAN preview, a
// non-square RGBA PNG uploaded over HTTP, the job's events over the WebSocket, and the result
// downloaded. The pixels are checked against an independent computation: the same ONNX model run
// directly in this process on the decoded input. Before the PNG, the preview frame (a binary
// WebSocket message, decoded by the plugin's own decoder) carries exactly the generator's pixels.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_HEADER, ImageUploadResponse, JobResponse, PROTOCOL_VERSION, ServerEvent } from '../../shared/protocol/index.js';
import type { RunningDaemon } from '../../daemon/daemon.js';
import { SESSION_DEFAULTS } from '../../daemon/worker/sessions.js';
import { EventClient, send } from '../daemon/server/helpers.js';
import { startTinyDaemon, type TinyDaemon } from '../fixtures/tiny-models.js';

const W = 320;
const H = 192;
const CLIENT = 'e2e_client_0001';
let tiny: TinyDaemon;
let daemon: RunningDaemon;
let token = '';

/** A non-square RGBA image with varied colour and a graded alpha channel. */
async function inputPng(): Promise<{ png: Buffer; rgba: Buffer }> {
  const rgba = Buffer.alloc(W * H * 4);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 4;
      rgba[i] = (x * 255) / W;
      rgba[i + 1] = (y * 255) / H;
      rgba[i + 2] = (x * y) % 256;
      rgba[i + 3] = x < 40 ? 0 : 255 - (y % 128);
    }
  return { png: await sharp(rgba, { raw: { width: W, height: H, channels: 4 } }).png().toBuffer(), rgba };
}

beforeAll(async () => {
  // Working size = the input's long side, so the generator sees the input unresized.
  tiny = await startTinyDaemon('p2pz-e2e-', { gan: { source: 'cat', target: 'dog', size: W, seed: 7 } });
  daemon = tiny.daemon;
  token = (await readFile(daemon.paths.cliToken, 'utf8')).trim();
});

afterAll(async () => {
  await tiny?.close();
});

describe('a preview job over HTTP + WebSocket with the real worker', () => {
  it('returns the generator output at the input size with the alpha kept', async () => {
    const auth = { authorization: `Bearer ${token}`, [CLIENT_HEADER]: CLIENT };
    const events = EventClient.connect(daemon);
    await events.opened;
    events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: CLIENT });
    await events.next((e) => e.type === 'welcome', 20_000);

    const { png, rgba } = await inputPng();
    // Binary messages that are not well-formed frames are refused with E_BAD_FRAME (the plugin's rule);
    // none may arrive here.
    expect(events.refusedFrames).toEqual([]);
    const upload = await send(daemon, { method: 'POST', path: '/v1/images', headers: { ...auth, 'content-type': 'image/png' }, body: png });
    expect(upload.status).toBe(201);
    const image = ImageUploadResponse.parse(upload.json);
    expect([image.width, image.height, image.format]).toEqual([W, H, 'png']);

    const submit = await send(daemon, {
      method: 'POST',
      path: '/v1/jobs',
      headers: auth,
      json: { v: PROTOCOL_VERSION, jobId: 'e2e_job_000001', kind: 'preview', imageId: image.imageId, edit: { source: 'cat', target: 'dog' } },
    });
    expect(submit.status).toBe(202);
    expect(JobResponse.parse(submit.json).job.state).toMatch(/queued|running/);

    const finished = ServerEvent.parse(await events.next((e) => e.jobId === 'e2e_job_000001' && ['finished', 'error'].includes(String(e.type)), 60_000));
    if (finished.type !== 'finished') throw new Error(`job ended with ${JSON.stringify(finished)}`);
    const jobEvents = events.events.filter((e) => e.jobId === 'e2e_job_000001').map((e) => ServerEvent.parse(e).type);
    expect(jobEvents[0]).toBe('queued');
    expect(jobEvents).toContain('started');
    expect(jobEvents.filter((t) => ['finished', 'cancelled', 'error'].includes(t))).toEqual(['finished']);
    expect(finished.outcome.engine).toBe('gan');
    expect(finished.outcome.device).toBe('cpu');
    const ref = finished.outcome.results.find((r) => r.role === 'image');
    expect(ref).toMatchObject({ width: W, height: H, mime: 'image/png' });

    const download = await send(daemon, { path: `/v1/results/${ref?.id}`, headers: auth });
    expect(download.status).toBe(200);
    expect(download.headers['content-type']).toBe('image/png');
    const out = await sharp(download.bytes).raw().toBuffer({ resolveWithObject: true });
    expect([out.info.width, out.info.height, out.info.channels]).toEqual([W, H, 4]);

    // Independent computation: the same model, run here on the same pixels (the worker's session options).
    const session = await ort.InferenceSession.create(join(tiny.models, 'gan/cat-dog/generator.onnx'), { executionProviders: ['cpu'], graphOptimizationLevel: SESSION_DEFAULTS.graphOptimizationLevel });
    const x = new Float32Array(3 * W * H);
    for (let c = 0; c < 3; c++) for (let p = 0; p < W * H; p++) x[c * W * H + p] = (rgba[p * 4 + c] as number) / 127.5 - 1;
    const y = (await session.run({ [session.inputNames[0] as string]: new ort.Tensor('float32', x, [1, 3, H, W]) }))[session.outputNames[0] as string];
    const yData = y?.data as Float32Array;
    let maxDiff = 0;
    let alphaExact = true;
    for (let p = 0; p < W * H; p++) {
      for (let c = 0; c < 3; c++) {
        const expected = Math.round(Math.min(1, Math.max(-1, yData[c * W * H + p] as number)) * 127.5 + 127.5);
        maxDiff = Math.max(maxDiff, Math.abs((out.data[p * 4 + c] as number) - expected));
      }
      if (out.data[p * 4 + 3] !== rgba[p * 4 + 3]) alphaExact = false;
    }
    await session.release();
    // Rounding of x·127.5+127.5 at exact .5 boundaries may differ by one level, never more.
    expect(maxDiff).toBeLessThanOrEqual(1);

    // The preview frame: one, for this job, holding byte for byte the generator's
    // output (round((y+1)·127.5) clamped, as the protocol states) with the input's alpha.
    const frames = events.frames.filter((f) => f.header.jobId === 'e2e_job_000001');
    expect(frames.map((f) => f.header)).toEqual([
      { v: PROTOCOL_VERSION, type: 'preview-frame', jobId: 'e2e_job_000001', kind: 'preview', role: 'result', stage: 'generate', step: 1, total: 1, width: W, height: H, format: 'rgba8' },
    ]);
    expect(events.refusedFrames).toEqual([]);
    const expected = Buffer.alloc(W * H * 4);
    for (let p = 0; p < W * H; p++) {
      for (let c = 0; c < 3; c++) {
        const v = ((yData[c * W * H + p] as number) + 1) * 127.5;
        expected[p * 4 + c] = v > 0 ? (v < 255 ? Math.round(v) : 255) : 0;
      }
      expected[p * 4 + 3] = rgba[p * 4 + 3] as number;
    }
    const frame = frames[0]?.rgba ?? new Uint8Array();
    expect(frame.length).toBe(expected.length);
    expect(Buffer.compare(Buffer.from(frame), expected)).toBe(0);
    expect(alphaExact).toBe(true);
    // The generator changed the image (a no-op would pass the size checks too).
    expect(Buffer.compare(out.data, rgba)).not.toBe(0);
    events.ws.close();
  });
});
