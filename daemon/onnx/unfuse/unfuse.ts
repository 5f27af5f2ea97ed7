// The unfused twin of an onnxruntime-optimized UNet: every supported com.microsoft node is replaced
// by a subgraph of standard ONNX ops that computes the same values, so static shapes, the
// cross-attention maps, the gradient graph and the roles model work on it unchanged. prepare.ts derives
// every UNet graph from the twin; the original file is never modified. A node of any other op or
// domain is refused with E_UNSUPPORTED_OP naming it, with a hint.
//
// What onnxruntime's transformers optimizer (onnxruntime/python/tools/transformers: optimize_pipeline.py
// for Stable Diffusion, also behind optimum's ORTOptimizer) writes into an SD 1.x UNet, and what runs
// it. Semantics from docs/ContribOperators.md and the schemas (core/graph/contrib_ops/diffusion_defs.cc,
// bert_defs.cc); providers from docs/OperatorKernels.md. "CPU" is what onnxruntime-node 1.30's CPU
// provider loads, pinned by test/daemon/onnx/unfuse/contrib-ops.test.ts:
//   op (fusion script)                               rewrite file       CPU   CUDA
//   MultiHeadAttention (fusion_attention_unet.py)    attention.ts       (1)   yes
//   Attention (self-attention, older scripts)        attention.ts       yes   yes
//   GroupNorm, NHWC, activation (fusion_group_norm)  normalization.ts   no    yes
//   SkipGroupNorm (fusion_skip_group_norm.py)        normalization.ts   no    yes
//   SkipLayerNormalization (fusion_skiplayernorm)    normalization.ts   yes   yes
//   BiasSplitGelu (fusion_biassplitgelu.py)          activation.ts      no    yes
//   BiasAdd (fusion_bias_add.py)                     activation.ts      no    yes
//   NhwcConv (fusion_nhwc_conv.py)                   nhwc-conv.ts       no    yes
//   Gelu, BiasGelu, FastGelu, QuickGelu              activation.ts      yes   yes
//   FusedMatMul (ORT's own extended optimizations)   matmul.ts          yes   yes
// (1) q/k/v given separately only: the CPU kernel fails at run time with "Packed KV not implemented
//     for CPU" / "Packed QKV … not implemented for CPU" on the packed forms the SD fusion writes.
// Why the twin serves every role (forward ones included) rather than only the gradient graph: the
// pipeline's three UNet roles run in one session with one copy of the weights (roles-model.ts), and
// all three need the cross-attention probabilities as outputs, which a fused MultiHeadAttention never
// materializes; and on the CPU an SD graph from the optimizer cannot run at all (six of these ops or
// forms have no CPU kernel). On CUDA the fused kernels are faster; keeping them for the self-attention sites of the forward
// roles is possible later, at the cost of a second graph per role (docs/DESIGN.md §2).
import { P2pzError } from '../../../shared/protocol/errors.js';
import { cloneModelShallow, pruneDeadNodes } from '../graph/fold.js';
import { namesInUse } from '../graph/graph-index.js';
import { defaultOpset } from '../graph/nodes.js';
import type { ModelProto, NodeProto } from '../graph/onnx-proto.js';
import { inferStaticShapes, type DomainShapeRule } from '../graph/static-shapes.js';
import { ATTENTION, MULTI_HEAD_ATTENTION } from './attention.js';
import { BIAS_ADD, BIAS_GELU, BIAS_SPLIT_GELU, FAST_GELU, GELU, QUICK_GELU } from './activation.js';
import { FUSED_MATMUL } from './matmul.js';
import { NHWC_CONV } from './nhwc-conv.js';
import { GROUP_NORM, SKIP_GROUP_NORM, SKIP_LAYER_NORMALIZATION } from './normalization.js';
import { Rewriter } from './rewriter.js';
import { CONTRIB_DOMAIN, UNFUSE_HINT, refuse, type ContribRule } from './rule.js';
import { cancelTransposePairs } from './transpose-pairs.js';

/** The com.microsoft ops the twin rewrites. */
export const CONTRIB_RULES: Readonly<Record<string, ContribRule>> = Object.freeze({
  MultiHeadAttention: MULTI_HEAD_ATTENTION,
  Attention: ATTENTION,
  GroupNorm: GROUP_NORM,
  SkipGroupNorm: SKIP_GROUP_NORM,
  SkipLayerNormalization: SKIP_LAYER_NORMALIZATION,
  BiasSplitGelu: BIAS_SPLIT_GELU,
  BiasAdd: BIAS_ADD,
  NhwcConv: NHWC_CONV,
  Gelu: GELU,
  BiasGelu: BIAS_GELU,
  FastGelu: FAST_GELU,
  QuickGelu: QUICK_GELU,
  FusedMatMul: FUSED_MATMUL,
});

/** metadata_props key of the twin: JSON {op: count} of the rewritten nodes. */
export const UNFUSED_METADATA_KEY = 'p2pz.unfused';

const isDefaultDomain = (node: NodeProto): boolean => !node.domain || node.domain === 'ai.onnx';

function ruleFor(node: NodeProto): ContribRule {
  const rule = node.domain === CONTRIB_DOMAIN ? CONTRIB_RULES[node.opType] : undefined;
  if (!rule) {
    throw new P2pzError('E_UNSUPPORTED_OP', `op ${node.domain}.${node.opType} at node ${node.name} (p2pz rewrites only ${Object.keys(CONTRIB_RULES).join(', ')} of ${CONTRIB_DOMAIN})`, UNFUSE_HINT);
  }
  return rule;
}

/** Output types of the fused nodes, for static-shapes.ts. */
export const contribShapeRule: DomainShapeRule = (node, ins) => ruleFor(node).shapes(node, ins);

/** Whether `model` holds nodes outside the default domain. */
export function hasFusedOps(model: ModelProto): boolean {
  return model.graph.node.some((n) => !isDefaultDomain(n));
}

/** The twin of `model` for fixed input dims (the derived graphs are per working size anyway), or
 *  `model` itself when it has no fused node. */
export function unfuseContribOps(model: ModelProto, inputDims: Readonly<Record<string, readonly number[]>>): ModelProto {
  if (!hasFusedOps(model)) return model;
  for (const node of model.graph.node) if (!isDefaultDomain(node)) ruleFor(node);
  const shapes = inferStaticShapes(model, inputDims, {}, contribShapeRule);
  const out = cloneModelShallow(model);
  const graph = out.graph;
  const opset = defaultOpset(model);
  const taken = namesInUse(graph);
  const read = new Set<string>(graph.output.map((o) => o.name));
  for (const n of graph.node) for (const i of n.input) if (i) read.add(i);
  const used = (name: string): boolean => read.has(name);
  const counts: Record<string, number> = {};
  const nodes: NodeProto[] = [];
  graph.node.forEach((node, k) => {
    if (isDefaultDomain(node)) { nodes.push(node); return; }
    const r = new Rewriter(node.name || `${node.opType}_${k}`, opset, taken);
    ruleFor(node).expand(node, node.input.map((i) => (i ? shapes.get(i) : undefined)), { r, used });
    nodes.push(...r.nodes);
    graph.initializer.push(...r.initializers);
    counts[node.opType] = (counts[node.opType] ?? 0) + 1;
  });
  graph.node = nodes;
  cancelTransposePairs(graph);
  pruneDeadNodes(graph);
  out.opsetImport = out.opsetImport.filter((o) => o.domain !== CONTRIB_DOMAIN);
  out.metadataProps = [...out.metadataProps.filter((p) => p.key !== UNFUSED_METADATA_KEY), { key: UNFUSED_METADATA_KEY, value: JSON.stringify(counts) }];
  return out;
}

export { refuse };
