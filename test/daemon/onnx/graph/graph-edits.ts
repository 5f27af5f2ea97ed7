// Graph edits only the tests make: exposing intermediate values as graph outputs (to read them from
// a session) and binding symbolic dimensions to fixed sizes.
import { DataType } from '../../../../daemon/onnx/graph/onnx-proto.js';
import type { GraphFields, ValueInfoFields } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { producers } from '../../../../daemon/onnx/graph/graph-index.js';

export interface OutputSpec {
  readonly name: string;
  /** ONNX element type; default: from the value's info when known, else float32. */
  readonly elemType?: number;
}

/**
 * Makes existing values graph outputs (no new nodes; the computation is unchanged). Values that are
 * already outputs are skipped. Returns the names added. Throws for a value nothing produces.
 */
export function addOutputs(graph: GraphFields, outputs: readonly OutputSpec[]): string[] {
  const prod = producers(graph);
  const infos = new Map<string, ValueInfoFields>();
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) {
    if (v.name && !infos.has(v.name)) infos.set(v.name, v);
  }
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
export function bindDimParams(graph: GraphFields, sizes: Readonly<Record<string, number>>): number {
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
