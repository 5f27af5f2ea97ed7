// float16 on the WebGPU provider, really run on the Vulkan software device (SwiftShader,
// test/fixtures/webgpu.ts). The model is the tiny one after `p2pz models prepare --precision fp16
// --device gpu`, so its GPU graphs compute in float16 (daemon/onnx/precision/unet-precision.ts).
// SwiftShader's adapter has no `shader-f16` feature, and onnxruntime's WebGPU provider then refuses
// the float16 graph when the session is made ("Program Transpose requires f16 but the device does
// not support it", onnxruntime-node 1.30, checked here); the edit must then run the float16 weights
// in float32 on the same GPU and say so. On an adapter with float16 shaders the first branch runs
// the float16 graph instead and its output must stay within float16's reach of the CPU's float32 one
// (models/reference/README.md, "float16": 10·u per UNet evaluation, u = 2⁻¹¹).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { swiftShaderEnv } from '../fixtures/webgpu.js';
import { REPO, run, type Run } from '../fixtures/run-command.js';

const runLong = (cmd: string, args: readonly string[], env: Record<string, string> = {}): Promise<Run> => run(cmd, args, env, { timeoutMs: 540_000 });

/** One UNet evaluation of a prepared graph on a provider, in a child process (the WebGPU variables
 *  apply at process start): out_sample as JSON, or the error's message. */
const UNET_ONCE = `
import * as ort from 'onnxruntime-node';
const [path, provider] = process.argv.slice(2);
try {
  const s = await ort.InferenceSession.create(path, { executionProviders: [provider] });
  const feeds = {};
  for (const m of s.inputMetadata) {
    const n = m.shape.reduce((a, b) => a * b, 1);
    feeds[m.name] = m.name === 'timestep' ? new ort.Tensor('float32', new Float32Array(n).fill(500), m.shape)
      : new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + m.name.length)), m.shape);
  }
  const r = await s.run(feeds);
  console.log(JSON.stringify({ out: Array.from(r.out_sample.data) }));
} catch (e) { console.log(JSON.stringify({ error: String(e.message) })); }
`;

let dir: string;
let model: string;
/** Beside the repository's node_modules, so that it resolves onnxruntime-node. */
const ONCE = join(REPO, 'dist', `webgpu-fp16-once-${process.pid}.mjs`);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-webgpu-fp16-'));
  model = join(dir, 'model');
  await writeTinyStableDiffusion(model, { flavour: 'opset17' });
  for (const device of ['gpu', 'cpu']) {
    const prep = await runLong(process.execPath, ['bin/p2pz.js', 'models', 'prepare', model, '--size', '64', '--precision', 'fp16', '--device', device]);
    expect(prep.code).toBe(0);
  }
  await writeFile(ONCE, UNET_ONCE);
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(ONCE, { force: true });
});

describe('float16 on WebGPU (SwiftShader)', () => {
  it('runs the float16 graph when the adapter has float16 shaders, else falls back to float32 compute and says so', async () => {
    const once = async (file: string, provider: string): Promise<{ out?: number[]; error?: string }> => {
      const r = await runLong(process.execPath, [ONCE, join(model, 'unet', file), provider], provider === 'webgpu' ? swiftShaderEnv() : {});
      return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { out?: number[]; error?: string };
    };
    const gpu = await once('model.xattn.8x8.fp16.onnx', 'webgpu');
    const rgb = Buffer.alloc(64 * 64 * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) & 255;
    await writeFile(join(dir, 'in.png'), await sharp(rgb, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer());
    const edit = await runLong(process.execPath, [
      'bin/p2pz.js', 'edit', join(dir, 'in.png'), '--model', model, '--from', 'cat', '--to', 'dog', '--caption', 'a photo of a cat',
      '--steps', '1', '--reg-steps', '1', '--size', '64', '--seed', '3', '--bank-count', '2', '--device', 'webgpu', '--out', join(dir, 'out.png'),
    ], { ...swiftShaderEnv(), P2PZ_HOME: join(dir, 'home') });
    expect(edit.stderr + edit.stdout).toMatch(/out\.png: cat → dog \(diffusion, webgpu,/);
    expect(edit.code).toBe(0);
    if (gpu.error !== undefined) {
      expect(gpu.error).toMatch(/requires f16 but the device does not support it/);
      expect(edit.stderr).toMatch(/The GPU has no float16 shaders, so the float16 weights were computed in float32\./);
      expect(edit.stderr).toMatch(/The UNet ran in fp16 weights computed in fp32 \(prepared model\.xattn\.8x8\.fp16-fp32\.onnx\)/);
    } else {
      const cpu = await once('model.xattn.8x8.onnx', 'cpu');
      const a = cpu.out ?? [];
      const b = gpu.out ?? [];
      const err = Math.sqrt(a.reduce((s, v, i) => s + (v - (b[i] ?? Number.NaN)) ** 2, 0) / a.reduce((s, v) => s + v * v, 0));
      expect(err).toBeLessThan(10 * 2 ** -11);
      expect(edit.stderr).toMatch(/The UNet ran in fp16 \(prepared model\.xattn\.8x8\.fp16\.onnx\)/);
    }
    expect((await readFile(join(dir, 'out.png'))).length).toBeGreaterThan(100);
  }, 600_000);
});
