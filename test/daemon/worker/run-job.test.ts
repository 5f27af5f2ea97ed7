// Job dispatch inside the real built worker (run-job.ts) once a diffusion model is installed: `render`
// runs pix2pix-zero (engine `diffusion`), and `preview` without a generator for the direction falls
// back to the reduced diffusion preview (engine `diffusion-preview`). A few steps at the smallest
// working size: this checks the wiring (outputs, alpha, progress with step previews, the direction
// cache folder); the pipeline's numbers have their own tests.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../../daemon/image/decode.js';
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
    const editPreviews = progress.filter((p) => p.stage === 'edit' && p.preview);
    expect(editPreviews.length).toBe(2);
    expect((await sharp(editPreviews[0]?.preview).metadata()).format).toBe('png');
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
