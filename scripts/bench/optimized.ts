// `npm run bench optimized [--preset tiny|sd15] [--latent N] [--runs N]`: an onnxruntime-optimized UNet
// (daemon/onnx/tiny/ort-fusions.ts: the optimizer's fused com.microsoft ops) against the plain export
// of the same weights: how long deriving the unfused twin and preparing take, the node counts of the
// derived cross-attention graphs, and the forward time of each at batch 2, alternated. The SD-1.5-shaped
// UNet has all-zero weights in a sparse file (same kernels and shapes, so the same time). Prints a
// Markdown section for docs/BENCHMARKS.md.
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { unetInputDims } from '../../daemon/onnx/attention/guidance-graph.js';
import { decodeModel } from '../../daemon/onnx/graph/model-io.js';
import { prepareModel } from '../../daemon/onnx/prepare.js';
import { SD15_SHAPED, TINY_SD, writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { unfuseContribOps } from '../../daemon/onnx/unfuse/unfuse.js';
import { machineLine, median } from './machine.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'tiny' },
    latent: { type: 'string', default: '8' },
    runs: { type: 'string', default: '5' },
  },
});
const sd15 = values.preset === 'sd15';
const latent = Number(values.latent);
const runs = Number(values.runs);
const dir = await mkdtemp(join(tmpdir(), 'p2pz-bench-optimized-'));
try {
  const common = { preset: sd15 ? SD15_SHAPED : TINY_SD, flavour: 'opset17' as const, seed: 4, components: ['unet'] as const, fill: sd15 ? 'sparse-zeros' as const : 'random' as const };
  const fused = await writeTinyStableDiffusion(join(dir, 'fused'), { ...common, ortOptimized: {} });
  await writeTinyStableDiffusion(join(dir, 'plain'), common);
  const size = { batch: 2, latentHeight: latent, latentWidth: latent };
  const source = decodeModel(await readFile(join(dir, 'fused/unet/model.onnx')));
  let t = performance.now();
  unfuseContribOps(source, unetInputDims(source, size));
  const unfuseMs = performance.now() - t;
  const prepared: Record<string, { ms: number; xattn: string; nodes: number }> = {};
  for (const k of ['fused', 'plain']) {
    t = performance.now();
    const r = await prepareModel(join(dir, k), { height: latent * 8, width: latent * 8, graphs: 'xattn' });
    prepared[k] = { ms: performance.now() - t, xattn: r.xattnPath, nodes: decodeModel(await readFile(r.xattnPath)).graph.node.length };
  }
  const width = common.preset.unet.crossAttentionDim;
  const feeds = {
    sample: new ort.Tensor('float32', Float32Array.from({ length: 2 * 4 * latent * latent }, (_, i) => Math.sin(i * 12.9898) * 0.5), [2, 4, latent, latent]),
    timestep: new ort.Tensor('float32', Float32Array.from([501]), []),
    encoder_hidden_states: new ort.Tensor('float32', Float32Array.from({ length: 2 * 77 * width }, (_, i) => Math.cos(i * 7.233) * 0.5), [2, 77, width]),
  };
  const times: Record<string, number[]> = { fused: [], plain: [] };
  const sessions: Record<string, ort.InferenceSession> = {};
  for (const k of ['fused', 'plain']) {
    sessions[k] = await ort.InferenceSession.create(prepared[k]?.xattn as string, { graphOptimizationLevel: 'all', intraOpNumThreads: 2, interOpNumThreads: 1 });
    await sessions[k].run(feeds);
  }
  for (let i = 0; i < runs; i++) {
    for (const k of i % 2 ? ['plain', 'fused'] : ['fused', 'plain']) {
      t = performance.now();
      await sessions[k]?.run(feeds);
      times[k]?.push(performance.now() - t);
    }
  }
  for (const s of Object.values(sessions)) await s.release();
  const f = prepared.fused as { ms: number; nodes: number };
  const p = prepared.plain as { ms: number; nodes: number };
  const tf = median(times.fused ?? []);
  const tp = median(times.plain ?? []);
  console.log(`### Optimized export against plain, ${sd15 ? 'SD-1.5-shaped' : 'tiny'} UNet, latent ${latent}×${latent}, batch 2

\`npm run bench optimized -- --preset ${values.preset} --latent ${latent} --runs ${runs}\` on ${machineLine()}.
Fused ops in the optimized UNet: ${Object.entries(fused.fusedOps ?? {}).map(([op, n]) => `${op} ${n}`).join(', ')}.

| | optimized export (its unfused twin) | plain export |
|---|---|---|
| derive the twin | ${unfuseMs.toFixed(0)} ms | — |
| prepare the cross-attention graph | ${f.ms.toFixed(0)} ms | ${p.ms.toFixed(0)} ms |
| nodes in the cross-attention graph | ${f.nodes} | ${p.nodes} |
| forward, median of ${runs} (alternated) | ${tf.toFixed(1)} ms | ${tp.toFixed(1)} ms |
| ratio | ${(tf / tp).toFixed(3)} | 1 |
`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
