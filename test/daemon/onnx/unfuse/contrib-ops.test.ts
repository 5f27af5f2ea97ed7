// Each com.microsoft op's unfused twin against (1) a float64 evaluation of the op's documented
// semantics written here (ContribOperators.md; see daemon/onnx/unfuse/*.ts), and (2) onnxruntime's own
// CPU kernel where onnxruntime-node has one. Where it has none, the test pins that fact (the session
// refuses the fused graph), which is why prepare rewrites these ops even for the forward roles.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { P2pzError } from '../../../../shared/protocol/errors.js';
import { encodeModel } from '../../../../daemon/onnx/graph/model-io.js';
import { DataType, type ModelProto, type TensorProto } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { makeGraph, makeModel, makeNode, makeTensor, valueInfo, type AttrValue } from '../../../../daemon/onnx/graph/nodes.js';
import { numel } from '../../../../daemon/onnx/graph/static-shapes.js';
import { unfuseContribOps, UNFUSED_METADATA_KEY } from '../../../../daemon/onnx/unfuse/unfuse.js';
import { uniform } from '../autodiff/op-harness.js';

interface In { readonly name: string; readonly dims: readonly number[]; readonly constant?: boolean; readonly values?: readonly number[] }

interface Case {
  readonly op: string;
  readonly inputs: readonly (In | null)[];
  readonly attrs?: Record<string, AttrValue>;
  readonly outDims: readonly number[];
  readonly opset?: number;
  /** Extra outputs (names) the node writes and the graph exposes. */
  readonly extraOutputs?: readonly { readonly index: number; readonly dims: readonly number[] }[];
  /** float64 reference of output 0 (and the extra outputs, in order) from the input values. */
  readonly reference: (v: Record<string, number[]>) => number[][];
  /** onnxruntime-node's CPU provider: runs the op (`yes`), has no kernel (`no`: the session refuses
   *  the graph), or has a kernel that refuses this input form when run (`not-this-form`). */
  readonly cpu: 'yes' | 'no' | 'not-this-form';
}

function build(c: Case, values: Record<string, number[]>): ModelProto {
  const present = c.inputs.filter((i): i is In => i !== null);
  const inits: TensorProto[] = present.filter((i) => i.constant).map((i) => makeTensor(i.name, DataType.FLOAT, i.dims, values[i.name] ?? []));
  const outs = ['Y'];
  for (const e of c.extraOutputs ?? []) outs[e.index] = `Y${e.index}`;
  const names = Array.from({ length: outs.length }, (_, k) => outs[k] ?? '');
  const node = makeNode(c.op, c.inputs.map((i) => i?.name ?? ''), names, `fused/${c.op}`, c.attrs ?? {});
  node.domain = 'com.microsoft';
  return makeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: c.opset ?? 17 }, { domain: 'com.microsoft', version: 1 }],
    graph: makeGraph({
      name: 'op',
      node: [node],
      initializer: inits,
      input: present.filter((i) => !i.constant).map((i) => valueInfo(i.name, DataType.FLOAT, i.dims)),
      output: [valueInfo('Y', DataType.FLOAT, c.outDims), ...(c.extraOutputs ?? []).map((e) => valueInfo(`Y${e.index}`, DataType.FLOAT, e.dims))],
    }),
  });
}

async function run(model: ModelProto, c: Case, values: Record<string, number[]>): Promise<Float32Array[]> {
  const session = await ort.InferenceSession.create(encodeModel(model), { executionProviders: ['cpu'] });
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of c.inputs) if (i && !i.constant) feeds[i.name] = new ort.Tensor('float32', Float32Array.from(values[i.name] ?? []), [...i.dims]);
  const out = await session.run(feeds);
  await session.release();
  return session.outputNames.map((n) => out[n]?.data as Float32Array);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return m;
}

// --- float64 references -------------------------------------------------------------------------

/** erf by its Maclaurin series (|x| ≤ 4 here: float64 keeps ~1e-10). */
function erf(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const gelu = (x: number): number => 0.5 * x * (1 + erf(x / Math.SQRT2));
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/** softmax(scale·q·kᵀ)·v per head; q(b,s,n,h), k(b,l,n,h), v(b,l,n,h) accessors; out [B,S,N·Hv]. */
function mha(B: number, S: number, L: number, N: number, H: number, Hv: number, scale: number,
  q: (b: number, s: number, n: number, h: number) => number, k: (b: number, l: number, n: number, h: number) => number,
  v: (b: number, l: number, n: number, h: number) => number, causal = false): number[] {
  const out = new Array<number>(B * S * N * Hv).fill(0);
  for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) {
    const logits = Array.from({ length: L }, (_, l) => {
      let d = 0;
      for (let h = 0; h < H; h++) d += q(b, s, n, h) * k(b, l, n, h);
      return causal && l > s ? -Infinity : d * scale;
    });
    const mx = Math.max(...logits);
    const e = logits.map((x) => Math.exp(x - mx));
    const z = e.reduce((a, x) => a + x, 0);
    for (let j = 0; j < Hv; j++) {
      let acc = 0;
      for (let l = 0; l < L; l++) acc += ((e[l] ?? 0) / z) * v(b, l, n, j);
      out[((b * S + s) * N + n) * Hv + j] = acc;
    }
  }
  return out;
}

/** GroupNorm over x NHWC [N,H,W,C] (or NCHW) with G groups, γ, β, optional SiLU. */
function groupNorm(x: number[], dims: readonly number[], channelsLast: boolean, G: number, gamma: number[], beta: number[], eps: number, silu: boolean): number[] {
  const [Nb, A, Bd, Cd] = dims as [number, number, number, number];
  const C = channelsLast ? Cd : A;
  const HW = channelsLast ? A * Bd : Bd * Cd;
  const at = (n: number, c: number, p: number): number => (channelsLast ? (n * HW + p) * C + c : (n * C + c) * HW + p);
  const y = new Array<number>(x.length).fill(0);
  const per = C / G;
  for (let n = 0; n < Nb; n++) for (let g = 0; g < G; g++) {
    let mean = 0;
    for (let c = g * per; c < (g + 1) * per; c++) for (let p = 0; p < HW; p++) mean += x[at(n, c, p)] ?? 0;
    mean /= per * HW;
    let variance = 0;
    for (let c = g * per; c < (g + 1) * per; c++) for (let p = 0; p < HW; p++) variance += ((x[at(n, c, p)] ?? 0) - mean) ** 2;
    variance /= per * HW;
    for (let c = g * per; c < (g + 1) * per; c++) for (let p = 0; p < HW; p++) {
      const v = ((gamma[c] ?? 0) * ((x[at(n, c, p)] ?? 0) - mean)) / Math.sqrt(variance + eps) + (beta[c] ?? 0);
      y[at(n, c, p)] = silu ? v * sigmoid(v) : v;
    }
  }
  return y;
}

function layerNorm(s: number[], width: number, gamma: number[], beta: number[] | undefined, eps: number): number[] {
  const y = new Array<number>(s.length).fill(0);
  for (let r = 0; r < s.length / width; r++) {
    const row = s.slice(r * width, (r + 1) * width);
    const mean = row.reduce((a, x) => a + x, 0) / width;
    const variance = row.reduce((a, x) => a + (x - mean) ** 2, 0) / width;
    row.forEach((x, j) => { y[r * width + j] = ((gamma[j] ?? 0) * (x - mean)) / Math.sqrt(variance + eps) + (beta?.[j] ?? 0); });
  }
  return y;
}

const at = (v: number[], dims: readonly number[]) => (...idx: number[]): number => {
  let off = 0;
  for (let i = 0; i < dims.length; i++) off = off * (dims[i] ?? 1) + (idx[i] ?? 0);
  return v[off] ?? 0;
};

// --- cases --------------------------------------------------------------------------------------

const B = 2; const S = 6; const L = 5; const N = 2; const H = 4; const D = N * H;

/** Attention's float64 reference: Q, K and V projected from x by one packed weight [D, 3·D] and bias,
 *  then multi-head attention (masked to earlier keys when `causal`). */
function packedAttention(x: Record<string, number[]>, causal: boolean): number[][] {
  const X = at(x.x ?? [], [B, S, D]); const W = at(x.w ?? [], [D, 3 * D]); const bias = x.bias ?? [];
  const proj = (part: number) => (b: number, s: number, n: number, h: number): number => {
    let acc = bias[part * D + n * H + h] ?? 0;
    for (let c = 0; c < D; c++) acc += X(b, s, c) * W(c, part * D + n * H + h);
    return acc;
  };
  return [mha(B, S, S, N, H, H, 1 / Math.sqrt(H), proj(0), proj(1), proj(2), causal)];
}

const CASES: Record<string, Case> = {
  'MultiHeadAttention, separate q/k/v with bias (cross-attention)': {
    op: 'MultiHeadAttention', attrs: { num_heads: N }, cpu: 'yes', outDims: [B, S, D],
    inputs: [{ name: 'q', dims: [B, S, D] }, { name: 'k', dims: [B, L, D] }, { name: 'v', dims: [B, L, D] }, { name: 'bias', dims: [3 * D], constant: true }],
    reference: (x) => {
      const b = x.bias ?? [];
      const q = at(x.q ?? [], [B, S, N, H]); const k = at(x.k ?? [], [B, L, N, H]); const v = at(x.v ?? [], [B, L, N, H]);
      return [mha(B, S, L, N, H, H, 1 / Math.sqrt(H),
        (bb, s, n, h) => q(bb, s, n, h) + (b[n * H + h] ?? 0), (bb, l, n, h) => k(bb, l, n, h) + (b[D + n * H + h] ?? 0),
        (bb, l, n, h) => v(bb, l, n, h) + (b[2 * D + n * H + h] ?? 0))];
    },
  },
  'MultiHeadAttention, packed key/value [B,L,N,2,H] (ORT SD cross-attention)': {
    op: 'MultiHeadAttention', attrs: { num_heads: N }, cpu: 'not-this-form', outDims: [B, S, D],
    inputs: [{ name: 'q', dims: [B, S, D] }, { name: 'kv', dims: [B, L, N, 2, H] }],
    reference: (x) => {
      const q = at(x.q ?? [], [B, S, N, H]); const kv = at(x.kv ?? [], [B, L, N, 2, H]);
      return [mha(B, S, L, N, H, H, 1 / Math.sqrt(H), q, (b, l, n, h) => kv(b, l, n, 0, h), (b, l, n, h) => kv(b, l, n, 1, h))];
    },
  },
  'MultiHeadAttention, packed q/k/v [B,S,N,3,H] with a custom scale (ORT SD self-attention)': {
    op: 'MultiHeadAttention', attrs: { num_heads: N, scale: { float: 0.3 } }, cpu: 'not-this-form', outDims: [B, S, D],
    inputs: [{ name: 'qkv', dims: [B, S, N, 3, H] }],
    reference: (x) => {
      const p = at(x.qkv ?? [], [B, S, N, 3, H]);
      return [mha(B, S, S, N, H, H, Math.fround(0.3), (b, s, n, h) => p(b, s, n, 0, h), (b, s, n, h) => p(b, s, n, 1, h), (b, s, n, h) => p(b, s, n, 2, h))];
    },
  },
  'Attention (fused self-attention projections)': {
    op: 'Attention', attrs: { num_heads: N }, cpu: 'yes', outDims: [B, S, D],
    inputs: [{ name: 'x', dims: [B, S, D] }, { name: 'w', dims: [D, 3 * D], constant: true }, { name: 'bias', dims: [3 * D], constant: true }],
    reference: (x) => packedAttention(x, false),
  },
  'Attention, unidirectional (CLIP\'s causal self-attention)': {
    op: 'Attention', attrs: { num_heads: N, unidirectional: 1 }, cpu: 'yes', outDims: [B, S, D],
    inputs: [{ name: 'x', dims: [B, S, D] }, { name: 'w', dims: [D, 3 * D], constant: true }, { name: 'bias', dims: [3 * D], constant: true }],
    reference: (x) => packedAttention(x, true),
  },
  'GroupNorm, NHWC with SiLU': {
    op: 'GroupNorm', attrs: { groups: 2, activation: 1, epsilon: { float: 1e-5 } }, cpu: 'no', outDims: [B, 3, 4, 8],
    inputs: [{ name: 'x', dims: [B, 3, 4, 8] }, { name: 'gamma', dims: [8], constant: true }, { name: 'beta', dims: [8], constant: true }],
    reference: (x) => [groupNorm(x.x ?? [], [B, 3, 4, 8], true, 2, x.gamma ?? [], x.beta ?? [], 1e-5, true)],
  },
  'GroupNorm, NCHW without activation': {
    op: 'GroupNorm', attrs: { groups: 4, activation: 0, channels_last: 0, epsilon: { float: 1e-6 } }, cpu: 'no', outDims: [B, 8, 3, 4],
    inputs: [{ name: 'x', dims: [B, 8, 3, 4] }, { name: 'gamma', dims: [8], constant: true }, { name: 'beta', dims: [8], constant: true }],
    reference: (x) => [groupNorm(x.x ?? [], [B, 8, 3, 4], false, 4, x.gamma ?? [], x.beta ?? [], 1e-6, false)],
  },
  'SkipGroupNorm, NHWC, [N,C] skip, bias and the sum output': {
    op: 'SkipGroupNorm', attrs: { groups: 2, activation: 1 }, cpu: 'no', outDims: [B, 3, 4, 8], extraOutputs: [{ index: 1, dims: [B, 3, 4, 8] }],
    inputs: [{ name: 'x', dims: [B, 3, 4, 8] }, { name: 'gamma', dims: [8], constant: true }, { name: 'beta', dims: [8], constant: true }, { name: 'skip', dims: [B, 8] }, { name: 'bias', dims: [8], constant: true }],
    reference: (x) => {
      const X = x.x ?? []; const skip = x.skip ?? []; const bias = x.bias ?? [];
      const s = X.map((v, i) => v + (skip[Math.floor(i / (3 * 4 * 8)) * 8 + (i % 8)] ?? 0) + (bias[i % 8] ?? 0));
      return [groupNorm(s, [B, 3, 4, 8], true, 2, x.gamma ?? [], x.beta ?? [], 1e-5, true), s];
    },
  },
  'SkipLayerNormalization with bias and the sum output': {
    op: 'SkipLayerNormalization', attrs: { epsilon: { float: 1e-5 } }, cpu: 'yes', outDims: [B, S, D], extraOutputs: [{ index: 3, dims: [B, S, D] }],
    inputs: [{ name: 'x', dims: [B, S, D] }, { name: 'skip', dims: [B, S, D] }, { name: 'gamma', dims: [D], constant: true }, { name: 'beta', dims: [D], constant: true }, { name: 'bias', dims: [D], constant: true }],
    reference: (x) => {
      const skip = x.skip ?? []; const bias = x.bias ?? [];
      const s = (x.x ?? []).map((v, i) => v + (skip[i] ?? 0) + (bias[i % D] ?? 0));
      return [layerNorm(s, D, x.gamma ?? [], x.beta, 1e-5), s];
    },
  },
  'SkipLayerNormalization at opset 14 (decomposed), no beta': {
    op: 'SkipLayerNormalization', attrs: { epsilon: { float: 1e-5 } }, cpu: 'yes', outDims: [B, S, D], opset: 14,
    inputs: [{ name: 'x', dims: [B, S, D] }, { name: 'skip', dims: [B, S, D] }, { name: 'gamma', dims: [D], constant: true }],
    reference: (x) => {
      const skip = x.skip ?? [];
      return [layerNorm((x.x ?? []).map((v, i) => v + (skip[i] ?? 0)), D, x.gamma ?? [], undefined, 1e-5)];
    },
  },
  'BiasSplitGelu (GEGLU)': {
    op: 'BiasSplitGelu', cpu: 'no', outDims: [B, S, D],
    inputs: [{ name: 'x', dims: [B, S, 2 * D] }, { name: 'bias', dims: [2 * D], constant: true }],
    reference: (x) => {
      const X = x.x ?? []; const bias = x.bias ?? [];
      const y: number[] = [];
      for (let r = 0; r < B * S; r++) for (let j = 0; j < D; j++) {
        const hidden = (X[r * 2 * D + j] ?? 0) + (bias[j] ?? 0);
        const gate = (X[r * 2 * D + D + j] ?? 0) + (bias[D + j] ?? 0);
        y.push(hidden * gelu(gate));
      }
      return [y];
    },
  },
  BiasAdd: {
    op: 'BiasAdd', cpu: 'no', outDims: [B, S, D],
    inputs: [{ name: 'x', dims: [B, S, D] }, { name: 'bias', dims: [D], constant: true }, { name: 'skip', dims: [B, S, D] }],
    reference: (x) => [(x.x ?? []).map((v, i) => v + (x.bias?.[i % D] ?? 0) + (x.skip?.[i] ?? 0))],
  },
  'NhwcConv, 3×3 stride 2 with bias': {
    op: 'NhwcConv', attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2], dilations: [1, 1], group: 1 }, cpu: 'no', outDims: [B, 3, 2, 5],
    inputs: [{ name: 'x', dims: [B, 5, 4, 3] }, { name: 'w', dims: [5, 3, 3, 3], constant: true }, { name: 'b', dims: [5], constant: true }],
    reference: (x) => {
      const X = at(x.x ?? [], [B, 5, 4, 3]); const W = at(x.w ?? [], [5, 3, 3, 3]); const bias = x.b ?? [];
      const y: number[] = [];
      for (let n = 0; n < B; n++) for (let oy = 0; oy < 3; oy++) for (let ox = 0; ox < 2; ox++) for (let m = 0; m < 5; m++) {
        let acc = bias[m] ?? 0;
        for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) {
          const iy = oy * 2 - 1 + ky; const ix = ox * 2 - 1 + kx;
          if (iy < 0 || iy >= 5 || ix < 0 || ix >= 4) continue;
          for (let c = 0; c < 3; c++) acc += X(n, iy, ix, c) * W(m, ky, kx, c);
        }
        y.push(acc);
      }
      return [y];
    },
  },
  Gelu: {
    op: 'Gelu', cpu: 'yes', outDims: [B, S, D], inputs: [{ name: 'x', dims: [B, S, D] }],
    reference: (x) => [(x.x ?? []).map(gelu)],
  },
  BiasGelu: {
    op: 'BiasGelu', cpu: 'yes', outDims: [B, S, D], inputs: [{ name: 'x', dims: [B, S, D] }, { name: 'bias', dims: [D], constant: true }],
    reference: (x) => [(x.x ?? []).map((v, i) => gelu(v + (x.bias?.[i % D] ?? 0)))],
  },
  FastGelu: {
    op: 'FastGelu', cpu: 'yes', outDims: [B, S, D], inputs: [{ name: 'x', dims: [B, S, D] }, { name: 'bias', dims: [D], constant: true }],
    reference: (x) => [(x.x ?? []).map((v0, i) => {
      const v = v0 + (x.bias?.[i % D] ?? 0);
      return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    })],
  },
  'FusedMatMul, transB and alpha on a 4-D batch (the attention scores)': {
    op: 'FusedMatMul', attrs: { transB: 1, alpha: { float: 0.35 } }, cpu: 'yes', outDims: [B, N, S, L],
    inputs: [{ name: 'a', dims: [B, N, S, H] }, { name: 'b', dims: [B, N, L, H] }],
    reference: (x) => {
      const A = at(x.a ?? [], [B, N, S, H]); const Bm = at(x.b ?? [], [B, N, L, H]);
      const y: number[] = [];
      for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) for (let l = 0; l < L; l++) {
        let acc = 0;
        for (let h = 0; h < H; h++) acc += A(b, n, s, h) * Bm(b, n, l, h);
        y.push(Math.fround(0.35) * acc);
      }
      return [y];
    },
  },
  'FusedMatMul, transA with a broadcast 2-D B': {
    op: 'FusedMatMul', attrs: { transA: 1 }, cpu: 'yes', outDims: [B, S, D],
    inputs: [{ name: 'a', dims: [B, L, S] }, { name: 'b', dims: [L, D], constant: true }],
    reference: (x) => {
      const A = at(x.a ?? [], [B, L, S]); const Bm = at(x.b ?? [], [L, D]);
      const y: number[] = [];
      for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) for (let d = 0; d < D; d++) {
        let acc = 0;
        for (let l = 0; l < L; l++) acc += A(b, l, s) * Bm(l, d);
        y.push(acc);
      }
      return [y];
    },
  },
  QuickGelu: {
    op: 'QuickGelu', attrs: { alpha: { float: 1.702 } }, cpu: 'yes', outDims: [B, S, D], inputs: [{ name: 'x', dims: [B, S, D] }],
    reference: (x) => [(x.x ?? []).map((v) => v * sigmoid(Math.fround(1.702) * v))],
  },
};

describe('unfused twins of the com.microsoft ops', () => {
  for (const [title, c] of Object.entries(CASES)) {
    it(title, async () => {
      const values: Record<string, number[]> = {};
      c.inputs.forEach((i, k) => { if (i) values[i.name] = i.values ? [...i.values] : uniform(101 + 7 * k, numel(i.dims), -2, 2).map(Math.fround); });
      const fused = build(c, values);
      const dims: Record<string, number[]> = {};
      for (const i of c.inputs) if (i && !i.constant) dims[i.name] = [...i.dims];
      const twin = unfuseContribOps(fused, dims);
      expect(twin.graph.node.every((n) => !n.domain)).toBe(true);
      expect(twin.opsetImport.some((o) => o.domain === 'com.microsoft')).toBe(false);
      expect(JSON.parse(twin.metadataProps.find((p) => p.key === UNFUSED_METADATA_KEY)?.value ?? '{}')).toEqual({ [c.op]: 1 });
      const got = await run(twin, c, values);
      const want = c.reference(values);
      want.forEach((w, k) => {
        const scale = Math.max(1, ...w.map(Math.abs));
        expect(maxAbsDiff(got[k] as Float32Array, w) / scale).toBeLessThan(2e-6);
      });
      if (c.cpu === 'yes') {
        const kernel = await run(fused, c, values);
        kernel.forEach((y, k) => expect(maxAbsDiff(y, got[k] as Float32Array)).toBeLessThan(2e-5));
      } else if (c.cpu === 'not-this-form') {
        await expect(run(fused, c, values)).rejects.toThrow(/not implemented for CPU/);
      } else {
        await expect(ort.InferenceSession.create(encodeModel(fused), { executionProviders: ['cpu'] })).rejects.toThrow(new RegExp(c.op));
      }
    });
  }

  it('MultiHeadAttention exposes its probabilities as one Softmax [B·N, S, L] named after the fused node', () => {
    const c = CASES['MultiHeadAttention, packed key/value [B,L,N,2,H] (ORT SD cross-attention)'] as Case;
    const twin = unfuseContribOps(build(c, {}), { q: [B, S, D], kv: [B, L, N, 2, H] });
    const softmax = twin.graph.node.filter((n) => n.opType === 'Softmax');
    expect(softmax.map((n) => n.name)).toEqual(['fused/MultiHeadAttention/Softmax']);
  });

  it('refuses an unknown com.microsoft op, and unsupported inputs, with the code and a hint', () => {
    const unknown: Case = { op: 'RotaryEmbedding', cpu: 'yes', outDims: [B, S, D], inputs: [{ name: 'x', dims: [B, S, D] }], reference: () => [] };
    const err = (() => { try { unfuseContribOps(build(unknown, {}), { x: [B, S, D] }); } catch (e) { return e; } return undefined; })();
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_UNSUPPORTED_OP');
    expect((err as P2pzError).message).toContain('com.microsoft.RotaryEmbedding at node fused/RotaryEmbedding');
    expect((err as P2pzError).hint).toMatch(/without onnxruntime graph optimization/);
    const masked: Case = {
      op: 'MultiHeadAttention', attrs: { num_heads: N }, cpu: 'yes', outDims: [B, S, D], reference: () => [],
      inputs: [{ name: 'q', dims: [B, S, D] }, { name: 'k', dims: [B, L, D] }, { name: 'v', dims: [B, L, D] }, null, { name: 'mask', dims: [B, L] }],
    };
    expect(() => unfuseContribOps(build(masked, {}), { q: [B, S, D], k: [B, L, D], v: [B, L, D], mask: [B, L] }))
      .toThrow(/MultiHeadAttention at node fused\/MultiHeadAttention \(input key_padding_mask is not supported\)/);
  });
});
