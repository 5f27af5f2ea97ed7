// Query chunking of the recomputed attention sites (recompute.ts) in a graph about to be
// differentiated. A site S = f(Q, K) (MatMul, then elementwise ops), P = softmax(S) along its last
// axis, O = P·V is exact row by row: the rows of O for a block of queries need only those rows of Q.
// So the site becomes n blocks of queries, each computing its own S_i, P_i and O_i, and
// O = Concat(O_i) along the query axis; its backward (P_i recomputed, softmax backward, the MatMul
// products) then works on [.., q/n, k] blocks instead of [.., q, k] tensors. A scalar scale of the
// scores, (Q·Kᵀ)·c, becomes (Q·c)·Kᵀ in the blocks: one pass over the small Q instead of one over
// the scores in the forward pass, the recomputation and the backward pass. At a 512×512 working size
// the level-0 self-attention of SD 1.x has S, P, ∂L/∂P, ∂L/∂S of [2·8, 4096, 4096] float32, 1 GiB each.
//
// onnxruntime orders nodes by their data dependencies only, so blocks that do not depend on one
// another could still all be alive at once. Block i+1 therefore reads its queries through
// `Q_{i+1} + 0·max(O_i)` in the forward pass, and in the backward pass block i reads its incoming
// gradient through `∂L/∂O_i + 0·Σ max(∂L/∂(inputs of block i+1))` (gradient-graph.ts): one block
// at a time, in both directions. These gate tensors carry no gradient (`stop`).
import { GraphEmitter } from './emitter.js';
import { findRecomputeGroups, RECOMPUTE_DEFAULTS, type RecomputeGroup } from './recompute.js';
import { makeNode, attrInt } from '../graph/nodes.js';
import { BYTES_PER_ELEMENT, type GraphProto, type NodeProto } from '../graph/onnx-proto.js';
import { normAxis, numel, type ShapeMap } from '../graph/static-shapes.js';

export const CHUNK_DEFAULTS = Object.freeze({
  /** Largest score tensor S_i (bytes) of one block of queries: a site whose S is larger is split into
   *  ceil(bytes / this) blocks. SD 1.x at 512², batch 2: S is 1 GiB, 16 blocks of 256 queries; at
   *  256² S is 64 MiB and stays whole. */
  maxScoreBytes: 64 * 2 ** 20,
  /** Prefix of the tensors and nodes the chunking creates. */
  prefix: 'chunk/',
  /** Elementwise ops a site's chain may apply to its scores (others leave the site whole). */
  elementwise: Object.freeze(['Mul', 'Div', 'Add', 'Sub', 'Cast']) as readonly string[],
});

/** One chunked site: its blocks in forward order. */
export interface ChunkedSite {
  readonly blocks: readonly {
    /** The recompute group of the block (its Softmax chain). */
    readonly group: RecomputeGroup;
    /** The block's O_i = P_i·V node (where its backward starts). */
    readonly entry: NodeProto;
  }[];
}

export interface ChunkResult {
  readonly groups: RecomputeGroup[];
  readonly sites: ChunkedSite[];
  /** Gate tensors (no gradient flows through them). */
  readonly stop: Set<string>;
}

interface Site {
  readonly group: RecomputeGroup;
  /** Chain nodes that carry the query rows (the others stay as they are). */
  readonly rowNodes: Set<NodeProto>;
  /** Tensors outside the chain that carry the query rows (split into blocks). */
  readonly rowLeaves: string[];
  readonly pv: NodeProto;
  readonly q: number;
  /** Score MatMuls whose only reader multiplies (or divides) them by a scalar constant, and that node. */
  readonly scaleOf: Map<NodeProto, NodeProto>;
  readonly folded: Set<NodeProto>;
}

/** The site of `group` if it has the shape described in the file header, else undefined. */
function matchSite(group: RecomputeGroup, consumers: Map<string, NodeProto[]>, outputs: Set<string>, constants: Set<string>, shapes: ShapeMap, opset: number): Site | undefined {
  const softmax = group.nodes[group.nodes.length - 1] as NodeProto;
  const p = softmax.output[0] as string;
  const pd = shapes.get(p)?.dims ?? [];
  if (pd.length < 2) return undefined;
  if (normAxis(attrInt(softmax, 'axis', opset >= 13 ? -1 : 1), pd.length) !== pd.length - 1) return undefined;
  const q = pd[pd.length - 2] as number;
  const pvs = consumers.get(p) ?? [];
  const pv = pvs[0];
  if (q < 2 || pvs.length !== 1 || !pv || pv.opType !== 'MatMul' || pv.input[0] !== p || pv.input[1] === p || outputs.has(p)) return undefined;
  const inChain = new Set(group.nodes);
  const rows = new Set<string>([softmax.input[0] as string]);
  const rowNodes = new Set<NodeProto>([softmax]);
  const rowLeaves: string[] = [];
  const carries = (name: string): boolean | undefined => {
    const d = shapes.get(name)?.dims ?? [];
    if (d.length < 2 || d[d.length - 2] === 1) return false;
    return d[d.length - 2] === q ? true : undefined;
  };
  for (let k = group.nodes.length - 2; k >= 0; k--) {
    const node = group.nodes[k] as NodeProto;
    const out = node.output[0] as string;
    if (!rows.has(out)) continue;
    // A row tensor read outside the chain would need all its rows.
    if (outputs.has(out) || (consumers.get(out) ?? []).some((c) => !inChain.has(c))) return undefined;
    rowNodes.add(node);
    const rowInputs = node.opType === 'MatMul' ? [node.input[0] as string] : node.input.filter((i) => i && carries(i));
    if (node.opType === 'MatMul' ? carries(node.input[0] as string) !== true : !CHUNK_DEFAULTS.elementwise.includes(node.opType)) return undefined;
    if (node.opType !== 'MatMul' && node.input.some((i) => i && carries(i) === undefined)) return undefined;
    for (const i of rowInputs) rows.add(i);
  }
  if (softmax.output.length !== 1) return undefined;
  const produced = new Set(group.nodes.filter((n) => rowNodes.has(n)).flatMap((n) => n.output));
  for (const r of rows) if (!produced.has(r) && !rowLeaves.includes(r)) rowLeaves.push(r);
  if (rowLeaves.length === 0) return undefined;
  const scaleOf = new Map<NodeProto, NodeProto>();
  const folded = new Set<NodeProto>();
  for (const node of group.nodes) {
    const out = node.output[0] as string;
    const readers = consumers.get(out) ?? [];
    const scale = readers[0];
    if (node.opType !== 'MatMul' || !rowNodes.has(node) || readers.length !== 1 || !scale || !rowNodes.has(scale)) continue;
    const c = scale.input.find((i) => i !== out);
    const ci = c === undefined ? undefined : shapes.get(c);
    const scalar = c !== undefined && ci !== undefined && numel(ci.dims) === 1 && (constants.has(c) || ci.value !== undefined);
    if (scalar && (scale.opType === 'Mul' || (scale.opType === 'Div' && scale.input[0] === out))) {
      scaleOf.set(node, scale);
      folded.add(scale);
    }
  }
  return { group, rowNodes, rowLeaves, pv, q, scaleOf, folded };
}

/** Sizes of n near-equal blocks of q rows. */
function blockSizes(q: number, n: number): number[] {
  const base = Math.ceil(q / n);
  const sizes: number[] = [];
  for (let left = q; left > 0; left -= base) sizes.push(Math.min(base, left));
  return sizes;
}

/**
 * Rewrites `graph` in place: each group whose score tensor exceeds `maxScoreBytes` and whose site
 * has the shape of the file header becomes blocks of queries. Returns the recompute groups to use
 * (the blocks' and the untouched ones), the chunked sites and the gate tensors.
 */
export function chunkAttention(graph: GraphProto, shapes: ShapeMap, groups: readonly RecomputeGroup[], opset: number, maxScoreBytes: number): ChunkResult {
  const consumers = new Map<string, NodeProto[]>();
  for (const n of graph.node) for (const i of n.input) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  const outputs = new Set(graph.output.map((o) => o.name));
  const constants = new Set(graph.initializer.map((t) => t.name));
  const em = new GraphEmitter(shapes, CHUNK_DEFAULTS.prefix, opset);
  const result: ChunkResult = { groups: [], sites: [], stop: new Set() };
  const replaced = new Map<NodeProto, NodeProto[]>();
  const dropped = new Set<NodeProto>();
  for (const group of groups) {
    const softmax = group.nodes[group.nodes.length - 1] as NodeProto;
    const info = shapes.get(softmax.output[0] as string);
    const bytes = info ? numel(info.dims) * (BYTES_PER_ELEMENT[info.dtype] ?? 4) : 0;
    const site = bytes > maxScoreBytes ? matchSite(group, consumers, outputs, constants, shapes, opset) : undefined;
    const sizes = site ? blockSizes(site.q, Math.ceil(bytes / maxScoreBytes)) : [];
    if (!site || sizes.length < 2) {
      result.groups.push(group);
      continue;
    }
    const start = em.nodes.length;
    // Each row leaf split into blocks along its query axis (rank − 2).
    const parts = new Map<string, string[]>();
    for (const leaf of site.rowLeaves) {
      const li = em.info(leaf);
      const axis = li.dims.length - 2;
      const outs = sizes.map((s) => ({ dtype: li.dtype, dims: li.dims.map((d, j) => (j === axis ? s : d)) }));
      parts.set(leaf, opset >= 13 ? em.opMulti('Split', [leaf, em.ints(sizes)], outs, { axis }) : em.opMulti('Split', [leaf], outs, { axis, split: sizes }));
    }
    const o = site.pv.output[0] as string;
    const oInfo = em.info(o);
    const blocks: ChunkedSite['blocks'][number][] = [];
    const blockOutputs: string[] = [];
    sizes.forEach((rowsInBlock, b) => {
      const renamed = new Map<string, string>();
      const leaves = new Set<string>();
      let zero: string | undefined;
      if (b > 0) {
        const max = em.op('ReduceMax', [blockOutputs[b - 1] as string], { dtype: oInfo.dtype, dims: [] }, { keepdims: 0 });
        zero = em.mul(max, em.scalar(0, oInfo.dtype));
        result.stop.add(max);
        result.stop.add(zero);
      }
      for (const leaf of site.rowLeaves) {
        const part = (parts.get(leaf) as string[])[b] as string;
        const gated = zero && em.info(part).dtype === oInfo.dtype ? em.add(part, zero) : part;
        renamed.set(leaf, gated);
        leaves.add(gated);
      }
      const nodes: NodeProto[] = [];
      const copyOf = (node: NodeProto, inputs: string[], dims: readonly number[]): string => {
        const name = em.fresh(`${node.opType}_b${b}`);
        shapes.set(name, { dtype: em.info(node.output[0] as string).dtype, dims: [...dims] });
        const copy = makeNode(node.opType, inputs, [name], `${name}_node`, {});
        copy.attribute = node.attribute;
        copy.domain = node.domain;
        em.nodes.push(copy);
        nodes.push(copy);
        return name;
      };
      for (const node of site.group.nodes) {
        if (!site.rowNodes.has(node) || site.folded.has(node)) continue;
        const out = node.output[0] as string;
        const oi = em.info(out);
        const dims = oi.dims.map((d, j) => (j === oi.dims.length - 2 ? rowsInBlock : d));
        const inputs = node.input.map((i) => (i ? (renamed.get(i) ?? i) : i));
        const scale = site.scaleOf.get(node);
        if (scale) {
          // (Q_i·c)·Kᵀ for (Q_i·Kᵀ)·c: the scalar scales the small operand, not the block's scores.
          const c = scale.input.find((i) => i !== out) as string;
          const scaled = em.op(scale.opType, [inputs[0] as string, c], em.info(inputs[0] as string));
          nodes.push(em.nodes[em.nodes.length - 1] as NodeProto);
          renamed.set(scale.output[0] as string, copyOf(node, [scaled, inputs[1] as string], dims));
          continue;
        }
        renamed.set(out, copyOf(node, inputs, dims));
      }
      const made = new Set(nodes.flatMap((n) => n.output));
      for (const n of nodes) for (const i of n.input) if (i && !made.has(i)) leaves.add(i);
      const ob = em.op('MatMul', [renamed.get(site.pv.input[0] as string) as string, site.pv.input[1] as string], { dtype: oInfo.dtype, dims: oInfo.dims.map((d, j) => (j === oInfo.dims.length - 2 ? rowsInBlock : d)) });
      blockOutputs.push(ob);
      blocks.push({ group: { nodes, leaves: [...leaves] }, entry: em.nodes[em.nodes.length - 1] as NodeProto });
    });
    em.nodes.push(makeNode('Concat', blockOutputs, [o], `${CHUNK_DEFAULTS.prefix}${o}_concat`, { axis: oInfo.dims.length - 2 }));
    replaced.set(site.pv, em.nodes.slice(start));
    for (const n of site.rowNodes) dropped.add(n);
    result.sites.push({ blocks });
    for (const b of blocks) result.groups.push(b.group);
  }
  if (replaced.size > 0) {
    graph.node = graph.node.flatMap((n) => replaced.get(n) ?? (dropped.has(n) ? [] : [n]));
    graph.initializer = [...graph.initializer, ...em.initializers];
  }
  return result;
}

/** The same blocks in a graph that only runs forward (the cross-attention graphs): the sites that the
 *  gradient graph recomputes (recompute.ts at its default ratio) run block by block, so a forward call
 *  at 512² holds one score block at a time instead of S and P whole. Returns the sites chunked. */
export function chunkForwardAttention(graph: GraphProto, shapes: ShapeMap, opset: number, maxScoreBytes: number = CHUNK_DEFAULTS.maxScoreBytes, minRatio: number = RECOMPUTE_DEFAULTS.minRatio): number {
  const elements = (name: string): number => numel(shapes.get(name)?.dims ?? []);
  return chunkAttention(graph, shapes, findRecomputeGroups(graph, elements, minRatio), opset, maxScoreBytes).sites.length;
}
