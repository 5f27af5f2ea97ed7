// Neural-network layers written as ONNX subgraphs in the two exporters' patterns, shared by the tiny
// text encoder, UNet and VAE. `opset14` mirrors diffusers' conversion script (torch.onnx at opset 14:
// LayerNorm decomposed into ReduceMean/Sub/Pow/Sqrt/Div, 2-D linears as MatMul+Add); `opset17` mirrors
// optimum (fused LayerNormalization, 2-D linears as Gemm). Both write GroupNorm as torch does
// (Reshape → InstanceNormalization → Reshape → Mul → Add), GELU through Erf, and reshapes whose target
// shapes come from Shape → Gather → Unsqueeze → Concat subgraphs, so the graphs keep dynamic batch and
// spatial sizes and leave those subgraphs to constant folding. Parameters are named like the PyTorch
// modules (`<module path>.weight`); weight scales are 1/√fan_in so activations stay O(1) at random init.
import { GraphBuilder, attr } from '../graph/builder.js';
import type { WriteOptions } from '../graph/builder.js';
import { DataType } from '../graph/onnx-proto.js';
import type { TensorFields } from '../graph/onnx-proto.js';

export type Flavour = 'opset14' | 'opset17';

export const FLAVOURS = Object.freeze({
  opset14: Object.freeze({ opsetVersion: 14, fusedLayerNorm: false, gemm: false }),
  opset17: Object.freeze({ opsetVersion: 17, fusedLayerNorm: true, gemm: true }),
} as const);

/** What every component writer takes: the weights seed, the flavour, and how to store weights. */
export interface WriteComponentOptions extends WriteOptions {
  readonly seed: number;
  readonly flavour: Flavour;
}

export const LAYER_DEFAULTS = Object.freeze({
  /** std of random biases. */
  biasStd: 0.02,
  /** Norm scales are N(1, normScaleStd²) and shifts N(0, biasStd²): not the identity, so consumers of
   *  the graphs (gradients, attention maps) see every parameter matter. */
  normScaleStd: 0.05,
});

export interface LinearOptions {
  readonly bias?: boolean;
  /** Scale of the weights relative to 1/√fan_in (default 1). */
  readonly gain?: number;
}

export interface ConvOptions {
  readonly kernel?: number;
  readonly stride?: number;
  /** [top, left, bottom, right]; default: `kernel >> 1` on every side. */
  readonly pads?: readonly [number, number, number, number];
  readonly gain?: number;
}

export interface AttentionOptions {
  readonly heads: number;
  /** Width of the query input (and of the output). */
  readonly dim: number;
  /** Width of the key/value input; `dim` for self-attention. */
  readonly contextDim: number;
  /** q/k/v projection biases (CLIP has them, the UNet does not). */
  readonly qkvBias: boolean;
  /** Module names of the projections (diffusers: to_q…to_out.0; CLIP: q_proj…out_proj). */
  readonly names: { readonly q: string; readonly k: string; readonly v: string; readonly out: string };
  /** Added to the scores before Softmax (broadcast over [B·heads, N, M]), e.g. a causal mask. */
  readonly mask?: string;
}

export class Layers {
  readonly b: GraphBuilder;
  readonly flavour: Flavour;
  private readonly fusedLayerNorm: boolean;
  private readonly gemm: boolean;

  constructor(b: GraphBuilder, flavour: Flavour) {
    this.b = b;
    this.flavour = flavour;
    this.fusedLayerNorm = FLAVOURS[flavour].fusedLayerNorm;
    this.gemm = FLAVOURS[flavour].gemm;
  }

  scope<T>(segment: string, fn: () => T): T {
    return this.b.scope(segment, fn);
  }

  /** y = x·W + b over the last axis; W [in,out] (MatMul), for any rank of x. */
  linear(module: string, x: string, inF: number, outF: number, options: LinearOptions = {}): string {
    const b = this.b;
    return b.scope(module, () => {
      const w = b.param('weight', [inF, outF], { kind: 'normal', std: (options.gain ?? 1) / Math.sqrt(inF) });
      const y = b.op('MatMul', [x, w]);
      if (options.bias === false) return y;
      const bias = b.param('bias', [outF], { kind: 'normal', std: LAYER_DEFAULTS.biasStd });
      return b.op('Add', [y, bias]);
    });
  }

  /** A linear on a 2-D input [B, in]: Gemm(x, W [out,in], b, transB=1) in the opset17 flavour (as
   *  torch exports nn.Linear on matrices), MatMul + Add in the opset14 flavour. */
  linear2d(module: string, x: string, inF: number, outF: number): string {
    if (!this.gemm) return this.linear(module, x, inF, outF);
    const b = this.b;
    return b.scope(module, () => {
      const w = b.param('weight', [outF, inF], { kind: 'normal', std: 1 / Math.sqrt(inF) });
      const bias = b.param('bias', [outF], { kind: 'normal', std: LAYER_DEFAULTS.biasStd });
      return b.op('Gemm', [x, w, bias], { alpha: attr.f(1), beta: attr.f(1), transB: attr.i(1) });
    });
  }

  /** 2-D convolution, W [cout, cin, k, k], with bias. */
  conv(module: string, x: string, cin: number, cout: number, options: ConvOptions = {}): string {
    const b = this.b;
    const k = options.kernel ?? 3;
    const s = options.stride ?? 1;
    const p = options.pads ?? [k >> 1, k >> 1, k >> 1, k >> 1];
    return b.scope(module, () => {
      const w = b.param('weight', [cout, cin, k, k], { kind: 'normal', std: (options.gain ?? 1) / Math.sqrt(cin * k * k) });
      const bias = b.param('bias', [cout], { kind: 'normal', std: LAYER_DEFAULTS.biasStd });
      return b.op('Conv', [x, w, bias], {
        dilations: attr.ints([1, 1]),
        group: attr.i(1),
        kernel_shape: attr.ints([k, k]),
        pads: attr.ints(p),
        strides: attr.ints([s, s]),
      });
    });
  }

  /** diffusers' Upsample2D as exported: nearest Resize ×2 (scales input, asymmetric, floor), then a
   *  3×3 conv, in scope `upsamplers.0`. */
  upsample(x: string, channels: number): string {
    const b = this.b;
    return b.scope('upsamplers.0', () => {
      const up = b.op('Resize', [x, '', b.constFloat([1, 1, 2, 2], [4])], {
        coordinate_transformation_mode: attr.s('asymmetric'),
        cubic_coeff_a: attr.f(-0.75),
        mode: attr.s('nearest'),
        nearest_mode: attr.s('floor'),
      });
      return this.conv('conv', up, channels, channels);
    });
  }

  /**
   * GroupNorm over x [B,C,H,W] with G groups, as torch exports it: Reshape to [B,G,C/G·H·W],
   * InstanceNormalization (unit scale, zero shift), Reshape back to Shape(x), then γ [C,1,1] ⊙ · + β.
   */
  groupNorm(module: string, x: string, channels: number, groups: number, eps: number): string {
    const b = this.b;
    if (channels % groups !== 0) throw new RangeError(`GroupNorm: ${channels} channels do not split into ${groups} groups`);
    return b.scope(module, () => {
      const grouped = b.op('Reshape', [x, b.constInt64([0, groups, -1])]);
      const ones = b.anonymous('InstanceNormalization', [groups], { kind: 'constant', value: 1 });
      const zeros = b.anonymous('InstanceNormalization', [groups], { kind: 'constant', value: 0 });
      const normed = b.op('InstanceNormalization', [grouped, ones, zeros], { epsilon: attr.f(eps) });
      const back = b.op('Reshape', [normed, b.op('Shape', [x])]);
      const gamma = b.param('weight', [channels, 1, 1], { kind: 'normal', mean: 1, std: LAYER_DEFAULTS.normScaleStd });
      const beta = b.param('bias', [channels, 1, 1], { kind: 'normal', std: LAYER_DEFAULTS.biasStd });
      return b.op('Add', [b.op('Mul', [back, gamma]), beta]);
    });
  }

  /**
   * LayerNorm over the last axis: y = (x − E[x]) / √(Var[x] + ε) · γ + β. opset17: one
   * LayerNormalization node; opset14: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add.
   */
  layerNorm(module: string, x: string, dim: number, eps: number): string {
    const b = this.b;
    return b.scope(module, () => {
      const gamma = b.param('weight', [dim], { kind: 'normal', mean: 1, std: LAYER_DEFAULTS.normScaleStd });
      const beta = b.param('bias', [dim], { kind: 'normal', std: LAYER_DEFAULTS.biasStd });
      if (this.fusedLayerNorm) {
        return b.op('LayerNormalization', [x, gamma, beta], { axis: attr.i(-1), epsilon: attr.f(eps) });
      }
      const mean = b.op('ReduceMean', [x], { axes: attr.ints([-1]), keepdims: attr.i(1) });
      const centered = b.op('Sub', [x, mean]);
      const sq = b.op('Pow', [centered, b.constFloat([2])]);
      const variance = b.op('ReduceMean', [sq], { axes: attr.ints([-1]), keepdims: attr.i(1) });
      const std = b.op('Sqrt', [b.op('Add', [variance, b.constFloat([eps])])]);
      const normed = b.op('Div', [centered, std]);
      return b.op('Add', [b.op('Mul', [normed, gamma]), beta]);
    });
  }

  /** SiLU(x) = x·σ(x). */
  silu(x: string): string {
    return this.b.op('Mul', [x, this.b.op('Sigmoid', [x])]);
  }

  /** GELU(x) = x·½(1 + erf(x/√2)), the exact form (torch exports it through Erf). */
  gelu(x: string): string {
    const b = this.b;
    const e = b.op('Erf', [b.op('Div', [x, b.constFloat([Math.SQRT2])])]);
    return b.op('Mul', [b.op('Mul', [x, b.op('Add', [e, b.constFloat([1])])]), b.constFloat([0.5])]);
  }

  /** QuickGELU(x) = x·σ(1.702·x) (CLIP's activation). */
  quickGelu(x: string): string {
    const b = this.b;
    return b.op('Mul', [x, b.op('Sigmoid', [b.op('Mul', [x, b.constFloat([1.702])])])]);
  }

  /** Dimension `axis` of x as an int64 [1] tensor: Shape → Gather(scalar index) → Unsqueeze. */
  dim(x: string, axis: number): string {
    const b = this.b;
    const d = b.op('Gather', [b.op('Shape', [x]), b.op('Constant', [], { value: attr.t(int64Scalar(axis)) })], { axis: attr.i(0) });
    return this.unsqueeze0(d);
  }

  /** A scalar → [1] (Unsqueeze with axes given as an input, opset ≥ 13). */
  unsqueeze0(scalar: string): string {
    return this.b.op('Unsqueeze', [scalar, this.b.constInt64([0])]);
  }

  /** Concat of [1]-shaped int64 pieces into a shape vector. */
  shapeOf(pieces: readonly string[]): string {
    return this.b.op('Concat', [...pieces], { axis: attr.i(0) });
  }

  /**
   * Multi-head attention, split into heads as diffusers' `head_to_batch_dim` (and CLIP) export it:
   *   q = x·Wq, k = c·Wk, v = c·Wv                                [B,N,C], [B,M,C], [B,M,C]
   *   split(t): Reshape [B,N,heads,dh] → Transpose(0,2,1,3) → Reshape [B·heads,N,dh]
   *   P = Softmax(q·kᵀ · dh^(−½) (+ mask))                          [B·heads, N, M]
   *   o = P·v → Reshape [B,heads,N,dh] → Transpose(0,2,1,3) → Reshape [B,N,C] → out projection.
   * The Softmax node is named `<scope>/Softmax` (e.g. `/down_blocks.0/attentions.0/transformer_blocks.0/attn2/Softmax`).
   */
  attention(x: string, context: string, o: AttentionOptions): string {
    const b = this.b;
    const dh = o.dim / o.heads;
    if (!Number.isInteger(dh)) throw new RangeError(`attention: width ${o.dim} does not split into ${o.heads} heads`);
    const bias = o.qkvBias;
    const q = this.linear(o.names.q, x, o.dim, o.dim, { bias });
    const k = this.linear(o.names.k, context, o.contextDim, o.dim, { bias });
    const v = this.linear(o.names.v, context, o.contextDim, o.dim, { bias });
    const heads = b.constInt64([o.heads]);
    const headDim = b.constInt64([dh]);
    const split = (t: string): string => {
      const batch = this.dim(t, 0);
      const seq = this.dim(t, 1);
      const four = b.op('Reshape', [t, this.shapeOf([batch, seq, heads, headDim])]);
      const perm = b.op('Transpose', [four], { perm: attr.ints([0, 2, 1, 3]) });
      const bh = b.op('Mul', [batch, heads]);
      return b.op('Reshape', [perm, this.shapeOf([bh, seq, headDim])]);
    };
    const qh = split(q);
    const kh = split(k);
    const vh = split(v);
    const kt = b.op('Transpose', [kh], { perm: attr.ints([0, 2, 1]) });
    let scores = b.op('Mul', [b.op('MatMul', [qh, kt]), b.constFloat([1 / Math.sqrt(dh)])]);
    if (o.mask) scores = b.op('Add', [scores, o.mask]);
    const probs = b.op('Softmax', [scores], { axis: attr.i(-1) });
    const ctx = b.op('MatMul', [probs, vh]);
    // batch_to_head_dim: [B·heads, N, dh] → [B, N, C].
    const bhDim = this.dim(ctx, 0);
    const nDim = this.dim(ctx, 1);
    const batch = b.op('Div', [bhDim, heads]);
    const four = b.op('Reshape', [ctx, this.shapeOf([batch, heads, nDim, headDim])]);
    const perm = b.op('Transpose', [four], { perm: attr.ints([0, 2, 1, 3]) });
    const merged = b.op('Reshape', [perm, this.shapeOf([batch, nDim, b.constInt64([o.dim])])]);
    return this.linear(o.names.out, merged, o.dim, o.dim);
  }
}

function int64Scalar(v: number): TensorFields {
  return { dataType: DataType.INT64, dims: [], rawData: new Uint8Array(BigInt64Array.of(BigInt(v)).buffer) };
}
