// Reverse-mode differentiation of an ONNX graph with static shapes: appends to the forward graph the
// nodes computing ∂loss/∂x for chosen inputs x, in standard ONNX ops, one vector-Jacobian product
// rule per forward node (vjp/). Only nodes that both depend on some x and reach the loss get a
// backward; everything else stays forward-only. Initializers are shared by reference (external
// weights stay in their file); the only new tensors are small inline constants.
import { P2pzError } from '../../../shared/protocol/errors.js';
import { GraphEmitter } from './emitter.js';
import { pruneDeadNodes, cloneModelShallow } from '../graph/fold.js';
import { DataType, isFloatType, type GraphProto, type ModelProto, type NodeProto } from '../graph/onnx-proto.js';
import { defaultOpset, makeNode, valueInfo } from '../graph/nodes.js';
import type { ShapeMap } from '../graph/static-shapes.js';
import { VJP_RULES } from './vjp/index.js';
import { unsupported } from './vjp/types.js';
import { emitRecompute, findElementwiseGroups, findRecomputeGroups, RECOMPUTE_DEFAULTS, type RecomputeGroup } from './recompute.js';
import { CHUNK_DEFAULTS, chunkAttention, type ChunkedSite } from './chunk-attention.js';

export interface GradientRequest {
  /** Name of the scalar (or any-shape: seeded with ones) tensor to differentiate. */
  readonly loss: string;
  /** Graph inputs to differentiate with respect to, and the output name for each gradient. */
  readonly wrt: readonly { readonly input: string; readonly gradOutput: string }[];
  /** Forward tensors to keep as graph outputs (the loss itself is always kept). */
  readonly keepOutputs: readonly string[];
  /** Recompute large Softmax outputs in the backward pass instead of keeping them (recompute.ts):
   *  the minimum size ratio, or false to keep every forward tensor. Default RECOMPUTE_DEFAULTS.
   *  `maxScoreBytes`: recomputed attention sites with a larger score tensor run in blocks of queries
   *  (chunk-attention.ts); default CHUNK_DEFAULTS, Infinity for none. `elementwise`, `minElements`:
   *  elementwise recomputation (recompute.ts findElementwiseGroups); default RECOMPUTE_DEFAULTS. */
  readonly recompute?: { readonly minRatio: number; readonly maxScoreBytes?: number; readonly elementwise?: boolean; readonly minElements?: number } | false;
}

export const GRADIENT_DEFAULTS = Object.freeze({
  /** Prefix of every tensor and node the backward pass creates. */
  prefix: 'grad/',
});

/** Forward nodes that need a backward and which of their inputs need a gradient. */
export function activeNodes(graph: GraphProto, shapes: ShapeMap, loss: string, wrt: readonly string[], stop: ReadonlySet<string> = new Set()): { node: NodeProto; needs: boolean[] }[] {
  const requires = new Set<string>(wrt);
  for (const node of graph.node) {
    if (!node.input.some((i) => i && requires.has(i))) continue;
    for (const o of node.output) {
      const info = o ? shapes.get(o) : undefined;
      if (o && info && isFloatType(info.dtype) && !stop.has(o)) requires.add(o);
    }
  }
  const reaches = new Set<string>([loss]);
  for (let k = graph.node.length - 1; k >= 0; k--) {
    const node = graph.node[k] as NodeProto;
    if (node.output.some((o) => o && reaches.has(o))) for (const i of node.input) if (i) reaches.add(i);
  }
  const active: { node: NodeProto; needs: boolean[] }[] = [];
  for (const node of graph.node) {
    if (!node.output.some((o) => o && reaches.has(o) && requires.has(o))) continue;
    active.push({ node, needs: node.input.map((i) => !!i && requires.has(i) && reaches.has(i)) });
  }
  return active;
}

/** Returns a new model: the forward graph (pruned to `keepOutputs` and the loss) plus the backward
 *  nodes, with the gradients as extra outputs. `shapes` must describe every forward tensor (see
 *  foldStaticShapes); it is extended with the backward tensors. */
export function appendGradient(model: ModelProto, shapes: ShapeMap, req: GradientRequest): ModelProto {
  const out = cloneModelShallow(model);
  const graph = out.graph as GraphProto;
  const opset = defaultOpset(model);
  if (opset < 13) throw new P2pzError('E_UNSUPPORTED_OP', `opset ${opset} (the gradient graph needs opset 13 or later)`);
  const lossInfo = shapes.get(req.loss);
  if (!lossInfo) throw new P2pzError('E_INTERNAL', `loss tensor ${req.loss} not found`);
  const em = new GraphEmitter(shapes, GRADIENT_DEFAULTS.prefix, opset);
  // Gradient contributions are summed as they arrive (the same left-to-right order as one sum at the
  // end), so one partial sum per tensor is alive, not every contribution: the blocks of a chunked
  // site each add a full-size ∂L/∂K and ∂L/∂V (16 × 2 × 10 MiB at SD 1.x level 0, 512²).
  const grads = new Map<string, string>();
  const addGrad = (name: string, g: string): void => {
    const prev = grads.get(name);
    grads.set(name, prev === undefined ? g : em.add(prev, g));
  };
  const takeGrad = (name: string): string | undefined => grads.get(name);
  addGrad(req.loss, em.constant(new Array<number>(lossInfo.dims.reduce((a, b) => a * b, 1)).fill(1), lossInfo.dtype, lossInfo.dims));

  // Recomputed tensors: each group's forward names, and their recomputed names once emitted.
  const elements = (name: string): number => (shapes.get(name)?.dims ?? []).reduce((a, b) => a * b, 1);
  const elementwiseOn = req.recompute !== false && (req.recompute?.elementwise ?? RECOMPUTE_DEFAULTS.elementwise);
  // Which forward tensors the backward reads: a first derivation without elementwise recomputation
  // tells. It works on its own copy of the shapes and before this graph is chunked, so that the
  // chunking names its tensors (the blocks of queries) the same in both.
  const stored = new Set<string>();
  if (elementwiseOn) {
    const first = appendGradient(model, new Map(shapes), { ...req, recompute: { ...(req.recompute ?? RECOMPUTE_DEFAULTS), elementwise: false } });
    const forwardNames = new Set(first.graph.node.filter((n) => !n.name.startsWith(GRADIENT_DEFAULTS.prefix)).flatMap((n) => n.output));
    for (const n of first.graph.node) {
      if (!n.name.startsWith(GRADIENT_DEFAULTS.prefix)) continue;
      for (const i of n.input) if (i && forwardNames.has(i)) stored.add(i);
    }
  }
  const found = req.recompute === false ? [] : findRecomputeGroups(graph, elements, (req.recompute ?? RECOMPUTE_DEFAULTS).minRatio);
  const chunked = chunkAttention(graph, shapes, found, opset, req.recompute === false ? Infinity : (req.recompute?.maxScoreBytes ?? CHUNK_DEFAULTS.maxScoreBytes));
  const active = activeNodes(graph, shapes, req.loss, req.wrt.map((w) => w.input), chunked.stop);
  const activeSet = new Set(active.map((a) => a.node));
  const elementwise: RecomputeGroup[] = [];
  if (elementwiseOn) {
    const taken = new Set(chunked.groups.flatMap((g) => g.nodes));
    for (const site of chunked.sites) for (const b of site.blocks) taken.add(b.entry);
    elementwise.push(...findElementwiseGroups(graph, elements, stored, taken, (req.recompute ?? RECOMPUTE_DEFAULTS).minRatio, req.recompute?.minElements ?? RECOMPUTE_DEFAULTS.minElements));
  }
  const groups = [...chunked.groups, ...elementwise].filter((g) => g.nodes.every((n) => activeSet.has(n)));
  // Blocks of a chunked site: block i's backward starts once block i+1's is done (chunk-attention.ts).
  const blockOf = new Map<NodeProto, { site: ChunkedSite; index: number; inside: Set<string>; done: string[][] }>();
  for (const site of chunked.sites) {
    const done = site.blocks.map(() => [] as string[]);
    site.blocks.forEach((b, index) => {
      const inside = new Set(b.group.nodes.flatMap((n) => n.output));
      for (const n of [...b.group.nodes, b.entry]) blockOf.set(n, { site, index, inside, done });
    });
  }
  const groupOf = new Map<string, RecomputeGroup>();
  for (const g of groups) for (const n of g.nodes) for (const o of n.output) if (o) groupOf.set(o, g);
  const constants = new Set(graph.initializer.map((t) => t.name));
  const recomputed = new Map<RecomputeGroup, Map<string, string>>();
  // Tensors computed from some gradient (gateGradientFree): the seed, and everything emitted from it.
  const dependsOnGradient = new Set<string>(grads.values());
  const gateEarly = req.recompute !== false;
  const minElements = req.recompute === false ? Infinity : (req.recompute?.minElements ?? RECOMPUTE_DEFAULTS.minElements);
  const rename = new Map<string, string>();
  /** Emits group `g` gated on `gate`, after the groups that make its leaves (a block's queries come
   *  from the projections' group): the leaves are then read recomputed, not kept. */
  const emitGroup = (g: RecomputeGroup, gate: string): void => {
    if (recomputed.has(g)) return;
    recomputed.set(g, new Map());
    for (const leaf of g.leaves) {
      const from = groupOf.get(leaf);
      if (from !== undefined && from !== g) emitGroup(from, gate);
    }
    const names = emitRecompute(em, g, gate, constants, rename);
    recomputed.set(g, names);
    for (const [from, to] of names) {
      rename.set(from, to);
      dependsOnGradient.add(to);
    }
  };

  for (let k = active.length - 1; k >= 0; k--) {
    const { node: forward, needs } = active[k] as { node: NodeProto; needs: boolean[] };
    const dY = forward.output.map((o) => (o ? takeGrad(o) : undefined));
    if (dY.every((g) => g === undefined) || !needs.some(Boolean)) continue;
    const block = blockOf.get(forward);
    const after = block && block.site.blocks[block.index]?.entry === forward ? block.done[block.index + 1] : undefined;
    if (after && after.length > 0 && dY[0]) {
      const maxima = after.map((g) => em.op('ReduceMax', [g], { dtype: em.info(g).dtype, dims: [] }, { keepdims: 0 }));
      dY[0] = em.add(dY[0], em.mul(em.sum(maxima), em.scalar(0, em.info(dY[0]).dtype)));
    }
    for (const name of [...forward.input, ...forward.output]) {
      const g = name ? groupOf.get(name) : undefined;
      if (g) emitGroup(g, dY.find((d) => d !== undefined) as string);
    }
    // The rule reads recomputed tensors in place of the forward ones.
    const node = rename.size === 0 ? forward : { ...forward, input: forward.input.map((i) => rename.get(i) ?? i), output: forward.output.map((o) => rename.get(o) ?? o) } as NodeProto;
    const rule = node.domain && node.domain !== 'ai.onnx' ? undefined : VJP_RULES[node.opType];
    if (!rule) throw unsupported(node);
    const emittedFrom = em.nodes.length;
    const dX = rule({ node, em, opset, dY, needs });
    if (gateEarly) gateGradientFree(em, emittedFrom, dY.find((d) => d !== undefined) as string, dependsOnGradient, constants, minElements);
    forward.input.forEach((name, i) => {
      const g = dX[i];
      if (name && needs[i] && g) {
        addGrad(name, g);
        // What leaves block `index` (its inputs' gradients): the gate of the block before it.
        if (block && !block.inside.has(name)) block.done[block.index]?.push(g);
      }
    });
  }

  const gradOutputs = req.wrt.map(({ input, gradOutput }) => {
    const g = takeGrad(input) ?? em.zerosLike(input);
    em.nodes.push(makeNode('Identity', [g], [gradOutput], `${GRADIENT_DEFAULTS.prefix}${gradOutput}`));
    const info = em.info(input);
    shapes.set(gradOutput, info);
    return valueInfo(gradOutput, info.dtype, info.dims);
  });

  const keep = [...new Set([...req.keepOutputs, req.loss])];
  graph.output = keep.map((name) => {
    const existing = model.graph?.output.find((o) => o.name === name);
    const info = shapes.get(name);
    if (!info) throw new P2pzError('E_INTERNAL', `output ${name} not found`);
    return existing && existing.type?.tensorType?.shape?.dim?.length === info.dims.length ? existing : valueInfo(name, info.dtype, info.dims);
  }) as typeof graph.output;
  graph.output.push(...gradOutputs);
  graph.node = [...graph.node, ...em.nodes];
  graph.initializer = [...graph.initializer, ...em.initializers];
  pruneDeadNodes(graph);
  return out;
}

/** Element types a gate can add 0 to. */
const GATEABLE: ReadonlySet<number> = new Set([DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE, DataType.INT32, DataType.INT64]);

/**
 * A rule's nodes that read only forward tensors and constants (∂ of a MatMul's Aᵀ, a normalisation's
 * 1/σ·x̂ …) do not depend on the gradient, so onnxruntime, which orders nodes by data alone, may run
 * them long before the backward pass gets there (it does: depth-first from the outputs) and hold
 * their outputs meanwhile. Each such node with a large output (≥ `minElements`) reads its smallest
 * non-constant input through `x + 0·max(∂L/∂y)`, ∂L/∂y being the gradient the rule was called with
 * (the same gate as recompute.ts), so it runs when the backward pass reaches its rule. The nodes the
 * rule emitted from `from` on are re-emitted in order, with the gates before the nodes they feed.
 */
function gateGradientFree(em: GraphEmitter, from: number, gate: string, dependsOnGradient: Set<string>, constants: ReadonlySet<string>, minElements: number): void {
  const emitted = em.nodes.splice(from);
  const isConstant = (t: string): boolean => constants.has(t) || em.madeConstant(t);
  let zero: string | undefined;
  for (const n of emitted) {
    const inputs = n.input.filter((i): i is string => !!i);
    const fromGradient = inputs.some((i) => dependsOnGradient.has(i) || i === gate);
    const big = n.output.some((o) => !!o && em.shapes.has(o) && em.count(o) >= minElements);
    // Gates go through numbers only (Add has no bool or string kernel).
    const variable = inputs.filter((i) => !isConstant(i) && em.shapes.has(i) && GATEABLE.has(em.info(i).dtype));
    const gated = !fromGradient && big && variable.length > 0;
    if (gated) {
      const smallest = variable.reduce((a, b) => (em.count(b) < em.count(a) ? b : a));
      zero ??= em.zeroAfter(gate);
      const si = em.info(smallest);
      const z = si.dtype === em.info(gate).dtype ? zero : em.op('Cast', [zero], { dtype: si.dtype, dims: [] }, { to: si.dtype });
      const input = em.add(smallest, z);
      n.input = n.input.map((i) => (i === smallest ? input : i));
    }
    em.nodes.push(n);
    if (fromGradient || gated) for (const o of n.output) if (o) dependsOnGradient.add(o);
  }
}
