// Which nodes of a graph keep computing in float32 when the rest runs in float16, the choices of
// mixed-precision inference (and of diffusers' own fp16 pipelines):
//  - normalizations: InstanceNormalization (torch's GroupNorm), LayerNormalization,
//    GroupNormalization, BatchNormalization, and the ReduceMean pattern torch writes for LayerNorm at
//    opset < 17: μ = ReduceMean(x), d = x − μ, σ² = ReduceMean(d² or d·d), y = d / Sqrt(σ² + ε). A
//    float16 mean and variance over hundreds of channels lose digits, and d² overflows past 256;
//  - Softmax and LogSoftmax: the cross-attention maps A are what the guidance loss compares, and
//    their sums over 77 tokens must stay 1;
//  - the sinusoidal timestep embedding (every node feeding a Sin or Cos, and those): φ = t·ω reaches
//    ~10³, where float16 steps are 0.5 rad. diffusers computes it in float32 and casts after
//    (`get_timestep_embedding`, then `t_emb.to(dtype=sample.dtype)` in UNet2DConditionModel).
// The guidance loss and its accumulation are built by prepare after the conversion, on these float32
// maps, so they are float32 too.
import { consumers, producers } from '../graph/graph-index.js';
import type { GraphProto, NodeProto } from '../graph/onnx-proto.js';

export const KEEP_FLOAT32_OPS: ReadonlySet<string> = new Set([
  'InstanceNormalization', 'LayerNormalization', 'GroupNormalization', 'BatchNormalization', 'Softmax', 'LogSoftmax',
]);

/** Ops a ReduceMean-based normalization is made of, between the mean and the normalized output. */
const NORM_CHAIN = new Set(['Pow', 'Mul', 'ReduceMean', 'Add', 'Sqrt', 'Reciprocal', 'Div']);

/** The nodes of one ReduceMean-based normalization starting at `mean` (empty when it is not one). */
function reduceMeanNorm(mean: NodeProto, cons: ReadonlyMap<string, readonly NodeProto[]>): NodeProto[] {
  const x = mean.input[0];
  const m = mean.output[0];
  if (!x || !m) return [];
  const centred = (cons.get(m) ?? []).find((c) => c.opType === 'Sub' && c.input[0] === x && c.input[1] === m);
  const d = centred?.output[0];
  if (!centred || !d) return [];
  const found: NodeProto[] = [mean, centred];
  const seen = new Set<NodeProto>(found);
  let output: NodeProto | undefined;
  let frontier = [...(cons.get(d) ?? [])];
  for (let depth = 0; depth < 6 && frontier.length > 0; depth++) {
    const next: NodeProto[] = [];
    for (const c of frontier) {
      if (seen.has(c) || !NORM_CHAIN.has(c.opType)) continue;
      seen.add(c);
      found.push(c);
      // The normalized output: d divided (or multiplied) by something computed from d (d·d is the square).
      if ((c.opType === 'Div' || c.opType === 'Mul') && c.input[0] === d && c.input[1] !== d) {
        output = c;
        continue;
      }
      for (const o of c.output) if (o) next.push(...(cons.get(o) ?? []));
    }
    frontier = next;
  }
  return output ? found : [];
}

/** Every node of `graph` that computes in float32 under a float16 conversion. */
export function keepFloat32Nodes(graph: GraphProto): Set<NodeProto> {
  const keep = new Set<NodeProto>();
  const cons = consumers(graph);
  for (const node of graph.node) {
    if (KEEP_FLOAT32_OPS.has(node.opType)) keep.add(node);
    if (node.opType === 'ReduceMean') for (const n of reduceMeanNorm(node, cons)) keep.add(n);
  }
  for (const n of timestepEmbeddingNodes(graph)) keep.add(n);
  return keep;
}

/** The sinusoidal timestep embedding: Sin/Cos and every node they are computed from. */
export function timestepEmbeddingNodes(graph: GraphProto): Set<NodeProto> {
  const keep = new Set<NodeProto>();
  const produced = producers(graph);
  const stack = graph.node.filter((n) => n.opType === 'Sin' || n.opType === 'Cos');
  while (stack.length > 0) {
    const n = stack.pop() as NodeProto;
    if (keep.has(n)) continue;
    keep.add(n);
    for (const i of n.input) {
      const p = i ? produced.get(i) : undefined;
      if (p && !keep.has(p)) stack.push(p);
    }
  }
  return keep;
}
