import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../../../../daemon/onnx/graph/model-io.js';
import { makeGraph, makeModel, makeNode, makeTensor, valueInfo } from '../../../../daemon/onnx/graph/nodes.js';
import { DataType, type ModelProto } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { RUNTIME_SHAPES, runtimeShapeOperands } from '../../../../daemon/onnx/graph/runtime-shapes.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-runtime-shapes-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const SIDE = 256; // x is [1, 256, 256]: 256 KiB of float32
const HELD = 8; // tensors of one shape that die before the wide one and whose shape comes back after it

/**
 * A graph in the pattern of a gradient graph. HELD tensors of shape [1, 256, 256] (the "forward")
 * die before a tensor 8× as large of another shape; then tensors of the first shape are made again
 * (the "backward"). Every shape is known only through constant Reshape/Expand/Tile operands: x itself
 * has symbolic dims.
 */
function heldModel(): ModelProto {
  const nodes = [];
  const inits = [
    makeTensor('shape', DataType.INT64, [3], [1, SIDE, SIDE]),
    makeTensor('wide', DataType.INT64, [3], [1, 1, 8]),
    makeTensor('expand', DataType.INT64, [3], [1, SIDE, SIDE]),
  ];
  nodes.push(makeNode('Reshape', ['x', 'shape'], ['xs'], 'Reshape'));
  const sums: string[] = [];
  for (let k = 0; k < HELD; k++) {
    nodes.push(makeNode('Exp', [k === 0 ? 'xs' : `f${k - 1}`], [`f${k}`], `Exp_${k}`));
  }
  // The forward tensors die here, one by one (each read last by its own ReduceSum).
  for (let k = 0; k < HELD; k++) {
    nodes.push(makeNode('ReduceSum', [`f${k}`], [`s${k}`], `ReduceSum_${k}`, { keepdims: 0 }));
    sums.push(`s${k}`);
  }
  // The wide tensor waits for every sum (onnxruntime runs a node as late as its readers allow).
  nodes.push(makeNode('Sum', sums, ['total'], 'Sum_forward'));
  nodes.push(makeNode('Add', ['xs', 'total'], ['xt'], 'Add_forward'));
  nodes.push(makeNode('Tile', ['xt', 'wide'], ['w'], 'Tile'));
  nodes.push(makeNode('ReduceSum', ['w'], ['sw'], 'ReduceSum_w', { keepdims: 0 }));
  // The "backward": HELD tensors of the first shape again, all alive at once (Sum reads them together).
  const back: string[] = [];
  for (let k = 0; k < HELD; k++) {
    nodes.push(makeNode('Expand', [sums[k]!, 'expand'], [`e${k}`], `Expand_${k}`));
    nodes.push(makeNode('Mul', [`e${k}`, 'sw'], [`b${k}`], `Mul_${k}`));
    back.push(`b${k}`);
  }
  nodes.push(makeNode('Sum', back, ['y'], 'Sum'));
  const graph = makeGraph({
    name: 'held',
    node: nodes,
    initializer: inits,
    input: [valueInfo('x', DataType.FLOAT, ['n', 'h', 'w'])],
    output: [valueInfo('y', DataType.FLOAT, ['n', 'h', 'w'])],
  });
  return makeModel({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph });
}

/** Runs `model` once with the profiler on; returns y and the arena's bytes in use after the node
 *  `at`, above those in use after the first node (onnxruntime's own per-node memory statistics). */
async function runProfiled(model: ModelProto, tag: string, at: string): Promise<{ y: Float32Array; inUse: number }> {
  const prefix = join(dir, `profile-${tag}`);
  const session = await ort.InferenceSession.create(encodeModel(model), {
    graphOptimizationLevel: 'all', intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3, enableProfiling: true, profileFilePrefix: prefix,
  });
  const x = new Float32Array(SIDE * SIDE).map((_, i) => Math.sin(i) * 0.01);
  const out = await session.run({ x: new ort.Tensor('float32', x, [1, SIDE, SIDE]) });
  session.endProfiling();
  await session.release();
  const file = (await readdir(dir)).find((f) => f.startsWith(`profile-${tag}`));
  const events = (JSON.parse(await readFile(join(dir, file!), 'utf8')) as { cat?: string; name: string; ts: number; args?: Record<string, string> }[])
    .filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time')).sort((a, b) => a.ts - b.ts);
  const inUse = events.map((e) => Number(e.args?.mem_bytes_in_use));
  expect(inUse.every(Number.isFinite)).toBe(true);
  const k = events.findIndex((e) => e.name === `${at}_kernel_time`);
  expect(k, at).toBeGreaterThan(0);
  return { y: out.y!.data as Float32Array, inUse: inUse[k]! - inUse[0]! };
}

describe('runtimeShapeOperands', () => {
  it('computes every constant shape operand at run time, and nothing else changes', () => {
    const model = heldModel();
    const before = model.graph.node.length;
    expect(runtimeShapeOperands(model.graph, 'x')).toBe(3);
    // Four nodes make the empty vector, one Concat per distinct operand.
    expect(model.graph.node.length).toBe(before + 4 + 3);
    const initializers = new Set(model.graph.initializer.map((t) => t.name));
    for (const n of model.graph.node) {
      const at = { Reshape: 1, Expand: 1, Tile: 1, ConstantOfShape: 0 }[n.opType];
      if (at !== undefined) expect(initializers.has(n.input[at]!), n.name).toBe(false);
    }
    // Each Concat comes before the first node that reads it.
    const seen = new Set<string>(['x', ...initializers]);
    for (const n of model.graph.node) {
      for (const i of n.input) expect(seen.has(i), `${n.name} reads ${i}`).toBe(true);
      for (const o of n.output) seen.add(o);
    }
    expect(() => runtimeShapeOperands(model.graph, 'x')).toThrow(/rewritten already/);
    expect(() => runtimeShapeOperands(heldModel().graph, 'nope')).toThrow(/no graph input/);
  });

  it('leaves a graph with no constant shape operand as it was', () => {
    const model = heldModel();
    model.graph.node = model.graph.node.filter((n) => n.opType === 'Exp' || n.opType === 'ReduceSum').slice(0, 1);
    model.graph.node[0]!.input[0] = 'x';
    const nodes = JSON.stringify(model.graph.node);
    expect(runtimeShapeOperands(model.graph, 'x')).toBe(0);
    expect(JSON.stringify(model.graph.node)).toBe(nodes);
    expect(model.graph.node.some((n) => n.name.startsWith(RUNTIME_SHAPES.prefix))).toBe(false);
  });

  it('gives the same values, and onnxruntime no longer holds dead buffers for later tensors of their shape', async () => {
    const plain = await runProfiled(heldModel(), 'plain', 'Tile');
    const rewritten = heldModel();
    runtimeShapeOperands(rewritten.graph, 'x');
    const runtime = await runProfiled(rewritten, 'runtime', 'Tile');
    expect(Array.from(runtime.y)).toEqual(Array.from(plain.y));
    // While the wide tensor is made. Known shapes: the HELD forward buffers wait, allocated, for the
    // backward tensors (two of them are in use here: Add_forward's output and the first Expand's).
    // No shapes: each went back to the arena when its tensor died. (After it, the backward may take
    // more than with known shapes: without shapes no elementwise op writes in place.)
    const tensor = SIDE * SIDE * 4;
    // (Less 1 KiB: the run-time shape vectors' chunks.)
    expect(plain.inUse - runtime.inUse).toBeGreaterThanOrEqual((HELD - 2) * tensor - 1024);
  });
});
