// The caption before the render, through the whole stack: the real daemon on 127.0.0.1:0 with its real
// worker process, the tiny Stable Diffusion model, and (from the second part on) the tiny BLIP
// captioner installed under models/captioner/. Without a captioner a `caption` job fails with
// E_MODEL_MISSING and a hint, and a render without a caption says it used the template. With one, the
// job answers the caption that `p2pz caption IMAGE` (the real CLI, another process) prints for the
// same file, and a render of the same upload without a caption uses, reports and dumps exactly it.
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageUploadResponse, PROTOCOL_VERSION, ServerEvent, type JobOutcome } from '../../shared/protocol/index.js';
import type { RunningDaemon } from '../../daemon/daemon.js';
import { writeTinyCaptioner } from '../../daemon/onnx/tiny/blip-captioner.js';
import { cliEventStream, EventClient, send } from '../daemon/server/helpers.js';
import { rgbaPng } from '../daemon/pipeline/tiny-pipeline.js';
import { startTinyDaemon, type TinyDaemon } from '../fixtures/tiny-models.js';

const CLIENT = 'caption_client_01';
const BIN = join(import.meta.dirname, '../../bin/p2pz.js');
const RENDER = { source: 'cat', target: 'dog', size: 64, steps: 2, regSteps: 1, seed: 5 };
let tiny: TinyDaemon;
let daemon: RunningDaemon;
let events: EventClient;
let auth: Record<string, string>;
let imagePath: string;
let imageId: string;

async function submit(json: Record<string, unknown>): Promise<void> {
  const reply = await send(daemon, { method: 'POST', path: '/v1/jobs', headers: auth, json: { v: PROTOCOL_VERSION, imageId, ...json } });
  expect(reply.status, JSON.stringify(reply.json)).toBe(202);
}

async function ending(jobId: string): Promise<ServerEvent> {
  return ServerEvent.parse(await events.next((e) => e.jobId === jobId && ['finished', 'error', 'cancelled'].includes(String(e.type)), 120_000));
}

async function finished(jobId: string): Promise<JobOutcome> {
  const end = await ending(jobId);
  if (end.type !== 'finished') throw new Error(`${jobId} ended with ${JSON.stringify(end)}`);
  return end.outcome;
}

/** `p2pz caption IMAGE --models DIR` as a designer runs it: its exit code, stdout and stderr. */
function cliCaption(models: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'caption', imagePath, '--models', models, '--device', 'cpu'], { env: { ...process.env, P2PZ_HOME: join(tiny.home, 'cli-home') } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

beforeAll(async () => {
  tiny = await startTinyDaemon('p2pz-caption-job-', { diffusion: true });
  daemon = tiny.daemon;
  ({ auth, events } = await cliEventStream(daemon, CLIENT));
  const png = (await rgbaPng(60, 44)).png;
  imagePath = join(tiny.home, 'in.png');
  await writeFile(imagePath, png);
  const upload = await send(daemon, { method: 'POST', path: '/v1/images', headers: { ...auth, 'content-type': 'image/png' }, body: png });
  imageId = ImageUploadResponse.parse(upload.json).imageId;
});

afterAll(async () => {
  events?.ws.close();
  await tiny?.close();
});

describe('without a captioner', () => {
  it('a caption job fails with E_MODEL_MISSING and a hint that gives the install command; the daemon keeps serving', async () => {
    await submit({ jobId: 'caption_none_01', kind: 'caption' });
    const end = await ending('caption_none_01');
    if (end.type !== 'error') throw new Error(`expected an error, got ${JSON.stringify(end)}`);
    expect(end.error.code).toBe('E_MODEL_MISSING');
    expect(end.error.message).toBe('No captioner is installed, so previews and renders use the template caption ("a photo of a …") unless you write one.');
    expect(end.error.hint).toContain('p2pz models install --from DIR (a captioner export, docs/CAPTIONER.md), or p2pz models install OWNER/NAME --captioner');
    const health = await send(daemon, { path: '/v1/health' });
    expect(health.status).toBe(200);
  });

  it('a render without a caption uses the template and says so in its details', async () => {
    await submit({ jobId: 'render_tmpl_001', kind: 'render', model: 'tiny-sd', edit: RENDER });
    const outcome = await finished('render_tmpl_001');
    expect(outcome.details).toMatchObject({ caption: 'a photo of a cat', captionOrigin: 'template' });
    expect(outcome.details?.notes.join(' ')).toContain('No captioner is installed, so the caption is the template "a photo of a cat"');
  });

  it('a caption job needs no edit, and refuses nothing but its own shape', async () => {
    const bad = await send(daemon, { method: 'POST', path: '/v1/jobs', headers: auth, json: { v: PROTOCOL_VERSION, imageId, kind: 'render' } });
    expect(bad.status).toBe(400);
    expect((bad.json as { code: string }).code).toBe('E_BAD_REQUEST');
  });
});

describe('with the tiny captioner installed', () => {
  let printed: string;
  beforeAll(async () => {
    await mkdir(join(tiny.models, 'captioner'), { recursive: true });
    await writeTinyCaptioner(join(tiny.models, 'captioner', 'tiny-blip'));
    const cli = await cliCaption(tiny.models);
    expect(cli.code, cli.err).toBe(0);
    printed = cli.out.trim();
    expect(printed.length).toBeGreaterThan(0);
  });

  it('a caption job answers what `p2pz caption IMAGE` prints, with no images, ahead of a queued render', async () => {
    // A render first, then the caption: the caption lane runs before queued edits.
    await submit({ jobId: 'render_block_01', kind: 'render', model: 'tiny-sd', edit: { ...RENDER, steps: 6, caption: 'a photo of a cat' } });
    await submit({ jobId: 'render_block_02', kind: 'render', model: 'tiny-sd', edit: { ...RENDER, steps: 6, caption: 'a photo of a cat', seed: 6 } });
    await submit({ jobId: 'caption_blip_01', kind: 'caption' });
    const outcome = await finished('caption_blip_01');
    expect(outcome.engine).toBe('captioner');
    expect(outcome.results).toEqual([]);
    expect(outcome.details).toMatchObject({ caption: printed, captionOrigin: 'captioner', captioner: 'tiny-blip', notes: [] });
    const order = events.events.filter((e) => e.type === 'started').map((e) => e.jobId);
    expect(order.indexOf('caption_blip_01')).toBeLessThan(order.indexOf('render_block_02'));
    await finished('render_block_01');
    await finished('render_block_02');
  });

  it('a render of the same upload without a caption uses exactly that caption; an edited caption wins', async () => {
    await submit({ jobId: 'render_blip_001', kind: 'render', model: 'tiny-sd', edit: RENDER });
    const auto = await finished('render_blip_001');
    expect(auto.details).toMatchObject({ caption: printed, captionOrigin: 'captioner', captioner: 'tiny-blip' });
    await submit({ jobId: 'render_edit_001', kind: 'render', model: 'tiny-sd', edit: { ...RENDER, caption: `${printed} on a sofa` } });
    const edited = await finished('render_edit_001');
    expect(edited.details).toMatchObject({ caption: `${printed} on a sofa`, captionOrigin: 'user' });
  });
});
