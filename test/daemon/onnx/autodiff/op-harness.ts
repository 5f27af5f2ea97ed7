// Test harness: a single-op graph Y = op(inputs), the scalar loss L = Σ Y ⊙ W for a fixed random W,
// its derived gradient graph run in onnxruntime-node, and central finite differences of L computed
// in JS (float64) from the forward output Y.
import * as ort from 'onnxruntime-node';
import { appendGradient } from '../../../../daemon/onnx/autodiff/gradient-graph.js';
import { foldStaticShapes } from '../../../../daemon/onnx/graph/fold.js';
import { DataType, type NodeProto, type TensorProto } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { makeGraph, makeModel, makeNode, makeTensor, valueInfo, type AttrValue } from '../../../../daemon/onnx/graph/nodes.js';
import { encodeModel } from '../../../../daemon/onnx/graph/model-io.js';
import { inferStaticShapes, numel } from '../../../../daemon/onnx/graph/static-shapes.js';
import { mulberry32 } from '../../../../daemon/onnx/graph/prng.js';

export function uniform(seed: number, n: number, lo = -1, hi = 1): number[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, () => lo + ((r() / 2 ** 32) * (hi - lo)));
}

export interface OpInput {
  readonly name: string;
  readonly dims: readonly number[];
  readonly dtype?: number;
  /** Values; random in [-1, 1] when absent. */
  readonly values?: readonly number[];
  /** A constant (initializer) rather than a graph input. */
  readonly constant?: boolean;
  /** Differentiate with respect to this input (graph inputs of float type only). */
  readonly wrt?: boolean;
  /** Computed by a `pre` node: neither a graph input nor a constant. */
  readonly produced?: boolean;
}

export interface OpCase {
  readonly op: string;
  readonly inputs: readonly OpInput[];
  readonly attrs?: Record<string, AttrValue>;
  readonly opset?: number;
  readonly dtype: number;
  /** Extra nodes placed before the op (their outputs may be op inputs). */
  readonly pre?: readonly NodeProto[];
  readonly outputs?: number;
  readonly seed?: number;
  /** Graph inputs that only `pre` nodes read. */
  readonly extraGraphInputs?: readonly OpInput[];
}

export interface GradCheck {
  readonly analytic: Record<string, number[]>;
  readonly numeric: Record<string, number[]>;
  /** Largest |analytic − numeric| relative to the largest |numeric| of that input. */
  readonly relErr: Record<string, number>;
  readonly loss: number;
}

function typedArray(dtype: number, v: readonly number[]): Float32Array | Float64Array | BigInt64Array | Uint8Array {
  if (dtype === DataType.DOUBLE) return Float64Array.from(v);
  if (dtype === DataType.INT64) return BigInt64Array.from(v.map((x) => BigInt(x)));
  if (dtype === DataType.BOOL) return Uint8Array.from(v);
  return Float32Array.from(v);
}

const ORT_TYPE: Record<number, 'float32' | 'float64' | 'int64' | 'bool'> = {
  [DataType.FLOAT]: 'float32', [DataType.DOUBLE]: 'float64', [DataType.INT64]: 'int64', [DataType.BOOL]: 'bool',
};

/** Builds the gradient graph for one op and checks it against central differences with step h. */
export async function checkOpGradient(c: OpCase, h: number, opts: { maxCoords?: number } = {}): Promise<GradCheck> {
  const seed = c.seed ?? 7;
  const values = new Map<string, number[]>();
  const all = [...c.inputs, ...(c.extraGraphInputs ?? [])];
  all.forEach((inp, i) => values.set(inp.name, [...(inp.values ?? uniform(seed + 31 * i, numel(inp.dims)))]));
  const initializers: TensorProto[] = c.inputs.filter((i) => i.constant).map((i) => makeTensor(i.name, i.dtype ?? c.dtype, i.dims, values.get(i.name) ?? []));
  const graphInputs = all.filter((i) => !i.constant && !i.produced);
  const nOut = c.outputs ?? 1;
  const ys = Array.from({ length: nOut }, (_, k) => `Y${k}`);
  const opNode = makeNode(c.op, c.inputs.map((i) => i.name), ys, 'op0', c.attrs ?? {});
  const opset = c.opset ?? 17;
  const probe = makeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }],
    graph: makeGraph({
      name: 'g', node: [...(c.pre ?? []), opNode], initializer: initializers,
      input: graphInputs.map((i) => valueInfo(i.name, i.dtype ?? c.dtype, i.dims)),
      output: ys.map((y) => valueInfo(y, c.dtype, [])),
    }),
  });
  const yShapes = ys.map((y) => {
    const info = inferStaticShapes(probe, {}).get(y);
    if (!info) throw new Error('no output shape');
    return info.dims;
  });
  // L = Σ_k Σ Y_k ⊙ W_k
  const weights = yShapes.map((d, k) => uniform(seed + 1000 + k, numel(d)));
  const lossNodes: NodeProto[] = [];
  const lossInits: TensorProto[] = [];
  const parts: string[] = [];
  ys.forEach((y, k) => {
    lossInits.push(makeTensor(`W${k}`, c.dtype, yShapes[k] ?? [], weights[k] ?? []));
    lossNodes.push(makeNode('Mul', [y, `W${k}`], [`P${k}`], `lossmul${k}`));
    lossNodes.push(makeNode('ReduceSum', [`P${k}`], [`S${k}`], `losssum${k}`, { keepdims: 0 }));
    parts.push(`S${k}`);
  });
  lossNodes.push(makeNode('Sum', parts, ['L'], 'losstotal'));
  const model = makeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }],
    graph: makeGraph({
      name: 'g', node: [...(c.pre ?? []), opNode, ...lossNodes], initializer: [...initializers, ...lossInits],
      input: graphInputs.map((i) => valueInfo(i.name, i.dtype ?? c.dtype, i.dims)),
      output: [...ys.map((y, k) => valueInfo(y, c.dtype, yShapes[k] ?? [])), valueInfo('L', c.dtype, [])],
    }),
  });
  const folded = foldStaticShapes(model, {});
  const wrt = graphInputs.filter((i) => i.wrt);
  const grad = appendGradient(folded.model, folded.shapes, {
    loss: 'L', wrt: wrt.map((w) => ({ input: w.name, gradOutput: `d_${w.name}` })), keepOutputs: ys,
  });
  const session = await ort.InferenceSession.create(encodeModel(grad));
  const feeds = (over?: { name: string; index: number; delta: number }): Record<string, ort.Tensor> => {
    const f: Record<string, ort.Tensor> = {};
    for (const i of graphInputs) {
      const v = [...(values.get(i.name) ?? [])];
      if (over && over.name === i.name) v[over.index] = (v[over.index] ?? 0) + over.delta;
      const dt = i.dtype ?? c.dtype;
      f[i.name] = new ort.Tensor(ORT_TYPE[dt] ?? 'float32', typedArray(dt, v), [...i.dims]);
    }
    return f;
  };
  const lossOf = (r: ort.InferenceSession.OnnxValueMapType): number => {
    let s = 0;
    ys.forEach((y, k) => {
      const data = (r[y] as ort.Tensor).data as Float32Array | Float64Array;
      const w = weights[k] ?? [];
      for (let j = 0; j < data.length; j++) s += (data[j] ?? 0) * (w[j] ?? 0);
    });
    return s;
  };
  const base = await session.run(feeds());
  const analytic: Record<string, number[]> = {};
  const numeric: Record<string, number[]> = {};
  const relErr: Record<string, number> = {};
  for (const w of wrt) {
    const g = Array.from((base[`d_${w.name}`] as ort.Tensor).data as Float32Array);
    const n = numel(w.dims);
    const coords = n <= (opts.maxCoords ?? 64) ? [...Array(n).keys()] : uniform(seed + 77, opts.maxCoords ?? 64, 0, n).map(Math.floor);
    const a: number[] = [];
    const num: number[] = [];
    for (const j of coords) {
      const plus = lossOf(await session.run(feeds({ name: w.name, index: j, delta: h })));
      const minus = lossOf(await session.run(feeds({ name: w.name, index: j, delta: -h })));
      num.push((plus - minus) / (2 * h));
      a.push(g[j] ?? Number.NaN);
    }
    analytic[w.name] = a;
    numeric[w.name] = num;
    const scale = Math.max(1e-12, ...num.map(Math.abs));
    relErr[w.name] = Math.max(...a.map((x, j) => Math.abs(x - (num[j] ?? 0)))) / scale;
  }
  const loss = Number((base.L as ort.Tensor).data[0]);
  await session.release();
  return { analytic, numeric, relErr, loss };
}
