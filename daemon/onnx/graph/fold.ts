// Specialises a graph to fixed input shapes: writes the static dims into the graph inputs and
// outputs, replaces every node whose integer/boolean outputs are computable from constants (the
// Shape/Gather/Unsqueeze/Concat/... shape subgraphs) by inline constants, and drops dead nodes.
// Float computations are never folded (onnxruntime must compute them bit-identically to the
// original), and initializers are shared by reference: external weights stay where they are.
import { makeGraph, makeModel, makeTensor, valueInfo, declaredType } from './nodes.js';
import { isFloatType, type GraphProto, type ModelProto, type NodeProto, type TensorProto } from './onnx-proto.js';
import { inferStaticShapes, type ShapeMap } from './static-shapes.js';

export interface StaticModel {
  readonly model: ModelProto;
  /** dtype/dims (and small values) of every tensor of the folded graph. */
  readonly shapes: ShapeMap;
}

/** Removes nodes that no graph output depends on, and initializers nothing reads. */
export function pruneDeadNodes(graph: GraphProto): void {
  const live = new Set<string>(graph.output.map((o) => o.name));
  const kept: NodeProto[] = [];
  for (let i = graph.node.length - 1; i >= 0; i--) {
    const node = graph.node[i] as NodeProto;
    if (node.output.some((o) => o && live.has(o))) {
      kept.push(node);
      for (const inp of node.input) if (inp) live.add(inp);
    }
  }
  graph.node = kept.reverse();
  graph.initializer = graph.initializer.filter((t) => live.has(t.name));
}

/** A shallow copy of the model whose graph arrays can be edited without touching the original
 *  (nodes and initializers are shared by reference and must not be mutated). */
export function cloneModelShallow(model: ModelProto): ModelProto {
  const g = model.graph as GraphProto;
  const graph = makeGraph({
    name: g.name,
    node: [...g.node],
    initializer: [...g.initializer],
    input: [...g.input],
    output: [...g.output],
    valueInfo: [],
    sparseInitializer: g.sparseInitializer ?? [],
    docString: g.docString,
  });
  return makeModel({
    irVersion: model.irVersion,
    opsetImport: model.opsetImport,
    producerName: model.producerName,
    producerVersion: model.producerVersion,
    domain: model.domain,
    modelVersion: model.modelVersion,
    docString: model.docString,
    graph,
    metadataProps: [...model.metadataProps],
  });
}

/** Folds `model` for the given fixed input dims; returns a new model (the input is not modified). */
export function foldStaticShapes(model: ModelProto, inputDims: Readonly<Record<string, readonly number[]>>): StaticModel {
  const out = cloneModelShallow(model);
  const graph = out.graph as GraphProto;
  const shapes = inferStaticShapes(out, inputDims);
  const initNames = new Set(graph.initializer.map((t) => t.name));
  const nodes: NodeProto[] = [];
  const added: TensorProto[] = [];
  for (const node of graph.node) {
    const foldable = node.opType !== 'Constant' && node.output.every((o) => {
      const info = o ? shapes.get(o) : undefined;
      return info?.value !== undefined && !isFloatType(info.dtype);
    });
    if (!foldable) { nodes.push(node); continue; }
    for (const o of node.output) {
      const info = shapes.get(o);
      if (!info?.value || initNames.has(o)) continue;
      added.push(makeTensor(o, info.dtype, info.dims, info.value));
      initNames.add(o);
    }
  }
  graph.node = nodes;
  graph.initializer = [...graph.initializer, ...added];
  graph.input = graph.input.map((v) => {
    const s = shapes.get(v.name);
    return s && !initNames.has(v.name) ? valueInfo(v.name, declaredType(v).dtype, s.dims) : v;
  });
  graph.output = graph.output.map((v) => {
    const s = shapes.get(v.name);
    return s ? valueInfo(v.name, declaredType(v).dtype || s.dtype, s.dims) : v;
  });
  pruneDeadNodes(graph);
  return { model: out, shapes };
}
