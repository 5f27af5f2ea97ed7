// The VAE on the tiny model: z0 = s·μ in 'mean' mode and s·(μ + σ·n) with n from the seeded
// generator in 'sample' mode (σ = exp(½·clamp(log σ²))), checked against the encoder's raw output;
// the decoder's output is clamped to [-1,1] at 8× the latent size. An encoder exported with
// latent_sample (diffusers' conversion script: the graph draws its own noise) is read through its
// derived parameters graph: both modes give exactly the latent_parameters twin's z0 (same seed), and a
// whole edit on it is byte-identical across runs, records vae_latent "mean" by default and writes
// z0_noise.npy (the seeded generator's draw) in 'sample' mode.
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import { loadDiffusionModel, outputData, type DiffusionModel } from '../../../daemon/pipeline/diffusion-model.js';
import { DumpMeta, DumpWriter } from '../../../daemon/pipeline/dump/dump-writer.js';
import { decodeNpy } from '../../../daemon/pipeline/dump/npy.js';
import { InversionCache } from '../../../daemon/pipeline/inversion-cache.js';
import { runPix2PixZero } from '../../../daemon/pipeline/pix2pix-zero.js';
import { Rng } from '../../../daemon/pipeline/random.js';
import { vaeDecode, vaeEncode, type VaeLatentMode } from '../../../daemon/pipeline/vae.js';
import { EditParams } from '../../../shared/protocol/index.js';
import { MODEL_NAME, rgbaPng, tinyModels, type TinyModels } from './tiny-pipeline.js';

describe('VAE (tiny model)', () => {
  let tiny: TinyModels;
  let model: DiffusionModel;
  const x = Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.sin(i * 0.37));
  beforeAll(async () => {
    tiny = await tinyModels('opset14');
    model = await loadDiffusionModel(tiny.counting, MODEL_NAME);
  });
  afterAll(() => tiny.dispose());

  it('mean and sample modes against the encoder\'s latent_parameters', async () => {
    expect(model.vaeEncoder.kind).toBe('parameters');
    expect(model.latentScale).toBe(0.18215);
    const raw = outputData(await tiny.counting.run(model.paths.vaeEncoder, { sample: new Tensor('float32', x, [1, 3, 64, 64]) }), 'latent_parameters');
    const n = 4 * 8 * 8;
    const mean = await vaeEncode(tiny.counting, model, x, 64, 64, 'mean', new Rng(5));
    expect(mean.mode).toBe('mean');
    expect(mean.noise).toBeNull();
    for (let i = 0; i < n; i++) expect(mean.z0[i]).toBeCloseTo(0.18215 * raw[i]!, 6);
    const sample = await vaeEncode(tiny.counting, model, x, 64, 64, 'sample', new Rng(5));
    const noise = new Rng(5).fillNormal(new Float32Array(n));
    expect([...sample.noise!]).toEqual([...noise]);
    for (let i = 0; i < n; i++) {
      const sigma = Math.exp(0.5 * Math.min(20, Math.max(-30, raw[n + i]!)));
      expect(sample.z0[i]).toBeCloseTo(0.18215 * (raw[i]! + sigma * noise[i]!), 5);
    }
  });

  it('decodes [1,4,8,8] to [1,3,64,64] within [-1,1]', async () => {
    const z = Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => 3 * Math.cos(i));
    const img = await vaeDecode(tiny.counting, model, z, 8, 8);
    expect(img).toHaveLength(3 * 64 * 64);
    expect(img.every((v) => v >= -1 && v <= 1)).toBe(true);
  });
});

describe('VAE encoder exported with latent_sample (tiny model)', () => {
  const SAMPLED = 'tiny-sd-sampled';
  let tiny: TinyModels;
  let twin: DiffusionModel;
  let model: DiffusionModel;
  let dumps: string;
  const x = Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.cos(i * 0.11));
  beforeAll(async () => {
    tiny = await tinyModels('opset14');
    // Same seed as the tiny folder: same weights, only the encoder's output differs.
    await writeTinyStableDiffusion(join(tiny.root, SAMPLED), { flavour: 'opset14', vaeEncoderOutput: 'latent_sample' });
    twin = await loadDiffusionModel(tiny.counting, MODEL_NAME);
    model = await loadDiffusionModel(tiny.counting, SAMPLED);
    dumps = await mkdtemp(join(tmpdir(), 'p2pz-vae-dump-'));
  });
  afterAll(async () => {
    await tiny.dispose();
    await rm(dumps, { recursive: true, force: true });
  });

  it('reads the derived parameters graph (made on demand): both modes equal the latent_parameters twin', async () => {
    expect(model.vaeEncoder).toEqual({
      input: 'sample', inputType: 'float32', output: 'latent_parameters', kind: 'sample', parameters: join(SAMPLED, 'vae_encoder/model.params.onnx'),
    });
    expect(twin.vaeEncoder.parameters).toBe(twin.paths.vaeEncoder);
    const enc = async (m: DiffusionModel, mode: VaeLatentMode): Promise<Awaited<ReturnType<typeof vaeEncode>>> =>
      vaeEncode(tiny.counting, m, x, 64, 64, mode, new Rng(7));
    const mean = await enc(model, 'mean');
    expect(mean.mode).toBe('mean');
    expect(mean.noise).toBeNull();
    expect([...mean.z0]).toEqual([...(await enc(twin, 'mean')).z0]);
    expect([...(await enc(model, 'mean')).z0]).toEqual([...mean.z0]);
    const sample = await enc(model, 'sample');
    expect(sample.mode).toBe('sample');
    expect([...sample.noise!]).toEqual([...new Rng(7).fillNormal(new Float32Array(4 * 8 * 8))]);
    expect([...sample.z0]).toEqual([...(await enc(twin, 'sample')).z0]);
    expect(sample.z0.some((v, i) => v !== mean.z0[i])).toBe(true);
    // The export's own graph was never run for a latent.
    expect(tiny.counting.runs.get(model.paths.vaeEncoder)).toBeUndefined();
  });

  it('a whole edit is byte-identical for a seed, records vae_latent, and dumps the noise in sample mode', async () => {
    const { png } = await rgbaPng(48, 36);
    const edit = EditParams.parse({ source: 'cat', target: 'dog', steps: 2, regSteps: 0, size: 64, seed: 11 });
    const edit1 = async (name: string, vaeLatent?: VaeLatentMode): Promise<{ image: Uint8Array; dir: string; meta: DumpMeta; files: string[] }> => {
      const dir = join(dumps, name);
      const r = await runPix2PixZero(
        { image: png, edit, model: SAMPLED, bankCount: 2, dump: new DumpWriter(dir), ...(vaeLatent ? { vaeLatent } : {}) },
        { models: tiny.counting, signal: new AbortController().signal, progress: () => {}, inversionCache: new InversionCache() },
      );
      const image = r.outputs.find((o) => o.role === 'image')!.png;
      return { image, dir, meta: DumpMeta.parse(JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8'))), files: await readdir(dir) };
    };
    const a = await edit1('a');
    const b = await edit1('b');
    expect(Buffer.from(b.image).equals(Buffer.from(a.image))).toBe(true);
    expect(a.meta.vae_latent).toBe('mean');
    expect(a.files).not.toContain('z0_noise.npy');
    const z0 = async (dir: string, f = 'z0.npy'): Promise<Float32Array> => decodeNpy(await readFile(join(dir, f))).data as Float32Array;
    expect([...(await z0(b.dir))]).toEqual([...(await z0(a.dir))]);

    const s1 = await edit1('s1', 'sample');
    const s2 = await edit1('s2', 'sample');
    expect(s1.meta.vae_latent).toBe('sample');
    expect(Buffer.from(s2.image).equals(Buffer.from(s1.image))).toBe(true);
    const input = decodeNpy(await readFile(join(s1.dir, 'image_in.npy')));
    const [H, W] = [input.shape[2]!, input.shape[3]!];
    const noise = decodeNpy(await readFile(join(s1.dir, 'z0_noise.npy')));
    expect(noise.shape).toEqual([1, 4, H / 8, W / 8]);
    // The encoder is the seeded generator's first use: z0 = s·(μ + σ·n) with that draw.
    expect([...noise.data]).toEqual([...new Rng(11).fillNormal(new Float32Array(4 * (H / 8) * (W / 8)))]);
    const expected = await vaeEncode(tiny.counting, model, input.data as Float32Array, H, W, 'sample', new Rng(11));
    expect([...(await z0(s1.dir))]).toEqual([...expected.z0]);
    expect([...(await z0(a.dir))]).toEqual([...(await vaeEncode(tiny.counting, model, input.data as Float32Array, H, W, 'mean', new Rng(11))).z0]);
  });
});
