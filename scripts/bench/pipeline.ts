// `npm run bench pipeline [--preset tiny|sd15] [--size N] [--steps N] [--reg-steps N] [--bank-count N]`:
// one full pix2pix-zero edit on a generated model (tiny: random weights; sd15: SD 1.5's exact shapes
// and cost, all-zero weights in sparse files), after a warm-up edit that prepares the graphs and
// opens the sessions. Reports
//   - wall time of the edit against the sum of onnxruntime run() times inside it (goal ≤ 1.10: the
//     JavaScript around the models — regularization, DDIM, maps, PNGs — should cost little),
//   - UNet evaluations per edit, ours against the official implementation's, counted the same way,
//   - peak memory (max RSS of this process),
//   - the speed-up of a second direction on the same image (inversion reused from the cache).
// Prints a Markdown section for docs/BENCHMARKS.md.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { InferenceSession } from 'onnxruntime-node';
import sharp from 'sharp';
import { EditParams } from '../../shared/protocol/index.js';
import { SD15_SHAPED, TINY_SD, writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import type { ModelSessions } from '../../daemon/pipeline/context.js';
import { InversionCache } from '../../daemon/pipeline/inversion-cache.js';
import { runPix2PixZero, type Pix2PixZeroResult } from '../../daemon/pipeline/pix2pix-zero.js';
import { SessionCache } from '../../daemon/worker/sessions.js';
import { machineLine } from './machine.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'tiny' },
    size: { type: 'string', default: '128' },
    steps: { type: 'string', default: '10' },
    'reg-steps': { type: 'string', default: '5' },
    'bank-count': { type: 'string', default: '64' },
  },
});
const preset = values.preset === 'sd15' ? 'sd15' : 'tiny';
const size = Number(values.size);
const steps = Number(values.steps);
const regSteps = Number(values['reg-steps']);
const bankCount = Number(values['bank-count']);

/** Sessions that time every run() by model file. */
class TimedSessions implements ModelSessions {
  readonly inner: SessionCache;
  readonly byFile = new Map<string, { calls: number; ms: number }>();
  constructor(inner: SessionCache) {
    this.inner = inner;
  }
  get modelsDir(): string {
    return this.inner.modelsDir;
  }
  resolve(path: string): Promise<string> {
    return this.inner.resolve(path);
  }
  get(path: string) {
    return this.inner.get(path);
  }
  async run(path: string, feeds: InferenceSession.FeedsType): Promise<InferenceSession.ReturnType> {
    await this.inner.get(path); // loading is not running
    const t = performance.now();
    try {
      return await this.inner.run(path, feeds);
    } finally {
      const key = path.replace(/^.*\/(text_encoder|unet|vae_encoder|vae_decoder)\//, '$1/');
      const e = this.byFile.get(key) ?? { calls: 0, ms: 0 };
      e.calls++;
      e.ms += performance.now() - t;
      this.byFile.set(key, e);
    }
  }
  totalMs(): number {
    return [...this.byFile.values()].reduce((a, e) => a + e.ms, 0);
  }
}

const root = await mkdtemp(join(tmpdir(), 'p2pz-bench-pipeline-'));
try {
  await writeTinyStableDiffusion(join(root, 'model'), {
    preset: preset === 'sd15' ? SD15_SHAPED : TINY_SD,
    fill: preset === 'sd15' ? 'sparse-zeros' : 'random',
  });
  const cache = new SessionCache({ modelsDir: root, executionProviders: ['cpu'], maxSessions: 8 });
  const width = size;
  const height = Math.round((size * 3) / 4);
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 37) % 251;
  const image = await sharp(raw, { raw: { width, height, channels: 3 } }).png().toBuffer();
  const edit = (target: string) => EditParams.parse({ source: 'cat', target, steps, regSteps, size, seed: 1 });
  const run = async (target: string, sessions: ModelSessions, inversions: InversionCache): Promise<{ result: Pix2PixZeroResult; ms: number }> => {
    const t = performance.now();
    const result = await runPix2PixZero({ image, edit: edit(target), model: 'model', bankCount }, {
      models: sessions, signal: new AbortController().signal, progress: () => {}, inversionCache: inversions, directionCacheDir: join(root, 'directions'),
    });
    return { result, ms: performance.now() - t };
  };

  // Warm-up: derived graphs, sessions and both directions' Δ (cached on disk), so that the measured
  // edits differ only in what the inversion cache saves.
  const warm = await run('dog', new TimedSessions(cache), new InversionCache());
  await run('horse', new TimedSessions(cache), new InversionCache());
  const timed = new TimedSessions(cache);
  const inversions = new InversionCache();
  const full = await run('dog', timed, inversions);
  const repeat = await run('horse', new TimedSessions(cache), inversions);
  const maxRssMiB = process.resourceUsage().maxRSS / 1024;
  await cache.releaseAll();

  const c = full.result.details.unetCalls;
  const N = steps;
  const ours = c.inversion + c.reference + 2 * c.edit;
  // The official code: inversion skips the first and last step (N − 2 calls at batch 1), the
  // reference pass runs at the CFG batch 2, the edit pass runs forward + backward at batch 2 and
  // recomputes ε at batch 2. Counted in batch-1 UNet forwards, plus the forward+backward passes.
  const official = N - 2 + 2 * N + 2 * N;
  const lines = [
    `### pix2pix-zero edit (${preset === 'sd15' ? 'SD 1.5-shaped UNet, zero weights' : 'tiny model'}, ${width}×${height} → working ${full.result.details.workingSize.width}×${full.result.details.workingSize.height}, ${N} steps, reg-steps ${regSteps}, CPU)`,
    '',
    `Machine: ${machineLine()}. Command: \`npm run bench pipeline -- --preset ${preset} --size ${size} --steps ${steps} --reg-steps ${regSteps} --bank-count ${bankCount}\``,
    '',
    '| measure | value |',
    '|---|---|',
    `| warm-up edit (prepare + session creation + Δ) | ${(warm.ms / 1000).toFixed(2)} s |`,
    `| full edit, wall time | ${(full.ms / 1000).toFixed(2)} s |`,
    `| sum of onnxruntime run() times inside it | ${(timed.totalMs() / 1000).toFixed(2)} s |`,
    `| wall / run() (goal ≤ 1.10) | ${(full.ms / timed.totalMs()).toFixed(3)} |`,
    `| second direction, same image (inversion reused) | ${(repeat.ms / 1000).toFixed(2)} s (×${(full.ms / repeat.ms).toFixed(2)} faster) |`,
    `| UNet forwards at batch-1 equivalents, ours | ${ours} (inversion ${c.inversion}, reference ${c.reference}, edit ${c.edit} at batch 2) + ${c.guidance} forward+backward at batch 2 |`,
    `| the same for the official code | ${official} (inversion ${N - 2}, reference ${N} at batch 2, edit ${N} at batch 2) + ${N} forward+backward at batch 2 |`,
    `| peak memory (max RSS) | ${maxRssMiB.toFixed(0)} MiB |`,
    '',
    `Stage times of the full edit (ms): ${Object.entries(full.result.timings).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}.`,
    '',
    '| model file | calls | run() time |',
    '|---|---|---|',
    ...[...timed.byFile].map(([file, e]) => `| ${file} | ${e.calls} | ${(e.ms / 1000).toFixed(3)} s |`),
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await rm(root, { recursive: true, force: true });
}
