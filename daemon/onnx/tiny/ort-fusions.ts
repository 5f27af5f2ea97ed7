// Rewrites a written tiny UNet into the form onnxruntime's transformers optimizer gives an SD UNet
// (onnxruntime/python/tools/transformers, optimize_pipeline.py → unet_onnx_model.py), by the same
// pattern matches as its fusion scripts, so the project can test optimized exports without downloading
// one. Same weights, same function: only the graph's form changes.
//   fusion_group_norm.py   Reshape → InstanceNormalization(1, 0) → Reshape → ·γ[C,1,1] + β[C,1,1]
//                          (→ x·Sigmoid(x)) becomes Transpose(NCHW→NHWC) → GroupNorm(γ[C], β[C],
//                          groups, epsilon, activation, channels_last=1) → Transpose(NHWC→NCHW)
//   fusion_nhwc_conv.py    Conv becomes Transpose → NhwcConv(Transpose(W, 0,2,3,1), b) → Transpose
//                          (unless `nhwcConv: false`, as --disable_nhwc_conv)
//   fusion_attention_unet.py  diffusers' attention (MatMul q/k/v, head split, Softmax(q·kᵀ·s), ·v,
//                          head merge) becomes MultiHeadAttention: self-attention with packed QKV
//                          (one MatMul with the interleaved [C, N·3·H] weights, Reshape [0,0,N,3,H]),
//                          cross-attention with packed KV ([D, N·2·H], Reshape [0,0,N,2,H]). Options
//                          pick the other forms the scripts write: q/k/v separate with a zero bias
//                          (`packed: false`), and the older Attention op for self-attention.
//   fusion_skiplayernorm.py  LayerNormalization(Add(Add(MatMul, b), skip)) becomes
//                          SkipLayerNormalization(MatMul, skip, γ, β, b), the sum as its output 3
//   fusion_biassplitgelu.py  Mul(hidden, Gelu(gate)), [hidden|gate] = Split(Add(MatMul, b)) becomes
//                          BiasSplitGelu(MatMul, b)
//   fusion_bias_add.py     Add(Add(MatMul(BiasSplitGelu …), b), skip) becomes BiasAdd(MatMul, b, skip)
//   fusion_quickgelu.py    Mul(x, Sigmoid(Mul(x, α))) becomes QuickGelu(x, alpha=α) (CLIP's MLP)
//   fusion_attention_clip.py  CLIP's self-attention (biased q/k/v projections, the causal mask added
//                          to the scores) becomes Attention(input, [C,3D], [3D], unidirectional=1)
// The VAE and the text encoder get the same passes (optimize_pipeline.py optimizes every component):
// ortOptimizedComponent adds QuickGelu for the text encoder's MLP.
// Finally the Transpose pairs between NHWC nodes are dropped, as the optimizer does.
import { open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { consumers, producers } from '../graph/graph-index.js';
import { pruneDeadNodes } from '../graph/fold.js';
import { decodeModel, encodeModel, readTensorData, writeFileAtomic } from '../graph/model-io.js';
import { attrFloat, makeNode, makeTensor, tensorDims, tensorValues, type AttrValue } from '../graph/nodes.js';
import { DATA_LOCATION, DataType, isExternal, onnx, type GraphProto, type ModelProto, type NodeProto, type TensorProto } from '../graph/onnx-proto.js';
import { cancelTransposePairs } from '../unfuse/transpose-pairs.js';

export interface OrtFusionOptions {
  /** MultiHeadAttention with packed QKV/KV (default), or q/k/v given separately. */
  readonly packed?: boolean;
  /** Self-attention as the older Attention op (input, [C,3D] weights, bias) instead of MultiHeadAttention. */
  readonly attentionOp?: boolean;
  /** Convs as NhwcConv (default; optimize_pipeline.py's --disable_nhwc_conv turns it off). */
  readonly nhwcConv?: boolean;
}

/** How many nodes of each fused op the rewrite wrote. */
export type FusionCounts = Record<string, number>;

const MS = 'com.microsoft';

function msNode(opType: string, inputs: string[], outputs: string[], name: string, attrs: Record<string, AttrValue> = {}): NodeProto {
  const n = makeNode(opType, inputs, outputs, name, attrs);
  n.domain = MS;
  return n;
}

class Graph {
  readonly prod: Map<string, NodeProto>;
  readonly cons: Map<string, NodeProto[]>;
  readonly inits: Map<string, TensorProto>;
  /** Node → what replaces it (empty: removed). */
  readonly replace = new Map<NodeProto, NodeProto[]>();
  readonly added: TensorProto[] = [];
  private n = 0;
  constructor(readonly g: GraphProto) {
    this.prod = producers(g);
    this.cons = consumers(g);
    this.inits = new Map(g.initializer.map((t) => [t.name, t]));
  }
  parent(node: NodeProto | undefined, i: number, op: string): NodeProto | undefined {
    const p = node ? this.prod.get(node.input[i] ?? '') : undefined;
    return p && p.opType === op && !p.domain && !this.replace.has(p) ? p : undefined;
  }
  only(name: string): NodeProto | undefined {
    const c = this.cons.get(name) ?? [];
    return c.length === 1 ? c[0] : undefined;
  }
  fresh(base: string): string {
    return `${base}_${this.n++}`;
  }
  /** Applies the recorded replacements (new nodes at the position of the node they replace). */
  commit(): void {
    this.g.node = this.g.node.flatMap((n) => this.replace.get(n) ?? [n]);
    this.g.initializer.push(...this.added);
  }
}

function transpose(input: string, perm: number[], output: string, name: string): NodeProto {
  return makeNode('Transpose', [input], [output], name, { perm });
}

/** An initializer viewed with other dims (same bytes: external reference or inline data). */
function reshaped(t: TensorProto, name: string, dims: number[]): TensorProto {
  return onnx.TensorProto.create({ ...t, name, dims }) as unknown as TensorProto;
}

function fuseGroupNorm(G: Graph, counts: FusionCounts): void {
  for (const add of G.g.node) {
    if (add.opType !== 'Add' || add.domain) continue;
    const mul = G.parent(add, 0, 'Mul');
    const reshape4 = G.parent(mul, 0, 'Reshape');
    const inorm = G.parent(reshape4, 0, 'InstanceNormalization');
    const reshape3 = G.parent(inorm, 0, 'Reshape');
    if (!mul || !reshape4 || !inorm || !reshape3) continue;
    const gamma = G.inits.get(mul.input[1] ?? '');
    const beta = G.inits.get(add.input[1] ?? '');
    const scaleInit = G.inits.get(inorm.input[1] ?? '');
    const scale = scaleInit ? tensorValues(scaleInit) : undefined;
    if (!gamma || !beta || !scale || !scale.every((v) => v === 1)) continue;
    const c = tensorDims(gamma)[0] ?? 0;
    const root = reshape3.input[0] as string;
    // Swish: the Add's readers are exactly Sigmoid(add) and Mul(add, sigmoid).
    const readers = G.cons.get(add.output[0] ?? '') ?? [];
    const sigmoid = readers.find((n) => n.opType === 'Sigmoid');
    const swish = sigmoid && readers.length === 2 ? readers.find((n) => n.opType === 'Mul' && G.only(sigmoid.output[0] ?? '') === n) : undefined;
    const last = swish ?? add;
    const name = G.fresh('GroupNorm');
    G.added.push(reshaped(gamma, `${name}_gamma`, [c]), reshaped(beta, `${name}_beta`, [c]));
    const out = last.output[0] as string;
    G.replace.set(last, [
      transpose(root, [0, 2, 3, 1], `${root}_NHWC_${name}`, `Transpose_NCHW_to_NHWC_${name}`),
      msNode('GroupNorm', [`${root}_NHWC_${name}`, `${name}_gamma`, `${name}_beta`], [`${out}_NHWC`], name, {
        epsilon: { float: attrFloat(inorm, 'epsilon', 1e-5) }, groups: scale.length, activation: swish ? 1 : 0,
      }),
      transpose(`${out}_NHWC`, [0, 3, 1, 2], out, `Transpose_NHWC_to_NCHW_${name}`),
    ]);
    for (const n of [add, mul, reshape4, inorm, reshape3, ...(swish && sigmoid ? [sigmoid] : [])]) if (n !== last) G.replace.set(n, []);
    counts.GroupNorm = (counts.GroupNorm ?? 0) + 1;
  }
}

function fuseNhwcConv(G: Graph, counts: FusionCounts): void {
  for (const conv of G.g.node) {
    if (conv.opType !== 'Conv' || conv.domain || !G.inits.has(conv.input[1] ?? '')) continue;
    const name = G.fresh('NhwcConv');
    const x = conv.input[0] as string;
    const w = conv.input[1] as string;
    const out = conv.output[0] as string;
    const fused = msNode('NhwcConv', [`${name}_x`, `${name}_w`, ...conv.input.slice(2)], [`${name}_out-${out}`], `${name}-${conv.name}`);
    fused.attribute = [...conv.attribute];
    G.replace.set(conv, [
      transpose(x, [0, 2, 3, 1], `${name}_x`, `${name}_Transpose_x`),
      transpose(w, [0, 2, 3, 1], `${name}_w`, `${name}_Transpose_w`),
      fused,
      transpose(`${name}_out-${out}`, [0, 3, 1, 2], out, `${name}_Transpose_out`),
    ]);
    counts.NhwcConv = (counts.NhwcConv ?? 0) + 1;
  }
}

/** Reshape → Transpose → Reshape → MatMul above a head-split tensor: the projection MatMul (with
 *  `biased`, an Add of a bias initializer between, returned last). */
function projection(G: Graph, heads: string, biased = false): NodeProto[] | undefined {
  const r2 = G.prod.get(heads);
  const t = G.parent(r2, 0, 'Transpose');
  const r1 = G.parent(t, 0, 'Reshape');
  const add = biased ? G.parent(r1, 0, 'Add') : undefined;
  const mm = G.parent(biased ? add : r1, 0, 'MatMul');
  if (biased && !(add && G.inits.has(add.input[1] ?? ''))) return undefined;
  return r2?.opType === 'Reshape' && t && r1 && mm ? [mm, r1, t, r2, ...(add ? [add] : [])] : undefined;
}

/** Whether `mask` is a Slice of a causal mask initializer [S,S] (0 on and below the diagonal, at most
 *  −10000 above it): what CLIP's text encoder adds to its self-attention scores. */
function isCausalMask(G: Graph, mask: string): boolean {
  const slice = G.prod.get(mask);
  const init = slice?.opType === 'Slice' ? G.inits.get(slice.input[0] ?? '') : undefined;
  const v = init ? tensorValues(init) : undefined;
  const [rows, cols] = init ? tensorDims(init) : [];
  if (!v || !rows || rows !== cols) return false;
  return v.every((x, i) => (i % rows > Math.floor(i / rows) ? x <= -10000 : x === 0));
}

/** Interleaves per-head weights: out[c, n, p, h] = W_p[c, n·H + h] for the P matrices given. */
function interleave(ws: Float32Array[], c: number, n: number, h: number): Float32Array {
  const p = ws.length;
  const out = new Float32Array(c * n * p * h);
  for (let i = 0; i < c; i++) for (let k = 0; k < n; k++) for (let q = 0; q < p; q++) for (let j = 0; j < h; j++) {
    out[((i * n + k) * p + q) * h + j] = (ws[q] as Float32Array)[i * n * h + k * h + j] ?? 0;
  }
  return out;
}

async function fuseAttention(G: Graph, modelPath: string, options: OrtFusionOptions, counts: FusionCounts, isMid: (n: NodeProto) => boolean): Promise<void> {
  const weights = async (name: string): Promise<Float32Array> => {
    const t = G.inits.get(name);
    if (!t) throw new Error(`no initializer ${name}`);
    const raw = await readTensorData(modelPath, t);
    return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  };
  for (const softmax of [...G.g.node]) {
    if (softmax.opType !== 'Softmax' || softmax.domain) continue;
    // CLIP (fusion_attention_clip.py): the causal mask added to the scores, biased projections.
    const masked = G.parent(softmax, 0, 'Add');
    const causal = masked !== undefined && isCausalMask(G, masked.input[1] ?? '');
    const mulS = G.parent(causal ? masked : softmax, 0, 'Mul');
    const mmQK = G.parent(mulS, 0, 'MatMul');
    const kT = G.parent(mmQK, 1, 'Transpose');
    const mmPV = G.only(softmax.output[0] ?? '');
    // (P·V and the projections are also read by the Shape nodes of the exporter's dynamic reshapes.)
    if (!mulS || !mmQK || !kT || mmPV?.opType !== 'MatMul') continue;
    const qp = projection(G, mmQK.input[0] ?? '', causal);
    const kp = projection(G, kT.input[0] ?? '', causal);
    const vp = projection(G, mmPV.input[1] ?? '', causal);
    // Head merge after P·V: Reshape → Transpose → Reshape.
    const m1 = (G.cons.get(mmPV.output[0] ?? '') ?? []).find((c) => c.opType === 'Reshape');
    const m2 = m1 ? G.only(m1.output[0] ?? '') : undefined;
    const m3 = m2 ? G.only(m2.output[0] ?? '') : undefined;
    if (!qp || !kp || !vp || m1?.opType !== 'Reshape' || m2?.opType !== 'Transpose' || m3?.opType !== 'Reshape') continue;
    const [mq, mk, mv] = [qp[0], kp[0], vp[0]] as [NodeProto, NodeProto, NodeProto];
    const wq = G.inits.get(mq.input[1] ?? '');
    if (!wq) continue;
    const [c, d] = tensorDims(wq) as [number, number];
    const shapeInit = G.inits.get(qp[1]?.input[1] ?? '');
    const shape = shapeInit ? tensorValues(shapeInit) : undefined;
    // The head count: the split Reshape's target [B, S, N, H] comes from a Concat of Constants.
    const concat = G.prod.get(qp[1]?.input[1] ?? '');
    const headsNode = concat ? G.prod.get(concat.input[2] ?? '') : undefined;
    const headsAttr = headsNode?.attribute.find((a) => a.name === 'value')?.t;
    const n = shape?.[2] ?? (headsAttr ? (tensorValues(headsAttr as TensorProto)?.[0] ?? 0) : 0);
    if (!n) continue;
    const h = d / n;
    const self = mk.input[0] === mq.input[0];
    const x = mq.input[0] as string;
    const out = m3.output[0] as string;
    const name = G.fresh(self && options.attentionOp && isMid(softmax) ? 'Attention' : 'MultiHeadAttention');
    const nodes: NodeProto[] = [];
    const packed = options.packed !== false && !isMid(softmax);
    if (causal) {
      // Attention(input, [C, q|k|v], [q|k|v] bias, unidirectional = 1).
      if (!self || mv.input[0] !== x) continue;
      const adds = [qp[4], kp[4], vp[4]] as NodeProto[];
      const [q, k, v] = await Promise.all([weights(mq.input[1] as string), weights(mk.input[1] as string), weights(mv.input[1] as string)]);
      const [bq, bk, bv] = await Promise.all(adds.map((a) => weights(a.input[1] as string)));
      const w = new Float32Array(c * 3 * d);
      for (let i = 0; i < c; i++) for (let j = 0; j < d; j++) {
        w[i * 3 * d + j] = q[i * d + j] ?? 0;
        w[i * 3 * d + d + j] = k[i * d + j] ?? 0;
        w[i * 3 * d + 2 * d + j] = v[i * d + j] ?? 0;
      }
      const bias = [...(bq as Float32Array), ...(bk as Float32Array), ...(bv as Float32Array)];
      const attn = G.fresh('Attention');
      G.added.push(makeTensor(`${attn}_qkv_weight`, DataType.FLOAT, [c, 3 * d], w), makeTensor(`${attn}_qkv_bias`, DataType.FLOAT, [3 * d], bias));
      nodes.push(msNode('Attention', [x, `${attn}_qkv_weight`, `${attn}_qkv_bias`], [out], attn, { num_heads: n, unidirectional: 1 }));
      for (const node of [softmax, masked, mulS, mmQK, kT, mmPV, m1, m2, ...qp, ...kp, ...vp]) if (node) G.replace.set(node, []);
      G.replace.set(m3, nodes);
      counts.Attention = (counts.Attention ?? 0) + 1;
      continue;
    }
    if (self && options.attentionOp && isMid(softmax)) {
      // Attention(input, [C, q|k|v], zero bias).
      const [q, k, v] = await Promise.all([weights(mq.input[1] as string), weights(mk.input[1] as string), weights(mv.input[1] as string)]);
      const w = new Float32Array(c * 3 * d);
      for (let i = 0; i < c; i++) for (let j = 0; j < d; j++) {
        w[i * 3 * d + j] = q[i * d + j] ?? 0;
        w[i * 3 * d + d + j] = k[i * d + j] ?? 0;
        w[i * 3 * d + 2 * d + j] = v[i * d + j] ?? 0;
      }
      G.added.push(makeTensor(`${name}_qkv_weight`, DataType.FLOAT, [c, 3 * d], w), makeTensor(`${name}_qkv_bias`, DataType.FLOAT, [3 * d], new Array<number>(3 * d).fill(0)));
      nodes.push(msNode('Attention', [x, `${name}_qkv_weight`, `${name}_qkv_bias`], [out], name, { num_heads: n }));
    } else if (self && packed) {
      const w = interleave(await Promise.all([weights(mq.input[1] as string), weights(mk.input[1] as string), weights(mv.input[1] as string)]), c, n, h);
      G.added.push(makeTensor(`${name}_MatMul_QKV_weight`, DataType.FLOAT, [c, 3 * d], w), makeTensor(`${name}_qkv_shape`, DataType.INT64, [5], [0, 0, n, 3, h]));
      nodes.push(
        makeNode('MatMul', [x, `${name}_MatMul_QKV_weight`], [`${name}_MatMul_QKV_out`], `${name}_MatMul_QKV`),
        makeNode('Reshape', [`${name}_MatMul_QKV_out`, `${name}_qkv_shape`], [`${name}_qkv_input`], `${name}_MatMul_QKV_reshape`),
        msNode('MultiHeadAttention', [`${name}_qkv_input`], [out], name, { num_heads: n }),
      );
    } else if (!self && packed) {
      const ctx = mk.input[0] as string;
      const cin = tensorDims(G.inits.get(mk.input[1] ?? '') as TensorProto)[0] ?? 0;
      const w = interleave(await Promise.all([weights(mk.input[1] as string), weights(mv.input[1] as string)]), cin, n, h);
      G.added.push(makeTensor(`${name}_MatMul_KV_weight`, DataType.FLOAT, [cin, 2 * d], w), makeTensor(`${name}_kv_shape`, DataType.INT64, [5], [0, 0, n, 2, h]));
      nodes.push(
        mq,
        makeNode('MatMul', [ctx, `${name}_MatMul_KV_weight`], [`${name}_MatMul_KV_out`], `${name}_MatMul_KV`),
        makeNode('Reshape', [`${name}_MatMul_KV_out`, `${name}_kv_shape`], [`${name}_kv_input`], `${name}_MatMul_KV_reshape`),
        msNode('MultiHeadAttention', [mq.output[0] as string, `${name}_kv_input`], [out], name, { num_heads: n }),
      );
    } else {
      G.added.push(makeTensor(`${name}_qkv_bias`, DataType.FLOAT, [3 * d], new Array<number>(3 * d).fill(0)));
      nodes.push(mq, mk, mv, msNode('MultiHeadAttention', [mq.output[0] as string, mk.output[0] as string, mv.output[0] as string, `${name}_qkv_bias`], [out], name, { num_heads: n }));
    }
    // Everything of the attention up to the merged heads goes; the MatMuls kept above are re-placed.
    for (const node of [softmax, mulS, mmQK, kT, mmPV, m1, m2, ...qp, ...kp, ...vp]) G.replace.set(node, []);
    G.replace.set(m3, nodes);
    counts[name.replace(/_\d+$/, '')] = (counts[name.replace(/_\d+$/, '')] ?? 0) + 1;
  }
}

/** Add(MatMul, b) with b a 1-D initializer: [MatMul output, b]. */
function biasOf(G: Graph, name: string): { add: NodeProto; mm: string; bias: string } | undefined {
  const add = G.prod.get(name);
  if (add?.opType !== 'Add' || add.domain || G.replace.has(add)) return undefined;
  const bias = add.input[1] ?? '';
  const b = G.inits.get(bias);
  const mm = G.prod.get(add.input[0] ?? '');
  if (!b || tensorDims(b).length !== 1 || !mm || (mm.opType !== 'MatMul')) return undefined;
  return { add, mm: add.input[0] as string, bias };
}

function fuseSkipLayerNorm(G: Graph, counts: FusionCounts): void {
  for (const ln of G.g.node) {
    if (ln.opType !== 'LayerNormalization' || ln.domain) continue;
    const sum = G.parent(ln, 0, 'Add');
    if (!sum || G.inits.has(sum.input[0] ?? '') || G.inits.has(sum.input[1] ?? '')) continue;
    const biased = biasOf(G, sum.input[0] ?? '');
    const useBias = biased && G.only(biased.add.output[0] ?? '') === sum ? biased : undefined;
    const name = G.fresh('SkipLayerNorm');
    const s = sum.output[0] as string;
    const sumRead = (G.cons.get(s) ?? []).length > 1 || G.g.output.some((o) => o.name === s);
    const inputs = useBias
      ? [useBias.mm, sum.input[1] as string, ln.input[1] as string, ln.input[2] ?? '', useBias.bias]
      : [sum.input[0] as string, sum.input[1] as string, ln.input[1] as string, ln.input[2] ?? ''];
    G.replace.set(ln, [msNode('SkipLayerNormalization', inputs, [ln.output[0] as string, '', '', sumRead ? s : ''], name, { epsilon: { float: attrFloat(ln, 'epsilon', 1e-5) } })]);
    G.replace.set(sum, []);
    if (useBias) G.replace.set(useBias.add, []);
    counts.SkipLayerNormalization = (counts.SkipLayerNormalization ?? 0) + 1;
  }
}

/** The erf GELU chain Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), ½) ending at `out`: its nodes and x. */
function geluChain(G: Graph, out: string): { nodes: NodeProto[]; x: string } | undefined {
  const half = G.prod.get(out);
  const m = G.parent(half, 0, 'Mul');
  const a = G.parent(m, 1, 'Add');
  const e = G.parent(a, 0, 'Erf');
  const d = G.parent(e, 0, 'Div');
  if (half?.opType !== 'Mul' || !m || !a || !e || !d || d.input[0] !== m.input[0]) return undefined;
  return { nodes: [half, m, a, e, d], x: m.input[0] as string };
}

function fuseBiasSplitGelu(G: Graph, counts: FusionCounts): void {
  for (const mul of G.g.node) {
    if (mul.opType !== 'Mul' || mul.domain) continue;
    const split = G.parent(mul, 0, 'Split');
    const gelu = geluChain(G, mul.input[1] ?? '');
    if (!split || !gelu || split.output[0] !== mul.input[0] || split.output[1] !== gelu.x) continue;
    const biased = biasOf(G, split.input[0] ?? '');
    if (!biased) continue;
    const name = G.fresh('BiasSplitGelu');
    G.replace.set(mul, [msNode('BiasSplitGelu', [biased.mm, biased.bias], [mul.output[0] as string], name)]);
    for (const n of [split, biased.add, ...gelu.nodes]) G.replace.set(n, []);
    counts.BiasSplitGelu = (counts.BiasSplitGelu ?? 0) + 1;
  }
}

function fuseBiasAdd(G: Graph, counts: FusionCounts): void {
  const fused = new Set(G.g.node.filter((n) => n.opType === 'BiasSplitGelu').flatMap((n) => n.output));
  const sums = new Set(G.g.node.filter((n) => n.opType === 'SkipLayerNormalization').map((n) => n.output[3]).filter(Boolean));
  for (const add of G.g.node) {
    if (add.opType !== 'Add' || add.domain) continue;
    const biased = biasOf(G, add.input[0] ?? '');
    const mm = biased ? G.prod.get(biased.mm) : undefined;
    if (!biased || !mm || !fused.has(mm.input[0] ?? '') || !sums.has(add.input[1] ?? '')) continue;
    G.replace.set(add, [msNode('BiasAdd', [biased.mm, biased.bias, add.input[1] as string], [add.output[0] as string], G.fresh('BiasAdd'))]);
    G.replace.set(biased.add, []);
    counts.BiasAdd = (counts.BiasAdd ?? 0) + 1;
  }
}

/** The constant value of a scalar (1-element) tensor: an initializer or a Constant node's. */
function scalarOf(G: Graph, name: string): number | undefined {
  const init = G.inits.get(name);
  const node = init ? undefined : G.prod.get(name);
  const t = init ?? (node?.opType === 'Constant' ? node.attribute.find((a) => a.name === 'value')?.t as TensorProto | undefined : undefined);
  const v = t ? tensorValues(t) : undefined;
  return v && v.length === 1 ? v[0] : undefined;
}

function fuseQuickGelu(G: Graph, counts: FusionCounts): void {
  for (const mul of G.g.node) {
    if (mul.opType !== 'Mul' || mul.domain) continue;
    const x = mul.input[0] as string;
    const sigmoid = G.parent(mul, 1, 'Sigmoid');
    const scaled = G.parent(sigmoid, 0, 'Mul');
    if (!sigmoid || !scaled || scaled.input[0] !== x || G.only(sigmoid.output[0] ?? '') !== mul || G.only(scaled.output[0] ?? '') !== sigmoid) continue;
    const alpha = scalarOf(G, scaled.input[1] ?? '');
    if (alpha === undefined) continue;
    G.replace.set(mul, [msNode('QuickGelu', [x], [mul.output[0] as string], G.fresh('QuickGelu'), { alpha: { float: alpha } })]);
    G.replace.set(sigmoid, []);
    G.replace.set(scaled, []);
    counts.QuickGelu = (counts.QuickGelu ?? 0) + 1;
  }
}

/** The optimized form of the model at `modelPath` (its external weights stay where they are; new
 *  packed weights are inline until writeOrtOptimizedUNet stores them). */
export function ortOptimizedUNet(modelPath: string, options: OrtFusionOptions = {}): Promise<{ model: ModelProto; counts: FusionCounts }> {
  return ortOptimizedComponent(modelPath, options, false);
}

/** The optimized form of any component's graph (`quickGelu`: also CLIP's activation, as for the
 *  text encoder). */
export async function ortOptimizedComponent(modelPath: string, options: OrtFusionOptions = {}, quickGelu = true): Promise<{ model: ModelProto; counts: FusionCounts }> {
  const model = decodeModel(await readFile(modelPath));
  const counts: FusionCounts = {};
  const isMid = (n: NodeProto): boolean => n.name.startsWith('/mid_block/');
  const passes: ((G: Graph) => Promise<void> | void)[] = [
    (G) => fuseGroupNorm(G, counts),
    (G) => fuseAttention(G, modelPath, options, counts, isMid),
    (G) => fuseSkipLayerNorm(G, counts),
    (G) => fuseBiasSplitGelu(G, counts),
    (G) => fuseBiasAdd(G, counts),
    ...(quickGelu ? [(G: Graph) => fuseQuickGelu(G, counts)] : []),
    ...(options.nhwcConv === false ? [] : [(G: Graph) => fuseNhwcConv(G, counts)]),
  ];
  for (const pass of passes) {
    const G = new Graph(model.graph);
    await pass(G);
    G.commit();
  }
  cancelTransposePairs(model.graph);
  pruneDeadNodes(model.graph);
  model.opsetImport = [...model.opsetImport.filter((o) => o.domain !== MS), { domain: MS, version: 1 }];
  return { model, counts };
}

/** Moves the inline tensors of at least `minBytes` (the packed attention weights) to the end of the
 *  weights file the model already uses, as the optimizer saves them with external data. */
async function externalize(model: ModelProto, modelPath: string, minBytes = 1024): Promise<void> {
  const location = model.graph.initializer.find(isExternal)?.externalData?.find((e) => e.key === 'location')?.value;
  if (!location) return;
  const fh = await open(join(dirname(modelPath), location), 'r+');
  try {
    let end = (await fh.stat()).size;
    for (const t of model.graph.initializer) {
      const raw = t.rawData;
      if (isExternal(t) || !raw || raw.length < minBytes) continue;
      const offset = Math.ceil(end / 64) * 64;
      await fh.write(raw, 0, raw.length, offset);
      end = offset + raw.length;
      t.dataLocation = DATA_LOCATION.EXTERNAL;
      t.externalData = [{ key: 'location', value: location }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(raw.length) }];
      t.rawData = null;
    }
  } finally {
    await fh.close();
  }
}

/** Rewrites the UNet at `modelPath` in place into its optimized form (new weights appended to its
 *  weights file). */
export async function writeOrtOptimizedUNet(modelPath: string, options: OrtFusionOptions = {}): Promise<FusionCounts> {
  return writeOrtOptimized(modelPath, options, false);
}

/** Rewrites a VAE or text encoder graph in place into its optimized form. */
export function writeOrtOptimizedComponent(modelPath: string, options: OrtFusionOptions = {}): Promise<FusionCounts> {
  return writeOrtOptimized(modelPath, options, true);
}

async function writeOrtOptimized(modelPath: string, options: OrtFusionOptions, quickGelu: boolean): Promise<FusionCounts> {
  const { model, counts } = await ortOptimizedComponent(modelPath, options, quickGelu);
  await externalize(model, modelPath);
  await writeFileAtomic(modelPath, encodeModel(model));
  return counts;
}
