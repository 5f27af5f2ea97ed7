// Recomputation of large attention probabilities in the backward pass (gradient checkpointing of one
// op). A self-attention site keeps P = softmax(s·Q·Kᵀ) [B·heads, q, q] for its backward (∂L/∂S =
// P ⊙ (∂L/∂P − Σ(∂L/∂P ⊙ P)) and ∂L/∂V = Pᵀ·∂L/∂O); at a 512×512 working size that is 1 GiB per site,
// five sites in SD 1.x, all alive at the start of the backward pass. Q and K are q·d each (d = 40 to
// 160), 50× smaller. So for a Softmax whose output is at least `minRatio` times the inputs it is
// computed from (the chain of MatMul/Mul/Div/Add/Transpose/Reshape/Cast back to tensors that are
// small), the backward computes the chain again from those inputs and every backward rule reads the
// recomputed tensors: the forward P is freed after its forward use, and one P at a time is alive in
// the backward pass.
// onnxruntime orders nodes only by their data dependencies and merges identical subexpressions, so
// the recomputation reads its inputs through `x + 0·max(∂L/∂y)`, where ∂L/∂y is the gradient that
// reaches the site first: it cannot run before the backward pass gets there, and it is not the same
// expression as the forward one.
import type { GraphEmitter } from './emitter.js';
import type { GraphProto, NodeProto } from '../graph/onnx-proto.js';
import { makeNode } from '../graph/nodes.js';

export const RECOMPUTE_DEFAULTS = Object.freeze({
  /** Recompute a Softmax when its output holds at least this many times the elements of the inputs
   *  its chain starts from (SD 1.x self-attention: 51× at level 0 and 6.4× at level 1 at 512², 13×
   *  at level 0 at 256²; cross-attention ≈ 2× and level 2 below 1× keep theirs). */
  minRatio: 4,
  /** Ops a chain may contain besides the Softmax itself. */
  chainOps: Object.freeze(['MatMul', 'Mul', 'Div', 'Add', 'Sub', 'Transpose', 'Reshape', 'Cast']) as readonly string[],
  /** Recompute elementwise tensors the backward reads from other tensors it keeps anyway
   *  (findElementwiseGroups). */
  elementwise: true,
  /** Elementwise ops whose outputs may be recomputed. */
  elementwiseOps: Object.freeze(['Mul', 'Div', 'Add', 'Sub', 'Sigmoid', 'Erf', 'Sqrt', 'Tanh', 'Neg']) as readonly string[],
  /** Ops that only relabel or move a tensor's elements (the heads' split of Q, K, V); recomputed along
   *  with the elementwise ones. */
  reshapeOps: Object.freeze(['Reshape', 'Transpose']) as readonly string[],
  /** Normalisations recomputed from their kept input (GroupNorm exported as InstanceNormalization
   *  over a grouped view, LayerNorm as LayerNormalization from opset 17: their backward keeps that
   *  input anyway). */
  normalizationOps: Object.freeze(['InstanceNormalization', 'LayerNormalization']) as readonly string[],
  /** Smallest tensor (elements) worth recomputing. */
  minElements: 1 << 16,
  /** Longest chain of ops back from a kept tensor to what it is made again from (Q's block of queries
   *  back to LayerNorm's x − μ is ten). */
  maxDepth: 12,
});

export interface RecomputeGroup {
  /** Forward nodes to run again, in forward order (the Softmax last). */
  readonly nodes: readonly NodeProto[];
  /** Tensors the chain starts from (kept from the forward pass). */
  readonly leaves: readonly string[];
}

/** The Softmax nodes worth recomputing and their chains; a tensor is in at most one group. */
export function findRecomputeGroups(graph: GraphProto, elements: (name: string) => number, minRatio: number): RecomputeGroup[] {
  const producer = new Map<string, NodeProto>();
  for (const n of graph.node) for (const o of n.output) if (o) producer.set(o, n);
  const constants = new Set((graph.initializer ?? []).map((t) => t.name));
  const taken = new Set<NodeProto>();
  const groups: RecomputeGroup[] = [];
  for (const softmax of graph.node) {
    if (softmax.opType !== 'Softmax' || (softmax.domain && softmax.domain !== 'ai.onnx')) continue;
    const out = softmax.output[0];
    if (!out) continue;
    const big = elements(out);
    const nodes: NodeProto[] = [];
    const leaves = new Set<string>();
    const visit = (name: string): void => {
      const p = producer.get(name);
      // Small tensors, graph inputs and initializers are kept; big intermediates are recomputed.
      if (!p || constants.has(name) || elements(name) * minRatio <= big || !RECOMPUTE_DEFAULTS.chainOps.includes(p.opType) || taken.has(p)) {
        leaves.add(name);
        return;
      }
      if (nodes.includes(p)) return;
      for (const i of p.input) if (i) visit(i);
      nodes.push(p);
    };
    for (const i of softmax.input) if (i) visit(i);
    const leafElements = [...leaves].filter((l) => !constants.has(l)).reduce((s, l) => s + elements(l), 0);
    if (leafElements === 0 || leafElements * minRatio > big) continue;
    nodes.push(softmax);
    for (const n of nodes) taken.add(n);
    groups.push({ nodes, leaves: [...leaves] });
  }
  return groups;
}

/**
 * Emits the recomputation of `group` gated on `gate` (a gradient tensor; see the file header) and
 * returns the map from each forward tensor of the chain to its recomputed name. `again` names the
 * leaves another group has recomputed already: they are read as such (they wait for a gradient
 * already).
 */
export function emitRecompute(em: GraphEmitter, group: RecomputeGroup, gate: string, constants: ReadonlySet<string>, again: ReadonlyMap<string, string> = new Map()): Map<string, string> {
  const info = em.info(gate);
  const zero = em.zeroAfter(gate);
  const renamed = new Map<string, string>();
  for (const leaf of group.leaves) {
    if (constants.has(leaf)) continue;
    const made = again.get(leaf);
    if (made !== undefined) {
      renamed.set(leaf, made);
      continue;
    }
    const li = em.info(leaf);
    renamed.set(leaf, li.dtype === info.dtype ? em.add(leaf, zero) : leaf);
  }
  for (const node of group.nodes) {
    const outputs = node.output.map((o) => {
      if (!o) return o;
      const name = em.fresh(`recompute_${node.opType}`);
      em.shapes.set(name, em.info(o));
      renamed.set(o, name);
      return name;
    });
    em.nodes.push(makeNode(node.opType, node.input.map((i) => (i ? (renamed.get(i) ?? i) : i)), outputs, `${outputs[0] ?? node.opType}_node`, {}));
    const emitted = em.nodes[em.nodes.length - 1] as NodeProto;
    emitted.attribute = node.attribute;
    emitted.domain = node.domain;
  }
  // The leaves keep their forward names for the rules (their gradients flow to the forward tensors).
  for (const leaf of group.leaves) renamed.delete(leaf);
  return renamed;
}

/**
 * Elementwise recomputation: a tensor T that the backward reads (`stored`) and that cheap ops derive
 * from tensors the backward keeps anyway (other stored tensors, small ones, constants) is computed
 * again in the backward pass instead of being kept: in SD 1.x the normalised activations of
 * GroupNorm/LayerNorm ((x − μ)/σ next to x − μ), SiLU's σ(x) next to x, and GELU's x/√2, 1 + erf(·)
 * and x·Φ(x) next to x (1.4 GiB of the 3.7 GiB the gradient graph kept at 512²); then, through
 * reshapes and InstanceNormalization, GroupNorm's affine output from its grouped input (which its own
 * backward keeps), and GEGLU's two halves from the projection's input, 8× smaller (2.28 → 0.99 GiB
 * kept at 512²). A MatMul by a constant weight is run again when its input is small or can itself be
 * made again: so self-attention's Q, K and V (and the blocks of queries of a chunked site) come back
 * from LayerNorm's x − μ, which LayerNorm's backward keeps, through the affine, the projection and the
 * heads' reshapes and transposes (0.99 → 0.73 GiB kept at 512²). Connected ops form one group,
 * recomputed together when the backward first reaches one of them. An input is a leaf of the group
 * when it is kept anyway, or else cannot be derived and is `minRatio`× smaller than what it makes.
 */
export function findElementwiseGroups(graph: GraphProto, elements: (name: string) => number, stored: ReadonlySet<string>, taken: ReadonlySet<NodeProto>, minRatio: number, minElements: number = RECOMPUTE_DEFAULTS.minElements): RecomputeGroup[] {
  const d = RECOMPUTE_DEFAULTS;
  const producer = new Map<string, NodeProto>();
  for (const n of graph.node) for (const o of n.output) if (o) producer.set(o, n);
  const constants = new Set((graph.initializer ?? []).map((t) => t.name));
  // Elementwise ops, reshapes and transposes of one output; Split (all its outputs are made again
  // together); a MatMul by a constant weight (a projection), whose input must then be small (GEGLU's
  // expands it 8× in SD 1.x) or derivable itself (Q, K, V from the normalised activations).
  const recomputable = (p: NodeProto): boolean => {
    if (p.domain && p.domain !== 'ai.onnx') return false;
    if (d.elementwiseOps.includes(p.opType) || d.reshapeOps.includes(p.opType) || d.normalizationOps.includes(p.opType)) return p.output.length === 1;
    if (p.opType === 'Split') return true;
    return p.opType === 'MatMul' && !!p.input[0] && !!p.input[1] && constants.has(p.input[1]);
  };
  // Whether a tensor can be made again, remembered; a "no" that only the depth limit gave (`cut`) is
  // not remembered, since nearer a kept tensor the same tensor may be derivable.
  const memo = new Map<string, boolean>();
  let cut = false;
  const derivable = (t: string, depth: number): boolean => {
    const hit = memo.get(t);
    if (hit !== undefined) return hit;
    const p = producer.get(t);
    if (!p || taken.has(p) || !recomputable(p)) {
      memo.set(t, false);
      return false;
    }
    if (depth >= d.maxDepth) {
      cut = true;
      return false;
    }
    const outer = cut;
    cut = false;
    const ok = p.input.every((i) => !i || constants.has(i) || !producer.has(i) || stored.has(i) || derivable(i, depth + 1) || elements(i) * minRatio <= elements(t));
    if (ok || !cut) memo.set(t, ok);
    cut ||= outer;
    return ok;
  };
  const chosen = new Set<NodeProto>();
  const collect = (t: string): void => {
    const p = producer.get(t) as NodeProto;
    if (chosen.has(p)) return;
    chosen.add(p);
    for (const i of p.input) if (i && memo.get(i) === true) collect(i);
  };
  for (const t of stored) if (elements(t) >= minElements && derivable(t, 0)) collect(t);
  // Connected components over producer → consumer edges inside `chosen`, in graph order.
  const parent = new Map<NodeProto, NodeProto>();
  const find = (n: NodeProto): NodeProto => {
    let r = n;
    while (parent.get(r) !== r) r = parent.get(r) as NodeProto;
    parent.set(n, r);
    return r;
  };
  for (const n of chosen) parent.set(n, n);
  for (const n of chosen) {
    for (const i of n.input) {
      const p = i ? producer.get(i) : undefined;
      if (p && chosen.has(p)) parent.set(find(p), find(n));
    }
  }
  const byRoot = new Map<NodeProto, NodeProto[]>();
  for (const n of graph.node) {
    if (!chosen.has(n)) continue;
    const r = find(n);
    byRoot.set(r, [...(byRoot.get(r) ?? []), n]);
  }
  return [...byRoot.values()].map((nodes) => {
    const made = new Set(nodes.flatMap((n) => n.output));
    const leaves = [...new Set(nodes.flatMap((n) => n.input).filter((i) => i && !made.has(i)))];
    return { nodes, leaves };
  });
}
