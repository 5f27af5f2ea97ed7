// Removes Transpose → Transpose pairs whose permutations compose to the identity (the second node's
// readers read the first one's input instead). onnxruntime's NHWC fusions wrap each fused node in
// NCHW↔NHWC Transposes and its optimizer then drops the pairs between two NHWC nodes; the unfused
// twin puts NHWC↔NCHW Transposes back around each rewritten node, and this pass drops those pairs
// again, so the twin computes in NCHW as the plain export does.
import { onnx, type GraphProto, type NodeProto } from '../graph/onnx-proto.js';
import { attrInts } from '../graph/nodes.js';
import { producers } from '../graph/graph-index.js';

/** Whether transposing by `first`, then by `second`, leaves every axis in place. */
export function composesToIdentity(first: readonly number[], second: readonly number[]): boolean {
  return first.length === second.length && second.every((p, i) => first[p] === i);
}

/** Rewrites `graph.node` without the cancelling pairs (nodes are copied, never mutated); returns how
 *  many Transposes were bypassed. The first Transpose of a pair stays while anything else reads it
 *  (fold.ts's pruneDeadNodes drops it otherwise). */
export function cancelTransposePairs(graph: GraphProto): number {
  const producer = producers(graph);
  const outputs = new Set(graph.output.map((o) => o.name));
  const alias = new Map<string, string>();
  const kept: NodeProto[] = [];
  let bypassed = 0;
  for (const node of graph.node) {
    const input = node.input.map((i) => alias.get(i) ?? i);
    if (node.opType === 'Transpose' && !node.domain) {
      const first = producer.get(input[0] ?? '');
      const p1 = first && first.opType === 'Transpose' && !first.domain ? attrInts(first, 'perm') : undefined;
      const p2 = attrInts(node, 'perm');
      const out = node.output[0] ?? '';
      if (first && p1 && p2 && composesToIdentity(p1, p2) && !outputs.has(out)) {
        alias.set(out, first.input[0] ?? '');
        bypassed++;
        continue;
      }
    }
    kept.push(input.some((v, k) => v !== node.input[k]) ? (onnx.NodeProto.create({ ...node, input }) as unknown as NodeProto) : node);
  }
  graph.node = kept;
  return bypassed;
}
