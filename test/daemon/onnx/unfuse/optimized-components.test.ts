// A fully onnxruntime-optimized tiny model (daemon/onnx/tiny/ort-fusions.ts on every component, as
// optimize_pipeline.py does: the VAE's GroupNorm and NhwcConv, the text encoder's
// causal Attention, SkipLayerNormalization and QuickGelu, the UNet's fusions) against the plain export of the same
// weights: the worker's session cache (the daemon's own loading path) runs the VAE and text encoder
// through their unfused twins with the plain ones' outputs, the install check knows the twins, a full
// `p2pz edit` matches the plain model's, and a fused op p2pz does not rewrite in the VAE is refused
// with its code, the component and a hint, never onnxruntime's text.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyModel } from '../../../../daemon/models/verify.js';
import { decodeModel, encodeModel } from '../../../../daemon/onnx/graph/model-io.js';
import { writeTinyStableDiffusion, type TinyStableDiffusionInfo } from '../../../../daemon/onnx/tiny/stable-diffusion.js';
import { SessionCache } from '../../../../daemon/worker/sessions.js';
import { P2pzError } from '../../../../shared/protocol/errors.js';
import { loadMain } from '../../../fixtures/cli-main.js';
import { editWithBoth } from './edit-both.js';

let dir: string;
let modelsDir: string;
let info: TinyStableDiffusionInfo;
const ALL = ['unet', 'text_encoder', 'vae_encoder', 'vae_decoder'] as const;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-optimized-all-'));
  modelsDir = join(dir, 'models');
  info = await writeTinyStableDiffusion(join(modelsDir, 'fused'), { flavour: 'opset17', seed: 5, ortOptimized: {}, ortOptimizedComponents: ALL });
  await writeTinyStableDiffusion(join(modelsDir, 'plain'), { flavour: 'opset17', seed: 5 });
});

afterAll(() => rm(dir, { recursive: true, force: true }));

function maxAbsDiff(a: ort.Tensor | undefined, b: ort.Tensor | undefined): number {
  const x = a?.data as Float32Array;
  const y = b?.data as Float32Array;
  expect(x.length).toBe(y.length);
  expect(x.length).toBeGreaterThan(0);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs((x[i] ?? 0) - (y[i] ?? 0)));
  return m;
}

function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / 2 ** 24) * (hi - lo);
  }
  return out;
}

describe('an onnxruntime-optimized VAE and text encoder', () => {
  it('hold the fused ops the optimizer writes, and the CPU provider cannot load the VAE as it is', async () => {
    const by = info.fusedOpsByComponent ?? {};
    expect(by.text_encoder).toEqual({ Attention: 2, SkipLayerNormalization: 5, QuickGelu: 2 });
    const te = decodeModel(await readFile(join(modelsDir, 'fused/text_encoder/model.onnx')));
    const causal = te.graph.node.filter((n) => n.opType === 'Attention').map((n) => Number(n.attribute.find((a) => a.name === 'unidirectional')?.i));
    expect(causal).toEqual([1, 1]);
    expect(by.vae_encoder).toEqual({ GroupNorm: 13, NhwcConv: 19 });
    expect(by.vae_decoder).toEqual({ GroupNorm: 21, NhwcConv: 27 });
    expect(by.unet?.GroupNorm).toBeGreaterThan(0);
    const raw = await ort.InferenceSession.create(join(modelsDir, 'fused/vae_decoder/model.onnx'), { executionProviders: ['cpu'] }).catch((e: unknown) => e);
    expect(String(raw)).toMatch(/Could not find an implementation for (?:GroupNorm|NhwcConv)/);
  });

  it('run through their twins in the session cache with the plain ones\' outputs (within 1e-5)', async () => {
    const cache = new SessionCache({ modelsDir, executionProviders: ['cpu'] });
    try {
      const ids = new ort.Tensor('int64', BigInt64Array.from({ length: 77 }, (_, i) => BigInt((i * 37 + 11) % 1000)), [1, 77]);
      const image = new ort.Tensor('float32', uniform(3 * 64 * 64, 1), [1, 3, 64, 64]);
      const latent = new ort.Tensor('float32', uniform(4 * 8 * 8, 2, -3, 3), [1, 4, 8, 8]);
      const cases: { component: string; feeds: Record<string, ort.Tensor> }[] = [
        { component: 'text_encoder', feeds: { input_ids: ids } },
        { component: 'vae_encoder', feeds: { sample: image } },
        { component: 'vae_decoder', feeds: { latent_sample: latent } },
      ];
      for (const c of cases) {
        const fusedMeta = await cache.get(`fused/${c.component}/model.onnx`);
        const plainMeta = await cache.get(`plain/${c.component}/model.onnx`);
        expect(fusedMeta.inputNames).toEqual(plainMeta.inputNames);
        expect(fusedMeta.outputNames).toEqual(plainMeta.outputNames);
        const f = await cache.run(`fused/${c.component}/model.onnx`, c.feeds);
        const p = await cache.run(`plain/${c.component}/model.onnx`, c.feeds);
        for (const name of plainMeta.outputNames) expect(maxAbsDiff(f[name], p[name]), `${c.component} ${name}`).toBeLessThanOrEqual(1e-5);
        // The twin was written once, next to the original, with its manifest.
        const files = await readdir(join(modelsDir, 'fused', c.component));
        expect(files.filter((n) => /^model\.unfused\.[0-9x_]+\.(onnx|json)$/.test(n)).length).toBe(2);
        const manifest = JSON.parse(await readFile(join(modelsDir, 'fused', c.component, files.find((n) => n.endsWith('.json') && n.includes('unfused')) as string), 'utf8'));
        expect(Object.keys(manifest.unfused).length).toBeGreaterThan(0);
      }
      // The install check counts the twins as derived files, not as unknown additions.
      const report = await verifyModel(modelsDir, 'fused');
      expect(report.unrecorded.filter((p) => p.includes('unfused'))).toEqual([]);
    } finally {
      await cache.releaseAll();
    }
  });

  it('runs a full `p2pz edit` like the plain model (within 1 level of 255)', async () => {
    const { input, fused: pa, plain: pb } = await editWithBoth(await loadMain(), dir, join(dir, 'home'), join(modelsDir, 'fused'), join(modelsDir, 'plain'));
    expect(pa.width).toBe(40);
    let worst = 0;
    let moved = 0;
    for (let i = 0; i < pa.data.length; i++) {
      worst = Math.max(worst, Math.abs((pa.data[i] ?? 0) - (pb.data[i] ?? 0)));
      moved = Math.max(moved, Math.abs((pa.data[i] ?? 0) - (input.raw[i] ?? 0)));
    }
    expect(worst).toBeLessThanOrEqual(1);
    expect(moved).toBeGreaterThan(1);
    // The edit derived the twins of all three components (the encoder's and decoder's at 64 px).
    for (const c of ['text_encoder', 'vae_encoder', 'vae_decoder']) {
      expect((await readdir(join(modelsDir, 'fused', c))).some((n) => n.includes('.unfused.')), c).toBe(true);
    }
  });

  it('refuses a fused op in the VAE that p2pz does not rewrite, naming op and component, with a hint', async () => {
    const odd = join(modelsDir, 'odd');
    await writeTinyStableDiffusion(odd, { flavour: 'opset17', seed: 5, components: ['vae_decoder'], ortOptimized: {}, ortOptimizedComponents: ['vae_decoder'] });
    const path = join(odd, 'vae_decoder/model.onnx');
    const model = decodeModel(await readFile(path));
    const node = model.graph.node.find((n) => n.opType === 'GroupNorm');
    if (!node) throw new Error('no GroupNorm');
    node.opType = 'GroupQueryNorm';
    await writeFile(path, encodeModel(model));
    const cache = new SessionCache({ modelsDir, executionProviders: ['cpu'] });
    try {
      const latent = new ort.Tensor('float32', uniform(4 * 8 * 8, 2), [1, 4, 8, 8]);
      const err = await cache.run('odd/vae_decoder/model.onnx', { latent_sample: latent }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(P2pzError);
      expect((err as P2pzError).code).toBe('E_UNSUPPORTED_OP');
      expect((err as P2pzError).message).toMatch(/\. The VAE decoder \(vae_decoder\/model\.onnx\) holds an onnxruntime-optimized op com\.microsoft\.GroupQueryNorm at node GroupNorm_\d+/);
      expect((err as P2pzError).message).not.toMatch(/Could not find an implementation/);
      expect((err as P2pzError).hint).toMatch(/Export the VAE decoder without onnxruntime graph optimization/);
      // The cache keeps serving.
      const ok = await cache.run('plain/vae_decoder/model.onnx', { latent_sample: latent });
      expect(Object.keys(ok).length).toBeGreaterThan(0);
    } finally {
      await cache.releaseAll();
    }
  });
});
