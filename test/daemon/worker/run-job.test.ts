// Job dispatch inside the real built worker (run-job.ts) once a diffusion model is installed: `render`
// runs pix2pix-zero (engine `diffusion`), and `preview` without a generator for the direction falls
// back to the reduced diffusion preview (engine `diffusion-preview`). A few steps at the smallest
// working size: this checks the wiring (outputs, alpha, progress with step previews, the direction
// cache folder); the pipeline's numbers have their own tests. Last, the up-front memory check (docs/SECURITY.md §R17).
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../../daemon/image/decode.js';
import { estimateJobMemory, MEMORY_ESTIMATE_DEFAULTS, modelFootprint } from '../../../daemon/models/memory-estimate.js';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import { WorkerSupervisor } from '../../../daemon/worker/supervisor.js';
import type { EngineProgress } from '../../../daemon/jobs/engine.js';
import { engineJob, memoryLogger, rgbaTestImage } from './helpers.js';

const WORKER = join(process.cwd(), 'dist/daemon/worker.js');
const W = 100;
const H = 70;
const never = (): AbortSignal => new AbortController().signal;

describe('job dispatch in the worker with a diffusion model installed (tiny Stable Diffusion)', () => {
  let root: string;
  let s: WorkerSupervisor;
  let inputPng: Uint8Array;
  let inputAlpha: Uint8Array;
  let sdModels: string;
  let cacheDir: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'p2pz-run-job-'));
    sdModels = join(root, 'models');
    cacheDir = join(root, 'cache');
    ({ png: inputPng, alpha: inputAlpha } = await rgbaTestImage(W, H));
    await writeTinyStableDiffusion(join(sdModels, 'tiny-sd'), { seed: 5 });
    // One worker for both tests: the second reuses the prepared graphs, the cached direction and the
    // inversion (the preview's capped settings equal these).
    s = new WorkerSupervisor({ modelsDir: sdModels, cacheDir, workerPath: WORKER, device: 'cpu', log: memoryLogger() });
  });
  afterAll(async () => {
    await s.close();
    await rm(root, { recursive: true, force: true });
  });

  const fast = (kind: 'render' | 'preview') => {
    const job = engineJob('cat', { image: inputPng, kind, stepPreviews: true });
    return { ...job, edit: { ...job.edit, steps: 2, regSteps: 1, size: 64 } };
  };

  it('renders with pix2pix-zero: image and mask of the input size, alpha kept, step previews, direction and inversion cached on disk', async () => {
    const progress: EngineProgress[] = [];
    const result = await s.run(fast('render'), (p) => progress.push(p), never());
    if (result.status !== 'done') throw new Error(`render failed: ${JSON.stringify(result)}`);
    expect(result.engine).toBe('diffusion');
    expect(result.outputs.map((o) => [o.role, o.width, o.height])).toEqual([
      ['image', W, H],
      ['mask', W, H],
    ]);
    const image = await decodeImage(result.outputs[0]?.png ?? new Uint8Array());
    expect(image.alpha).toEqual(inputAlpha);
    const stages = new Set(progress.map((p) => p.stage));
    for (const stage of ['decode', 'inversion', 'edit', 'vae-decode']) expect(stages).toContain(stage);
    const editPreviews = progress.filter((p) => p.stage === 'edit' && p.frame);
    expect(editPreviews.length).toBe(2);
    // One RGBA pixel per latent cell (64 px / 8), opaque.
    const frame = editPreviews[0]?.frame;
    expect([frame?.role, frame?.width, frame?.height, frame?.rgba.length]).toEqual(['step', 8, 8, 8 * 8 * 4]);
    expect(frame?.rgba.filter((_, i) => i % 4 === 3).every((a) => a === 255)).toBe(true);
    expect((await readdir(join(cacheDir, 'directions'))).length).toBeGreaterThan(0);
    expect((await readdir(join(cacheDir, 'inversions'))).length).toBe(1);
  });

  it('previews through reduced diffusion when no generator is installed for the direction', async () => {
    const result = await s.run(fast('preview'), () => {}, never());
    if (result.status !== 'done') throw new Error(`preview failed: ${JSON.stringify(result)}`);
    expect(result.engine).toBe('diffusion-preview');
    expect(result.outputs[0]).toMatchObject({ role: 'image', width: W, height: H });
  });
});

// docs/SECURITY.md §R17 through the real worker: with the free memory configured small (P2PZ_FREE_MEMORY_MIB, the
// worker's stand-in for the device's own report), a render whose estimate exceeds it is refused with
// E_JOB_TOO_LARGE and a size hint before anything is loaded or derived for it; a fitting render then
// runs in the same worker.
describe('the up-front memory check in the worker (R17)', () => {
  let root: string;
  let s: WorkerSupervisor;
  let inputPng: Uint8Array;
  let sdModels: string;
  const budgetMiB = 1280;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'p2pz-run-job-memory-'));
    sdModels = join(root, 'models');
    ({ png: inputPng } = await rgbaTestImage(W, H));
    await writeTinyStableDiffusion(join(sdModels, 'tiny-sd'), { seed: 5 });
    s = new WorkerSupervisor({ modelsDir: sdModels, workerPath: WORKER, device: 'cpu', env: { P2PZ_FREE_MEMORY_MIB: String(budgetMiB) }, log: memoryLogger() });
  });
  afterAll(async () => {
    await s.close();
    await rm(root, { recursive: true, force: true });
  });

  const render = (size: number) => {
    const job = engineJob('cat', { image: inputPng, kind: 'render' });
    return { ...job, edit: { ...job.edit, steps: 2, regSteps: 1, size } };
  };

  it('refuses a render that cannot fit before any model runs, then runs one that fits', async () => {
    // The estimates this budget separates (memory-estimate.ts, for the model as installed).
    const fp = await modelFootprint(sdModels, 'tiny-sd');
    const usable = budgetMiB * 2 ** 20 * MEMORY_ESTIMATE_DEFAULTS.usableFraction;
    expect(estimateJobMemory(fp, { kind: 'render', height: 384, width: 512, batch: 2 }).totalBytes).toBeGreaterThan(usable);
    expect(estimateJobMemory(fp, { kind: 'render', height: 64, width: 64, batch: 2 }).totalBytes).toBeLessThan(usable);
    const unetFiles = await readdir(join(sdModels, 'tiny-sd', 'unet'));

    const progress: EngineProgress[] = [];
    const refused = await s.run(render(512), (p) => progress.push(p), never());
    if (refused.status !== 'failed') throw new Error(`expected a refusal: ${JSON.stringify(refused)}`);
    expect(refused.error.code).toBe('E_JOB_TOO_LARGE');
    expect(refused.error.message).toMatch(/needs about [\d.]+ GB at 512×384; 1\.3 GB is free/);
    const hinted = Number(/--size (\d+)/.exec(refused.error.hint ?? '')?.[1]);
    expect(hinted).toBeLessThan(512);
    // The hint's side is the long one; the aspect stays (multiples of 64).
    const hintedShape = { kind: 'render' as const, width: hinted, height: Math.floor((hinted * 384) / 512 / 64) * 64, batch: 2 };
    expect(estimateJobMemory(fp, hintedShape).totalBytes).toBeLessThanOrEqual(usable);
    expect([...new Set(progress.map((p) => p.stage))]).toEqual(['load', 'decode']);
    expect(await readdir(join(sdModels, 'tiny-sd', 'unet'))).toEqual(unetFiles); // nothing derived

    const done = await s.run(render(64), () => {}, never());
    if (done.status !== 'done') throw new Error(`render failed: ${JSON.stringify(done)}`);
    expect(done.outputs[0]).toMatchObject({ role: 'image', width: W, height: H });
  });
});
