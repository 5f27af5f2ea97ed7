import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { consumers, namesInUse, producers, topologicalOrder } from '../../../../daemon/onnx/graph/graph-index.js';
import type { GraphFields as GraphProto } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { addOutputs, bindDimParams } from './graph-edits.js';

// a → A → b; b → B → c; (a, b) → C → d; d and c are outputs. Listed out of order on purpose.
function graph(): GraphProto {
  return {
    node: [
      { name: 'C', opType: 'Add', input: ['a', 'b'], output: ['d'] },
      { name: 'B', opType: 'Relu', input: ['b'], output: ['c'] },
      { name: 'A', opType: 'MatMul', input: ['a', 'w'], output: ['b'] },
    ],
    input: [{ name: 'a', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 2 }] } } } }],
    output: [{ name: 'd' }],
    valueInfo: [{ name: 'b', type: { tensorType: { elemType: 11 } } }],
    initializer: [{ name: 'w', dims: [2, 2], dataType: 1 }],
  };
}

describe('graph index', () => {
  it('maps producers and consumers', () => {
    const g = graph();
    const p = producers(g);
    expect(p.get('b')?.name).toBe('A');
    expect(p.has('a')).toBe(false);
    const c = consumers(g);
    expect(c.get('a')?.map((n) => n.name)).toEqual(['C', 'A']);
    expect(c.get('b')?.map((n) => n.name)).toEqual(['C', 'B']);
    expect(c.get('d')).toBeUndefined();
  });

  it('orders nodes topologically and detects cycles and undefined inputs', () => {
    expect(topologicalOrder(graph()).map((n) => n.name)).toEqual(['A', 'C', 'B']);
    const cyclic = graph();
    cyclic.node![2]!.input = ['a', 'c'];
    expect(() => topologicalOrder(cyclic)).toThrow(/cycle/);
    const dangling = graph();
    dangling.node![1]!.input = ['zzz'];
    expect(() => topologicalOrder(dangling)).toThrow(/zzz/);
  });

  it('lists the names in use', () => {
    const used = namesInUse(graph());
    expect([...used].sort()).toEqual(['A', 'B', 'C', 'a', 'b', 'c', 'd', 'w']);
  });

  it('adds outputs with the known element type, once, and rejects unknown values', () => {
    const g = graph();
    expect(addOutputs(g, [{ name: 'b' }, { name: 'c' }, { name: 'd' }])).toEqual(['b', 'c']);
    expect(g.output?.map((o) => [o.name, o.type?.tensorType?.elemType])).toEqual([['d', undefined], ['b', 11], ['c', 1]]);
    expect(addOutputs(g, [{ name: 'b' }])).toEqual([]);
    expect(() => addOutputs(g, [{ name: 'nope' }])).toThrow(/nope/);
  });

  it('binds symbolic dims so they encode as values (the name is dropped, not blanked)', async () => {
    const { onnx } = await import('../../../../daemon/onnx/graph/onnx-proto.js');
    const g: GraphProto = {
      input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'batch' }, { dimValue: 3 }, { dimParam: 'h' }] } } } }],
      output: [{ name: 'y', type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'batch' }] } } } }],
    };
    expect(bindDimParams(g, { batch: 2 })).toBe(2);
    const back = onnx.GraphProto.decode(onnx.GraphProto.encode(g).finish());
    const dims = back.input[0]?.type?.tensorType?.shape?.dim ?? [];
    // Decoding sets only the fields present on the wire.
    expect(dims.map((d) => (Object.hasOwn(d, 'dimParam') ? d.dimParam : Number(d.dimValue)))).toEqual([2, 3, 'h']);
  });

  it('orders any shuffled DAG so that every producer precedes its consumers', () => {
    const dag = fc.integer({ min: 1, max: 40 }).chain((n) =>
      fc.tuple(
        // For node k: up to 3 inputs among the graph input and the outputs of nodes < k.
        fc.tuple(...Array.from({ length: n }, (_, k) => fc.array(fc.integer({ min: -1, max: k - 1 }), { maxLength: 3 }))),
        fc.shuffledSubarray(Array.from({ length: n }, (_, k) => k), { minLength: n, maxLength: n }),
      ));
    fc.assert(fc.property(dag, ([inputs, perm]) => {
      const nodes = inputs.map((ins, k) => ({ name: `n${k}`, opType: 'Sum', input: ins.map((i) => (i < 0 ? 'x' : `v${i}`)), output: [`v${k}`] }));
      const g: GraphProto = { node: perm.map((k) => nodes[k]!), input: [{ name: 'x' }] };
      const order = topologicalOrder(g).map((n) => n.name);
      expect(order).toHaveLength(inputs.length);
      const at = new Map(order.map((name, i) => [name, i]));
      inputs.forEach((ins, k) => {
        for (const i of ins) if (i >= 0) expect(at.get(`n${i}`)!).toBeLessThan(at.get(`n${k}`)!);
      });
    }), { seed: 7, numRuns: 200 });
  });
});
