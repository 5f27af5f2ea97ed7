// The real built worker (dist/daemon/worker.js, built by the global setup) under the supervisor: a GAN
// quick preview on a generated tiny generator in a temporary models directory, the provider choice
// (CUDA made to fail → CPU with the loader's reason), coded errors for what cannot run, and no worker
// left behind when the daemon goes away (docs/SECURITY.md §R23).
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../../daemon/image/decode.js';
import { resizeAlpha, resizeRgb, rgbToTensor, tensorToRgb, workingSize } from '../../../daemon/image/tensor.js';
import { GraphBuilder } from '../../../daemon/onnx/graph/builder.js';
import { writeTinyImg2Img, TINY_IMG2IMG_IO } from '../../../daemon/onnx/tiny/img2img.js';
import { WorkerSupervisor } from '../../../daemon/worker/supervisor.js';
import type { SupervisorOptions } from '../../../daemon/worker/supervisor.js';
import type { EngineProgress } from '../../../daemon/jobs/engine.js';
import { engineJob, memoryLogger, processExists, rgbaTestImage, waitFor } from './helpers.js';

const WORKER = join(process.cwd(), 'dist/daemon/worker.js');
/** Makes the CUDA provider fail even where it loads: no device is visible. Here it fails anyway (the
 *  CUDA provider library is not installed), which is the case the reason text below describes. */
const NO_CUDA = { CUDA_VISIBLE_DEVICES: '' };

let root: string;
let modelsDir: string;
let outside: string;
const W = 100;
const H = 70;
let inputPng: Uint8Array;
let inputAlpha: Uint8Array;

async function installGenerator(name: string, meta: object, seed = 7): Promise<void> {
  const dir = join(modelsDir, 'gan', name);
  await mkdir(dir, { recursive: true });
  await writeTinyImg2Img(join(dir, 'generator.onnx'), { seed, channels: 8 });
  await writeFile(join(dir, 'meta.json'), JSON.stringify(meta));
}

/** A generator that asks for 2^36·H·W·3 floats at run time (the size depends on the input, so nothing
 *  is folded away at load): y = x + ReduceSum(ConstantOfShape(Shape(x) · [1, 1, 2^18, 2^18])). */
async function installMemoryHog(name: string, meta: object): Promise<void> {
  const dir = join(modelsDir, 'gan', name);
  await mkdir(dir, { recursive: true });
  const b = new GraphBuilder({ seed: 0, graphName: 'hog' });
  const x = b.input('image', 'float32', [1, 3, 'height', 'width']);
  const shape = b.op('Mul', [b.op('Shape', [x]), b.constInt64([1, 1, 2 ** 18, 2 ** 18])]);
  const huge = b.op('ConstantOfShape', [shape]);
  b.output(b.op('Add', [x, b.op('ReduceSum', [huge])]), 'out', 'float32', [1, 3, 'height', 'width']);
  await b.write(join(dir, 'generator.onnx'));
  await writeFile(join(dir, 'meta.json'), JSON.stringify(meta));
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'p2pz-worker-'));
  modelsDir = join(root, 'models');
  outside = join(root, 'outside');
  await mkdir(outside, { recursive: true });
  await installGenerator('cat-dog', { v: 1, source: 'cat', target: 'dog', size: 64 });
  await installMemoryHog('cat-whale', { v: 1, source: 'cat', target: 'whale', size: 64 });
  // A generator whose model file is a symbolic link out of the models directory (docs/SECURITY.md §R19).
  await writeTinyImg2Img(join(outside, 'generator.onnx'), { seed: 1, channels: 8 });
  await mkdir(join(modelsDir, 'gan', 'cat-cow'), { recursive: true });
  await symlink(join(outside, 'generator.onnx'), join(modelsDir, 'gan', 'cat-cow', 'generator.onnx'));
  await writeFile(join(modelsDir, 'gan', 'cat-cow', 'meta.json'), JSON.stringify({ v: 1, source: 'cat', target: 'cow', size: 64 }));
  ({ png: inputPng, alpha: inputAlpha } = await rgbaTestImage(W, H));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const open: WorkerSupervisor[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

function supervisor(options: Partial<SupervisorOptions> = {}): WorkerSupervisor {
  const s = new WorkerSupervisor({ modelsDir, workerPath: WORKER, env: NO_CUDA, log: memoryLogger(), ...options });
  open.push(s);
  return s;
}

const never = (): AbortSignal => new AbortController().signal;

/** The expected preview, computed here step by step: decode, resize to the 64-long-side working size,
 *  run the generator directly, back to 8 bits, resize to the input size. */
async function expectedPreviewRgb(): Promise<Uint8Array> {
  const decoded = await decodeImage(inputPng);
  const size = workingSize(W, H, 64); // 100×70 → 64×64 (70·64/100 = 44.8 → 64)
  const rgb = await resizeRgb(decoded.rgb, W, H, size.width, size.height);
  const session = await InferenceSession.create(join(modelsDir, 'gan', 'cat-dog', 'generator.onnx'));
  const out = await session.run({ [TINY_IMG2IMG_IO.input]: new Tensor('float32', rgbToTensor(rgb, size.width, size.height), [1, 3, size.height, size.width]) });
  await session.release();
  const y = out[TINY_IMG2IMG_IO.output];
  if (!(y instanceof Tensor)) throw new Error('no output');
  expect(y.dims).toEqual([1, 3, size.height, size.width]);
  return resizeRgb(tensorToRgb(y.data as Float32Array, size.width, size.height), size.width, size.height, W, H);
}

describe('worker process (real onnxruntime)', () => {
  it('runs a GAN preview: PNG of the exact input size, alpha kept, engine gan, timings per stage', async () => {
    const s = supervisor();
    const progress: EngineProgress[] = [];
    // A Buffer view into a larger pool, as the daemon's upload store hands them out, crosses IPC as its bytes only.
    const pooled = Buffer.concat([Buffer.alloc(13, 9), Buffer.from(inputPng)]).subarray(13);
    const result = await s.run(engineJob('cat', { image: pooled }), (p) => progress.push(p), never());
    if (result.status !== 'done') throw new Error(`preview failed: ${JSON.stringify(result)}`);
    expect(result.engine).toBe('gan');
    expect(Object.keys(result.timings).sort()).toEqual(['decode', 'encode', 'frame', 'generate', 'load', 'tensor']);
    expect(progress.map((p) => p.stage)).toEqual(['decode', 'load', 'generate', 'generate', 'encode']);
    // The preview frame came first, at the generator's working size (64×64 for 100×70 at size 64).
    const frame = progress.find((p) => p.frame !== undefined)?.frame;
    expect([frame?.role, frame?.width, frame?.height]).toEqual(['result', 64, 64]);
    expect(result.outputs).toHaveLength(1);
    const [out] = result.outputs;
    expect(out).toMatchObject({ role: 'image', width: W, height: H });

    const meta = await sharp(out?.png).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels]).toEqual(['png', W, H, 4]);
    const decoded = await decodeImage(out?.png ?? new Uint8Array());
    // The input's alpha comes back untouched, and the colours are the generator's, computed independently.
    expect(decoded.alpha).toEqual(inputAlpha);
    const expected = await expectedPreviewRgb();
    expect(decoded.rgb).toEqual(expected);
    // The generator changed the picture (not a pass-through).
    const original = await decodeImage(inputPng);
    expect(decoded.rgb).not.toEqual(original.rgb);
    // The frame holds the PNG's pixels before their resize to the input's size: its colours resized
    // as the pipeline resizes are the result's colours, its alpha the input's resized alongside.
    const rgba = frame?.rgba ?? new Uint8Array();
    const frameRgb = rgba.filter((_, i) => i % 4 !== 3);
    expect(await resizeRgb(frameRgb, 64, 64, W, H)).toEqual(decoded.rgb);
    expect(rgba.filter((_, i) => i % 4 === 3)).toEqual(await resizeAlpha(inputAlpha, W, H, 64, 64));
  });

  it('falls back to the CPU when CUDA cannot load, keeping the reason without paths', async () => {
    const s = supervisor({ device: 'auto' });
    await waitFor(() => s.health().state === 'ready', 'ready');
    const device = s.health().device;
    expect(device?.provider).toBe('cpu');
    expect(device?.reason).toMatch(/^CUDA unavailable: \S/);
    expect(device?.reason).not.toMatch(/\/(?:work|home|usr|tmp)\//);
  });

  it('--device cpu skips the CUDA probe', async () => {
    const s = supervisor({ device: 'cpu' });
    await waitFor(() => s.health().state === 'ready', 'ready');
    expect(s.health().device).toEqual({ provider: 'cpu', reason: 'CPU requested.', memory: 'Planned against the free system memory.' });
  });

  it('without a device option the worker follows P2PZ_DEVICE; a bad value stops the engine', async () => {
    const s = supervisor({ env: { ...NO_CUDA, P2PZ_DEVICE: 'cpu' } });
    await waitFor(() => s.health().state === 'ready', 'ready');
    expect(s.health().device).toEqual({ provider: 'cpu', reason: 'CPU requested.', memory: 'Planned against the free system memory.' });

    const bad = supervisor({ env: { P2PZ_DEVICE: 'gpu' } });
    const result = await bad.run(engineJob('cat', { image: inputPng }), () => {}, never());
    expect(result.status === 'failed' && result.error).toMatchObject({ code: 'E_BAD_REQUEST', message: expect.stringContaining('P2PZ_DEVICE must be one of auto, cpu, cuda, webgpu, coreml, dml') });
    expect(bad.health().state).toBe('stopped');
  });

  it('--device cuda without a usable CUDA stops the engine with E_DEVICE_UNAVAILABLE (no restarts)', async () => {
    const s = supervisor({ device: 'cuda' });
    const result = await s.run(engineJob('cat', { image: inputPng }), () => {}, never());
    expect(result.status === 'failed' && result.error.code).toBe('E_DEVICE_UNAVAILABLE');
    expect(result.status === 'failed' && result.error.message).toMatch(/CUDA could not be started: onnxruntime's CUDA provider is not installed/);
    expect(s.health()).toMatchObject({ state: 'stopped', restarts: 0, recentCrashes: 0, device: null });
  });

  it('answers E_MODEL_MISSING naming the direction when no generator is installed, and keeps serving', async () => {
    const s = supervisor();
    const missing = await s.run(engineJob('Horse', { image: inputPng, edit: { ...engineJob('x').edit, source: 'Horse', target: 'zebra' } }), () => {}, never());
    expect(missing.status === 'failed' && missing.error.code).toBe('E_MODEL_MISSING');
    expect(missing.status === 'failed' && missing.error.message).toContain('horse → zebra');
    const render = await s.run(engineJob('cat', { image: inputPng, kind: 'render' }), () => {}, never());
    expect(render.status === 'failed' && render.error.code).toBe('E_MODEL_MISSING');
    const bad = await s.run(engineJob('cat', { image: new TextEncoder().encode('not an image') }), () => {}, never());
    expect(bad.status === 'failed' && bad.error.code).toBe('E_IMAGE_FORMAT');
    expect((await s.run(engineJob('cat', { image: inputPng }), () => {}, never())).status).toBe('done');
    expect(s.health()).toMatchObject({ restarts: 0, recentCrashes: 0 });
  });

  it('an allocation failure in the worker is E_DEVICE_OOM, and the next job succeeds (R18)', async () => {
    const s = supervisor();
    const job = engineJob('cat', { image: inputPng });
    const oom = await s.run({ ...job, edit: { ...job.edit, target: 'whale' } }, () => {}, never());
    expect(oom.status === 'failed' && oom.error).toEqual({
      code: 'E_DEVICE_OOM',
      message: 'The device ran out of memory during the edit.',
      hint: 'Use a smaller working size, or close other GPU programs, and retry.',
    });
    expect((await s.run(engineJob('cat', { image: inputPng }), () => {}, never())).status).toBe('done');
    expect(s.health()).toMatchObject({ state: 'ready', restarts: 0, recentCrashes: 0 });
  });

  it('refuses a generator that is a symbolic link out of the models directory (R19)', async () => {
    const s = supervisor();
    const job = engineJob('cat', { image: inputPng });
    const result = await s.run({ ...job, edit: { ...job.edit, target: 'cow' } }, () => {}, never());
    expect(result.status === 'failed' && result.error.code).toBe('E_MODEL_INVALID');
    expect(result.status === 'failed' && result.error.message).toMatch(/outside the models directory/);
    expect(result.status === 'failed' && result.error.message).not.toContain(root);
  });

  it('a cancel before the generator runs stops the job with cancelled', async () => {
    const s = supervisor();
    await waitFor(() => s.health().state === 'ready', 'ready');
    const controller = new AbortController();
    const result = await s.run(
      engineJob('cat', { image: inputPng }),
      (p) => {
        if (p.stage === 'decode') controller.abort();
      },
      controller.signal,
    );
    expect(result).toEqual({ status: 'cancelled' });
    expect(s.health()).toMatchObject({ state: 'ready', restarts: 0 });
  });

  it('close() leaves no worker process', async () => {
    const s = supervisor();
    await waitFor(() => s.workerPid !== undefined && s.health().state === 'ready', 'ready');
    const pid = s.workerPid ?? -1;
    await s.close();
    expect(processExists(pid)).toBe(false);
  });

  it('exits when its parent dies without a word (no orphan, R23)', async () => {
    // A stand-in daemon forks the worker, prints its pid once ready, and is then SIGKILLed.
    const parentScript = `
      import { fork } from 'node:child_process';
      const w = fork(${JSON.stringify(WORKER)}, ['--device', 'cpu'], { serialization: 'advanced', execArgv: [], stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
      w.on('message', (m) => { if (m.type === 'ready') console.log(String(m.pid)); });
    `;
    const parent = spawn(process.execPath, ['--input-type=module', '-e', parentScript], { stdio: ['ignore', 'pipe', 'inherit'] });
    const workerPid = await new Promise<number>((resolve, reject) => {
      parent.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      parent.once('exit', () => reject(new Error('parent exited early')));
    });
    expect(processExists(workerPid)).toBe(true);
    parent.kill('SIGKILL');
    await waitFor(() => !processExists(workerPid), 'the orphaned worker to exit', 10_000);
  });
});
