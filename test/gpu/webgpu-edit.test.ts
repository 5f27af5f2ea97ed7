// The WebGPU provider, really run: onnxruntime-node's own WebGPU provider on the Vulkan software
// device (SwiftShader, test/fixtures/webgpu.ts), against its CPU provider.
//   1. `p2pz edit --device webgpu` and `--device cpu` on the generated tiny model, same seed, both with
//      --dump: every intermediate agrees within the tolerances below, and the WebGPU numbers are not
//      the CPU's (a different provider computed them).
//   2. The WebGPU dump replays in models/reference/replay_dump.py (PyTorch on the CPU): 0 failed.
//   3. The worker under `auto` picks WebGPU when CUDA is not installed, names the adapter and why
//      CUDA was skipped.
//   4. The gradient graph runs entirely on WebGPU: no node left to the CPU (the variadic Sum the
//      gradient used to accumulate with has no WebGPU kernel; it is now a chain of Add).
// Tolerances, from the measured differences (docs/BENCHMARKS.md, "Devices"): the first UNet call
// already differs by ~3e-4 (relative L2) between the providers (different kernels for MatMul,
// Softmax, GroupNorm); over the run that grows to ~1e-3 for latents and ε, ~2e-3 for ∂L/∂x (a second
// pass through the UNet). The bounds below are 5× those, so a wrong kernel (errors of order 1) fails.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { decodeNpy } from '../../daemon/pipeline/dump/npy.js';
import { WorkerSupervisor } from '../../daemon/worker/supervisor.js';
import { parsePlacements } from '../../scripts/device/placements.js';
import { BUILT_WORKER } from '../fixtures/tiny-models.js';
import { swiftShaderEnv } from '../fixtures/webgpu.js';
import { memoryLogger, waitFor } from '../daemon/worker/helpers.js';
import { REPO, run, type Run } from '../fixtures/run-command.js';

const PYTHON = process.env['P2PZ_PYTHON'] ?? '/usr/bin/python3';
const STEPS = 2;
const TOLERANCE = Object.freeze({ latent: 5e-3, eps: 5e-3, grad: 1e-2, image: 5e-3, pngLevels: 2 });

let dir: string;
let modelDir: string;
let gpuEnv: Record<string, string>;
const edits: Partial<Record<'cpu' | 'webgpu', Run>> = {};

const dumpOf = (device: string): string => join(dir, `dump-${device}`);
const outOf = (device: string): string => join(dir, `out-${device}.png`);

function edit(device: 'cpu' | 'webgpu', extra: readonly string[] = []): Promise<Run> {
  return run(process.execPath, [
    'bin/p2pz.js', 'edit', join(dir, 'in.png'), '--model', modelDir, '--from', 'cat', '--to', 'dog', '--steps', String(STEPS), '--reg-steps', '1',
    '--size', '64', '--seed', '5', '--bank-count', '2', '--device', device, '--out', outOf(device), '--dump', dumpOf(device), ...extra,
  ], { P2PZ_HOME: join(dir, `home-${device}`), ...gpuEnv });
}

async function npy(device: string, file: string): Promise<Float32Array> {
  return decodeNpy(await readFile(join(dumpOf(device), file))).data as Float32Array;
}

/** ‖a − b‖₂ / ‖b‖₂ and max |a − b|. */
function difference(a: Float32Array, b: Float32Array): { relL2: number; maxAbs: number } {
  expect(a.length).toBe(b.length);
  let d2 = 0;
  let b2 = 0;
  let maxAbs = 0;
  for (let i = 0; i < b.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    d2 += d * d;
    b2 += (b[i] as number) ** 2;
    maxAbs = Math.max(maxAbs, Math.abs(d));
  }
  return { relL2: Math.sqrt(d2 / Math.max(b2, 1e-30)), maxAbs };
}

beforeAll(async () => {
  gpuEnv = swiftShaderEnv();
  dir = await mkdtemp(join(tmpdir(), 'p2pz-webgpu-'));
  modelDir = join(dir, 'model');
  await writeTinyStableDiffusion(modelDir, { flavour: 'opset17' });
  const [width, height] = [64, 64];
  const rgb = Buffer.alloc(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 7 + (i >> 6)) & 255;
  await writeFile(join(dir, 'in.png'), await sharp(rgb, { raw: { width, height, channels: 3 } }).png().toBuffer());
  // One after the other: both write the derived graphs into the model folder on first use.
  edits.cpu = await edit('cpu');
  edits.webgpu = await edit('webgpu');
}, 900_000);

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('p2pz edit --device webgpu (SwiftShader) against --device cpu', () => {
  it('runs on WebGPU and says so, with the adapter in words', () => {
    const gpu = edits.webgpu as Run;
    expect(gpu.stderr).toContain('device: GPU · WebGPU (SwiftShader, software Vulkan on the CPU): WebGPU requested.');
    expect(gpu.stdout).toMatch(/out-webgpu\.png: cat → dog \(diffusion, webgpu, [\d.]+ s\)/);
    expect(gpu.code).toBe(0);
    expect(edits.cpu?.stdout).toMatch(/\(diffusion, cpu, /);
  });

  it('latents, ε, ∂L/∂x and the output image agree within the stated tolerances', async () => {
    const files = (await readdir(dumpOf('cpu'), { recursive: true })).filter((f) => f.endsWith('.npy')).sort();
    expect((await readdir(dumpOf('webgpu'), { recursive: true })).filter((f) => f.endsWith('.npy')).sort()).toEqual(files);
    const bound = (file: string): number | undefined => {
      if (/_grad\.npy$/.test(file)) return TOLERANCE.grad;
      if (/_eps(_reg)?\.npy$/.test(file)) return TOLERANCE.eps;
      if (/(^|\/)(\d{3}_z|z0|zT|z_final)\.npy$/.test(file)) return TOLERANCE.latent;
      if (file === 'image_out.npy') return TOLERANCE.image;
      return undefined; // ids, embeddings, Δ, the input: checked below or not device work
    };
    const checked: string[] = [];
    let largestEpsDifference = 0;
    for (const file of files) {
      const tol = bound(file);
      if (tol === undefined) continue;
      const d = difference(await npy('webgpu', file), await npy('cpu', file));
      expect.soft(d.relL2, file).toBeLessThanOrEqual(tol);
      if (/_eps\.npy$/.test(file)) largestEpsDifference = Math.max(largestEpsDifference, d.maxAbs);
      checked.push(file);
    }
    for (let k = 0; k < STEPS; k++) {
      const n = String(k).padStart(3, '0');
      for (const f of [`inversion/${n}_eps.npy`, `inversion/${n}_z.npy`, `edit/${n}_eps.npy`, `edit/${n}_grad.npy`, `edit/${n}_z.npy`, `reference/${n}_z.npy`]) expect(checked).toContain(f);
    }
    expect(checked).toEqual(expect.arrayContaining(['zT.npy', 'z_final.npy', 'image_out.npy']));
    // Another provider did compute these: its rounding differs from the CPU's.
    expect(largestEpsDifference).toBeGreaterThan(0);
    // The text encoder too: the embeddings agree closely.
    expect(difference(await npy('webgpu', 'e_caption.npy'), await npy('cpu', 'e_caption.npy')).relL2).toBeLessThanOrEqual(1e-5);

    const [gpuPng, cpuPng] = await Promise.all(['webgpu', 'cpu'].map((d) => sharp(outOf(d)).raw().toBuffer({ resolveWithObject: true })));
    expect(gpuPng?.info).toEqual(cpuPng?.info);
    let worst = 0;
    for (let i = 0; i < (cpuPng?.data.length ?? 0); i++) worst = Math.max(worst, Math.abs((gpuPng?.data[i] ?? 0) - (cpuPng?.data[i] ?? 0)));
    expect(worst).toBeLessThanOrEqual(TOLERANCE.pngLevels);
  });

  it('the WebGPU dump replays in models/reference/replay_dump.py', async () => {
    const r = await run(PYTHON, [join(REPO, 'models/reference/replay_dump.py'), dumpOf('webgpu'), '--model', modelDir]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^PASS reference\/001_z = DDIM step .* with reference\/000_eps/m);
    expect(r.stdout).toMatch(/^PASS edit\/000_eps\[0\] = reference\/000_eps/m);
    expect(r.stdout).toMatch(/^PASS z_final = DDIM step/m);
    expect(r.stdout).toMatch(/^\d+ passed, 0 failed$/m);
    expect(r.code).toBe(0);
  });

  it('places every node of the gradient graph on WebGPU (no CPU fallback, no copies)', async () => {
    const grad = (await readdir(join(modelDir, 'unet'))).find((f) => /^model\.grad\.8x8\.onnx$/.test(f));
    expect(grad).toBeDefined();
    const script = [
      "import { InferenceSession } from 'onnxruntime-node';",
      `await InferenceSession.create(${JSON.stringify(join(modelDir, 'unet', grad as string))}, { executionProviders: ['webgpu'], graphOptimizationLevel: 'all', logSeverityLevel: 0, logVerbosityLevel: 0 });`,
    ].join('\n');
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO, env: { ...process.env, ...gpuEnv } });
    let log = '';
    child.stderr.on('data', (b: Buffer) => (log += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    const placement = parsePlacements(log);
    expect(placement.perProvider['WebGpuExecutionProvider']).toBeGreaterThan(1000);
    expect(placement.perProvider['CPUExecutionProvider'] ?? 0).toBe(0);
    expect(placement.onCpu).toEqual({});
    expect(placement.copies).toBe(0);
  }, 120_000);
});

describe('the worker under auto, with SwiftShader', () => {
  it('picks WebGPU, names the adapter, and says why CUDA was skipped', async () => {
    const log = memoryLogger();
    const s = new WorkerSupervisor({ modelsDir: dir, workerPath: BUILT_WORKER, device: 'auto', log, env: gpuEnv });
    try {
      await waitFor(() => s.health().state === 'ready', 'ready', 60_000);
      const device = s.health().device;
      expect(device).toMatchObject({
        provider: 'webgpu',
        adapter: 'SwiftShader, software Vulkan on the CPU',
        reason: 'WebGPU started (CUDA did not).',
        memory: 'Planned against the free system memory.',
      });
      expect(device?.skipped?.[0]?.provider).toBe('cuda');
    } finally {
      await s.close();
    }
  }, 90_000);

  it('p2pz edit refuses an unknown --device with a coded error before loading anything', async () => {
    const r = await run(process.execPath, ['bin/p2pz.js', 'edit', join(dir, 'in.png'), '--model', modelDir, '--from', 'cat', '--to', 'dog', '--device', 'metal'], { P2PZ_HOME: join(dir, 'home-bad') });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("--device must be one of auto, cpu, cuda, webgpu, coreml, dml, not “metal”.");
    expect(r.stderr).toContain("Pass --device auto");
  });
});
