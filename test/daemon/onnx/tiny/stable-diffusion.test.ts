import { readFile, readdir, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphOf, readModel, externalDataRefs } from '../../../../daemon/onnx/graph/model-io.js';
import { int64ToNumber } from '../../../../daemon/onnx/graph/onnx-proto.js';
import type { Flavour } from '../../../../daemon/onnx/tiny/layers.js';
import { TINY_SD, writeTinyStableDiffusion } from '../../../../daemon/onnx/tiny/stable-diffusion.js';
import type { TinyStableDiffusionInfo } from '../../../../daemon/onnx/tiny/stable-diffusion.js';
import { allFinite, data, f32, ids, maxAbsDiff, wave } from './fixtures.js';

let root: string;
const info = new Map<Flavour, TinyStableDiffusionInfo>();
const FLAVOURS: readonly Flavour[] = ['opset14', 'opset17'];
const D = TINY_SD.textEncoder.hiddenSize;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'p2pz-tiny-sd-'));
  for (const flavour of FLAVOURS) info.set(flavour, await writeTinyStableDiffusion(join(root, flavour), { flavour, seed: 1 }));
});
afterAll(async () => {
  for (const s of unetSessions.values()) await (await s).release();
  await rm(root, { recursive: true, force: true });
});

/** One UNet session per flavour, shared by the tests (creating one dominates their time). */
const unetSessions = new Map<Flavour, Promise<ort.InferenceSession>>();
function unetSession(flavour: Flavour): Promise<ort.InferenceSession> {
  let s = unetSessions.get(flavour);
  if (!s) {
    s = ort.InferenceSession.create(join(root, flavour, 'unet', 'model.onnx'));
    unetSessions.set(flavour, s);
  }
  return s;
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort();
}

describe.each(FLAVOURS)('writeTinyStableDiffusion (%s)', (flavour) => {
  const dir = (): string => join(root, flavour);
  const weights = flavour === 'opset14' ? 'weights.pb' : 'model.onnx_data';

  it('writes the diffusers/optimum ONNX folder layout', async () => {
    expect(await listFiles(dir())).toEqual([
      'model_index.json',
      'scheduler/scheduler_config.json',
      'text_encoder/model.onnx',
      'tokenizer/merges.txt',
      'tokenizer/special_tokens_map.json',
      'tokenizer/tokenizer_config.json',
      'tokenizer/vocab.json',
      'unet/model.onnx',
      `unet/${weights}`,
      'vae_decoder/model.onnx',
      'vae_encoder/model.onnx',
    ]);
    const index = JSON.parse(await readFile(join(dir(), 'model_index.json'), 'utf8')) as Record<string, unknown>;
    for (const c of ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder', 'tokenizer', 'scheduler']) expect(index[c]).toHaveLength(2);
    const unet = await readModel(join(dir(), 'unet', 'model.onnx'));
    const refs = externalDataRefs(unet);
    expect(refs.length).toBeGreaterThan(50);
    expect(new Set(refs.map((r) => r.location))).toEqual(new Set([weights]));
    expect(int64ToNumber(unet.opsetImport?.[0]?.version)).toBe(flavour === 'opset14' ? 14 : 17);
  });

  it('text encoder: input_ids [B,77] → last_hidden_state [B,77,D]', async () => {
    const s = await ort.InferenceSession.create(join(dir(), 'text_encoder', 'model.onnx'));
    const type = flavour === 'opset14' ? 'int32' : 'int64';
    const vocab = info.get(flavour)!.vocabularySize;
    const tokens = Array.from({ length: 2 * 77 }, (_, i) => (i * 37) % vocab);
    const out = await s.run({ input_ids: ids(type, tokens, [2, 77]) });
    expect(out.last_hidden_state?.dims).toEqual([2, 77, D]);
    expect(allFinite(data(out.last_hidden_state))).toBe(true);
    await s.release();
  });

  it('UNet: dynamic batch and latent size, out_sample shaped like sample, rows independent', async () => {
    const s = await unetSession(flavour);
    const timestep = (values: number[]): ort.Tensor =>
      flavour === 'opset14' ? ids('int64', values, [values.length]) : f32(Float32Array.of(values[0] as number), []);
    const run = async (b: number, h: number, w: number, phase: number): Promise<Float32Array> => {
      const out = await s.run({
        sample: f32(wave(b * 4 * h * w, phase), [b, 4, h, w]),
        timestep: timestep(Array(b).fill(481)),
        encoder_hidden_states: f32(wave(b * 77 * D, phase + 1), [b, 77, D]),
      });
      expect(out.out_sample?.dims).toEqual([b, 4, h, w]);
      return data(out.out_sample);
    };
    for (const [h, w] of [[8, 8], [16, 12]] as const) expect(allFinite(await run(1, h, w, 0))).toBe(true);
    // Batch 2 with the batch-1 input as its first row: row 0 must not see row 1 (the head split and
    // merge reshapes keep the batch apart).
    const single = await run(1, 8, 8, 0);
    const sampleTwo = new Float32Array(2 * 4 * 64);
    sampleTwo.set(wave(4 * 64, 0));
    sampleTwo.set(wave(4 * 64, 5), 4 * 64);
    const ctxTwo = new Float32Array(2 * 77 * D);
    ctxTwo.set(wave(77 * D, 1));
    ctxTwo.set(wave(77 * D, 6), 77 * D);
    const two = await s.run({ sample: f32(sampleTwo, [2, 4, 8, 8]), timestep: timestep([481, 481]), encoder_hidden_states: f32(ctxTwo, [2, 77, D]) });
    const both = data(two.out_sample);
    expect(maxAbsDiff(both.subarray(0, 4 * 64), single)).toBeLessThan(1e-4);
    expect(maxAbsDiff(both.subarray(4 * 64), single)).toBeGreaterThan(1e-2);
  });

  it('UNet output depends on the timestep and on encoder_hidden_states', async () => {
    const s = await unetSession(flavour);
    const run = async (t: number, phase: number): Promise<Float32Array> => {
      const out = await s.run({
        sample: f32(wave(4 * 64, 0), [1, 4, 8, 8]),
        timestep: flavour === 'opset14' ? ids('int64', [t], [1]) : f32(Float32Array.of(t), []),
        encoder_hidden_states: f32(wave(77 * D, phase), [1, 77, D]),
      });
      return data(out.out_sample);
    };
    const base = await run(1, 1);
    expect(maxAbsDiff(base, await run(981, 1))).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(base, await run(1, 2))).toBeGreaterThan(1e-3);
  });

  it('VAE: encoder [B,3,H,W] → latent_parameters [B,8,H/8,W/8]; decoder [B,4,h,w] → sample [B,3,8h,8w] in [-1,1]', async () => {
    const enc = await ort.InferenceSession.create(join(dir(), 'vae_encoder', 'model.onnx'));
    const dec = await ort.InferenceSession.create(join(dir(), 'vae_decoder', 'model.onnx'));
    for (const [b, H, W] of [[1, 64, 64], [2, 32, 48]] as const) {
      const e = await enc.run({ sample: f32(wave(b * 3 * H * W, 2), [b, 3, H, W]) });
      expect(e.latent_parameters?.dims).toEqual([b, 8, H / 8, W / 8]);
      expect(allFinite(data(e.latent_parameters))).toBe(true);
      const d = await dec.run({ latent_sample: f32(wave(b * 4 * (H / 8) * (W / 8), 3), [b, 4, H / 8, W / 8]) });
      expect(d.sample?.dims).toEqual([b, 3, H, W]);
      const y = data(d.sample);
      expect(y.every((v) => v >= -1 && v <= 1)).toBe(true);
      expect(maxAbsDiff(y, new Float32Array(y.length))).toBeGreaterThan(0.05);
    }
    await Promise.all([enc.release(), dec.release()]);
  });
});

describe('determinism', () => {
  it('the same seed writes byte-identical folders; another seed changes the weights', async () => {
    const again = join(root, 'again');
    const other = join(root, 'other');
    await writeTinyStableDiffusion(again, { flavour: 'opset14', seed: 1 });
    await writeTinyStableDiffusion(other, { flavour: 'opset14', seed: 2, components: ['unet'] });
    const files = await listFiles(join(root, 'opset14'));
    expect(await listFiles(again)).toEqual(files);
    for (const f of files) {
      const [a, b] = await Promise.all([readFile(join(root, 'opset14', f)), readFile(join(again, f))]);
      expect(a.equals(b), f).toBe(true);
    }
    // Same graph, different values.
    const [g1, g2] = await Promise.all([readModel(join(root, 'opset14', 'unet', 'model.onnx')), readModel(join(other, 'unet', 'model.onnx'))]);
    expect(graphOf(g2).node).toEqual(graphOf(g1).node);
    const [w1, w2] = await Promise.all([readFile(join(root, 'opset14', 'unet', 'weights.pb')), readFile(join(other, 'unet', 'weights.pb'))]);
    expect(w1.length).toBe(w2.length);
    expect(w1.equals(w2)).toBe(false);
  });

  it('refuses a preset whose text encoder width differs from the UNet cross-attention width', async () => {
    const bad = { ...TINY_SD, unet: { ...TINY_SD.unet, crossAttentionDim: 48 } };
    await expect(writeTinyStableDiffusion(join(root, 'bad'), { preset: bad })).rejects.toThrow(/cross-attention width/);
  });
});
