// Shape operands computed at run time, so that onnxruntime's allocation planner does not know the
// shapes of the tensors a graph makes.
//
// The planner gives a tensor the buffer of a dead one only when both shapes are statically known and
// equal (`FindReusableTensor` / `SameShape` in microsoft/onnxruntime
// onnxruntime/core/framework/allocation_planner.cc). Such a buffer is then held from its first tensor
// to the last one that reuses it, free or not. In a gradient graph, forward buffers wait, allocated,
// for the backward tensors of their shape: at 512² the UNet's gradient held 3.17 GiB of arena for
// 1.2 GiB of live tensors (docs/BENCHMARKS.md "Planner"). With no statically known shape, every
// tensor takes its buffer from the arena when made and gives it back when dead.
//
// A graph whose inputs have symbolic dims still gets known shapes back from every Reshape, Expand,
// ConstantOfShape or Tile whose shape operand is a constant. This rewrites each such operand c into
// `c + z`, where z is an int64 zero computed from a graph input's shape: onnxruntime cannot fold it,
// so the operand, and every shape after it, stays unknown. Values are unchanged.
//
// Only the shapes of the graph's inputs decide: a graph with static input dims (a standalone derived
// graph) gets its shapes back from them, so this is meant for graphs with symbolic inputs, like the
// branches of the UNet roles model (onnx/roles-model.ts).
import { P2pzError } from '../../../shared/protocol/errors.js';
import { namesInUse } from './graph-index.js';
import { makeNode } from './nodes.js';
import type { GraphProto, NodeProto } from './onnx-proto.js';

/** The input that carries each op's output shape. */
const SHAPE_OPERAND: Readonly<Record<string, number>> = Object.freeze({ Reshape: 1, Expand: 1, ConstantOfShape: 0, Tile: 1 });

export const RUNTIME_SHAPES = Object.freeze({ prefix: 'runtime_shape' });

/**
 * Rewrites, in place, every constant shape operand of `graph` into one computed from the shape of the
 * graph input `from` (see the file header). Returns the number of operands rewritten.
 */
export function runtimeShapeOperands(graph: GraphProto, from: string): number {
  if (!graph.input.some((i) => i.name === from)) throw new P2pzError('E_INTERNAL', `runtimeShapeOperands: no graph input “${from}”.`);
  const p = RUNTIME_SHAPES.prefix;
  if (namesInUse(graph).has(`${p}_zero`)) throw new P2pzError('E_INTERNAL', 'runtimeShapeOperands: the graph was rewritten already.');
  const constants = new Set(graph.initializer.map((t) => t.name));
  for (const n of graph.node) if (n.opType === 'Constant' && n.output[0]) constants.add(n.output[0]);
  const zero = `${p}_zero`;
  // z = ΣΔ(shape(from) − shape(from)): an int64 scalar 0 that depends on a run-time shape.
  const nodes: NodeProto[] = [
    makeNode('Shape', [from], [`${p}_of`], `${p}_Shape`),
    makeNode('Sub', [`${p}_of`, `${p}_of`], [`${p}_none`], `${p}_Sub`),
    makeNode('ReduceSum', [`${p}_none`], [zero], `${p}_ReduceSum`, { keepdims: 0 }),
  ];
  const rewritten = new Map<string, string>();
  for (const n of graph.node) {
    const at = SHAPE_OPERAND[n.opType];
    const operand = at === undefined ? undefined : n.input[at];
    if (at !== undefined && operand && constants.has(operand)) {
      let name = rewritten.get(operand);
      if (!name) {
        name = `${p}_${rewritten.size}`;
        rewritten.set(operand, name);
        nodes.push(makeNode('Add', [operand, zero], [name], `${p}_Add_${rewritten.size}`));
      }
      n.input[at] = name;
    }
    nodes.push(n);
  }
  if (rewritten.size === 0) return 0;
  graph.node = nodes;
  return rewritten.size;
}
