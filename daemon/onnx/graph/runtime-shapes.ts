// Shape operands computed at run time, so that onnxruntime's allocation planner does not know the
// shapes of the tensors a graph makes.
//
// The planner gives a tensor the buffer of a dead one only when both shapes are statically known and
// equal (`FindReusableTensor` / `SameShape` in microsoft/onnxruntime
// onnxruntime/core/framework/allocation_planner.cc). Such a buffer is then held from its first tensor
// to the last one that reuses it, free or not. In a gradient graph, forward buffers wait, allocated,
// for the backward tensors of their shape: at 512² the UNet's gradient held 3.17 GiB of arena for
// 1.47 GiB of live tensors (docs/BENCHMARKS.md "No shapes for the planner"). With no statically
// known shape, every tensor takes its buffer from the arena when made and gives it back when dead.
//
// A graph whose inputs have symbolic dims still gets known shapes back from every Reshape, Expand,
// ConstantOfShape or Tile whose shape operand is a constant. This rewrites each such operand c into
// `Concat(c, e)`, where e is an empty int64 vector sliced from a graph input's shape at run time:
// onnxruntime cannot fold it, and it cannot know its length either. So the op's output has no shape
// at all, not even a rank, and neither has anything computed from it. Values are unchanged.
//
// No rank matters as much as no dims. For a tensor with a shape, the planner scans every freed buffer
// (its free list) looking for one of the same shape; with shapes that never match, the list only
// grows, and planning the 512² gradient graph took 45 s more (O(n²) in its 12 000 tensors). A tensor
// with no shape returns before the scan (`FindReusableTensor`: "nullptr == p_required_buffer_shape").
//
// Only the graph's inputs and its constants decide: a graph with static input dims (a standalone
// derived graph) gets some shapes back from its inputs, so this is meant for graphs with symbolic
// inputs, like the branches of the UNet roles model (onnx/roles-model.ts).
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
  const empty = `${p}_empty`;
  if (namesInUse(graph).has(empty)) throw new P2pzError('E_INTERNAL', 'runtimeShapeOperands: the graph was rewritten already.');
  const constants = new Set(graph.initializer.map((t) => t.name));
  for (const n of graph.node) if (n.opType === 'Constant' && n.output[0]) constants.add(n.output[0]);
  // z = [Σ(shape(from) − shape(from))] = [0], and e = shape(from)[z:z] = []: both depend on a run-time
  // shape, and e's length is not known before it runs.
  const nodes: NodeProto[] = [
    makeNode('Shape', [from], [`${p}_of`], `${p}_Shape`),
    makeNode('Sub', [`${p}_of`, `${p}_of`], [`${p}_none`], `${p}_Sub`),
    makeNode('ReduceSum', [`${p}_none`], [`${p}_zero`], `${p}_ReduceSum`, { keepdims: 1 }),
    makeNode('Slice', [`${p}_of`, `${p}_zero`, `${p}_zero`], [empty], `${p}_Slice`),
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
        nodes.push(makeNode('Concat', [operand, empty], [name], `${p}_Concat_${rewritten.size}`, { axis: 0 }));
      }
      n.input[at] = name;
    }
    nodes.push(n);
  }
  if (rewritten.size === 0) return 0;
  graph.node = nodes;
  return rewritten.size;
}
