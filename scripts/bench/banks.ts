// `npm run bench banks [--preset tiny|sd15] [--count N] [--from WORD --to WORD]`: the per-token profile
// ‖Δ_t‖ (t = 0 … 76) of the edit direction from the old parallel banks (both concepts share every
// sentence but the word) against the per-concept banks, on a generated text encoder with random
// weights (tiny: the tests' model; sd15: SD 1.5's CLIP ViT-L/14 text encoder shape, 12 layers × 768,
// with the tiny tokenizer). The text encoder is causal, so parallel banks give Δ_t = 0 before the word;
// the per-concept banks move every position. Prints a Markdown section for docs/BENCHMARKS.md.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SD15_SHAPED, TINY_SD, writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { loadTextModel } from '../../daemon/pipeline/diffusion-model.js';
import { editDirection } from '../../daemon/pipeline/directions/edit-direction.js';
import { parallelSentenceBankPair, sentenceBankPair } from '../../daemon/pipeline/directions/sentence-bank.js';
import { SessionCache } from '../../daemon/worker/sessions.js';
import { machineLine } from './machine.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'tiny' },
    count: { type: 'string', default: '1000' },
    from: { type: 'string', default: 'cat' },
    to: { type: 'string', default: 'dog' },
  },
});
const preset = values.preset === 'sd15' ? 'sd15' : 'tiny';
const count = Number(values.count);

const root = await mkdtemp(join(tmpdir(), 'p2pz-bench-banks-'));
try {
  const started = performance.now();
  await writeTinyStableDiffusion(join(root, 'm'), {
    preset: preset === 'sd15' ? SD15_SHAPED : TINY_SD, components: ['text_encoder', 'tokenizer', 'scheduler'], flavour: 'opset17',
  });
  const models = new SessionCache({ modelsDir: root, executionProviders: ['cpu'] });
  const model = await loadTextModel(models, 'm');
  const D = model.textWidth;
  const T = model.tokenizer.maxLength;
  const profile = async (banks: { source: readonly string[]; target: readonly string[] }) => {
    const d = await editDirection(models, model, banks, { skipMemory: true });
    return Array.from({ length: T }, (_, t) => Math.hypot(...d.delta.subarray(t * D, (t + 1) * D)));
  };
  const old = await profile(parallelSentenceBankPair(values.from, values.to, { count }));
  const own = await profile(sentenceBankPair(values.from, values.to, { count }));
  await models.releaseAll();
  const seconds = (performance.now() - started) / 1000;
  const total = (p: number[]) => Math.hypot(...p);
  const share = (p: number[], from: number, to: number) => p.slice(from, to).reduce((a, v) => a + v * v, 0) / p.reduce((a, v) => a + v * v, 0);
  const cols = [0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 40, 76];
  const name = preset === 'sd15' ? 'SD-1.5-shaped text encoder (CLIP ViT-L/14 shape, D = 768, random weights)' : `tiny text encoder (TINY_SD, D = ${D}, random weights)`;
  const lines = [
    `### ‖Δ_t‖ per token position, ${values.from} → ${values.to}, ${count} sentences per concept, ${name}`,
    '',
    `Machine: ${machineLine()}. Command: \`npm run bench banks -- --preset ${preset} --count ${count}\` (${seconds.toFixed(0)} s).`,
    '',
    `| banks | ${cols.map((t) => `t=${t}`).join(' | ')} | ‖Δ‖ | share of ‖Δ‖² in t = 1–3 |`,
    `|---|${cols.map(() => '---:').join('|')}|---:|---:|`,
    ...([['parallel (before)', old], ['per concept (now)', own]] as const).map(([label, p]) =>
      `| ${label} | ${cols.map((t) => p[t]!.toFixed(3)).join(' | ')} | ${total(p).toFixed(2)} | ${(100 * share(p, 1, 4)).toFixed(1)}% |`),
  ];
  console.log(lines.join('\n'));
} finally {
  await rm(root, { recursive: true, force: true });
}
