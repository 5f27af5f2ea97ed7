// Static shape inference for fixed input shapes: propagates (dtype, dims) through every node of a
// graph, and evaluates small tensors (shape arithmetic: Shape/Gather/Concat/Slice/...) in JS so that
// shape subgraphs can be folded into constants. Only inline initializers are ever read; weights in
// external data are described by their declared dims alone.
import { P2pzError } from '../../../shared/protocol/errors.js';
import { attrFloat, attrInt, attrInts, attrString, attrTensor, declaredType, defaultOpset, tensorDims, tensorValues } from './nodes.js';
import { float16Bits, float16Value } from './float16.js';
import { DataType, int64ToNumber, isFloatType, type GraphProto, type ModelProto, type NodeProto } from './onnx-proto.js';

/** What is known about one tensor: its element type, static dims and, for small tensors computable
 *  from constants, its values (row-major, as JS numbers). */
export interface TensorInfo {
  readonly dtype: number;
  readonly dims: readonly number[];
  readonly value?: readonly number[];
}

export const STATIC_SHAPES_DEFAULTS = Object.freeze({
  /** Largest tensor (elements) whose values are evaluated in JS. Shape tensors are tiny. */
  maxEvaluatedElements: 4096,
});

export type ShapeMap = Map<string, TensorInfo>;

export const numel = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

export function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** Numpy-style broadcast of two shapes. */
export function broadcastDims(a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1;
    const db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`shapes [${a.join(',')}] and [${b.join(',')}] do not broadcast`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Values of `x` (dims `from`) broadcast to `to` (row-major). */
function broadcastValues(x: readonly number[], from: readonly number[], to: readonly number[]): number[] {
  const n = numel(to);
  const out = new Array<number>(n);
  const r = to.length;
  const strides: number[] = new Array<number>(r).fill(0);
  let s = 1;
  for (let i = from.length - 1; i >= 0; i--) {
    const ti = r - from.length + i;
    strides[ti] = from[i] === 1 ? 0 : s;
    s *= from[i] ?? 1;
  }
  for (let k = 0; k < n; k++) {
    let rem = k;
    let off = 0;
    for (let i = r - 1; i >= 0; i--) {
      const d = to[i] ?? 1;
      off += (rem % d) * (strides[i] ?? 0);
      rem = Math.floor(rem / d);
    }
    out[k] = x[off] ?? 0;
  }
  return out;
}

function castValue(v: number, dtype: number): number {
  if (dtype === DataType.FLOAT) return Math.fround(v);
  if (dtype === DataType.FLOAT16) return float16Value(float16Bits(v));
  if (dtype === DataType.BOOL) return v ? 1 : 0;
  if (dtype === DataType.INT64 || dtype === DataType.INT32 || dtype === DataType.INT8 || dtype === DataType.UINT8) return Math.trunc(v);
  return v;
}

const BINARY: Record<string, (a: number, b: number, integer: boolean) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b, integer) => (integer ? Math.trunc(a / b) : a / b),
  Pow: (a, b) => a ** b,
  Mod: (a, b) => a - Math.floor(a / b) * b,
  Max: (a, b) => Math.max(a, b),
  Min: (a, b) => Math.min(a, b),
  Equal: (a, b) => (a === b ? 1 : 0),
  Less: (a, b) => (a < b ? 1 : 0),
  Greater: (a, b) => (a > b ? 1 : 0),
  LessOrEqual: (a, b) => (a <= b ? 1 : 0),
  GreaterOrEqual: (a, b) => (a >= b ? 1 : 0),
  And: (a, b) => (a && b ? 1 : 0),
  Or: (a, b) => (a || b ? 1 : 0),
};
const COMPARISON = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or']);

const UNARY: Record<string, (a: number) => number> = {
  Identity: (a) => a,
  Neg: (a) => -a,
  Abs: Math.abs,
  Floor: Math.floor,
  Ceil: Math.ceil,
  Sqrt: Math.sqrt,
  Exp: Math.exp,
  Log: Math.log,
  Sin: Math.sin,
  Cos: Math.cos,
  Tanh: Math.tanh,
  Reciprocal: (a) => 1 / a,
  Relu: (a) => Math.max(a, 0),
  Sigmoid: (a) => 1 / (1 + Math.exp(-a)),
  Not: (a) => (a ? 0 : 1),
  Round: (a) => {
    const f = Math.floor(a);
    const d = a - f;
    return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
  },
};

/** Reads Slice-style inputs (opset >= 10) or attributes (older) into normalised per-axis ranges. */
export function sliceRanges(node: NodeProto, dims: readonly number[], get: (i: number) => readonly number[] | undefined):
  { axis: number; start: number; end: number; step: number }[] | undefined {
  const starts = node.input.length > 1 ? get(1) : attrInts(node, 'starts');
  const ends = node.input.length > 2 ? get(2) : attrInts(node, 'ends');
  if (!starts || !ends) return undefined;
  const axes = (node.input.length > 3 && node.input[3] ? get(3) : attrInts(node, 'axes')) ?? starts.map((_, i) => i);
  const steps = (node.input.length > 4 && node.input[4] ? get(4) : undefined) ?? starts.map(() => 1);
  return axes.map((a, i) => {
    const axis = normAxis(a, dims.length);
    const d = dims[axis] ?? 0;
    const step = steps[i] ?? 1;
    let s = starts[i] ?? 0;
    let e = ends[i] ?? d;
    if (s < 0) s += d;
    if (e < 0) e += d;
    if (step > 0) {
      s = Math.min(Math.max(s, 0), d);
      e = Math.min(Math.max(e, 0), d);
    } else {
      s = Math.min(Math.max(s, -1), d - 1);
      e = Math.min(Math.max(e, -1), d - 1);
    }
    return { axis, start: s, end: e, step };
  });
}

function sliceLen(r: { start: number; end: number; step: number }): number {
  return Math.max(0, Math.ceil((r.end - r.start) / r.step));
}

/** Reduction axes from the attribute (opset < 18 for ReduceMean, < 13 for ReduceSum) or input 1. */
export function reduceAxes(node: NodeProto, rank: number, get: (i: number) => readonly number[] | undefined): number[] | undefined {
  let axes: readonly number[] | undefined = attrInts(node, 'axes');
  if (!axes && node.input.length > 1 && node.input[1]) {
    axes = get(1);
    if (!axes) return undefined;
  }
  if (!axes || axes.length === 0) {
    if (attrInt(node, 'noop_with_empty_axes', 0)) return [];
    return [...Array(rank).keys()];
  }
  return axes.map((a) => normAxis(a, rank)).sort((a, b) => a - b);
}

/** Resize/Upsample output dims from `sizes` or `scales`. */
export function resizeOutputDims(node: NodeProto, x: readonly number[], get: (i: number) => readonly number[] | undefined): number[] | undefined {
  const sizes = node.input.length > 3 && node.input[3] ? get(3) : undefined;
  if (sizes && sizes.length > 0) return [...sizes];
  const scales = node.input.length > 2 && node.input[2] ? get(2) : node.opType === 'Upsample' ? get(1) : undefined;
  if (!scales || scales.length !== x.length) return undefined;
  return x.map((d, i) => Math.floor(d * (scales[i] ?? 1)));
}

/** Reshape target dims (0 copies the input dim unless allowzero, -1 inferred). */
export function reshapeDims(input: readonly number[], shape: readonly number[], allowZero: boolean): number[] {
  const out = shape.map((s, i) => (s === 0 && !allowZero ? (input[i] ?? 0) : s));
  const known = out.filter((s) => s !== -1).reduce((a, b) => a * b, 1);
  return out.map((s) => (s === -1 ? numel(input) / known : s));
}

export function convOutDims(node: NodeProto, x: readonly number[], w: readonly number[], transpose: boolean): number[] {
  const spatial = x.length - 2;
  const kernel = attrInts(node, 'kernel_shape') ?? w.slice(2);
  const strides = attrInts(node, 'strides') ?? new Array<number>(spatial).fill(1);
  const dil = attrInts(node, 'dilations') ?? new Array<number>(spatial).fill(1);
  const pads = attrInts(node, 'pads') ?? new Array<number>(2 * spatial).fill(0);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  const group = attrInt(node, 'group', 1);
  const out: number[] = [x[0] ?? 1, transpose ? (w[1] ?? 1) * group : (w[0] ?? 1)];
  if (transpose) {
    const outputShape = attrInts(node, 'output_shape');
    const outPad = attrInts(node, 'output_padding') ?? new Array<number>(spatial).fill(0);
    for (let i = 0; i < spatial; i++) {
      if (outputShape) { out.push(outputShape[outputShape.length - spatial + i] ?? 0); continue; }
      const d = x[i + 2] ?? 0;
      const s = strides[i] ?? 1;
      if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') { out.push(d * s); continue; }
      out.push(s * (d - 1) + (outPad[i] ?? 0) + ((kernel[i] ?? 1) - 1) * (dil[i] ?? 1) + 1 - (pads[i] ?? 0) - (pads[i + spatial] ?? 0));
    }
    return out;
  }
  for (let i = 0; i < spatial; i++) {
    const d = x[i + 2] ?? 0;
    const s = strides[i] ?? 1;
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') { out.push(Math.ceil(d / s)); continue; }
    if (autoPad === 'VALID') { out.push(Math.floor((d - ((kernel[i] ?? 1) - 1) * (dil[i] ?? 1) - 1) / s) + 1); continue; }
    const eff = ((kernel[i] ?? 1) - 1) * (dil[i] ?? 1) + 1;
    out.push(Math.floor((d + (pads[i] ?? 0) + (pads[i + spatial] ?? 0) - eff) / s) + 1);
  }
  return out;
}

/** Output dims of an Einsum from its equation (explicit `->` form, or implicit). */
export function einsumOutputDims(equation: string, inputs: readonly (readonly number[])[]): number[] {
  const eq = equation.replace(/\s+/g, '');
  const [lhs = '', rhsGiven] = eq.split('->');
  const terms = lhs.split(',');
  if (eq.includes('.')) throw new P2pzError('E_UNSUPPORTED_OP', `Einsum with ellipsis (${equation})`);
  const size = new Map<string, number>();
  const count = new Map<string, number>();
  terms.forEach((t, k) => [...t].forEach((c, i) => {
    const d = inputs[k]?.[i] ?? 1;
    size.set(c, Math.max(size.get(c) ?? 1, d));
    count.set(c, (count.get(c) ?? 0) + 1);
  }));
  const rhs = rhsGiven ?? [...count.keys()].filter((c) => count.get(c) === 1).sort().join('');
  return [...rhs].map((c) => size.get(c) ?? 1);
}

type Result = (TensorInfo | undefined)[];

/** Output types of a node outside the default domain, or undefined when the caller has no rule for it
 *  (then the node is refused with E_UNSUPPORTED_OP). */
export type DomainShapeRule = (node: NodeProto, ins: readonly (TensorInfo | undefined)[]) => (TensorInfo | undefined)[] | undefined;

/** Infers every tensor of `graph` given fixed dims for its inputs. Throws E_MODEL_INVALID when a
 *  tensor's shape cannot be determined. `domainRule` types the nodes of other domains (unfuse/). */
export function inferStaticShapes(
  model: ModelProto,
  inputDims: Readonly<Record<string, readonly number[]>>,
  options: Partial<typeof STATIC_SHAPES_DEFAULTS> = {},
  domainRule?: DomainShapeRule,
): ShapeMap {
  const opts = { ...STATIC_SHAPES_DEFAULTS, ...options };
  const graph = model.graph as GraphProto;
  const opset = defaultOpset(model);
  const map: ShapeMap = new Map();
  for (const init of graph.initializer) {
    const dims = tensorDims(init);
    const value = numel(dims) <= opts.maxEvaluatedElements ? tensorValues(init) : undefined;
    map.set(init.name, value ? { dtype: init.dataType, dims, value } : { dtype: init.dataType, dims });
  }
  for (const inp of graph.input) {
    if (map.has(inp.name)) continue;
    const declared = declaredType(inp);
    const fixed = inputDims[inp.name];
    const dims = fixed ? [...fixed] : declared.dims;
    if (dims.some((d) => d < 0)) throw new P2pzError('E_MODEL_INVALID', `input ${inp.name} has a free dimension; give its static shape`);
    if (declared.dims.length !== dims.length) throw new P2pzError('E_MODEL_INVALID', `input ${inp.name} has rank ${declared.dims.length}, not ${dims.length}`);
    map.set(inp.name, { dtype: declared.dtype, dims });
  }
  for (const node of graph.node) {
    const ins = node.input.map((n) => (n ? map.get(n) : undefined));
    let outs: Result;
    try {
      const custom = domainRule && node.domain && node.domain !== 'ai.onnx' ? domainRule(node, ins) : undefined;
      outs = custom ?? inferNode(node, ins, opset);
    } catch (e) {
      if (e instanceof P2pzError) throw e;
      throw new P2pzError('E_MODEL_INVALID', `shape inference failed at ${node.opType} node ${node.name}: ${(e as Error).message}`);
    }
    node.output.forEach((name, i) => {
      if (!name) return;
      const info = outs[i];
      if (!info) throw new P2pzError('E_UNSUPPORTED_OP', `op ${node.opType} at node ${node.name} (shape of output ${i} unknown)`);
      const small = info.value !== undefined && info.value.length <= opts.maxEvaluatedElements;
      map.set(name, small ? info : { dtype: info.dtype, dims: info.dims });
    });
  }
  return map;
}

function inferNode(node: NodeProto, ins: (TensorInfo | undefined)[], opset: number): Result {
  const x = ins[0];
  const val = (i: number): readonly number[] | undefined => ins[i]?.value;
  const need = (i: number): TensorInfo => {
    const t = ins[i];
    if (!t) throw new Error(`input ${i} unknown`);
    return t;
  };
  const op = node.opType;
  if (node.domain && node.domain !== 'ai.onnx') throw new P2pzError('E_UNSUPPORTED_OP', `op ${node.domain}.${op} at node ${node.name}`);
  if (op in UNARY) {
    const a = need(0);
    return [{ dtype: a.dtype, dims: a.dims, ...(a.value ? { value: a.value.map((v) => castValue((UNARY[op] as (v: number) => number)(v), a.dtype)) } : {}) }];
  }
  if (op === 'Sum' || op === 'Mean' || ((op === 'Max' || op === 'Min') && node.input.length !== 2)) {
    const parts = node.input.map((_, i) => need(i));
    const first = parts[0] as TensorInfo;
    return [{ dtype: first.dtype, dims: parts.reduce<number[]>((d, p) => broadcastDims(d, p.dims), [...first.dims]) }];
  }
  if (op in BINARY) {
    const a = need(0);
    const b = need(1);
    const dims = broadcastDims(a.dims, b.dims);
    const dtype = COMPARISON.has(op) ? DataType.BOOL : a.dtype;
    let value: number[] | undefined;
    if (a.value && b.value) {
      const av = broadcastValues(a.value, a.dims, dims);
      const bv = broadcastValues(b.value, b.dims, dims);
      const f = BINARY[op] as (p: number, q: number, i: boolean) => number;
      const integer = !isFloatType(a.dtype);
      value = av.map((p, i) => castValue(f(p, bv[i] ?? 0, integer), dtype));
    }
    return [{ dtype, dims, ...(value ? { value } : {}) }];
  }
  switch (op) {
    case 'Constant': {
      const t = attrTensor(node, 'value');
      if (t) {
        const v = tensorValues(t);
        return [{ dtype: t.dataType, dims: tensorDims(t), ...(v ? { value: v } : {}) }];
      }
      const i = attrInts(node, 'value_ints');
      if (i) return [{ dtype: DataType.INT64, dims: [i.length], value: i }];
      if (node.attribute.some((a) => a.name === 'value_int')) return [{ dtype: DataType.INT64, dims: [], value: [attrInt(node, 'value_int', 0)] }];
      if (node.attribute.some((a) => a.name === 'value_float')) return [{ dtype: DataType.FLOAT, dims: [], value: [attrFloat(node, 'value_float', 0)] }];
      throw new P2pzError('E_UNSUPPORTED_OP', `op Constant (sparse or string) at node ${node.name}`);
    }
    case 'Cast': {
      const a = need(0);
      const to = attrInt(node, 'to', DataType.FLOAT);
      return [{ dtype: to, dims: a.dims, ...(a.value ? { value: a.value.map((v) => castValue(v, to)) } : {}) }];
    }
    case 'Shape': {
      const a = need(0);
      const r = a.dims.length;
      let s = attrInt(node, 'start', 0);
      let e = node.attribute.some((at) => at.name === 'end') ? attrInt(node, 'end', r) : r;
      s = Math.min(Math.max(s < 0 ? s + r : s, 0), r);
      e = Math.min(Math.max(e < 0 ? e + r : e, 0), r);
      const value = a.dims.slice(s, e);
      return [{ dtype: DataType.INT64, dims: [value.length], value }];
    }
    case 'Size': return [{ dtype: DataType.INT64, dims: [], value: [numel(need(0).dims)] }];
    case 'ConstantOfShape': {
      const shape = val(0);
      if (!shape) throw new Error('shape input not constant');
      const t = attrTensor(node, 'value');
      const fill = t ? (tensorValues(t)?.[0] ?? 0) : 0;
      const dtype = t ? t.dataType : DataType.FLOAT;
      const n = numel(shape);
      return [{ dtype, dims: [...shape], ...(n <= STATIC_SHAPES_DEFAULTS.maxEvaluatedElements ? { value: new Array<number>(n).fill(fill) } : {}) }];
    }
    case 'Range': {
      const [s, l, d] = [val(0)?.[0], val(1)?.[0], val(2)?.[0]];
      if (s === undefined || l === undefined || d === undefined) throw new Error('Range with non-constant bounds');
      const n = Math.max(Math.ceil((l - s) / d), 0);
      return [{ dtype: need(0).dtype, dims: [n], value: Array.from({ length: n }, (_, i) => s + i * d) }];
    }
    case 'Gather': {
      const a = need(0);
      const idx = need(1);
      const axis = normAxis(attrInt(node, 'axis', 0), a.dims.length);
      const dims = [...a.dims.slice(0, axis), ...idx.dims, ...a.dims.slice(axis + 1)];
      let value: number[] | undefined;
      if (a.value && idx.value) {
        const pre = numel(a.dims.slice(0, axis));
        const d = a.dims[axis] ?? 1;
        const post = numel(a.dims.slice(axis + 1));
        value = [];
        for (let p = 0; p < pre; p++) for (const raw of idx.value) {
          const k = raw < 0 ? raw + d : raw;
          for (let q = 0; q < post; q++) value.push(a.value[(p * d + k) * post + q] ?? 0);
        }
      }
      return [{ dtype: a.dtype, dims, ...(value ? { value } : {}) }];
    }
    case 'Unsqueeze': {
      const a = need(0);
      const axes = opset >= 13 ? val(1) : attrInts(node, 'axes');
      if (!axes) throw new Error('axes not constant');
      const r = a.dims.length + axes.length;
      const norm = new Set(axes.map((ax) => normAxis(ax, r)));
      const dims: number[] = [];
      let k = 0;
      for (let i = 0; i < r; i++) dims.push(norm.has(i) ? 1 : (a.dims[k++] ?? 1));
      return [{ dtype: a.dtype, dims, ...(a.value ? { value: a.value } : {}) }];
    }
    case 'Squeeze': {
      const a = need(0);
      const axes = (opset >= 13 ? (node.input[1] ? val(1) : undefined) : attrInts(node, 'axes'));
      if (opset >= 13 && node.input[1] && !axes) throw new Error('axes not constant');
      const norm = axes ? new Set(axes.map((ax) => normAxis(ax, a.dims.length))) : undefined;
      const dims = a.dims.filter((d, i) => (norm ? !norm.has(i) : d !== 1));
      return [{ dtype: a.dtype, dims, ...(a.value ? { value: a.value } : {}) }];
    }
    case 'Flatten': {
      const a = need(0);
      const axis = normAxis(attrInt(node, 'axis', 1), a.dims.length);
      return [{ dtype: a.dtype, dims: [numel(a.dims.slice(0, axis)), numel(a.dims.slice(axis))], ...(a.value ? { value: a.value } : {}) }];
    }
    case 'Reshape': {
      const a = need(0);
      const shape = val(1);
      if (!shape) throw new Error('target shape not constant');
      const dims = reshapeDims(a.dims, shape, attrInt(node, 'allowzero', 0) === 1);
      return [{ dtype: a.dtype, dims, ...(a.value ? { value: a.value } : {}) }];
    }
    case 'Concat': {
      const parts = node.input.map((_, i) => need(i));
      const first = parts[0] as TensorInfo;
      const axis = normAxis(attrInt(node, 'axis', 0), first.dims.length);
      for (const p of parts) {
        if (p.dims.length !== first.dims.length || p.dims.some((d, i) => i !== axis && d !== first.dims[i])) {
          throw new Error(`cannot concatenate [${first.dims.join(',')}] and [${p.dims.join(',')}] on axis ${axis}`);
        }
      }
      const dims = [...first.dims];
      dims[axis] = parts.reduce((s, p) => s + (p.dims[axis] ?? 0), 0);
      let value: number[] | undefined;
      if (parts.every((p) => p.value)) {
        const pre = numel(first.dims.slice(0, axis));
        value = [];
        for (let p = 0; p < pre; p++) for (const part of parts) {
          const chunk = numel(part.dims.slice(axis));
          value.push(...(part.value as number[]).slice(p * chunk, (p + 1) * chunk));
        }
      }
      return [{ dtype: first.dtype, dims, ...(value ? { value } : {}) }];
    }
    case 'Slice': {
      const a = need(0);
      const ranges = sliceRanges(node, a.dims, val);
      if (!ranges) throw new Error('slice bounds not constant');
      const dims = [...a.dims];
      for (const r of ranges) dims[r.axis] = sliceLen(r);
      let value: number[] | undefined;
      if (a.value) {
        const src = a.value;
        const per = a.dims.map((_, i) => {
          const r = ranges.find((q) => q.axis === i);
          return r ?? { axis: i, start: 0, end: a.dims[i] ?? 1, step: 1 };
        });
        value = [];
        const strides = a.dims.map((_, i) => numel(a.dims.slice(i + 1)));
        const n = numel(dims);
        for (let k = 0; k < n; k++) {
          let rem = k;
          let off = 0;
          for (let i = dims.length - 1; i >= 0; i--) {
            const d = dims[i] ?? 1;
            const j = rem % d;
            rem = Math.floor(rem / d);
            const r = per[i] as { start: number; step: number };
            off += (r.start + j * r.step) * (strides[i] ?? 1);
          }
          value.push(src[off] ?? 0);
        }
      }
      return [{ dtype: a.dtype, dims, ...(value ? { value } : {}) }];
    }
    case 'Transpose': {
      const a = need(0);
      const perm = attrInts(node, 'perm') ?? [...a.dims.keys()].reverse();
      return [{ dtype: a.dtype, dims: perm.map((p) => a.dims[p] ?? 1), ...(a.value && a.dims.length <= 1 ? { value: a.value } : {}) }];
    }
    case 'Expand': {
      const a = need(0);
      const shape = val(1);
      if (!shape) throw new Error('expand shape not constant');
      const dims = broadcastDims(a.dims, shape);
      return [{ dtype: a.dtype, dims, ...(a.value ? { value: broadcastValues(a.value, a.dims, dims) } : {}) }];
    }
    case 'Where': {
      const c = need(0);
      const a = need(1);
      const b = need(2);
      const dims = broadcastDims(broadcastDims(c.dims, a.dims), b.dims);
      let value: number[] | undefined;
      if (c.value && a.value && b.value) {
        const cv = broadcastValues(c.value, c.dims, dims);
        const av = broadcastValues(a.value, a.dims, dims);
        const bv = broadcastValues(b.value, b.dims, dims);
        value = cv.map((q, i) => (q ? (av[i] ?? 0) : (bv[i] ?? 0)));
      }
      return [{ dtype: a.dtype, dims, ...(value ? { value } : {}) }];
    }
    case 'Softmax': case 'LogSoftmax': case 'Dropout': case 'InstanceNormalization': case 'Clip': case 'LeakyRelu':
    case 'Gelu': case 'Softplus': case 'Elu': case 'HardSigmoid': case 'Mish': case 'Erf':
      return [{ dtype: need(0).dtype, dims: need(0).dims }];
    case 'LayerNormalization': {
      const a = need(0);
      const axis = normAxis(attrInt(node, 'axis', -1), a.dims.length);
      const stat = a.dims.map((d, i) => (i < axis ? d : 1));
      return [{ dtype: a.dtype, dims: a.dims }, { dtype: DataType.FLOAT, dims: stat }, { dtype: DataType.FLOAT, dims: stat }];
    }
    case 'ReduceMean': case 'ReduceSum': case 'ReduceMax': case 'ReduceMin': case 'ReduceProd': case 'ReduceSumSquare': case 'ReduceL2': {
      const a = need(0);
      const axes = reduceAxes(node, a.dims.length, val);
      if (!axes) throw new Error('reduction axes not constant');
      const keep = attrInt(node, 'keepdims', 1) === 1;
      const dims = a.dims.flatMap((d, i) => (axes.includes(i) ? (keep ? [1] : []) : [d]));
      let value: number[] | undefined;
      if (a.value && op === 'ReduceProd' && axes.length === a.dims.length) value = [a.value.reduce((p, q) => p * q, 1)];
      if (a.value && op === 'ReduceSum' && axes.length === a.dims.length) value = [a.value.reduce((p, q) => p + q, 0)];
      return [{ dtype: a.dtype, dims, ...(value ? { value } : {}) }];
    }
    case 'MatMul': {
      const a = need(0);
      const b = need(1);
      if (a.dims.length < 2 || b.dims.length < 2) throw new P2pzError('E_UNSUPPORTED_OP', `op MatMul with a 1-D operand at node ${node.name}`);
      const batch = broadcastDims(a.dims.slice(0, -2), b.dims.slice(0, -2));
      return [{ dtype: a.dtype, dims: [...batch, a.dims[a.dims.length - 2] ?? 1, b.dims[b.dims.length - 1] ?? 1] }];
    }
    case 'Gemm': {
      const a = need(0);
      const b = need(1);
      const m = attrInt(node, 'transA', 0) ? a.dims[1] : a.dims[0];
      const n = attrInt(node, 'transB', 0) ? b.dims[0] : b.dims[1];
      return [{ dtype: a.dtype, dims: [m ?? 1, n ?? 1] }];
    }
    case 'Conv': return [{ dtype: need(0).dtype, dims: convOutDims(node, need(0).dims, need(1).dims, false) }];
    case 'ConvTranspose': return [{ dtype: need(0).dtype, dims: convOutDims(node, need(0).dims, need(1).dims, true) }];
    case 'Resize': case 'Upsample': {
      const dims = resizeOutputDims(node, need(0).dims, val);
      if (!dims) throw new Error('resize scales/sizes not constant');
      return [{ dtype: need(0).dtype, dims }];
    }
    case 'Split': {
      const a = need(0);
      const axis = normAxis(attrInt(node, 'axis', 0), a.dims.length);
      const d = a.dims[axis] ?? 1;
      let sizes = node.input[1] ? val(1) : attrInts(node, 'split');
      if (node.input[1] && !sizes) throw new Error('split sizes not constant');
      if (!sizes) {
        const n = node.output.length;
        const chunk = Math.ceil(d / n);
        sizes = Array.from({ length: n }, (_, i) => Math.min(chunk, d - chunk * i));
      }
      return sizes.map((s) => ({ dtype: a.dtype, dims: a.dims.map((q, i) => (i === axis ? s : q)) }));
    }
    case 'Einsum': {
      const eq = attrString(node, 'equation', '');
      const parts = node.input.map((_, i) => need(i));
      return [{ dtype: need(0).dtype, dims: einsumOutputDims(eq, parts.map((p) => p.dims)) }];
    }
    case 'Pad': {
      const a = need(0);
      const pads = opset >= 11 ? val(1) : attrInts(node, 'pads');
      if (!pads) throw new Error('pads not constant');
      const r = a.dims.length;
      return [{ dtype: a.dtype, dims: a.dims.map((d, i) => d + (pads[i] ?? 0) + (pads[i + r] ?? 0)) }];
    }
    case 'Tile': {
      const a = need(0);
      const reps = val(1);
      if (!reps) throw new Error('repeats not constant');
      return [{ dtype: a.dtype, dims: a.dims.map((d, i) => d * (reps[i] ?? 1)) }];
    }
    default:
      throw new P2pzError('E_UNSUPPORTED_OP', `op ${op} at node ${node.name} (no shape rule)`);
  }
}
