// `npm run bench grad [--latent N] [--runs N] [--presets tiny,sd15]`: cost of the guidance gradient
// graph (UNet forward + loss + ∂L/∂sample) against the UNet forward alone (the cross-attention graph),
// at batch 2 (the two CFG branches) and a small latent size, for the tiny UNet and the SD-1.5-shaped
// UNet (all-zero weights in a sparse file: same kernels and shapes, so the same time). Each session
// runs in its own child process so that peak memory (max RSS) is its own. Prints a Markdown section
// for docs/BENCHMARKS.md. The tiny UNet's runs take milliseconds and scheduling noise on a shared
// machine dominates them, so it runs 10× as many times.
// `--profile`: one run per session with onnxruntime's profiler, and a table of kernel time by op (and,
// for the gradient graph, by part: forward, recomputation, backward) instead of the timing table.
// `--dir D`: generate and prepare the models in D and keep them (reused by later runs).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
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
    profile: { type: 'boolean', default: false },
    dir: { type: 'string' },
  },
});

interface ChildResult { createMs: number; runMs: number[]; maxRssMiB: number; profile?: Record<string, number>; parts?: Record<string, number> }

/** Kernel time (ms) by op type and by part of the graph, from an onnxruntime profile file. */
async function readProfile(file: string): Promise<{ byOp: Record<string, number>; parts: Record<string, number> }> {
  const events = JSON.parse(await readFile(file, 'utf8')) as { cat?: string; name?: string; dur?: number; args?: { op_name?: string } }[];
  const byOp: Record<string, number> = {};
  const parts: Record<string, number> = {};
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || !e.args?.op_name) continue;
    const ms = (e.dur ?? 0) / 1000;
    byOp[e.args.op_name] = (byOp[e.args.op_name] ?? 0) + ms;
    const part = /recompute/.test(e.name) ? 'recompute' : e.name.startsWith('grad/') ? 'backward' : e.name.startsWith('chunk/') ? 'forward (chunked attention)' : 'forward';
    parts[part] = (parts[part] ?? 0) + ms;
  }
  return { byOp, parts };
}

async function child(path: string, latent: number, runs: number, threads: number, flavour: string): Promise<void> {
  const t0 = performance.now();
  const prefix = join(tmpdir(), `p2pz-profile-${process.pid}`);
  const session = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, ...(values.profile ? { enableProfiling: true, profileFilePrefix: prefix } : {}) });
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
  if (!values.profile) await session.run(feeds); // warm-up
  const runMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await session.run(feeds);
    runMs.push(performance.now() - t);
  }
  const result: ChildResult = { createMs, runMs, maxRssMiB: process.resourceUsage().maxRSS / 1024 };
  if (values.profile) {
    session.endProfiling();
    const file = readdirSync(tmpdir()).find((f) => f.startsWith(`p2pz-profile-${process.pid}`));
    if (file) {
      const { byOp, parts } = await readProfile(join(tmpdir(), file));
      result.profile = byOp;
      result.parts = parts;
      await rm(join(tmpdir(), file), { force: true });
    }
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function measure(path: string, latent: number, runs: number, threads: number, flavour: string): ChildResult {
  const r = spawnSync(process.execPath, [process.argv[1] ?? '', '--child', 'run', '--model', path, '--latent', String(latent), '--runs', String(runs), '--threads', String(threads), '--flavour', flavour, ...(values.profile ? ['--profile'] : [])], { encoding: 'utf8', maxBuffer: 1 << 22 });
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
  const profiles: string[] = [];
  for (const [label, preset, fill, n] of presets) {
    const dir = values.dir ? join(values.dir, preset === TINY_SD ? 'tiny' : 'sd15') : await mkdtemp(join(tmpdir(), 'p2pz-bench-grad-'));
    try {
      if (!existsSync(join(dir, 'unet/model.onnx'))) await writeTinyStableDiffusion(dir, { preset, fill, flavour: 'opset14', components: ['unet'] });
      const t0 = performance.now();
      const prepared = await prepareModel(dir, { height: latent * 8, width: latent * 8, batch: 2 });
      const prepareMs = performance.now() - t0;
      const fwd = measure(prepared.xattnPath, latent, values.profile ? 1 : n, threads, 'opset14');
      const grad = measure(prepared.gradPath, latent, values.profile ? 1 : n, threads, 'opset14');
      if (fwd.profile && grad.profile) profiles.push(profileTable(label, fwd, grad));
      const f = median(fwd.runMs);
      const g = median(grad.runMs);
      rows.push(`| ${label} | ${f.toFixed(1)} | ${g.toFixed(1)} | **${(g / f).toFixed(2)}×** | ${fwd.maxRssMiB.toFixed(0)} | ${grad.maxRssMiB.toFixed(0)} | ${(prepareMs / 1000).toFixed(1)} |`);
    } finally {
      if (!values.dir) await rm(dir, { recursive: true, force: true });
    }
  }
  if (values.profile) {
    console.log(`## grad profile (latent ${latent}×${latent}, batch 2, one profiled run each)

Machine: ${machineLine()}. Command: \`npm run bench grad -- --latent ${latent} --profile\`.
Kernel time by op in ms (onnxruntime's profiler; it adds overhead, so only the proportions mean something).

${profiles.join('\n')}`);
    return;
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

function profileTable(label: string, fwd: ChildResult, grad: ChildResult): string {
  const f = fwd.profile ?? {};
  const g = grad.profile ?? {};
  const ops = [...new Set([...Object.keys(f), ...Object.keys(g)])].sort((a, b) => (g[b] ?? 0) - (g[a] ?? 0));
  const total = (p: Record<string, number>): number => Object.values(p).reduce((a, b) => a + b, 0);
  const lines = ops.filter((op) => (g[op] ?? 0) + (f[op] ?? 0) >= 0.005 * total(g)).map((op) => `| ${op} | ${(f[op] ?? 0).toFixed(0)} | ${(g[op] ?? 0).toFixed(0)} |`);
  const parts = Object.entries(grad.parts ?? {}).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(', ');
  return `${label}: run ${(fwd.runMs[0] ?? 0).toFixed(0)} ms forward, ${(grad.runMs[0] ?? 0).toFixed(0)} ms gradient (${((grad.runMs[0] ?? 0) / (fwd.runMs[0] ?? 1)).toFixed(2)}×); gradient graph by part: ${parts}.

| op | forward ms | gradient graph ms |
|---|---:|---:|
${lines.join('\n')}
| total | ${total(f).toFixed(0)} | ${total(g).toFixed(0)} |
`;
}

await main();
