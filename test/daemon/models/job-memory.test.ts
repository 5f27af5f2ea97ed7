// docs/SECURITY.md §R17 on an installed model: the tiny model's footprint against a fake small budget is refused with
// a hint; a large budget, or an unknown GPU budget, lets the job through; memory the worker already
// holds counts as available.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDemoPack, DEMO_PACK } from '../../../daemon/models/demo-pack.js';
import { assertJobFits } from '../../../daemon/models/job-memory.js';
import { estimateJobMemory, modelFootprint } from '../../../daemon/models/memory-estimate.js';

let models: string;
beforeAll(async () => {
  models = await mkdtemp(join(tmpdir(), 'p2pz-job-memory-'));
  await writeDemoPack(models);
});
afterAll(async () => {
  await rm(models, { recursive: true, force: true });
});

const job = { kind: 'render', height: 512, width: 512, batch: 2 } as const;

describe('assertJobFits', () => {
  it('refuses a render that does not fit a fake small CPU budget, with a smaller size to try', async () => {
    const fp = await modelFootprint(models, DEMO_PACK.diffusion);
    // The demo UNet's prepare manifest supplies the sites: 7 with 2 heads.
    expect(fp.siteFractions.length).toBe(7);
    expect(fp.heads).toBe(2);
    const need = estimateJobMemory(fp, job).totalBytes;
    const err = await assertJobFits({ modelsDir: models, model: DEMO_PACK.diffusion, job, provider: 'cpu', probe: { freemem: () => need } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_JOB_TOO_LARGE' });
    expect((err as Error & { hint: string }).hint).toMatch(/^Use a working size of \d+ pixels or less \(--size \d+\)/);
    // The same budget plus what the worker already holds for the model is enough.
    await expect(assertJobFits({ modelsDir: models, model: DEMO_PACK.diffusion, job, provider: 'cpu', probe: { freemem: () => need }, heldBytes: need })).resolves.toMatchObject({ totalBytes: need });
  });

  it('lets a job through on a large budget, or when the GPU budget is unknown', async () => {
    await expect(assertJobFits({ modelsDir: models, model: DEMO_PACK.diffusion, job, provider: 'cpu', probe: { freemem: () => 2 ** 40 } })).resolves.toBeDefined();
    await expect(assertJobFits({ modelsDir: models, model: DEMO_PACK.diffusion, job, provider: 'cuda', probe: { nvidiaSmi: () => Promise.reject(new Error('ENOENT')) } })).resolves.toBeDefined();
    await expect(assertJobFits({ modelsDir: models, model: DEMO_PACK.diffusion, job, provider: 'cuda', probe: { nvidiaSmi: async () => '100\n' } })).rejects.toMatchObject({ code: 'E_JOB_TOO_LARGE' });
  });

  it('an absent model is E_MODEL_MISSING', async () => {
    await expect(assertJobFits({ modelsDir: models, model: 'absent', job, provider: 'cpu' })).rejects.toMatchObject({ code: 'E_MODEL_MISSING' });
  });
});
