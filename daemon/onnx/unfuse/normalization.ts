// com.microsoft GroupNorm, SkipGroupNorm and SkipLayerNormalization as standard ops.
//   GroupNorm:  y = act(γ_c · (x − μ_g)/√(σ²_g + ε) + β_c), μ_g, σ²_g (biased) over the C/G channels of
//               group g and all H·W positions; act = SiLU (x·σ(x)) when `activation` = 1; X is
//               [N,H,W,C] when `channels_last` = 1 (its default), else [N,C,H,W]; γ, β [C].
//   SkipGroupNorm: s = x + skip (+ bias); y = GroupNorm(s); optional output S = s. skip is
//               [N,H,W,C], [N,1,1,C] or [N,C] (channels last).
//   SkipLayerNormalization: s = input + skip (+ bias); y = γ·(s − E[s])/√(Var[s] + ε) + β over the
//               last axis; optional output 3 = s (outputs 1 and 2, the statistics, are refused when read).
// The group norm is written as the PyTorch exporter writes torch.nn.GroupNorm (Reshape [N,G,−1] →
// InstanceNormalization(1, 0, ε) → Reshape → γ·+β), in NCHW between two Transposes when channels last;
// the Transposes then cancel against those onnxruntime's fusion put around the node (transpose-pairs.ts).
import type { NodeProto } from '../graph/onnx-proto.js';
import { attrFloat, attrInt } from '../graph/nodes.js';
import { need, refuse, refuseOutputsFrom, type ContribRule, type Inputs } from './rule.js';
import type { Rewriter } from './rewriter.js';

interface GroupNormAttrs {
  readonly eps: number;
  readonly groups: number;
  readonly silu: boolean;
  readonly channelsLast: boolean;
}

function groupNormAttrs(node: NodeProto, x: readonly number[]): GroupNormAttrs {
  const groups = attrInt(node, 'groups', 0);
  // `swish` is the attribute's name in the first version of the fusion script.
  const activation = attrInt(node, 'activation', attrInt(node, 'swish', 0));
  const channelsLast = attrInt(node, 'channels_last', 1) === 1;
  if (x.length !== 4) throw refuse(node, 'input must be 4-D');
  const c = (channelsLast ? x[3] : x[1]) ?? 0;
  if (groups <= 0 || c % groups !== 0) throw refuse(node, `groups ${groups} does not divide ${c} channels`);
  if (activation !== 0 && activation !== 1) throw refuse(node, `activation ${activation}`);
  return { eps: attrFloat(node, 'epsilon', 1e-5), groups, silu: activation === 1, channelsLast };
}

/** GroupNorm of `x` (layout per `a`) into `output`. */
function groupNorm(r: Rewriter, x: string, dims: readonly number[], dtype: number, gamma: string, beta: string, a: GroupNormAttrs, output: string): void {
  const nchw = a.channelsLast ? [dims[0], dims[3], dims[1], dims[2]] as number[] : [...dims];
  const c = nchw[1] as number;
  const xin = a.channelsLast ? r.transpose(x, [0, 3, 1, 2]) : x;
  const grouped = r.reshape(xin, [0, a.groups, -1]);
  const ones = r.constant(new Array<number>(a.groups).fill(1), dtype, [a.groups]);
  const zeros = r.constant(new Array<number>(a.groups).fill(0), dtype, [a.groups]);
  const normed = r.op('InstanceNormalization', [grouped, ones, zeros], { epsilon: { float: a.eps } });
  const back = r.reshape(normed, nchw);
  let y = r.op('Add', [r.op('Mul', [back, r.reshape(gamma, [c, 1, 1])]), r.reshape(beta, [c, 1, 1])]);
  if (a.silu) y = r.op('Mul', [y, r.op('Sigmoid', [y])]);
  if (a.channelsLast) r.transpose(y, [0, 2, 3, 1], output);
  else r.op('Identity', [y], {}, output);
}

export const GROUP_NORM: ContribRule = {
  shapes(node, ins) {
    const x = need(node, ins, 0);
    groupNormAttrs(node, x.dims);
    return [{ dtype: x.dtype, dims: x.dims }];
  },
  expand(node, ins, { r }) {
    const x = need(node, ins, 0);
    const a = groupNormAttrs(node, x.dims);
    need(node, ins, 1);
    need(node, ins, 2);
    groupNorm(r, node.input[0] as string, x.dims, x.dtype, node.input[1] as string, node.input[2] as string, a, node.output[0] as string);
  },
};

function skipSum(r: Rewriter, node: NodeProto, ins: Inputs, channelsLast: boolean, output?: string): string {
  const skip = need(node, ins, 3);
  let s = node.input[3] as string;
  if (skip.dims.length === 2) s = r.reshape(s, channelsLast ? [0, 1, 1, -1] : [0, -1, 1, 1]);
  else if (skip.dims.length !== 4) throw refuse(node, 'skip must be 4-D or [N,C]');
  const sum = r.op('Add', [node.input[0] as string, s], {}, node.input[4] ? undefined : output);
  return node.input[4] ? r.op('Add', [sum, node.input[4]], {}, output) : sum;
}

export const SKIP_GROUP_NORM: ContribRule = {
  shapes(node, ins) {
    const x = need(node, ins, 0);
    groupNormAttrs(node, x.dims);
    return [{ dtype: x.dtype, dims: x.dims }, { dtype: x.dtype, dims: x.dims }];
  },
  expand(node, ins, ctx) {
    const x = need(node, ins, 0);
    const a = groupNormAttrs(node, x.dims);
    const s = skipSum(ctx.r, node, ins, a.channelsLast, node.output[1] || undefined);
    groupNorm(ctx.r, s, x.dims, x.dtype, node.input[1] as string, node.input[2] as string, a, node.output[0] as string);
  },
};

const SKIP_LN_OUTPUTS = ['output', 'mean', 'inv_std_var', 'input_skip_bias_sum'];

export const SKIP_LAYER_NORMALIZATION: ContribRule = {
  shapes(node, ins) {
    const x = need(node, ins, 0);
    need(node, ins, 1);
    const stat = x.dims.map((d, i) => (i < x.dims.length - 1 ? d : 1));
    return [{ dtype: x.dtype, dims: x.dims }, { dtype: x.dtype, dims: stat }, { dtype: x.dtype, dims: stat }, { dtype: x.dtype, dims: x.dims }];
  },
  expand(node, ins, ctx) {
    const { r } = ctx;
    const x = need(node, ins, 0);
    need(node, ins, 2);
    refuseOutputsFrom(node, 1, { ...ctx, used: (o) => o !== node.output[3] && ctx.used(o) }, SKIP_LN_OUTPUTS);
    const eps = attrFloat(node, 'epsilon', 1e-5);
    const [input, skip, gamma, beta, bias] = node.input as [string, string, string, string?, string?];
    const sumName = node.output[3] || undefined;
    let s = r.op('Add', [input, skip], {}, bias ? undefined : sumName);
    if (bias) s = r.op('Add', [s, bias], {}, sumName);
    const out = node.output[0] as string;
    if (r.opset >= 17) {
      r.op('LayerNormalization', beta ? [s, gamma, beta] : [s, gamma], { axis: -1, epsilon: { float: eps } }, out);
      return;
    }
    const centered = r.op('Sub', [s, r.reduceMean(s, [-1])]);
    const variance = r.reduceMean(r.op('Pow', [centered, r.scalar(2, x.dtype)]), [-1]);
    const normed = r.op('Div', [centered, r.op('Sqrt', [r.op('Add', [variance, r.scalar(eps, x.dtype)])])]);
    const scaled = r.op('Mul', [normed, gamma], {}, beta ? undefined : out);
    if (beta) r.op('Add', [scaled, beta], {}, out);
  },
};
