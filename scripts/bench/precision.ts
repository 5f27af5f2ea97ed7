// `npm run bench precision [--latent 32] [--preset sd15|tiny] [--graphs xattn,grad] [--dir D]`: float16
// against float32 for the UNet graphs prepare derives (daemon/onnx/precision/), on the CPU provider:
// weight bytes on disk, session creation and one run (after one warm-up run) of the batch-2
// cross-attention graph (the edit pass's ε) and of the guidance gradient graph, each in its own child
// process (so max RSS is its own). Three precisions:
//   fp32        the float32 export;
//   fp16-fp32   `--precision fp16` as the CPU runs it: float16 weights upcast once at prepare;
//   fp16        the float16 graph GPU providers get, run here through the Casts onnxruntime's CPU
//               provider inserts around every op it has no float16 kernel for.
// The SD-1.5-shaped UNet has all-zero weights in sparse files (same kernels, shapes and bytes). Also
// prints which ops of the float16 graph have no float16 kernel on this CPU provider.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { decodeModel, encodeModel } from '../../daemon/onnx/graph/model-io.js';
import { makeGraph, makeModel } from '../../daemon/onnx/graph/nodes.js';
import { DataType } from '../../daemon/onnx/graph/onnx-proto.js';
import { elementTypes } from '../../daemon/onnx/precision/element-types.js';
import { prepareModel } from '../../daemon/onnx/prepare.js';
import { SD15_SHAPED, TINY_SD, writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import type { UNetPrecision } from '../../daemon/onnx/precision/unet-precision.js';
import { machineLine } from './machine.js';

const { values } = parseArgs({
  options: {
    latent: { type: 'string', default: '32' },
    preset: { type: 'string', default: 'sd15' },
    graphs: { type: 'string', default: 'xattn,grad' },
    threads: { type: 'string', default: '2' },
    child: { type: 'string' },
    dir: { type: 'string' },
  },
});

interface ChildResult { createMs: number; runMs: number; maxRssMiB: number }

async function child(path: string, threads: number): Promise<void> {
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(path, { executionProviders: ['cpu'], intraOpNumThreads: threads, graphOptimizationLevel: 'all' });
  const createMs = performance.now() - t0;
  const feeds: Record<string, ort.Tensor> = {};
  for (const m of session.inputMetadata) {
    if (!m.isTensor) continue;
    const dims = m.shape as number[];
    const n = dims.reduce((a, b) => a * b, 1);
    if (m.name === 'timestep') feeds[m.name] = m.type === 'int64' ? new ort.Tensor('int64', new BigInt64Array(n).fill(500n), dims) : new ort.Tensor('float32', new Float32Array(n).fill(500), dims);
    else feeds[m.name] = new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => Math.sin(i)), dims);
  }
  await session.run(feeds);
  const t1 = performance.now();
  await session.run(feeds);
  const result: ChildResult = { createMs, runMs: performance.now() - t1, maxRssMiB: process.resourceUsage().maxRSS / 1024 };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function measure(path: string, threads: number): ChildResult {
  const r = spawnSync(process.execPath, [process.argv[1] ?? '', '--child', 'run', '--dir', path, '--threads', String(threads)], { encoding: 'utf8', maxBuffer: 1 << 22 });
  if (r.status !== 0) throw new Error(`benchmark child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as ChildResult;
}

/** Ops of `path` with float16 values that the CPU provider runs through inserted Casts. */
async function opsWithoutFloat16Kernel(path: string): Promise<string[]> {
  const model = decodeModel(await readFile(path));
  const types = elementTypes(model.graph);
  const seen = new Map<string, boolean>();
  const tmp = await mkdtemp(join(tmpdir(), 'p2pz-fp16-ops-'));
  for (const node of model.graph.node) {
    if (seen.has(node.opType) || node.opType === 'Cast' || node.opType === 'Constant') continue;
    if (![...node.input, ...node.output].some((x) => x && types.get(x) === DataType.FLOAT16)) continue;
    const ins = [...new Set(node.input.filter(Boolean))];
    const graph = makeGraph({
      name: 'one', node: [node],
      input: ins.map((i) => ({ name: i, type: { tensorType: { elemType: types.get(i) ?? DataType.FLOAT } } })),
      output: node.output.filter(Boolean).map((o) => ({ name: o, type: { tensorType: { elemType: types.get(o) ?? DataType.FLOAT } } })),
    });
    const file = join(tmp, 'optimized.onnx');
    const s = await ort.InferenceSession.create(encodeModel(makeModel({ irVersion: model.irVersion, opsetImport: model.opsetImport, graph })), { executionProviders: ['cpu'], graphOptimizationLevel: 'disabled', optimizedModelFilePath: file });
    await s.release();
    seen.set(node.opType, decodeModel(await readFile(file)).graph.node.some((n) => n.opType === 'Cast'));
  }
  await rm(tmp, { recursive: true, force: true });
  return [...seen].filter(([, casts]) => casts).map(([op]) => op).sort();
}

async function main(): Promise<void> {
  const threads = Number(values.threads);
  if (values.child) return child(values.dir ?? '', threads);
  const latent = Number(values.latent);
  const preset = values.preset === 'tiny' ? TINY_SD : SD15_SHAPED;
  const dir = values.dir ?? await mkdtemp(join(tmpdir(), 'p2pz-bench-precision-'));
  const model = join(dir, 'model');
  if (!existsSync(join(model, 'unet/model.onnx'))) {
    await writeTinyStableDiffusion(model, { preset, components: ['unet'], fill: values.preset === 'tiny' ? 'random' : 'sparse-zeros' });
  }
  const size = { height: latent * 8, width: latent * 8 };
  const variants: { label: string; precision: UNetPrecision; weights: string }[] = [
    { label: 'fp32 (export)', precision: { weights: 'fp32', compute: 'fp32' }, weights: 'unet/weights.pb' },
    { label: 'fp16 weights, fp32 compute (CPU path of `--precision fp16`)', precision: { weights: 'fp16', compute: 'fp32' }, weights: 'unet/model.fp16-fp32.onnx_data' },
    { label: 'fp16 compute (GPU graph, CPU inserts Casts)', precision: { weights: 'fp16', compute: 'fp16' }, weights: 'unet/model.fp16.onnx_data' },
  ];
  const graphs = (values.graphs ?? 'xattn,grad').split(',');
  const rows: string[] = [];
  let fp16Graph = '';
  for (const v of variants) {
    const t0 = performance.now();
    const prepared = await prepareModel(model, { ...size, precision: v.precision, graphs: 'both' });
    const prepareMs = performance.now() - t0;
    if (v.precision.compute === 'fp16') fp16Graph = prepared.xattnPath;
    const bytes = (await stat(join(model, v.weights))).size;
    const cells: string[] = [];
    for (const g of ['xattn', 'grad']) {
      if (!graphs.includes(g)) { cells.push('–', '–', '–'); continue; }
      const r = measure(g === 'xattn' ? prepared.xattnPath : prepared.gradPath, threads);
      cells.push((r.runMs / 1000).toFixed(2), (r.createMs / 1000).toFixed(1), r.maxRssMiB.toFixed(0));
    }
    rows.push(`| ${v.label} | ${(bytes / 2 ** 20).toFixed(0)} | ${(prepareMs / 1000).toFixed(1)} | ${cells.join(' | ')} |`);
  }
  const ops = await opsWithoutFloat16Kernel(fp16Graph);
  const lines = [
    `### fp16 against fp32, ${values.preset === 'tiny' ? 'tiny' : 'SD-1.5-shaped'} UNet, ${size.width}×${size.height} (latent ${latent}×${latent}), batch 2, CPU`,
    '',
    machineLine(),
    '',
    `Command: \`npm run bench precision -- --latent ${latent} --preset ${values.preset}\` (one warm-up and one measured run per graph, ${threads} threads).`,
    '',
    '| precision | weights on disk (MiB) | prepare (s) | ε graph run (s) | create (s) | max RSS (MiB) | gradient graph run (s) | create (s) | max RSS (MiB) |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Ops of the float16 graph without a float16 kernel in onnxruntime ${ort.env.versions.common}'s CPU provider (run through inserted Casts): ${ops.join(', ')}.`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (!values.dir) await rm(dir, { recursive: true, force: true });
}

await main();
