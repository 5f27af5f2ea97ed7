// The trainer end to end (models/distill/train.py with Debian's python3-torch): a few iterations on a
// synthetic pairs dataset, interrupted and resumed, exported to ONNX, registered into a temporary
// models directory through `p2pz distill register`, then served as a preview job by the real daemon
// (HTTP upload, WebSocket events, the real worker and onnxruntime).
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_HEADER, ImageUploadResponse, PROTOCOL_VERSION, ServerEvent } from '../../shared/protocol/index.js';
import { startDaemon, type RunningDaemon } from '../../daemon/daemon.js';
import { silentLogger } from '../../daemon/log.js';
import { registerGenerator } from '../../daemon/distill/register.js';
import { decodeNpy } from '../../daemon/pipeline/dump/npy.js';
import { GanMeta } from '../../daemon/models/gan-meta.js';
import { EventClient, send } from '../daemon/server/helpers.js';
import { PYTHON, runProcess, TRAINER, writeSyntheticDataset, type Run } from './helpers.js';

// The working size is the long side of the pairs (a multiple of 64); the preview's input below has
// exactly that size, so the generator sees it unresized and the result can be checked against a
// direct onnxruntime run.
const W = 128;
const H = 64;
const CLIENT = 'distill_client_01';
let tmp = '';
let home = '';
let first: Run;
let second: Run;
let losses: Run;
let pairs: Awaited<ReturnType<typeof writeSyntheticDataset>>;

const tiny = ['--crop', '32', '--width', '8', '--blocks', '2', '--disc-width', '8', '--threads', '1', '--log-every', '1', '--checkpoint-every', '2', '--seed', '3'];

/** One process: VGG16 weights in torchvision's layout (random: the loss's wiring is under test, not
 *  ImageNet) and a wrong file, then short runs through train.main: the optional losses, the U-Net,
 *  and the wrong weights file. */
async function runOptionalLosses(dir: string): Promise<Run> {
  const script = [
    'import sys, json, torch',
    'sys.dont_write_bytecode = True',
    'sys.path.insert(0, sys.argv[1])',
    'from p2pz_distill.losses import vgg16_features',
    'import train',
    'torch.manual_seed(0)',
    'torch.save({"features." + k: v for k, v in vgg16_features().state_dict().items()}, sys.argv[3] + "/vgg16.pth")',
    'torch.save({"classifier.0.weight": torch.zeros(1)}, sys.argv[3] + "/wrong.pth")',
    'common = ["--data", sys.argv[2], "--iterations", "2", "--crop", "32", "--width", "8", "--blocks", "1", "--disc-width", "8", "--threads", "1", "--log-every", "1"]',
    'train.main(common + ["--out", sys.argv[3] + "/run", "--lambda-fm", "10", "--vgg-weights", sys.argv[3] + "/vgg16.pth"])',
    'train.main(common + ["--out", sys.argv[3] + "/unet", "--arch", "unet", "--depth", "4"])',
    'try:',
    '    train.main(common + ["--out", sys.argv[3] + "/bad", "--vgg-weights", sys.argv[3] + "/wrong.pth"])',
    'except ValueError as e:',
    '    print("refused:", e)',
  ].join('\n');
  await mkdir(dir);
  return runProcess(PYTHON, ['-c', script, join(import.meta.dirname, '../../models/distill'), join(tmp, 'data'), dir]);
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'p2pz-distill-train-'));
  home = join(tmp, 'home');
  pairs = await writeSyntheticDataset(join(tmp, 'data'), { count: 3, width: W, height: H, size: W });
  const common = ['--data', join(tmp, 'data'), '--out', join(tmp, 'run'), ...tiny];
  // Stopped after 4 of 6 iterations (with a checkpoint), then resumed, finished and registered.
  // The optional-losses runs go alongside (separate folders).
  [first, losses] = await Promise.all([
    runProcess(PYTHON, [TRAINER, ...common, '--iterations', '6', '--stop-at', '4']),
    runOptionalLosses(join(tmp, 'losses')),
  ]);
  second = await runProcess(PYTHON, [TRAINER, ...common, '--iterations', '6', '--resume', '--register', join(home, 'models'), '--node', process.execPath]);
}, 120_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('train.py', () => {
  it('trains, resumes from its checkpoint, and reports every iteration once', async () => {
    expect(first.stderr.split('\n').filter((l) => /Error|Traceback/.test(l))).toEqual([]);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('{"stopped": 4}');
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('{"resumed": 4}');
    const log = (await readFile(join(tmp, 'run/log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { iteration: number; l1: number; lr: number });
    expect(log.map((l) => l.iteration)).toEqual([1, 2, 3, 4, 5, 6]);
    for (const l of log) expect(Number.isFinite(l.l1)).toBe(true);
    // Linear decay over the second half: iteration i (1-based) ran at lr·(1 − (i−1−3)/3) from i = 4.
    expect(log.map((l) => l.lr)).toEqual([2e-4, 2e-4, 2e-4, 2e-4, expect.closeTo(2e-4 * (2 / 3), 12), expect.closeTo(2e-4 / 3, 12)]);
    const summary = JSON.parse(await readFile(join(tmp, 'run/train.json'), 'utf8')) as { resumed_from: number; pairs: number; iterations: number };
    expect(summary).toMatchObject({ resumed_from: 4, pairs: 3, iterations: 6 });
  });

  it('writes meta.json per GanMeta with the direction, working size, model, settings and data hash', async () => {
    const meta = GanMeta.parse(JSON.parse(await readFile(join(tmp, 'run/meta.json'), 'utf8')));
    // The data hash, computed independently: SHA-256 over "inputHash:outputHash\n" of the kept pairs.
    const h = createHash('sha256');
    for (const p of pairs) if (p.status === 'kept') h.update(`${p.inputHash}:${p.outputHash}\n`);
    expect(meta).toEqual({
      v: 1,
      source: 'cat',
      target: 'dog',
      size: W,
      from: { model: 'tiny-sd', settings: { steps: 2, cfg: 5, xa: 0.1, regSteps: 0, size: W, editScale: 1, seed: 42, vaeLatent: 'mean', bankCount: 4 } },
      dataHash: `sha256:${h.digest('hex')}`,
    });
  });

  it('exports the runtime contract: image [1,3,H,W] → output_image of the same size, registered', async () => {
    expect(second.stdout).toMatch(/installed gan\/cat-dog: cat → dog, working size 128 \(max \|ONNX − PyTorch\| \d\.\de-\d+; 128×128 checked\)/);
    const session = await ort.InferenceSession.create(join(home, 'models/gan/cat-dog/generator.onnx'), { executionProviders: ['cpu'] });
    expect(session.inputNames).toEqual(['image']);
    expect(session.outputNames).toEqual(['output_image']);
    const input = session.inputMetadata[0];
    expect(input?.isTensor && input.type === 'float32' ? input.shape : null).toEqual([1, 3, 'height', 'width']);
    // Sizes that are not multiples of the generator's downsampling come back at their own size.
    for (const [h, w] of [[64, 128], [37, 90]] as const) {
      const y = (await session.run({ image: new ort.Tensor('float32', new Float32Array(3 * h * w).fill(0.25), [1, 3, h, w]) }))['output_image'];
      expect(y?.dims).toEqual([1, 3, h, w]);
    }
    await session.release();
  });
});

describe('train.py optional losses', () => {
  it('adds feature matching and the VGG perceptual loss from a local weights file, and refuses a wrong file', async () => {
    const r = losses;
    expect(r.code, r.stderr).toBe(0);
    const lines = (await readFile(join(tmp, 'losses/run/log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(lines).toHaveLength(2);
    for (const l of lines) {
      expect(l['fm']).toBeGreaterThan(0);
      expect(l['vgg']).toBeGreaterThan(0);
      // loss_G = gan + λ_L1·l1 + λ_fm·fm + λ_vgg·vgg with the defaults λ_L1 = 100, λ_vgg = 10.
      expect(l['loss_g']).toBeCloseTo(l['gan']! + 100 * l['l1']! + 10 * l['fm']! + 10 * l['vgg']!, 3);
    }
    expect(r.stdout).toMatch(/refused: .*wrong\.pth is not a torchvision vgg16 state dict \(missing \['0\.weight'/);
  });
});

describe('train.py with the U-Net generator', () => {
  it('exports a U-Net that passes registration: PyTorch check pair at an odd size, output of the input size', async () => {
    expect(losses.code, losses.stderr).toBe(0);
    const r = await registerGenerator(join(tmp, 'losses/unet'), join(tmp, 'unet-models'));
    expect(r.name).toBe('cat-dog');
    expect(r.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    // The check pair is 2^4 + 3 high and 2·2^4 + 5 wide: padded inside the graph and cropped back.
    const check = decodeNpy(await readFile(join(tmp, 'losses/unet/export-check/input.npy')));
    expect(check.shape).toEqual([1, 3, 19, 37]);
  });
});

describe('the registered generator in the daemon', () => {
  let daemon: RunningDaemon;
  beforeAll(async () => {
    daemon = await startDaemon({ port: 0, home, device: 'cpu', log: silentLogger, supervisor: { workerPath: join(import.meta.dirname, '../../dist/daemon/worker.js') } });
  });
  afterAll(async () => {
    await daemon?.close();
  });

  it('serves a preview job: engine gan, the input size exactly, the alpha kept, the generator\'s pixels', async () => {
    const token = (await readFile(daemon.paths.cliToken, 'utf8')).trim();
    const auth = { authorization: `Bearer ${token}`, [CLIENT_HEADER]: CLIENT };
    const events = EventClient.connect(daemon);
    await events.opened;
    events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: CLIENT });
    await events.next((e) => e.type === 'welcome', 20_000);

    const rgba = Buffer.alloc(W * H * 4);
    for (let p = 0; p < W * H; p++) {
      rgba[p * 4] = (p * 7) % 256;
      rgba[p * 4 + 1] = (p >> 4) % 256;
      rgba[p * 4 + 2] = 255 - ((p * 3) % 256);
      rgba[p * 4 + 3] = p % W < 20 ? 0 : 90 + (p % 160);
    }
    const png = await sharp(rgba, { raw: { width: W, height: H, channels: 4 } }).png().toBuffer();
    const upload = await send(daemon, { method: 'POST', path: '/v1/images', headers: { ...auth, 'content-type': 'image/png' }, body: png });
    expect(upload.status).toBe(201);
    const { imageId } = ImageUploadResponse.parse(upload.json);
    const submit = await send(daemon, {
      method: 'POST',
      path: '/v1/jobs',
      headers: auth,
      json: { v: PROTOCOL_VERSION, jobId: 'distill_job_0001', kind: 'preview', imageId, edit: { source: 'cat', target: 'dog' } },
    });
    expect(submit.status).toBe(202);
    const end = ServerEvent.parse(await events.next((e) => e.jobId === 'distill_job_0001' && ['finished', 'error'].includes(String(e.type)), 60_000));
    if (end.type !== 'finished') throw new Error(`job ended with ${JSON.stringify(end)}`);
    expect(end.outcome.engine).toBe('gan');
    const ref = end.outcome.results.find((r) => r.role === 'image');
    expect(ref).toMatchObject({ width: W, height: H });
    const download = await send(daemon, { path: `/v1/results/${ref?.id}`, headers: auth });
    const out = await sharp(download.bytes).raw().toBuffer({ resolveWithObject: true });
    expect([out.info.width, out.info.height, out.info.channels]).toEqual([W, H, 4]);

    // Independent computation: the installed ONNX file run here on the same pixels.
    const session = await ort.InferenceSession.create(join(home, 'models/gan/cat-dog/generator.onnx'), { executionProviders: ['cpu'] });
    const x = new Float32Array(3 * W * H);
    for (let c = 0; c < 3; c++) for (let p = 0; p < W * H; p++) x[c * W * H + p] = rgba[p * 4 + c]! / 127.5 - 1;
    const y = (await session.run({ image: new ort.Tensor('float32', x, [1, 3, H, W]) }))['output_image']?.data as Float32Array;
    await session.release();
    let maxDiff = 0;
    let alphaExact = true;
    let changed = 0;
    for (let p = 0; p < W * H; p++) {
      for (let c = 0; c < 3; c++) {
        const expected = Math.round(Math.min(1, Math.max(-1, y[c * W * H + p]!)) * 127.5 + 127.5);
        maxDiff = Math.max(maxDiff, Math.abs(out.data[p * 4 + c]! - expected));
        if (out.data[p * 4 + c] !== rgba[p * 4 + c]) changed++;
      }
      if (out.data[p * 4 + 3] !== rgba[p * 4 + 3]) alphaExact = false;
    }
    expect(maxDiff).toBeLessThanOrEqual(1);
    expect(alphaExact).toBe(true);
    expect(changed).toBeGreaterThan(W * H);
    events.ws.close();
  });
});
