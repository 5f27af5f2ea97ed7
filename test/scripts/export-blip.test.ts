// scripts/captioner/export_blip.py (BLIP in plain PyTorch with transformers' state-dict names, exported
// to the captioner layout), run with Debian's python3-torch in its --self-test mode: a tiny random BLIP
// saved as model.safetensors and loaded back through the script's own safetensors reader, exported, and
// the torch module's outputs written to reference.json. Here onnxruntime runs the exported graphs
// (encoder; decoder with a 3-token cache) and must give the torch outputs within 1e-5, and the export,
// installed with `p2pz models install --from`, must caption the image as the torch module's own greedy
// decoding does. This checks the export against the script's torch module, which follows our reading of
// transformers' modeling_blip*.py; transformers itself is not installed here.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { captureIo, loadMain } from '../fixtures/cli-main.js';

const PYTHON = process.env['P2PZ_PYTHON'] ?? '/usr/bin/python3';
const SIZE = 32;

interface Reference {
  pixels: number[]; pixelsShape: number[];
  image: number[]; imageShape: number[];
  stepIds: number[];
  past: number[][]; pastShape: number[];
  logits: number[]; logitsShape: number[];
  presents: number[][];
  greedy: number[]; caption: string;
}

let work: string;
let out: string;
let ref: Reference;
let png: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'p2pz-export-blip-'));
  out = join(work, 'export');
  // A deterministic 32×32 RGB image (the tiny model's size, so the captioner's resize keeps it).
  const rgb = Buffer.alloc(SIZE * SIZE * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 97 + ((i * i) % 251)) % 256;
  await writeFile(join(work, 'pixels.raw'), rgb);
  png = join(work, 'in.png');
  await sharp(rgb, { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toFile(png);
  await promisify(execFile)(PYTHON, ['scripts/captioner/export_blip.py', '--self-test', out, '--pixels', join(work, 'pixels.raw')]);
  ref = JSON.parse(await readFile(join(out, 'reference.json'), 'utf8')) as Reference;
}, 120_000);

afterAll(() => rm(work, { recursive: true, force: true }));

function maxAbsDiff(a: ArrayLike<number>, b: readonly number[]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

it('the exported encoder and cached decoder give the torch module’s outputs within 1e-5', async () => {
  const encoder = await InferenceSession.create(join(out, 'onnx', 'encoder_model.onnx'));
  const image = (await encoder.run({ pixel_values: new Tensor('float32', Float32Array.from(ref.pixels), ref.pixelsShape) }))['last_hidden_state'];
  expect(image?.dims).toEqual(ref.imageShape);
  expect(maxAbsDiff(image!.data as Float32Array, ref.image)).toBeLessThan(1e-5);

  const decoder = await InferenceSession.create(join(out, 'onnx', 'decoder_model_merged.onnx'));
  const feeds: Record<string, Tensor> = {
    input_ids: new Tensor('int64', BigInt64Array.from(ref.stepIds, (v) => BigInt(v)), [1, ref.stepIds.length]),
    encoder_hidden_states: new Tensor('float32', Float32Array.from(ref.image), ref.imageShape),
  };
  const layers = ref.past.length / 2;
  for (let i = 0; i < layers; i++) {
    feeds[`past_key_values.${i}.key`] = new Tensor('float32', Float32Array.from(ref.past[2 * i]!), ref.pastShape);
    feeds[`past_key_values.${i}.value`] = new Tensor('float32', Float32Array.from(ref.past[2 * i + 1]!), ref.pastShape);
  }
  const result = await decoder.run(feeds);
  expect(result['logits']?.dims).toEqual(ref.logitsShape);
  const logitsDiff = maxAbsDiff(result['logits']!.data as Float32Array, ref.logits);
  expect(logitsDiff).toBeLessThan(1e-5);
  for (let i = 0; i < layers; i++) {
    expect(maxAbsDiff(result[`present.${i}.key`]!.data as Float32Array, ref.presents[2 * i]!)).toBeLessThan(1e-5);
    expect(maxAbsDiff(result[`present.${i}.value`]!.data as Float32Array, ref.presents[2 * i + 1]!)).toBeLessThan(1e-5);
  }
  await encoder.release();
  await decoder.release();
});

it('installed with p2pz models install --from, p2pz caption --beams 1 writes the torch module’s greedy caption', async () => {
  const main = await loadMain();
  const io = captureIo({ P2PZ_HOME: join(work, 'home') });
  const text = io.text;
  expect(await main(['models', 'install', '--from', out, '--name', 'blip-image-captioning-base'], io)).toBe(0);
  expect(text.out).toContain('Installed captioner/blip-image-captioning-base');
  text.out = '';
  expect(await main(['caption', png, '--beams', '1', '--device', 'cpu'], io)).toBe(0);
  // A caption of several different words, one of them joined from a ## piece: not a degenerate answer.
  expect(new Set(ref.caption.split(' ')).size).toBeGreaterThan(2);
  expect(text.out).toBe(`${ref.caption}\n`);
});
