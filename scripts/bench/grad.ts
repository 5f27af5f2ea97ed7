// `npm run bench grad [--latent N] [--runs N] [--presets tiny,sd15]`: cost of the guidance gradient
// graph (UNet forward + loss + ∂L/∂sample) against the UNet forward alone (the cross-attention graph),
// at batch 2 (the two CFG branches) and a small latent size, for the tiny UNet and the SD-1.5-shaped
// UNet (all-zero weights in a sparse file: same kernels and shapes, so the same time). Each session
// runs in its own child process so that peak memory (max RSS) is its own. Prints a Markdown section
// for docs/BENCHMARKS.md. The tiny UNet's runs take milliseconds and scheduling noise on a shared
// machine dominates them, so it runs 10× as many times.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { prepareModel } from '../../daemon/onnx/prepare.js';
import { SD15_SHAPED, TINY_SD, writeTinyStableDiffusion, type StableDiffusionPreset } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { machineLine, median } from './machine.js';

const { values } = parseArgs({
  options: {
    latent: { type: 'string', default: '16' },
    runs: { type: 'string', default: '5' },
    presets: { type: 'string', default: 'tiny,sd15' },
    threads: { type: 'string', default: '2' },
    child: { type: 'string' },
    model: { type: 'string' },
    flavour: { type: 'string', default: 'opset14' },
  },
});

interface ChildResult { createMs: number; runMs: number[]; maxRssMiB: number; }

async function child(path: string, latent: number, runs: number, threads: number, flavour: string): Promise<void> {
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1 });
  const createMs = performance.now() - t0;
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of session.inputNames) {
    const meta = session.inputMetadata.find((m) => m.name === name);
    const dims = meta && meta.isTensor ? meta.shape.map((d) => (typeof d === 'number' ? d : 1)) : [];
    const n = dims.reduce((a, b) => a * b, 1);
    if (name === 'timestep') {
      feeds[name] = flavour === 'opset14' ? new ort.Tensor('int64', new BigInt64Array(n).fill(500n), dims) : new ort.Tensor('float32', new Float32Array(n).fill(500), dims);
    } else {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 0.5;
      feeds[name] = new ort.Tensor('float32', a, dims);
    }
  }
  void latent;
  await session.run(feeds); // warm-up
  const runMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await session.run(feeds);
    runMs.push(performance.now() - t);
  }
  const result: ChildResult = { createMs, runMs, maxRssMiB: process.resourceUsage().maxRSS / 1024 };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function measure(path: string, latent: number, runs: number, threads: number, flavour: string): ChildResult {
  const r = spawnSync(process.execPath, [process.argv[1] ?? '', '--child', 'run', '--model', path, '--latent', String(latent), '--runs', String(runs), '--threads', String(threads), '--flavour', flavour], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`benchmark child failed: ${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as ChildResult;
}

async function main(): Promise<void> {
  const latent = Number(values.latent);
  const runs = Number(values.runs);
  const threads = Number(values.threads);
  if (values.child) {
    await child(values.model ?? '', latent, runs, threads, values.flavour ?? 'opset14');
    return;
  }
  const presets: [string, StableDiffusionPreset, 'random' | 'sparse-zeros', number][] = [];
  const want = (values.presets ?? '').split(',');
  if (want.includes('tiny')) presets.push(['tiny UNet (TINY_SD)', TINY_SD, 'random', runs * 10]);
  if (want.includes('sd15')) presets.push(['SD-1.5-shaped UNet (SD15_SHAPED, 860 M parameters)', SD15_SHAPED, 'sparse-zeros', runs]);
  const rows: string[] = [];
  for (const [label, preset, fill, n] of presets) {
    const dir = await mkdtemp(join(tmpdir(), 'p2pz-bench-grad-'));
    try {
      await writeTinyStableDiffusion(dir, { preset, fill, flavour: 'opset14', components: ['unet'] });
      const t0 = performance.now();
      const prepared = await prepareModel(dir, { height: latent * 8, width: latent * 8, batch: 2 });
      const prepareMs = performance.now() - t0;
      const fwd = measure(prepared.xattnPath, latent, n, threads, 'opset14');
      const grad = measure(prepared.gradPath, latent, n, threads, 'opset14');
      const f = median(fwd.runMs);
      const g = median(grad.runMs);
      rows.push(`| ${label} | ${f.toFixed(1)} | ${g.toFixed(1)} | **${(g / f).toFixed(2)}×** | ${fwd.maxRssMiB.toFixed(0)} | ${grad.maxRssMiB.toFixed(0)} | ${(prepareMs / 1000).toFixed(1)} |`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  console.log(`## grad

Guidance gradient graph (forward + pix2pix-zero loss + ∂L/∂sample) against the UNet forward alone (the
cross-attention graph), batch 2, latent ${latent}×${latent}, onnxruntime-node CPU provider, graph
optimisation 'all', ${threads} intra-op threads, median of ${runs} runs (tiny: ${runs * 10}) after one warm-up; peak memory is
the max RSS of a process holding only that session.

Machine: ${machineLine()}. Command: \`npm run bench grad -- --latent ${latent} --runs ${runs}\`.

| UNet | forward ms | forward+backward ms | ratio | forward peak MiB | gradient peak MiB | prepare s |
|---|---:|---:|---:|---:|---:|---:|
${rows.join('\n')}
`);
}

await main();
