// com.microsoft MultiHeadAttention and Attention as standard ops. Both compute, per head n of N,
//   O_n = softmax(s · Q_n·K_nᵀ) · V_n,   s = `scale` attribute, or 1/√H when absent or 0,
// with Q [B,S,N,H], K [B,L,N,H], V [B,L,N,Hv], output [B,S,N·Hv] (heads concatenated).
// The rewrite computes the probabilities P = Softmax(Mul(MatMul(Q, Kᵀ), s)) as one Softmax node of
// shape [B·N, S, L] (named `<fused node>/Softmax`), as the PyTorch exporter writes diffusers'
// attention, the pattern attention/cross-attention.ts finds:
// for cross-attention K comes from encoder_hidden_states alone, so the maps of an optimized export
// are exposed exactly as those of a plain one.
// MultiHeadAttention inputs (ContribOperators.md): query [B,S,D] with key [B,L,D] and value [B,L,Dv]
// (+ optional bias [D+D+Dv] added to the three projections), or query [B,S,D] with packed key/value
// [B,L,N,2,H] (value absent), or packed query/key/value [B,S,N,3,H] (key and value absent) — the three
// forms onnxruntime's fusion_attention_unet.py writes for SD UNets. Attention: input [B,S,C], weights
// [C, Dq+Dk+Dv] (columns q | k | v; `qkv_hidden_sizes`, else thirds), optional bias.
// Attention's `unidirectional` = 1 (CLIP's causal self-attention, fusion_attention_clip.py) adds, as
// the CPU kernel does (attention_cpu_base.h), mask_filter_value (default −10000) to the scores of
// every key after the query before the Softmax.
// Not rewritten (refused): masks, attention bias, past/present key-value caches, keys in the
// [B,N,L,H] layout, `unidirectional` on MultiHeadAttention, rotary embeddings.
import type { NodeProto } from '../graph/onnx-proto.js';
import { attrFloat, attrInt, attrInts } from '../graph/nodes.js';
import type { TensorInfo } from '../graph/static-shapes.js';
import { need, refuse, refuseInputsFrom, refuseOutputsFrom, type ContribRule, type Inputs, type UnfuseContext } from './rule.js';
import type { Rewriter } from './rewriter.js';

const MHA_INPUTS = ['query', 'key', 'value', 'bias', 'key_padding_mask', 'attention_bias', 'past_key', 'past_value', 'past_sequence_length', 'cache_indirection'];
const MHA_OUTPUTS = ['output', 'present_key', 'present_value', 'qk'];
const ATTENTION_INPUTS = ['input', 'weights', 'bias', 'mask_index', 'past', 'attention_bias', 'past_sequence_length'];
const ATTENTION_OUTPUTS = ['output', 'present'];

function heads(node: NodeProto, causalAllowed = false): number {
  const n = attrInt(node, 'num_heads', 0);
  if (n <= 0) throw refuse(node, 'num_heads is missing');
  if (!causalAllowed && attrInt(node, 'unidirectional', 0) !== 0) throw refuse(node, 'unidirectional (causal) attention');
  return n;
}

/** The per-head widths of a 3-D projection of width `d`. */
function perHead(node: NodeProto, d: number, n: number): number {
  if (d % n !== 0) throw refuse(node, `width ${d} does not split into ${n} heads`);
  return d / n;
}

type MhaForm =
  | { kind: 'packed_qkv'; b: number; s: number; h: number }
  | { kind: 'packed_kv'; b: number; s: number; d: number; h: number }
  | { kind: 'separate'; b: number; s: number; d: number; dv: number };

function mhaForm(node: NodeProto, ins: Inputs): MhaForm {
  const n = heads(node);
  const q = need(node, ins, 0);
  const hasK = Boolean(node.input[1]);
  const hasV = Boolean(node.input[2]);
  if (!hasK && !hasV) {
    if (q.dims.length !== 5 || q.dims[2] !== n || q.dims[3] !== 3) throw refuse(node, 'query alone must be packed as [B,S,N,3,H]');
    return { kind: 'packed_qkv', b: q.dims[0] ?? 1, s: q.dims[1] ?? 1, h: q.dims[4] ?? 1 };
  }
  if (q.dims.length !== 3) throw refuse(node, 'query must be [B,S,D]');
  const d = q.dims[2] ?? 1;
  const k = need(node, ins, 1);
  if (!hasV) {
    if (k.dims.length !== 5 || k.dims[2] !== n || k.dims[3] !== 2) throw refuse(node, 'key without value must be packed as [B,L,N,2,H]');
    return { kind: 'packed_kv', b: q.dims[0] ?? 1, s: q.dims[1] ?? 1, d, h: k.dims[4] ?? 1 };
  }
  const v = need(node, ins, 2);
  if (k.dims.length !== 3 || v.dims.length !== 3) throw refuse(node, 'key and value must be [B,L,D] (the [B,N,L,H] cache layout is not supported)');
  return { kind: 'separate', b: q.dims[0] ?? 1, s: q.dims[1] ?? 1, d, dv: v.dims[2] ?? 1 };
}

/** Static sizes of one attention: batch B, heads N, queries S, keys L, head widths H (q, k) and Hv. */
interface AttentionDims { readonly b: number; readonly n: number; readonly s: number; readonly l: number; readonly h: number; readonly hv: number }

/** softmax(s·Q·Kᵀ)·V per head, heads merged back to [B,S,N·Hv] into `output`. Q [B,N,S,H], K [B,N,L,H],
 *  V [B,N,L,Hv], computed as the PyTorch exporter writes diffusers' attention: on [B·N, ·, ·] with Kᵀ a
 *  Transpose of the last two axes (onnxruntime folds it into the MatMul). */
export function attentionCore(r: Rewriter, node: NodeProto, dtype: number, q: string, k: string, v: string, d: AttentionDims, output: string, causal = false): void {
  const custom = attrFloat(node, 'scale', 0);
  const scale = custom !== 0 ? custom : 1 / Math.sqrt(d.h);
  const bn = d.b * d.n;
  const q3 = r.reshape(q, [bn, d.s, d.h]);
  const kt = r.transpose(r.reshape(k, [bn, d.l, d.h]), [0, 2, 1]);
  let scores = r.op('Mul', [r.op('MatMul', [q3, kt]), r.scalar(scale, dtype)]);
  if (causal) {
    const filter = attrFloat(node, 'mask_filter_value', -10000);
    const mask = Array.from({ length: d.s * d.l }, (_, i) => (i % d.l > Math.floor(i / d.l) ? filter : 0));
    scores = r.op('Add', [scores, r.constant(mask, dtype, [d.s, d.l])]);
  }
  const probs = r.op('Softmax', [scores], { axis: r.opset >= 13 ? -1 : 2 }, undefined, `${r.base}/Softmax`);
  const o = r.op('MatMul', [probs, r.reshape(v, [bn, d.l, d.hv])]);
  r.reshape(r.transpose(r.reshape(o, [d.b, d.n, d.s, d.hv]), [0, 2, 1, 3]), [0, 0, -1], output);
}

/** A packed [B,·,N,P,H] tensor as P tensors [B,N,·,H]: one Transpose to [P,B,N,·,H], then contiguous parts. */
function unpack(r: Rewriter, x: string, parts: number): string[] {
  return r.split(r.transpose(x, [3, 0, 2, 1, 4]), 0, parts).map((p) => r.squeeze(p, [0]));
}

/** [B,S,N·H] as [B,N,S,H]. */
function heads4(r: Rewriter, x: string, n: number, h: number): string {
  return r.transpose(r.reshape(x, [0, 0, n, h]), [0, 2, 1, 3]);
}

export const MULTI_HEAD_ATTENTION: ContribRule = {
  shapes(node, ins) {
    const f = mhaForm(node, ins);
    const dtype = need(node, ins, 0).dtype;
    const n = heads(node);
    const width = f.kind === 'packed_qkv' ? n * f.h : f.kind === 'packed_kv' ? f.d : f.dv;
    return [{ dtype, dims: [f.b, f.s, width] }];
  },
  expand(node, ins, ctx: UnfuseContext) {
    refuseInputsFrom(node, 4, MHA_INPUTS);
    refuseOutputsFrom(node, 1, ctx, MHA_OUTPUTS);
    const { r } = ctx;
    const n = heads(node);
    const f = mhaForm(node, ins);
    const dtype = need(node, ins, 0).dtype;
    const [query, key, value, bias] = node.input as [string, string?, string?, string?];
    const out = node.output[0] as string;
    if (f.kind !== 'separate' && bias) throw refuse(node, 'bias with packed inputs');
    if (f.kind === 'packed_qkv') {
      const [q, k, v] = unpack(r, query, 3) as [string, string, string];
      attentionCore(r, node, dtype, q, k, v, { b: f.b, n, s: f.s, l: f.s, h: f.h, hv: f.h }, out);
      return;
    }
    if (f.kind === 'packed_kv') {
      if (f.d !== n * f.h) throw refuse(node, 'query width differs from the packed key width');
      const [k, v] = unpack(r, key as string, 2) as [string, string];
      const l = need(node, ins, 1).dims[1] ?? 1;
      attentionCore(r, node, dtype, heads4(r, query, n, f.h), k, v, { b: f.b, n, s: f.s, l, h: f.h, hv: f.h }, out);
      return;
    }
    const dk = (need(node, ins, 1).dims[2] ?? 1);
    if (dk !== f.d) throw refuse(node, 'query and key widths differ');
    let [q, k, v] = [query, key as string, value as string];
    if (bias) {
      const b = need(node, ins, 3);
      if (b.dims.length !== 1 || b.dims[0] !== 2 * f.d + f.dv) throw refuse(node, 'bias must be [D+D+Dv]');
      const part = (start: number, end: number): string => r.op('Slice', [bias, r.ints([start]), r.ints([end]), r.ints([0])]);
      q = r.op('Add', [q, part(0, f.d)]);
      k = r.op('Add', [k, part(f.d, 2 * f.d)]);
      v = r.op('Add', [v, part(2 * f.d, 2 * f.d + f.dv)]);
    }
    const h = perHead(node, f.d, n);
    const hv = perHead(node, f.dv, n);
    const l = need(node, ins, 1).dims[1] ?? 1;
    attentionCore(r, node, dtype, heads4(r, q, n, h), heads4(r, k, n, h), heads4(r, v, n, hv), { b: f.b, n, s: f.s, l, h, hv }, out);
  },
};

function attentionWidths(node: NodeProto, ins: Inputs): [number, number, number] {
  const w = need(node, ins, 1);
  if (w.dims.length !== 2) throw refuse(node, 'weights must be [C, Dq+Dk+Dv]');
  const sizes = attrInts(node, 'qkv_hidden_sizes');
  const total = w.dims[1] ?? 0;
  const widths = (sizes && sizes.length === 3 ? sizes : [total / 3, total / 3, total / 3]) as [number, number, number];
  if (widths.some((x) => !Number.isInteger(x) || x <= 0) || widths[0] + widths[1] + widths[2] !== total) throw refuse(node, 'qkv_hidden_sizes do not match the weights');
  if (widths[0] !== widths[1]) throw refuse(node, 'query and key widths differ');
  return widths;
}

export const ATTENTION: ContribRule = {
  shapes(node, ins) {
    heads(node, true);
    const x = need(node, ins, 0);
    if (x.dims.length !== 3) throw refuse(node, 'input must be [B,S,C]');
    const [, , dv] = attentionWidths(node, ins);
    const out: TensorInfo = { dtype: x.dtype, dims: [x.dims[0] ?? 1, x.dims[1] ?? 1, dv] };
    return [out];
  },
  expand(node, ins, ctx) {
    refuseInputsFrom(node, 3, ATTENTION_INPUTS);
    refuseOutputsFrom(node, 1, ctx, ATTENTION_OUTPUTS);
    if (attrInt(node, 'do_rotary', 0) !== 0) throw refuse(node, 'rotary embeddings');
    const { r } = ctx;
    const n = heads(node, true);
    const x = need(node, ins, 0);
    const [dq, dk, dv] = attentionWidths(node, ins);
    const [input, weights, bias] = node.input as [string, string, string?];
    let qkv = r.op('MatMul', [input, weights]);
    if (bias) qkv = r.op('Add', [qkv, bias]);
    const sizes = [dq, dk, dv];
    const outs = [r.fresh('q'), r.fresh('k'), r.fresh('v')];
    const [q, k, v] = (r.opset >= 13
      ? r.opN('Split', [qkv, r.ints(sizes)], { axis: 2 }, outs)
      : r.opN('Split', [qkv], { axis: 2, split: sizes }, outs)) as [string, string, string];
    const h = perHead(node, dq, n);
    const hv = perHead(node, dv, n);
    const [b = 1, s = 1] = x.dims;
    attentionCore(r, node, x.dtype, heads4(r, q, n, h), heads4(r, k, n, h), heads4(r, v, n, hv), { b, n, s, l: s, h, hv }, node.output[0] as string, attrInt(node, 'unidirectional', 0) === 1);
  },
};
