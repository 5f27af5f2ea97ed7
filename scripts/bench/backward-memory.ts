// `npm run bench backward-memory [-- --size 512 --run]`: where the memory of the guidance gradient
// graph goes, for the SD-1.5-shaped UNet (860 M parameters, all-zero weights in a sparse file) at one
// working size, batch 2. Static, from the graph alone:
//   kept       the forward tensors the backward reads (held from the forward pass to their backward
//              use), by the op that makes them;
//   early      backward nodes that depend on no gradient (onnxruntime may run them at any time);
//   live       the largest sum of tensors alive at once when the nodes run in the graph's order (a
//              tensor lives from its node to its last reader; Reshape-like ops share their input's buffer);
//   planner    the same with onnxruntime's allocation planner simulated: a dead tensor's buffer is kept
//              for the next tensor of exactly its shape and freed only after the last tensor that
//              reused it (FindReusableTensor and the free list in microsoft/onnxruntime
//              onnxruntime/core/framework/allocation_planner.cc); elementwise ops write in place.
// `--run`: also runs the graph once in onnxruntime with its profiler (graph optimisation off, so every
// node keeps its name) and reads the order it ran the nodes in and its arena's bytes in use after each
// node: the measured peak above the bytes in use before the first node, against live and planner in
// that order.
// `--runtime-shapes`: runs the graph as the roles model holds it instead: symbolic input dims and
// shape operands computed at run time (graph/runtime-shapes.ts), so the planner reuses no buffer.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { guidanceGradientModel } from '../../daemon/onnx/attention/guidance-graph.js';
import { GRADIENT_DEFAULTS } from '../../daemon/onnx/autodiff/gradient-graph.js';
import { decodeModel, writeDerivedModel } from '../../daemon/onnx/graph/model-io.js';
import { runtimeShapeOperands } from '../../daemon/onnx/graph/runtime-shapes.js';
import type { NodeProto } from '../../daemon/onnx/graph/onnx-proto.js';
import { preparePipelineGraphs } from '../../daemon/onnx/prepare.js';
import { SD15_SHAPED, writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { machineLine } from './machine.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '512' },
    /** The generated model is kept here between runs (3.4 GB, sparse); shared with `bench edit-memory`. */
    dir: { type: 'string', default: join(tmpdir(), 'p2pz-bench-sd15') },
    run: { type: 'boolean', default: false },
    'runtime-shapes': { type: 'boolean', default: false },
    threads: { type: 'string', default: '2' },
  },
});

const GiB = 2 ** 30;
const ALIAS_OPS = new Set(['Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity']);
const IN_PLACE_OPS = new Set(['Add', 'Mul', 'Sub', 'Div', 'Sigmoid', 'Erf', 'Neg', 'Sqrt', 'Tanh', 'Relu', 'Cast']);

const dir = values.dir ?? '';
const latent = Number(values.size) / 8;
if (!existsSync(join(dir, 'unet/model.onnx'))) await writeTinyStableDiffusion(dir, { preset: SD15_SHAPED, fill: 'sparse-zeros', flavour: 'opset14', components: ['unet', 'vae_encoder'] });
const unet = decodeModel(await readFile(join(dir, 'unet/model.onnx')));
const derived = guidanceGradientModel(unet, { batch: 2, latentHeight: latent, latentWidth: latent });
const graph = derived.model.graph;
const shapes = derived.shapes;
const bytes = (t: string): number => (shapes.get(t)?.dims ?? []).reduce((a, b) => a * b, 1) * (shapes.get(t)?.dtype === 7 ? 8 : 4);
const shapeKey = (t: string): string => `${shapes.get(t)?.dtype}:${(shapes.get(t)?.dims ?? []).join('x')}`;
const isBackward = (n: NodeProto): boolean => n.name.startsWith(GRADIENT_DEFAULTS.prefix);
const producer = new Map<string, NodeProto>();
for (const n of graph.node) for (const o of n.output) if (o) producer.set(o, n);
const forwardNames = new Set(graph.node.filter((n) => !isBackward(n)).flatMap((n) => n.output));
const initializers = new Set(graph.initializer.map((t) => t.name));

// kept: forward tensors read by the backward, by producing op.
const kept = new Set<string>();
for (const n of graph.node) if (isBackward(n)) for (const i of n.input) if (i && forwardNames.has(i)) kept.add(i);
const keptByOp = new Map<string, number>();
for (const t of kept) keptByOp.set(producer.get(t)?.opType ?? '?', (keptByOp.get(producer.get(t)?.opType ?? '?') ?? 0) + bytes(t));
const keptBytes = [...kept].reduce((s, t) => s + bytes(t), 0);

// early: backward nodes that read a non-constant tensor and depend on no gradient. Every scalar
// constant the backward made counts as a seed (∂L/∂L = 1 is one of them), so this count can only be
// too small.
const dependent = new Set(graph.initializer.filter((t) => !unet.graph.initializer.some((u) => u.name === t.name) && t.dims.length === 0).map((t) => t.name));
let earlyNodes = 0;
let earlyBytes = 0;
for (const n of graph.node) {
  if (!isBackward(n)) continue;
  if (n.input.some((i) => dependent.has(i))) for (const o of n.output) dependent.add(o);
  else if (n.input.some((i) => i && !initializers.has(i))) {
    earlyNodes++;
    earlyBytes += n.output.reduce((s, o) => s + (o ? bytes(o) : 0), 0);
  }
}

/** Peak bytes alive when `order` runs: tensors only (`planner` false), or buffers as onnxruntime's
 *  planner keeps them (see the header). */
function peakBytes(order: readonly NodeProto[], planner: boolean): number {
  const root = new Map<string, string>();
  const rootOf = (t: string): string => root.get(t) ?? t;
  for (const n of order) if (ALIAS_OPS.has(n.opType) && n.input[0] && n.output[0]) root.set(n.output[0], rootOf(n.input[0]));
  const last = new Map<string, number>();
  order.forEach((n, k) => { for (const i of n.input) if (i) last.set(rootOf(i), k); });
  const outputs = new Set(graph.output.map((o) => rootOf(o.name)));
  const bufferOf = new Map<string, number>();
  const buffers: { size: number; shape: string; start: number; end: number; users: number }[] = [];
  const free: number[] = [];
  order.forEach((n, k) => {
    const dying = [...new Set(n.input.filter((i) => i && last.get(rootOf(i)) === k && !outputs.has(rootOf(i))).map(rootOf))];
    for (const o of n.output) {
      if (!o || initializers.has(o) || rootOf(o) !== o) continue;
      let b = -1;
      if (planner && IN_PLACE_OPS.has(n.opType)) {
        const d = dying.find((i) => bufferOf.has(i) && buffers[bufferOf.get(i)!]!.shape === shapeKey(o) && buffers[bufferOf.get(i)!]!.users === 1);
        if (d !== undefined) b = bufferOf.get(d)!;
      }
      if (b < 0 && planner) {
        // The most recently freed buffer of this shape (onnxruntime pushes to the front and searches from it).
        for (let j = free.length - 1; j >= 0; j--) {
          if (buffers[free[j]!]!.shape !== shapeKey(o)) continue;
          b = free.splice(j, 1)[0]!;
          break;
        }
      }
      if (b < 0) {
        b = buffers.length;
        buffers.push({ size: bytes(o), shape: shapeKey(o), start: k, end: k, users: 0 });
      }
      bufferOf.set(o, b);
      buffers[b]!.users++;
      buffers[b]!.end = Math.max(buffers[b]!.end, k);
    }
    const release = (t: string): void => {
      const b = bufferOf.get(t);
      if (b === undefined) return;
      const buf = buffers[b]!;
      buf.end = Math.max(buf.end, k);
      if (--buf.users === 0) free.push(b);
    };
    for (const i of dying) release(i);
    for (const o of n.output) if (o && !last.has(o) && !outputs.has(o)) release(o);
  });
  for (const o of outputs) { const b = bufferOf.get(o); if (b !== undefined) buffers[b]!.end = order.length; }
  const delta = new Array<number>(order.length + 2).fill(0);
  for (const b of buffers) { delta[b.start]! += b.size; delta[b.end + 1]! -= b.size; }
  let cur = 0;
  let peak = 0;
  for (const d of delta) peak = Math.max(peak, (cur += d));
  return peak;
}

const rows = [
  `| kept: forward tensors the backward reads | ${(keptBytes / GiB).toFixed(2)} GiB (${kept.size} tensors: ${[...keptByOp].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([op, b]) => `${op} ${(b / 2 ** 20).toFixed(0)} MiB`).join(', ')}) |`,
  `| early: backward nodes that wait for no gradient | ${earlyNodes} nodes, ${(earlyBytes / GiB).toFixed(3)} GiB of outputs |`,
  `| live, graph order | ${(peakBytes(graph.node, false) / GiB).toFixed(2)} GiB |`,
  `| planner, graph order | ${(peakBytes(graph.node, true) / GiB).toFixed(2)} GiB |`,
];

if (values.run) {
  // The gradient graph as prepare writes it (it references the weights file next to it).
  const prepared = await preparePipelineGraphs(dir, { height: Number(values.size), width: Number(values.size) });
  let path = prepared.pair.gradPath;
  if (values['runtime-shapes']) {
    const model = decodeModel(await readFile(path));
    for (const input of model.graph.input) {
      (input.type?.tensorType?.shape?.dim ?? []).forEach((d, j) => {
        delete (d as { dimValue?: unknown }).dimValue;
        (d as { dimParam?: string }).dimParam = `${input.name}_${j}`;
      });
    }
    runtimeShapeOperands(model.graph, model.graph.input[0]!.name);
    const runtimePath = path.replace(/\.onnx$/, '.runtime-shapes.onnx');
    await writeDerivedModel(model, path, runtimePath);
    path = runtimePath;
  }
  const prefix = join(tmpdir(), `p2pz-backward-memory-${process.pid}`);
  const session = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'disabled', intraOpNumThreads: Number(values.threads), interOpNumThreads: 1, logSeverityLevel: 3, enableProfiling: true, profileFilePrefix: prefix });
  const feeds: Record<string, ort.Tensor> = {
    sample: new ort.Tensor('float32', new Float32Array(2 * 4 * latent * latent).map((_, i) => Math.sin(i) * 0.5), [2, 4, latent, latent]),
    timestep: new ort.Tensor('int64', new BigInt64Array(2).fill(501n), [2]),
    encoder_hidden_states: new ort.Tensor('float32', new Float32Array(2 * 77 * 768).map((_, i) => Math.cos(i) * 0.5), [2, 77, 768]),
  };
  for (const s of derived.sites) feeds[`attn_ref_${String(s.index).padStart(2, '0')}`] = new ort.Tensor('float32', new Float32Array(s.heads * s.queries * s.tokens).fill(1 / s.tokens), [s.heads, s.queries, s.tokens]);
  await session.run(feeds);
  const file = session.endProfiling?.() ?? '';
  await session.release();
  const profilePath = existsSync(file) ? file : join(tmpdir(), readdirSync(tmpdir()).find((f) => f.startsWith(`p2pz-backward-memory-${process.pid}`)) ?? '');
  const events = (JSON.parse(readFileSync(profilePath, 'utf8')) as { cat?: string; name: string; ts: number; args?: Record<string, string> }[])
    .filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time')).sort((a, b) => a.ts - b.ts);
  rmSync(profilePath, { force: true });
  if (values['runtime-shapes']) rmSync(path, { force: true });
  const inUse = events.map((e) => Number(e.args?.mem_bytes_in_use ?? 0));
  const position = new Map<string, number>();
  events.forEach((e, k) => { const n = e.name.replace(/_kernel_time$/, ''); if (!position.has(n)) position.set(n, k); });
  const ortOrder = graph.node.filter((n) => position.has(n.name)).sort((a, b) => position.get(a.name)! - position.get(b.name)!);
  const lossAt = ortOrder.findIndex((n) => n.output.includes('loss'));
  rows.push(
    `| onnxruntime's order | ${ortOrder.length} of ${graph.node.length} nodes by name; the loss runs as node ${lossAt + 1} |`,
    `| live, onnxruntime's order | ${(peakBytes(ortOrder, false) / GiB).toFixed(2)} GiB |`,
    `| planner, onnxruntime's order | ${(peakBytes(ortOrder, true) / GiB).toFixed(2)} GiB |`,
    `| measured: arena bytes in use, peak above the first node's | ${((Math.max(...inUse) - (inUse[0] ?? 0)) / GiB).toFixed(2)} GiB |`,
  );
}

console.log(`## backward-memory: the gradient graph's memory at ${values.size}², batch 2

Machine: ${machineLine()}. Command: \`npm run bench backward-memory -- --size ${values.size}${values.run ? ' --run' : ''}${values['runtime-shapes'] ? ' --runtime-shapes' : ''}\`.
SD-1.5-shaped UNet; the gradient graph as prepare derives it (recomputation, query blocks, gates).

| what | bytes |
|---|---|
${rows.join('\n')}
`);
