// Pruning and bookkeeping of the gradient graph: only nodes between the inputs and the loss get a
// backward (an op without a rule elsewhere is fine), gradients of a tensor used twice add up, and an
// input the loss does not depend on gets a zero gradient.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { foldStaticShapes } from '../../../../daemon/onnx/graph/fold.js';
import { activeNodes, appendGradient } from '../../../../daemon/onnx/autodiff/gradient-graph.js';
import { DataType } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { makeGraph, makeModel, makeNode, valueInfo } from '../../../../daemon/onnx/graph/nodes.js';
import { encodeModel } from '../../../../daemon/onnx/graph/model-io.js';

function model() {
  return makeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: makeGraph({
      name: 'g',
      node: [
        makeNode('Sigmoid', ['x'], ['a'], 'sig'),
        makeNode('Mul', ['a', 'x'], ['ax'], 'mul'),
        makeNode('ReduceSum', ['ax'], ['L'], 'sum', { keepdims: 0 }),
        // Off the loss path: Floor has no gradient rule, and must not matter.
        makeNode('Floor', ['x'], ['f'], 'floor'),
        makeNode('Tanh', ['f'], ['out'], 'tanh'),
      ],
      input: [valueInfo('x', DataType.FLOAT, [3]), valueInfo('z', DataType.FLOAT, [2])],
      output: [valueInfo('out', DataType.FLOAT, [3]), valueInfo('L', DataType.FLOAT, [])],
    }),
  });
}

describe('gradient graph', () => {
  it('differentiates only the nodes between the inputs and the loss', () => {
    const { model: m, shapes } = foldStaticShapes(model(), {});
    expect(activeNodes(m.graph, shapes, 'L', ['x']).map((a) => a.node.name)).toEqual(['sig', 'mul', 'sum']);
  });

  it('sums the gradients of a tensor used twice and gives zeros to an unrelated input', async () => {
    const { model: m, shapes } = foldStaticShapes(model(), {});
    const g = appendGradient(m, shapes, {
      loss: 'L',
      wrt: [{ input: 'x', gradOutput: 'dx' }, { input: 'z', gradOutput: 'dz' }],
      keepOutputs: ['out'],
    });
    expect(g.graph.output.map((o) => o.name)).toEqual(['out', 'L', 'dx', 'dz']);
    const s = await ort.InferenceSession.create(encodeModel(g));
    const x = [-1, 0.5, 2];
    const r = await s.run({ x: new ort.Tensor('float32', Float32Array.from(x), [3]), z: new ort.Tensor('float32', Float32Array.from([1, 2]), [2]) });
    // L = Σ σ(x)·x  ⇒  ∂L/∂x = σ(x) + x·σ(x)(1 − σ(x))
    const sig = (v: number): number => 1 / (1 + Math.exp(-v));
    const expected = x.map((v) => sig(v) + v * sig(v) * (1 - sig(v)));
    Array.from((r.dx as ort.Tensor).data as Float32Array).forEach((v, i) => expect(v).toBeCloseTo(expected[i] ?? 0, 6));
    expect(Array.from((r.dz as ort.Tensor).data as Float32Array)).toEqual([0, 0]);
    expect(Array.from((r.out as ort.Tensor).data as Float32Array)).toEqual(x.map((v) => Math.fround(Math.tanh(Math.floor(v)))));
  });
});
