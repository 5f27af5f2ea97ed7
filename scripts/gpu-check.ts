// `npm run gpu:check [-- options]`: one prepared check for a machine with an NVIDIA GPU, needing
// nothing but the project (no model download). It
//   1. loads the CUDA execution provider the way the worker does (CUDA first, CPU fallback, reason);
//   2. generates the tiny and the SD-1.5-shaped Stable Diffusion UNets (seeded random weights) and
//      prepares their derived graphs (cross-attention maps, guidance gradient);
//   3. runs the UNet forward (cross-attention graph) and the gradient graph on the device and on the
//      CPU with the same inputs and compares every output (max |Δ| and relative L2 error);
//   4. times the UNet step (batch 2: the two CFG branches) and the gradient step at 512×512 (on the
//      CPU, at the comparison size unless --time-size says otherwise);
//   5. prints a Markdown table for docs/BENCHMARKS.md (and writes it to --out).
// Exit code 0 when every comparison is within tolerance, 1 when one is not, 2 when `--device cuda`
// cannot load CUDA. Runs on a CPU-only machine too (`--device cpu`, small sizes) as a smoke test.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { CUDA_PROVIDER, cudaProviderInstalled } from '../daemon/models/cuda-provider.js';
import { estimateJobMemory, modelFootprint } from '../daemon/models/memory-estimate.js';
import { prepareModel } from '../daemon/onnx/prepare.js';
import { SD15_SHAPED, TINY_SD, writeTinyStableDiffusion, type StableDiffusionPreset } from '../daemon/onnx/tiny/stable-diffusion.js';
import { chooseExecution, devicePreference, type DevicePreference, type ExecutionChoice } from '../daemon/worker/providers.js';

export const GPU_CHECK_DEFAULTS = Object.freeze({
  device: 'auto' as DevicePreference,
  presets: 'tiny,sd15',
  /** Pixels per side of the CUDA-vs-CPU comparison (small: the CPU runs it too). */
  compareSize: 128,
  /** Pixels per side of the timed steps on CUDA; on the CPU (a fallback, or --device cpu) the
   *  comparison size, so that the SD-1.5-shaped gradient step does not take minutes. */
  timeSize: 512,
  /** Timed runs per graph (after one warm-up); the median is reported. */
  runs: 5,
  /** Relative L2 error allowed between the device and the CPU (TF32 matmuls and convolutions on
   *  the GPU round to 10-bit mantissas; the gradient passes through twice as many of them). */
  forwardTolerance: 1e-2,
  gradientTolerance: 3e-2,
});

const OPTIONS = {
  device: { type: 'string', default: GPU_CHECK_DEFAULTS.device },
  presets: { type: 'string', default: GPU_CHECK_DEFAULTS.presets },
  'compare-size': { type: 'string', default: String(GPU_CHECK_DEFAULTS.compareSize) },
  'time-size': { type: 'string' },
  runs: { type: 'string', default: String(GPU_CHECK_DEFAULTS.runs) },
  out: { type: 'string' },
  /** Run the comparison rows even when the device is the CPU (CPU against CPU: a dry run of the
   *  comparison path on a machine without a GPU). */
  'compare-always': { type: 'boolean', default: false },
} as const;


interface Row {
  model: string;
  graph: string;
  pixels: number;
  device: string;
  loadS: number;
  msPerRun: number | undefined;
  maxAbs: number | undefined;
  relL2: number | undefined;
  ok: boolean;
}

const rows: Row[] = [];
const notes: string[] = [];
const log = (text: string): void => {
  process.stderr.write(`${text}\n`);
};

function nvidiaSmi(query: string): string | undefined {
  try {
    return execFileSync('nvidia-smi', [`--query-gpu=${query}`, '--format=csv,noheader,nounits'], { encoding: 'utf8', timeout: 10_000 }).trim().split('\n')[0];
  } catch {
    return undefined;
  }
}

function ortVersion(): string {
  try {
    const root = join(dirname(fileURLToPath(import.meta.url)), '..');
    return (JSON.parse(readFileSync(join(root, 'node_modules/onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Deterministic inputs for every graph input, from its metadata (free dims filled for batch 2). */
function feedsFor(session: InferenceSession, pixels: number): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const meta of session.inputMetadata) {
    if (!meta.isTensor) continue;
    const free = (i: number): number => (meta.name === 'encoder_hidden_states' ? [2, 77, 768][i] ?? 1 : [2, 4, pixels / 8, pixels / 8][i] ?? 1);
    const dims = meta.shape.map((d, i) => (typeof d === 'number' && d > 0 ? d : free(i)));
    const n = dims.reduce((a, b) => a * b, 1);
    if (meta.name === 'timestep') {
      const t = meta.type === 'int64' ? new Tensor('int64', new BigInt64Array(n).fill(500n), dims) : meta.type === 'int32' ? new Tensor('int32', new Int32Array(n).fill(500), dims) : new Tensor('float32', new Float32Array(n).fill(500), dims);
      feeds[meta.name] = t;
      continue;
    }
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const s = Math.sin((i + 1) * 12.9898 + meta.name.length * 78.233) * 43758.5453;
      a[i] = 2 * (s - Math.floor(s)) - 1;
    }
    // Reference attention maps are probabilities: keep them in [0, 1].
    if (meta.name.startsWith('attn_ref_')) for (let i = 0; i < n; i++) a[i] = Math.abs(a[i] ?? 0) / 77;
    feeds[meta.name] = new Tensor('float32', a, dims);
  }
  return feeds;
}

async function load(path: string, providers: readonly InferenceSession.ExecutionProviderConfig[]): Promise<{ session: InferenceSession; seconds: number }> {
  const t0 = performance.now();
  const session = await InferenceSession.create(path, { executionProviders: [...providers], graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  return { session, seconds: (performance.now() - t0) / 1000 };
}

async function timeRuns(session: InferenceSession, feeds: Record<string, Tensor>, runs: number): Promise<{ outputs: InferenceSession.ReturnType; ms: number }> {
  const outputs = await session.run(feeds); // warm-up (CUDA: kernel selection, arena growth)
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  return { outputs, ms: times.length % 2 ? (times[mid] ?? 0) : ((times[mid - 1] ?? 0) + (times[mid] ?? 0)) / 2 };
}

/** max |a − b| and ‖a − b‖₂ / ‖b‖₂ over every float output. */
function compare(a: InferenceSession.ReturnType, b: InferenceSession.ReturnType): { maxAbs: number; relL2: number; finite: boolean } {
  let maxAbs = 0;
  let diff2 = 0;
  let ref2 = 0;
  let finite = true;
  for (const [name, ref] of Object.entries(b)) {
    const got = a[name];
    if (!got || ref.type !== 'float32' || got.type !== 'float32') continue;
    const x = got.data as Float32Array;
    const y = ref.data as Float32Array;
    for (let i = 0; i < y.length; i++) {
      const d = (x[i] ?? NaN) - (y[i] ?? NaN);
      if (!Number.isFinite(d)) finite = false;
      maxAbs = Math.max(maxAbs, Math.abs(d));
      diff2 += d * d;
      ref2 += (y[i] ?? 0) ** 2;
    }
  }
  return { maxAbs, relL2: Math.sqrt(diff2 / Math.max(ref2, 1e-30)), finite };
}

async function checkPreset(label: string, preset: StableDiffusionPreset, choice: ExecutionChoice, opts: { compareSize: number; timeSize: number; runs: number; compareAlways: boolean }): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'p2pz-gpu-check-'));
  try {
    let t0 = performance.now();
    await writeTinyStableDiffusion(dir, { preset, components: ['unet'] });
    log(`${label}: UNet written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const onDevice = choice.device.provider !== 'cpu' || opts.compareAlways;
    const device = choice.device.provider;

    // 1. Device against CPU at the comparison size (nothing to compare on the CPU alone).
    if (!onDevice) log(`${label}: running on the CPU only: no comparison`);
    t0 = performance.now();
    const small = onDevice ? await prepareModel(dir, { height: opts.compareSize, width: opts.compareSize }) : undefined;
    if (small) log(`${label}: prepared ${opts.compareSize}×${opts.compareSize} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const comparisons = small
      ? ([
          ['UNet + cross-attention maps', small.xattnPath, GPU_CHECK_DEFAULTS.forwardTolerance],
          ['guidance gradient', small.gradPath, GPU_CHECK_DEFAULTS.gradientTolerance],
        ] as const)
      : [];
    for (const [graph, path, tolerance] of comparisons) {
      const cpu = await load(path, ['cpu']);
      const feeds = feedsFor(cpu.session, opts.compareSize);
      const cpuRun = await timeRuns(cpu.session, feeds, 1);
      await cpu.session.release();
      const cpuFinite = compare(cpuRun.outputs, cpuRun.outputs).finite;
      const dev = await load(path, choice.executionProviders);
      const devRun = await timeRuns(dev.session, feeds, 1);
      await dev.session.release();
      const c = compare(devRun.outputs, cpuRun.outputs);
      const ok = c.finite && cpuFinite && c.relL2 <= tolerance;
      rows.push({ model: label, graph, pixels: opts.compareSize, device, loadS: dev.seconds, msPerRun: devRun.ms, maxAbs: c.maxAbs, relL2: c.relL2, ok });
      log(`${label}: ${graph} ${device} vs cpu: max |Δ| ${c.maxAbs.toExponential(2)}, rel. L2 ${c.relL2.toExponential(2)} ${ok ? 'ok' : 'OUT OF TOLERANCE'}`);
    }

    // 2. Timed steps at the working size on the chosen device.
    t0 = performance.now();
    const big = await prepareModel(dir, { height: opts.timeSize, width: opts.timeSize });
    log(`${label}: prepared ${opts.timeSize}×${opts.timeSize} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const before = device === 'cuda' ? Number(nvidiaSmi('memory.used')) : NaN;
    for (const [graph, path] of [
      ['UNet step (batch 2)', join(dir, 'unet', 'model.onnx')],
      ['guidance gradient step (batch 2)', big.gradPath],
    ] as const) {
      const s = await load(path, choice.executionProviders);
      const r = await timeRuns(s.session, feedsFor(s.session, opts.timeSize), opts.runs);
      if (device === 'cuda' && graph.startsWith('guidance')) {
        // The gradient session's device memory (weights, arena grown by its runs) against the
        // estimate for one UNet session's weights plus the gradient working set.
        const used = Number(nvidiaSmi('memory.used')) - before;
        const fp = await modelFootprint(dirname(dir), basename(dir));
        const est = estimateJobMemory(fp, { kind: 'render', height: opts.timeSize, width: opts.timeSize, batch: 2 });
        notes.push(`${label}, ${opts.timeSize}×${opts.timeSize}: nvidia-smi memory.used grew by ${Number.isFinite(used) ? `${(used / 1024).toFixed(1)} GiB` : '?'} with the gradient session loaded and run; the estimate for one UNet session plus the gradient working set is ${((fp.unetBytes + est.activationBytes) / 2 ** 30).toFixed(1)} GiB.`);
      }
      await s.session.release();
      rows.push({ model: label, graph, pixels: opts.timeSize, device, loadS: s.seconds, msPerRun: r.ms, maxAbs: undefined, relL2: undefined, ok: compare(r.outputs, r.outputs).finite });
      log(`${label}: ${graph} at ${opts.timeSize}×${opts.timeSize} on ${device}: ${r.ms.toFixed(1)} ms`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function cell(v: number | undefined, digits: number, exp = false): string {
  if (v === undefined) return '–';
  return exp ? v.toExponential(digits) : v.toFixed(digits);
}

async function main(): Promise<number> {
  const { values: args } = parseArgs({ options: OPTIONS });
  const preference = devicePreference(args.device, {});
  const compareSize = Number(args['compare-size']);
  const explicitTimeSize = args['time-size'] === undefined ? undefined : Number(args['time-size']);
  const runs = Number(args.runs);
  for (const [name, v] of [['compare-size', compareSize], ['time-size', explicitTimeSize ?? 64]] as const) {
    if (!Number.isInteger(v) || v < 64 || v % 64 !== 0) throw new Error(`--${name} must be a multiple of 64`);
  }
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive whole number');
  const gpu = nvidiaSmi('name,memory.total,driver_version');
  log(`GPU: ${gpu ?? 'none found by nvidia-smi'}; onnxruntime-node ${ortVersion()}; CUDA provider library ${cudaProviderInstalled() ? 'installed' : `not installed (${CUDA_PROVIDER.installCommand})`}`);
  let choice: ExecutionChoice;
  try {
    choice = await chooseExecution(preference);
  } catch (err) {
    log(`CUDA could not be loaded: ${(err as Error).message}`);
    log(`Install the CUDA provider with \`${CUDA_PROVIDER.installCommand}\` (CUDA 12 and cuDNN 9 must be installed), then run this check again.`);
    return 2;
  }
  log(`Provider: ${choice.device.provider} (${choice.device.reason})`);
  const timeSize = explicitTimeSize ?? (choice.device.provider === 'cuda' ? GPU_CHECK_DEFAULTS.timeSize : compareSize);
  const presets: Array<[string, StableDiffusionPreset]> = [];
  const want = (args.presets ?? '').split(',').map((s) => s.trim());
  if (want.includes('tiny')) presets.push(['tiny', TINY_SD]);
  if (want.includes('sd15')) presets.push(['SD-1.5-shaped', SD15_SHAPED]);
  for (const [label, preset] of presets) await checkPreset(label, preset, choice, { compareSize, timeSize, runs, compareAlways: args['compare-always'] });

  const command = `npm run gpu:check -- ${process.argv.slice(2).join(' ')}`.trim();
  const table = [
    '## gpu:check',
    '',
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; GPU: ${gpu ?? 'none'}; onnxruntime-node ${ortVersion()}, Node ${process.version}.`,
    `Provider: ${choice.device.provider}: ${choice.device.reason} Command: \`${command}\`.`,
    `Seeded random weights; batch 2; median of ${runs} runs after one warm-up for the timed rows; comparisons are one run against the CPU provider with the same inputs.`,
    '',
    '| model | graph | pixels | device | load s | ms per run | max abs Δ vs CPU | rel. L2 vs CPU | ok |',
    '|---|---|---:|---|---:|---:|---:|---:|---|',
    ...rows.map((r) => `| ${r.model} | ${r.graph} | ${r.pixels} | ${r.device} | ${cell(r.loadS, 1)} | ${cell(r.msPerRun, 1)} | ${cell(r.maxAbs, 2, true)} | ${cell(r.relL2, 2, true)} | ${r.ok ? 'yes' : '**no**'} |`),
    ...(notes.length ? ['', ...notes.map((n) => `- ${n}`)] : []),
    '',
  ].join('\n');
  process.stdout.write(table);
  if (args.out) await writeFile(args.out, table);
  return rows.every((r) => r.ok) ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  log(`gpu:check failed: ${err instanceof Error ? err.message : String(err)}`);
  return 2;
});
