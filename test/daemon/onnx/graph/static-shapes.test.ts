// Static shapes and folding: shape subgraphs become constants, float computations stay nodes,
// initializers are shared by reference, free input dims must be given.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { foldStaticShapes } from '../../../../daemon/onnx/graph/fold.js';
import { DataType } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { makeGraph, makeModel, makeNode, makeTensor, tensorValues, valueInfo } from '../../../../daemon/onnx/graph/nodes.js';
import { encodeModel } from '../../../../daemon/onnx/graph/model-io.js';
import { inferStaticShapes } from '../../../../daemon/onnx/graph/static-shapes.js';
import { P2pzError } from '../../../../shared/protocol/errors.js';

/** x [B, C, H, W] → reshape to [B, C, H·W] through Shape/Gather/Mul/Unsqueeze/Concat, as exporters
 *  write it; then a float Mul by a Constant·Sqrt chain that must not be folded. */
function model() {
  const w = makeTensor('w', DataType.FLOAT, [3], [1, 2, 3]);
  const nodes = [
    makeNode('Shape', ['x'], ['s'], 'shape'),
    makeNode('Constant', [], ['i0'], 'c0', { value: makeTensor('', DataType.INT64, [], [0]) }),
    makeNode('Constant', [], ['i1'], 'c1', { value: makeTensor('', DataType.INT64, [], [1]) }),
    makeNode('Gather', ['s', 'i0'], ['b'], 'g0', { axis: 0 }),
    makeNode('Gather', ['s', 'i1'], ['c'], 'g1', { axis: 0 }),
    makeNode('Slice', ['s', 'two', 'four'], ['hw2'], 'sl'),
    makeNode('ReduceProd', ['hw2'], ['hw'], 'prod', { keepdims: 1 }),
    makeNode('Unsqueeze', ['b', 'ax0'], ['b1'], 'u0'),
    makeNode('Unsqueeze', ['c', 'ax0'], ['c1'], 'u1'),
    makeNode('Concat', ['b1', 'c1', 'hw'], ['target'], 'cat', { axis: 0 }),
    makeNode('Reshape', ['x', 'target'], ['r'], 'reshape'),
    makeNode('Constant', [], ['four_f'], 'cf', { value: makeTensor('', DataType.FLOAT, [], [4]) }),
    makeNode('Sqrt', ['four_f'], ['two_f'], 'sqrt'),
    makeNode('Mul', ['r', 'two_f'], ['y'], 'mul'),
    makeNode('Transpose', ['y'], ['yt'], 'tr', { perm: [0, 2, 1] }),
    makeNode('MatMul', ['yt', 'wm'], ['out'], 'mm'),
  ];
  return makeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 14 }],
    graph: makeGraph({
      name: 'g', node: nodes,
      initializer: [w, makeTensor('wm', DataType.FLOAT, [3, 2], [1, 0, 0, 1, 1, 1]), makeTensor('ax0', DataType.INT64, [1], [0]),
        makeTensor('two', DataType.INT64, [1], [2]), makeTensor('four', DataType.INT64, [1], [4])],
      input: [valueInfo('x', DataType.FLOAT, ['batch', 3, 'h', 'w'])],
      output: [valueInfo('out', DataType.FLOAT, ['batch', 'hw', 2])],
    }),
  });
}

describe('static shapes', () => {
  it('infers every tensor and evaluates the shape arithmetic', () => {
    const shapes = inferStaticShapes(model(), { x: [2, 3, 4, 5] });
    expect(shapes.get('target')).toEqual({ dtype: DataType.INT64, dims: [3], value: [2, 3, 20] });
    expect(shapes.get('r')?.dims).toEqual([2, 3, 20]);
    expect(shapes.get('out')?.dims).toEqual([2, 20, 2]);
  });

  it('folds shape subgraphs into constants, keeps float nodes and shares initializers', async () => {
    const m = model();
    const { model: folded } = foldStaticShapes(m, { x: [2, 3, 4, 5] });
    const ops = folded.graph.node.map((n) => n.opType);
    expect(ops).toEqual(['Reshape', 'Constant', 'Sqrt', 'Mul', 'Transpose', 'MatMul']);
    const target = folded.graph.initializer.find((t) => t.name === 'target');
    expect(target && tensorValues(target)).toEqual([2, 3, 20]);
    expect(folded.graph.initializer.find((t) => t.name === 'wm')).toBe(m.graph.initializer.find((t) => t.name === 'wm'));
    expect(folded.graph.initializer.some((t) => t.name === 'w')).toBe(false); // unused
    expect(folded.graph.input[0]?.type?.tensorType?.shape?.dim?.map((d) => Number(d.dimValue))).toEqual([2, 3, 4, 5]);
    expect(m.graph.node).toHaveLength(16); // the original is untouched
    const x = Float32Array.from({ length: 120 }, (_, i) => Math.sin(i));
    const run = async (bytes: Uint8Array) => ((await (await ort.InferenceSession.create(bytes)).run({ x: new ort.Tensor('float32', x, [2, 3, 4, 5]) })).out as ort.Tensor).data;
    expect(await run(encodeModel(folded))).toEqual(await run(encodeModel(m)));
  });

  it('requires the static shape of every free input dimension', () => {
    const err = (() => { try { inferStaticShapes(model(), {}); } catch (e) { return e; } return undefined; })();
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_MODEL_INVALID');
  });
});
