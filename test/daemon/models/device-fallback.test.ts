// The CPU fallback with the real onnxruntime: the CUDA provider is forced to fail (an impossible
// device id on a GPU machine; a missing provider library elsewhere), the choice falls back to the CPU
// with the loader's reason, and a model then runs on the chosen providers.
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyImg2Img } from '../../../daemon/onnx/tiny/img2img.js';
import { chooseExecution, type ProbeSessionFactory } from '../../../daemon/worker/providers.js';
import { SessionCache } from '../../../daemon/worker/sessions.js';

/** The real InferenceSession.create, with CUDA asked for a device that cannot exist. */
const cudaForcedToFail: ProbeSessionFactory = (model, options) =>
  InferenceSession.create(model, {
    ...options,
    executionProviders: (options.executionProviders ?? []).map((p) => (p === 'cuda' ? { name: 'cuda', deviceId: 4096 } : p)),
  });

let models: string;
beforeAll(async () => {
  models = await mkdtemp(join(tmpdir(), 'p2pz-fallback-'));
  await writeTinyImg2Img(join(models, 'gen.onnx'));
});
afterAll(async () => {
  await rm(models, { recursive: true, force: true });
});

describe('CUDA → CPU fallback on the real onnxruntime', () => {
  it('auto falls back to the CPU with the loader reason, and models run there', async () => {
    const choice = await chooseExecution('auto', { create: cudaForcedToFail, cudaInstalled: () => true, platform: 'linux', backends: () => [{ name: 'cuda', bundled: false }] });
    expect(choice.executionProviders).toEqual(['cpu']);
    expect(choice.device.provider).toBe('cpu');
    expect(choice.device.reason).toMatch(/^CUDA unavailable: \S/);
    expect(choice.device.reason).not.toMatch(/\/work\/|\/home\/|node_modules\//);

    const sessions = new SessionCache({ modelsDir: models, executionProviders: choice.executionProviders });
    const x = new Tensor('float32', new Float32Array(3 * 8 * 8).fill(0.25), [1, 3, 8, 8]);
    const out = await sessions.run('gen.onnx', { image: x });
    expect(out['output_image']?.dims).toEqual([1, 3, 8, 8]);
    await sessions.releaseAll();
  });

  it('cuda preference refuses instead of falling back', async () => {
    await expect(chooseExecution('cuda', { create: cudaForcedToFail, cudaInstalled: () => true })).rejects.toMatchObject({ code: 'E_DEVICE_UNAVAILABLE' });
  });
});
