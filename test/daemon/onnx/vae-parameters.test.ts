// The VAE encoder's parameters graph: from a tiny encoder written with the conversion script's
// sampling (both exporters' lowerings), the derived graph returns exactly the moments that the same
// seed's latent_parameters encoder returns, no random node is left, the original's latent_sample is
// μ + σ·n with n ~ N(0,1) (checked against those moments); the step is a no-op when current and for a
// latent_parameters encoder; RandomNormal with a static shape, Split by attribute and σ through a Div
// are recognised; graphs without the pattern are E_MODEL_INVALID.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GraphBuilder, attr } from '../../../daemon/onnx/graph/builder.js';
import { graphOf, readModel } from '../../../daemon/onnx/graph/model-io.js';
import { int64ToNumber } from '../../../daemon/onnx/graph/onnx-proto.js';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import {
  VaeParametersManifest, encoderSampleOutput, findPosteriorSampling, prepareVaeParameters, vaeParametersModel,
} from '../../../daemon/onnx/vae-parameters.js';
import { P2pzError } from '../../../shared/protocol/errors.js';
import { data, f32, wave } from './tiny/fixtures.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'p2pz-vae-params-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function run(path: string, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
  const s = await ort.InferenceSession.create(path);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

for (const flavour of ['opset14', 'opset17'] as const) {
  describe(`a latent_sample encoder (${flavour})`, () => {
    const params = (): string => join(root, `${flavour}-params`);
    const sampled = (): string => join(root, `${flavour}-sample`);
    const x = f32(wave(2 * 3 * 64 * 48, 4), [2, 3, 64, 48]);
    beforeAll(async () => {
      await writeTinyStableDiffusion(params(), { flavour, seed: 9, components: ['vae_encoder'] });
      await writeTinyStableDiffusion(sampled(), { flavour, seed: 9, components: ['vae_encoder'], vaeEncoderOutput: 'latent_sample' });
    });

    it('has the conversion script\'s sampling, and its sample is μ + σ·n with n ~ N(0,1)', async () => {
      const graph = graphOf(await readModel(join(sampled(), 'vae_encoder/model.onnx')));
      expect(graph.output?.map((o) => o.name)).toEqual(['latent_sample']);
      const ops = new Set(graph.node?.map((n) => n.opType));
      for (const op of ['RandomNormalLike', 'Clip', 'Exp', flavour === 'opset14' ? 'Split' : 'Slice']) expect(ops.has(op), op).toBe(true);
      expect(findPosteriorSampling(graph).moments).toBe('/quant_conv/Conv_output_0');

      const moments = data((await run(join(params(), 'vae_encoder/model.onnx'), { sample: x })).latent_parameters);
      const session = await ort.InferenceSession.create(join(sampled(), 'vae_encoder/model.onnx'));
      const a = (await session.run({ sample: x })).latent_sample;
      const b = (await session.run({ sample: x })).latent_sample;
      await session.release();
      expect(a?.dims).toEqual([2, 4, 8, 6]);
      // The graph's own generator: two runs of one session differ.
      expect(data(a).some((v, i) => v !== data(b)[i])).toBe(true);
      // (z − μ)/σ over 2·4·8·6 = 384 cells: mean ≈ 0, variance ≈ 1 (5σ bounds of the estimators).
      const plane = 4 * 8 * 6;
      const n: number[] = [];
      for (let k = 0; k < 2; k++) {
        for (let i = 0; i < plane; i++) {
          const mu = moments[k * 2 * plane + i]!;
          const logvar = Math.min(20, Math.max(-30, moments[k * 2 * plane + plane + i]!));
          n.push((data(a)[k * plane + i]! - mu) / Math.exp(0.5 * logvar));
        }
      }
      const mean = n.reduce((s, v) => s + v, 0) / n.length;
      const variance = n.reduce((s, v) => s + (v - mean) ** 2, 0) / n.length;
      expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(n.length));
      expect(Math.abs(variance - 1)).toBeLessThan(5 * Math.sqrt(2 / n.length));
    });

    it('derives model.params.onnx whose latent_parameters are the moments, once', async () => {
      const original = await readFile(join(sampled(), 'vae_encoder/model.onnx'));
      const r = await prepareVaeParameters(sampled());
      expect(r).not.toBeNull();
      expect(r!.reused).toBe(false);
      expect(r!.path).toBe(join(sampled(), 'vae_encoder/model.params.onnx'));
      const manifest = VaeParametersManifest.parse(JSON.parse(await readFile(r!.manifestPath, 'utf8')));
      expect(manifest).toEqual(r!.manifest);
      expect(manifest.moments).toBe('/quant_conv/Conv_output_0');
      expect(manifest.pruned).toEqual(expect.arrayContaining(['RandomNormalLike', 'Clip', 'Exp', 'Mul', 'Add', flavour === 'opset14' ? 'Split' : 'Slice']));

      const derived = graphOf(await readModel(r!.path));
      expect(derived.node?.some((n) => /^Random/.test(n.opType ?? ''))).toBe(false);
      expect(derived.output?.map((o) => o.name)).toEqual(['latent_parameters']);
      expect(derived.output?.[0]?.type?.tensorType?.shape?.dim?.map((d) => (d.dimParam ? d.dimParam : int64ToNumber(d.dimValue)))).toEqual(['batch', 8, 'latent_height', 'latent_width']);
      // Same weights, same ops up to quant_conv: the moments of the latent_parameters twin, exactly.
      const want = data((await run(join(params(), 'vae_encoder/model.onnx'), { sample: x })).latent_parameters);
      const got = (await run(r!.path, { sample: x })).latent_parameters;
      expect(got?.dims).toEqual([2, 8, 8, 6]);
      expect([...data(got)]).toEqual([...want]);
      expect((await readFile(join(sampled(), 'vae_encoder/model.onnx'))).equals(original)).toBe(true);

      const mtime = (await stat(r!.path)).mtimeMs;
      const again = await prepareVaeParameters(sampled());
      expect(again?.reused).toBe(true);
      expect(again?.manifest).toEqual(manifest);
      expect((await stat(r!.path)).mtimeMs).toBe(mtime);
      expect((await prepareVaeParameters(sampled(), { force: true }))?.reused).toBe(false);
    });

    it('has nothing to derive for a latent_parameters encoder', async () => {
      expect(await prepareVaeParameters(params())).toBeNull();
      await expect(stat(join(params(), 'vae_encoder/model.params.onnx'))).rejects.toThrow();
    });
  });
}

describe('the sampling pattern', () => {
  /** moments (a graph input) [1,8,2,2] → Split by attribute (opset 11) → σ = Exp(Div(Clip(logvar), 2))
   *  → RandomNormal with a static shape → latent_sample. `exp: false` leaves out the Exp. */
  function staticSampler(options: { exp?: boolean; noise?: boolean } = {}): GraphBuilder {
    const b = new GraphBuilder({ seed: 1, opsetVersion: 11 });
    const moments = b.input('moments', 'float32', [1, 8, 2, 2]);
    const [mean, logvar] = b.opN('Split', [moments], { axis: attr.i(1), split: attr.ints([4, 4]) }, { outputs: 2 }) as [string, string];
    const half = b.op('Div', [b.op('Clip', [logvar, b.constFloat([-30]), b.constFloat([20])]), b.constFloat([2])]);
    const std = options.exp === false ? half : b.op('Exp', [half]);
    const noise = options.noise === false ? b.constFloat(Array.from({ length: 16 }, (_, i) => i / 16), [1, 4, 2, 2])
      : b.op('RandomNormal', [], { shape: attr.ints([1, 4, 2, 2]), dtype: attr.i(1) });
    b.output(b.op('Add', [mean, b.op('Mul', [std, noise])]), 'latent_sample', 'float32', [1, 4, 2, 2]);
    return b;
  }

  it('recognises RandomNormal, Split by attribute and σ = exp(logvar / 2); moments may be a graph input', async () => {
    const dir = join(root, 'static', 'vae_encoder');
    await staticSampler().write(join(dir, 'model.onnx'));
    const r = vaeParametersModel(await readModel(join(dir, 'model.onnx')));
    expect(r.moments).toBe('moments');
    expect([...r.pruned].sort()).toEqual(['Add', 'Clip', 'Constant', 'Constant', 'Constant', 'Div', 'Exp', 'Identity', 'Mul', 'RandomNormal', 'Split'].sort());
    const prepared = await prepareVaeParameters(join(root, 'static'));
    const m = wave(32, 2);
    const out = (await run(prepared!.path, { moments: f32(m, [1, 8, 2, 2]) })).latent_parameters;
    expect(out?.dims).toEqual([1, 8, 2, 2]);
    expect([...data(out)]).toEqual([...m]);
  });

  it('refuses graphs without it with E_MODEL_INVALID', async () => {
    for (const [name, b] of [['no-exp', staticSampler({ exp: false })], ['no-noise', staticSampler({ noise: false })]] as const) {
      const dir = join(root, name);
      await b.write(join(dir, 'vae_encoder/model.onnx'));
      const err = await prepareVaeParameters(dir).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(P2pzError);
      expect((err as P2pzError).code).toBe('E_MODEL_INVALID');
      await expect(stat(join(dir, 'vae_encoder/model.params.onnx'))).rejects.toThrow();
    }
    await expect(prepareVaeParameters(join(root, 'absent'))).rejects.toMatchObject({ code: 'E_MODEL_MISSING' });
  });

  it('tells a sample output from a parameters output', () => {
    expect(encoderSampleOutput([{ name: 'latent_parameters', channels: 8 }])).toBeNull();
    expect(encoderSampleOutput([{ name: 'latent_sample', channels: 'c' }])).toBe('latent_sample');
    expect(encoderSampleOutput([{ name: 'z', channels: 4 }])).toBe('z');
    expect(encoderSampleOutput([{ name: 'moments', channels: 8 }])).toBeNull();
  });
});
