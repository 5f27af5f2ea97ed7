// Lookups over one ONNX graph that every graph rewrite needs: initializers and value infos by name,
// the producer and consumers of each value, a topological order, fresh unique names, and adding graph
// outputs (to read intermediate values such as cross-attention probabilities).
import { DataType } from './onnx-proto.js';
import type { GraphProto, NodeProto, TensorProto, ValueInfoProto } from './onnx-proto.js';

export function findInitializer(graph: GraphProto, name: string): TensorProto | undefined {
  return (graph.initializer ?? []).find((t) => t.name === name);
}

export function findNode(graph: GraphProto, name: string): NodeProto | undefined {
  return (graph.node ?? []).find((n) => n.name === name);
}

/** Value infos by name: graph inputs, then outputs, then intermediate `value_info` (first wins). */
export function valueInfos(graph: GraphProto): Map<string, ValueInfoProto> {
  const m = new Map<string, ValueInfoProto>();
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) {
    if (v.name && !m.has(v.name)) m.set(v.name, v);
  }
  return m;
}

/** The node producing each value (graph inputs and initializers have none). */
export function producers(graph: GraphProto): Map<string, NodeProto> {
  const m = new Map<string, NodeProto>();
  for (const n of graph.node ?? []) for (const o of n.output ?? []) if (o) m.set(o, n);
  return m;
}

/** The nodes reading each value, in graph order (an empty input name means "absent" and is skipped). */
export function consumers(graph: GraphProto): Map<string, NodeProto[]> {
  const m = new Map<string, NodeProto[]>();
  for (const n of graph.node ?? []) {
    for (const i of new Set(n.input ?? [])) {
      if (!i) continue;
      const list = m.get(i);
      if (list) list.push(n);
      else m.set(i, [n]);
    }
  }
  return m;
}

/**
 * Nodes in a topological order (Kahn's algorithm; ties keep graph order, so an already sorted graph
 * comes back unchanged). Values not produced by any node (inputs, initializers) are available from
 * the start. Throws on a cycle or on an input that nothing defines.
 */
export function topologicalOrder(graph: GraphProto): NodeProto[] {
  const nodes = graph.node ?? [];
  const prod = new Map<string, number>();
  nodes.forEach((n, k) => {
    for (const o of n.output ?? []) if (o) prod.set(o, k);
  });
  const defined = new Set<string>([...(graph.input ?? []).map((v) => v.name ?? ''), ...(graph.initializer ?? []).map((t) => t.name ?? '')]);
  const pending = new Array<number>(nodes.length).fill(0);
  const dependents: number[][] = nodes.map(() => []);
  nodes.forEach((n, k) => {
    for (const i of new Set(n.input ?? [])) {
      if (!i) continue;
      const p = prod.get(i);
      if (p === undefined) {
        if (!defined.has(i)) throw new Error(`node ${n.name ?? k} reads ${i}, which nothing defines`);
        continue;
      }
      pending[k] = (pending[k] as number) + 1;
      (dependents[p] as number[]).push(k);
    }
  });
  // A min-heap would be O(n log n); graphs here have a few thousand nodes, so a sorted ready list is fine.
  const ready: number[] = [];
  pending.forEach((c, k) => {
    if (c === 0) ready.push(k);
  });
  const order: NodeProto[] = [];
  while (ready.length) {
    let best = 0;
    for (let j = 1; j < ready.length; j++) if ((ready[j] as number) < (ready[best] as number)) best = j;
    const k = ready.splice(best, 1)[0] as number;
    order.push(nodes[k] as NodeProto);
    for (const d of dependents[k] as number[]) {
      pending[d] = (pending[d] as number) - 1;
      if (pending[d] === 0) ready.push(d);
    }
  }
  if (order.length !== nodes.length) throw new Error('the graph has a cycle');
  return order;
}

/** Every name in use in the graph: values, initializers, nodes. */
export function namesInUse(graph: GraphProto): Set<string> {
  const s = new Set<string>();
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) if (v.name) s.add(v.name);
  for (const t of graph.initializer ?? []) if (t.name) s.add(t.name);
  for (const n of graph.node ?? []) {
    if (n.name) s.add(n.name);
    for (const o of n.output ?? []) if (o) s.add(o);
  }
  return s;
}

/** `base`, or `base_1`, `base_2`, … — the first name not in `used`; it is added to `used`. */
export function uniqueName(used: Set<string>, base: string): string {
  let name = base;
  for (let k = 1; used.has(name); k++) name = `${base}_${k}`;
  used.add(name);
  return name;
}

export interface OutputSpec {
  readonly name: string;
  /** ONNX element type; default: from the value's info when known, else float32. */
  readonly elemType?: number;
}

/**
 * Makes existing values graph outputs (no new nodes; the computation is unchanged). Values that are
 * already outputs are skipped. Returns the names added. Throws for a value nothing produces.
 */
export function addOutputs(graph: GraphProto, outputs: readonly OutputSpec[]): string[] {
  const prod = producers(graph);
  const infos = valueInfos(graph);
  const existing = new Set((graph.output ?? []).map((o) => o.name));
  const added: string[] = [];
  graph.output = graph.output ?? [];
  for (const o of outputs) {
    if (existing.has(o.name)) continue;
    if (!prod.has(o.name) && !infos.has(o.name)) throw new Error(`no value named ${o.name}`);
    const known = infos.get(o.name)?.type?.tensorType;
    const elemType = o.elemType ?? known?.elemType ?? DataType.FLOAT;
    graph.output.push({ name: o.name, type: { tensorType: { elemType, ...(known?.shape ? { shape: known.shape } : {}) } } });
    existing.add(o.name);
    added.push(o.name);
  }
  return added;
}

/**
 * Replaces symbolic dimensions (`dim_param`) of the graph inputs and outputs by fixed sizes, e.g.
 * `{batch: 2, height: 64, width: 64}`; names not in `sizes` stay symbolic. Returns how many dims were
 * bound. (The dimension is a protobuf oneof: the name is deleted, not blanked, or it would still be
 * encoded and win over the value.)
 */
export function bindDimParams(graph: GraphProto, sizes: Readonly<Record<string, number>>): number {
  let bound = 0;
  for (const v of [...(graph.input ?? []), ...(graph.output ?? [])]) {
    for (const d of v.type?.tensorType?.shape?.dim ?? []) {
      const size = d.dimParam ? sizes[d.dimParam] : undefined;
      if (size === undefined) continue;
      delete d.dimParam;
      d.dimValue = size;
      bound++;
    }
  }
  return bound;
}
