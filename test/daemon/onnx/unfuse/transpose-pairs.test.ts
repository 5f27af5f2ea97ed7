import { describe, expect, it } from 'vitest';
import { DataType } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { makeGraph, makeNode, valueInfo } from '../../../../daemon/onnx/graph/nodes.js';
import { cancelTransposePairs, composesToIdentity } from '../../../../daemon/onnx/unfuse/transpose-pairs.js';

describe('Transpose pair cancellation', () => {
  it('knows which permutations undo each other', () => {
    expect(composesToIdentity([0, 2, 3, 1], [0, 3, 1, 2])).toBe(true);
    expect(composesToIdentity([0, 3, 1, 2], [0, 2, 3, 1])).toBe(true);
    expect(composesToIdentity([0, 2, 3, 1], [0, 2, 3, 1])).toBe(false);
    expect(composesToIdentity([1, 0], [1, 0, 2])).toBe(false);
  });

  it('bypasses an NCHW→NHWC→NCHW pair, keeps a pair ending in a graph output, and leaves the nodes it read unmodified', () => {
    const t1 = makeNode('Transpose', ['x'], ['a'], 't1', { perm: [0, 2, 3, 1] });
    const t2 = makeNode('Transpose', ['a'], ['b'], 't2', { perm: [0, 3, 1, 2] });
    const relu = makeNode('Relu', ['b'], ['y'], 'relu');
    const t3 = makeNode('Transpose', ['a'], ['z'], 't3', { perm: [0, 3, 1, 2] });
    const graph = makeGraph({
      name: 'g', node: [t1, t2, relu, t3],
      input: [valueInfo('x', DataType.FLOAT, [1, 2, 3, 4])],
      output: [valueInfo('y', DataType.FLOAT, [1, 2, 3, 4]), valueInfo('z', DataType.FLOAT, [1, 2, 3, 4])],
    }) as Parameters<typeof cancelTransposePairs>[0];
    expect(cancelTransposePairs(graph)).toBe(1);
    expect(graph.node.map((n) => n.name)).toEqual(['t1', 'relu', 't3']);
    expect(graph.node[1]?.input).toEqual(['x']);
    expect(relu.input).toEqual(['b']);
  });
});
