// The device benchmark (bundled into the device pack as dist/device-bench.mjs, see pack.sh; run on
// the GPU machine by run-on-device.sh, or here at a small size as a check):
//   1. generates the SD-1.5-shaped Stable Diffusion (SD15_SHAPED: seeded random weights, the real
//      shapes) and prepares its derived graphs at the working size;
//   2. for each provider (WebGPU, then the CPU): one UNet step at batch 2 (the two CFG branches,
//      the cross-attention graph) and one forward + backward step (the guidance gradient graph at
//      batch 2), each the median of --runs runs after a warm-up, and the session load time;
//   3. a full pix2pix-zero edit (--steps DDIM steps, 5×5 regularization, CFG 5) on each provider of
//      --edit (WebGPU by default: on the CPU a 50-step 512² edit of this size takes the better part
//      of an hour, so its row is the per-step times × the step count, marked as projected);
//   4. peak memory: the process's resident set (the CPU's, and SwiftShader's) and, where nvidia-smi
//      answers, the GPU memory in use sampled every 200 ms;
//   5. prints a Markdown table for docs/BENCHMARKS.md.
// Steps 2–3 run once per precision of --precisions (default both): fp32, and fp16 as
// `p2pz models prepare --precision fp16` makes it (float16 compute on GPU providers; on the CPU the
// float16 weights computed in float32, daemon/onnx/precision/unet-precision.ts). fp32 rows keep their
// names; fp16 rows say their precision.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import sharp from 'sharp';
import { prepareModel } from '../../daemon/onnx/prepare.js';
import { describePrecision, Precision, unetPrecision, writeChosenPrecision } from '../../daemon/onnx/precision/unet-precision.js';
import { SD15_SHAPED, TINY_SD, writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { runPix2PixZero } from '../../daemon/pipeline/pix2pix-zero.js';
import { chooseExecution } from '../../daemon/worker/providers.js';
import { SessionCache } from '../../daemon/worker/sessions.js';
import { deviceWords, DevicePreference, EditParams } from '../../shared/protocol/index.js';
import type { Provider } from '../../shared/protocol/index.js';

export const DEVICE_BENCH_DEFAULTS = Object.freeze({
  preset: 'sd15',
  size: 512,
  steps: 50,
  runs: 3,
  providers: 'webgpu,cpu',
  edit: 'webgpu',
  precisions: 'fp32,fp16',
  nvidiaSmiPeriodMs: 200,
});

const log = (text: string): void => void process.stderr.write(`${text}\n`);

interface Row {
  provider: string;
  what: string;
  seconds: number | undefined;
  note: string;
}

/** GPU memory in use (MiB, the first GPU), or undefined without nvidia-smi. */
function gpuMemoryUsed(): Promise<number | undefined> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { timeout: 5_000 }, (err, out) => {
      const n = Number(out?.split('\n')[0]?.trim());
      resolve(err || !Number.isFinite(n) ? undefined : n);
    });
  });
}

/** Samples nvidia-smi until stopped; the peak in MiB. */
function gpuPeakSampler(periodMs: number): { stop: () => number | undefined } {
  let peak: number | undefined;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void gpuMemoryUsed().then((m) => {
      if (m !== undefined) peak = Math.max(peak ?? 0, m);
      busy = false;
    });
  }, periodMs);
  return { stop: () => (clearInterval(timer), peak) };
}

function feedsFor(session: InferenceSession, latent: number): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const meta of session.inputMetadata) {
    if (!meta.isTensor) continue;
    const dims = meta.shape.map((d, i) => (typeof d === 'number' && d > 0 ? d : meta.name === 'encoder_hidden_states' ? [2, 77, 768][i] ?? 1 : [2, 4, latent, latent][i] ?? 1));
    const n = dims.reduce((a, b) => a * b, 1);
    if (meta.name === 'timestep') {
      feeds[meta.name] = meta.type === 'int64' ? new Tensor('int64', new BigInt64Array(n).fill(500n), dims) : new Tensor('float32', new Float32Array(n).fill(500), dims);
      continue;
    }
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898 + meta.name.length) * (meta.name.startsWith('attn_ref_') ? 0.01 : 1);
    if (meta.name.startsWith('attn_ref_')) for (let i = 0; i < n; i++) a[i] = Math.abs(a[i] ?? 0);
    feeds[meta.name] = new Tensor('float32', a, dims);
  }
  return feeds;
}

async function timeGraph(path: string, provider: Provider, latent: number, runs: number): Promise<{ loadS: number; medianS: number }> {
  const choice = await chooseExecution(provider);
  let t = performance.now();
  const session = await InferenceSession.create(path, { executionProviders: [...choice.executionProviders], ...choice.sessionOptions, graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  const loadS = (performance.now() - t) / 1000;
  const feeds = feedsFor(session, latent);
  await session.run(feeds); // warm-up: kernel and pipeline compilation
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    t = performance.now();
    await session.run(feeds);
    times.push((performance.now() - t) / 1000);
  }
  await session.release();
  times.sort((a, b) => a - b);
  return { loadS, medianS: times[times.length >> 1] ?? NaN };
}

async function fullEdit(modelsDir: string, model: string, provider: Provider, size: number, steps: number, precision: Precision): Promise<number> {
  await writeChosenPrecision(join(modelsDir, model), precision);
  const choice = await chooseExecution(provider);
  const models = new SessionCache({ modelsDir, executionProviders: choice.executionProviders, sessionOptions: choice.sessionOptions, maxSessions: 8 });
  const rgb = Buffer.alloc(size * size * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 7 + (i >> 9)) & 255;
  const image = await sharp(rgb, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
  const edit = EditParams.parse({ source: 'cat', target: 'dog', steps, size });
  const t = performance.now();
  let last = '';
  try {
    await runPix2PixZero({ image, edit, model, bankCount: 4 }, {
      models,
      provider,
      signal: new AbortController().signal,
      progress: (stage, step, total) => {
        if (stage !== last || step === total) log(`  ${provider} edit: ${stage} ${step}/${total} at ${((performance.now() - t) / 1000).toFixed(0)} s`);
        last = stage;
      },
    });
  } finally {
    await models.releaseAll();
  }
  return (performance.now() - t) / 1000;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      preset: { type: 'string', default: DEVICE_BENCH_DEFAULTS.preset },
      size: { type: 'string', default: String(DEVICE_BENCH_DEFAULTS.size) },
      steps: { type: 'string', default: String(DEVICE_BENCH_DEFAULTS.steps) },
      runs: { type: 'string', default: String(DEVICE_BENCH_DEFAULTS.runs) },
      providers: { type: 'string', default: DEVICE_BENCH_DEFAULTS.providers },
      edit: { type: 'string', default: DEVICE_BENCH_DEFAULTS.edit },
      precisions: { type: 'string', default: DEVICE_BENCH_DEFAULTS.precisions },
    },
  });
  const precisions = (values.precisions ?? '').split(',').filter(Boolean).map((p) => Precision.parse(p));
  const size = Number(values.size);
  const steps = Number(values.steps);
  const runs = Number(values.runs);
  if (!Number.isInteger(size) || size < 64 || size % 64 !== 0) throw new Error('--size must be a multiple of 64');
  const Gpu = DevicePreference.exclude(['auto']);
  const providers = (values.providers ?? '').split(',').filter(Boolean).map((p) => Gpu.parse(p));
  const editProviders = (values.edit ?? '').split(',').filter(Boolean).map((p) => Gpu.parse(p));
  const preset = values.preset === 'tiny' ? TINY_SD : SD15_SHAPED;
  const latent = size / 8;
  const rows: Row[] = [];
  const devices: string[] = [];

  const root = await mkdtemp(join(tmpdir(), 'p2pz-device-bench-'));
  try {
    const modelDir = join(root, 'sd');
    let t = performance.now();
    await writeTinyStableDiffusion(modelDir, { preset, flavour: 'opset17' });
    log(`model (${values.preset}) written in ${((performance.now() - t) / 1000).toFixed(0)} s`);

    for (const provider of providers) {
      const choice = await chooseExecution(provider).catch((err: unknown) => err as Error);
      if (choice instanceof Error) {
        rows.push({ provider, what: 'unavailable', seconds: undefined, note: choice.message.slice(0, 160) });
        continue;
      }
      devices.push(`${deviceWords(choice.device)}`);
      const gpuPeak = gpuPeakSampler(DEVICE_BENCH_DEFAULTS.nvidiaSmiPeriodMs);
      for (const weights of precisions) {
        const precision = unetPrecision(weights, provider);
        const tag = weights === 'fp32' ? '' : `, ${describePrecision(precision)}`;
        t = performance.now();
        const prepared = await prepareModel(modelDir, { height: size, width: size, precision });
        log(`derived graphs at ${size}²${tag} prepared in ${((performance.now() - t) / 1000).toFixed(0)} s`);
        const forward = await timeGraph(prepared.xattnPath, provider, latent, runs);
        log(`${provider}${tag}: UNet step ${forward.medianS.toFixed(3)} s`);
        const backward = await timeGraph(prepared.gradPath, provider, latent, runs);
        log(`${provider}${tag}: forward + backward ${backward.medianS.toFixed(3)} s`);
        rows.push({ provider, what: `UNet forward, batch 2${tag} (load ${forward.loadS.toFixed(1)} s)`, seconds: forward.medianS, note: `median of ${runs}` });
        rows.push({ provider, what: `forward + backward ∂L/∂x, batch 2${tag} (load ${backward.loadS.toFixed(1)} s)`, seconds: backward.medianS, note: `median of ${runs}` });
        if (editProviders.includes(provider)) {
          const seconds = await fullEdit(root, 'sd', provider, size, steps, weights);
          rows.push({ provider, what: `full edit, ${steps} steps${tag}`, seconds, note: 'measured: inversion with regularization, reference and edit passes, VAE' });
        } else {
          // Per step: one batch-1 UNet call (inversion) + one (reference) + the gradient step and one batch-2 UNet call (edit).
          const projected = steps * (backward.medianS + forward.medianS * 2);
          rows.push({ provider, what: `full edit, ${steps} steps${tag}`, seconds: projected, note: 'projected from the rows above (≈ steps × (grad + 2 × UNet))' });
        }
      }
      const peak = gpuPeak.stop();
      rows.push({ provider, what: 'peak memory', seconds: undefined, note: `process RSS ${(process.resourceUsage().maxRSS / 1024 / 1024).toFixed(1)} GiB so far${peak === undefined ? '' : `; GPU memory used ${(peak / 1024).toFixed(1)} GiB (nvidia-smi)`}` });
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }

  const fmt = (s: number | undefined): string => (s === undefined ? '–' : s >= 120 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(s < 1 ? 3 : 1)} s`);
  process.stdout.write([
    `## Device bench: ${values.preset === 'tiny' ? 'tiny' : 'SD-1.5-shaped'} UNet at ${size}², ${steps} steps`,
    '',
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; devices: ${devices.join('; ') || 'none'}; Node ${process.version}.`,
    `Command: \`node dist/device-bench.mjs ${process.argv.slice(2).join(' ')}\`.`,
    '',
    '| provider | what | time | note |',
    '|---|---|---:|---|',
    ...rows.map((r) => `| ${r.provider} | ${r.what} | ${fmt(r.seconds)} | ${r.note} |`),
    '',
  ].join('\n'));
  return 0;
}

process.exitCode = await main().catch((err: unknown) => {
  log(`device bench failed: ${err instanceof Error ? err.message : String(err)}`);
  return 2;
});
