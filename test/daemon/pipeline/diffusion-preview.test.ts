// The diffusion preview goes through the pix2pix-zero pipeline, and with it through the up-front
// memory check (docs/SECURITY.md §R17): refused with E_JOB_TOO_LARGE before any model file runs or any graph is
// derived when the device's free memory (a fake probe here) cannot hold the job, with the bytes the
// open sessions hold counted as available; an unknown free memory refuses nothing.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EditParams } from '../../../shared/protocol/index.js';
import { estimateJobMemory, MEMORY_ESTIMATE_DEFAULTS, modelFootprint } from '../../../daemon/models/memory-estimate.js';
import { previewSettings, runDiffusionPreview } from '../../../daemon/pipeline/diffusion-preview.js';
import { InversionCache } from '../../../daemon/pipeline/inversion-cache.js';
import type { DeviceMemoryContext, DiffusionContext } from '../../../daemon/pipeline/pix2pix-zero.js';
import { MODEL_NAME, rgbaPng, tinyModels, type TinyModels } from './tiny-pipeline.js';

describe('runDiffusionPreview and the memory check', () => {
  let tiny: TinyModels;
  let png: Uint8Array;
  const edit = EditParams.parse({ source: 'cat', target: 'dog', steps: 2, regSteps: 1, size: 64, seed: 3 });
  beforeAll(async () => {
    tiny = await tinyModels('opset17');
    ({ png } = await rgbaPng(70, 45));
  });
  afterAll(async () => {
    await tiny.dispose();
  });

  const context = (memory: DeviceMemoryContext): DiffusionContext => ({
    models: tiny.counting, signal: new AbortController().signal, progress: () => {}, inversionCache: new InversionCache(), memory,
  });

  it('refuses a preview that cannot fit before any model runs; held session bytes count as free', async () => {
    const fp = await modelFootprint(tiny.root, MODEL_NAME);
    const need = estimateJobMemory(fp, { kind: 'render', height: 64, width: 64, batch: 2 }).totalBytes;
    const usable = MEMORY_ESTIMATE_DEFAULTS.usableFraction;
    // Free memory a little below what the job needs; the sessions hold the rest.
    const free = Math.floor((need * 0.5) / usable);
    const asked: string[] = [];
    const short: DeviceMemoryContext = {
      provider: 'cpu',
      probe: { freemem: () => free },
      heldBytes: async (dir) => {
        asked.push(dir);
        return 0;
      },
    };
    const unetFiles = await readdir(join(tiny.modelDir, 'unet'));
    const err = await runDiffusionPreview({ image: png, edit, model: MODEL_NAME, bankCount: 2 }, context(short)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_JOB_TOO_LARGE' });
    expect(asked).toEqual([tiny.modelDir]);
    expect(tiny.counting.runs.size).toBe(0);
    expect(await readdir(join(tiny.modelDir, 'unet'))).toEqual(unetFiles);

    // The same free memory plus what the open sessions hold: it fits, and the preview runs.
    const held: DeviceMemoryContext = { ...short, heldBytes: async () => Math.ceil(need / usable) - free };
    const result = await runDiffusionPreview({ image: png, edit, model: MODEL_NAME, bankCount: 2 }, context(held));
    expect(result.engine).toBe('diffusion-preview');
    expect(result.details.workingSize).toEqual({ width: 64, height: 64 });
    expect(tiny.counting.count('unet/')).toBeGreaterThan(0);
  });

  it('on CUDA reads nvidia-smi; when it cannot answer, nothing is refused', async () => {
    const settings = previewSettings(edit);
    const tooSmall: DeviceMemoryContext = { provider: 'cuda', probe: { nvidiaSmi: async () => '1\n' } };
    await expect(runDiffusionPreview({ image: png, edit: settings, model: MODEL_NAME, bankCount: 2 }, context(tooSmall))).rejects.toMatchObject({
      code: 'E_JOB_TOO_LARGE', message: expect.stringContaining('0.0 GB is free'),
    });
    const unknown: DeviceMemoryContext = { provider: 'cuda', probe: { nvidiaSmi: async () => Promise.reject(new Error('nvidia-smi: not found')) } };
    const result = await runDiffusionPreview({ image: png, edit: settings, model: MODEL_NAME, bankCount: 2 }, context(unknown));
    expect(result.engine).toBe('diffusion-preview');
  });
});
