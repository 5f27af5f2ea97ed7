// Lookups over one ONNX graph that graph rewrites share: the producer and consumers of each value, a
// topological order, and the names in use. Generic over the node type, so a decoded graph's narrow
// nodes (onnx-proto.ts's NodeProto) come back as they went in.
import type { GraphFields, NodeFields } from './onnx-proto.js';

/** The parts of a graph the lookups read, with nodes of type N. */
type GraphOf<N extends NodeFields> = Omit<GraphFields, 'node'> & { node?: N[] | null };

/** The node producing each value (graph inputs and initializers have none). */
export function producers<N extends NodeFields>(graph: GraphOf<N>): Map<string, N> {
  const m = new Map<string, N>();
  for (const n of graph.node ?? []) for (const o of n.output ?? []) if (o) m.set(o, n);
  return m;
}

/** The nodes reading each value, in graph order (an empty input name means "absent" and is skipped). */
export function consumers<N extends NodeFields>(graph: GraphOf<N>): Map<string, N[]> {
  const m = new Map<string, N[]>();
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
export function topologicalOrder<N extends NodeFields>(graph: GraphOf<N>): N[] {
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
  const order: N[] = [];
  while (ready.length) {
    let best = 0;
    for (let j = 1; j < ready.length; j++) if ((ready[j] as number) < (ready[best] as number)) best = j;
    const k = ready.splice(best, 1)[0] as number;
    order.push(nodes[k] as N);
    for (const d of dependents[k] as number[]) {
      pending[d] = (pending[d] as number) - 1;
      if (pending[d] === 0) ready.push(d);
    }
  }
  if (order.length !== nodes.length) throw new Error('the graph has a cycle');
  return order;
}

/** Every name in use in the graph: values, initializers, nodes. */
export function namesInUse(graph: GraphFields): Set<string> {
  const s = new Set<string>();
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) if (v.name) s.add(v.name);
  for (const t of graph.initializer ?? []) if (t.name) s.add(t.name);
  for (const n of graph.node ?? []) {
    if (n.name) s.add(n.name);
    for (const o of n.output ?? []) if (o) s.add(o);
  }
  return s;
}
