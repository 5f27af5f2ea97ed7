// Appends new nodes to a graph under construction with fresh tensor names, tracking the static
// dtype/dims of every tensor it creates, and caches the small inline constants it needs. The
// vector-Jacobian rules speak only through this class, so every tensor they make has a known shape.
import { P2pzError } from '../../../shared/protocol/errors.js';
import { DataType, type NodeProto, type TensorProto } from '../graph/onnx-proto.js';
import { makeNode, makeTensor, type AttrValue } from '../graph/nodes.js';
import { numel, type ShapeMap, type TensorInfo } from '../graph/static-shapes.js';

export class GraphEmitter {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private counter = 0;
  private readonly constants = new Map<string, string>();
  private readonly constantNames = new Set<string>();

  constructor(readonly shapes: ShapeMap, readonly prefix: string, readonly opset: number) {}

  info(name: string): TensorInfo {
    const i = this.shapes.get(name);
    if (!i) throw new P2pzError('E_INTERNAL', `no static shape for tensor ${name}`);
    return i;
  }

  dims(name: string): readonly number[] {
    return this.info(name).dims;
  }

  fresh(base: string): string {
    let n: string;
    do n = `${this.prefix}${base}_${this.counter++}`; while (this.shapes.has(n));
    return n;
  }

  /** Emits one node with one output of the given type; returns the output name. */
  op(opType: string, inputs: string[], out: { dtype: number; dims: readonly number[] }, attrs: Record<string, AttrValue> = {}): string {
    const name = this.fresh(opType);
    this.nodes.push(makeNode(opType, inputs, [name], `${name}_node`, attrs));
    this.shapes.set(name, { dtype: out.dtype, dims: [...out.dims] });
    return name;
  }

  /** Emits one node with several outputs. */
  opMulti(opType: string, inputs: string[], outs: { dtype: number; dims: readonly number[] }[], attrs: Record<string, AttrValue> = {}): string[] {
    const names = outs.map(() => this.fresh(opType));
    this.nodes.push(makeNode(opType, inputs, names, `${names[0] ?? opType}_node`, attrs));
    names.forEach((n, i) => this.shapes.set(n, { dtype: (outs[i] as TensorInfo).dtype, dims: [...(outs[i] as TensorInfo).dims] }));
    return names;
  }

  /** An inline constant, deduplicated by value. */
  constant(values: readonly number[], dtype: number, dims: readonly number[]): string {
    const key = `${dtype}|${dims.join(',')}|${values.join(',')}`;
    const hit = this.constants.get(key);
    if (hit) return hit;
    const name = this.fresh('const');
    this.initializers.push(makeTensor(name, dtype, dims, values));
    this.shapes.set(name, { dtype, dims: [...dims], value: [...values] });
    this.constants.set(key, name);
    this.constantNames.add(name);
    return name;
  }

  /** Whether `name` is one of the inline constants this emitter made. */
  madeConstant(name: string): boolean {
    return this.constantNames.has(name);
  }

  /** 0·max(t): a scalar zero that exists only once `t` does. Adding it to a tensor makes whatever reads
   *  the sum wait for `t` (onnxruntime orders nodes by data alone), without changing any value. */
  zeroAfter(t: string): string {
    const info = this.info(t);
    return this.mul(this.op('ReduceMax', [t], { dtype: info.dtype, dims: [] }, { keepdims: 0 }), this.scalar(0, info.dtype));
  }

  scalar(value: number, dtype: number): string {
    return this.constant([value], dtype, []);
  }

  ints(values: readonly number[]): string {
    return this.constant(values, DataType.INT64, [values.length]);
  }

  // --- shorthand for the ops the rules use most ---

  private like(x: string, dims?: readonly number[]): { dtype: number; dims: readonly number[] } {
    return { dtype: this.info(x).dtype, dims: dims ?? this.dims(x) };
  }

  binary(opType: 'Add' | 'Sub' | 'Mul' | 'Div', a: string, b: string): string {
    const da = this.dims(a);
    const db = this.dims(b);
    const r = Math.max(da.length, db.length);
    const dims = Array.from({ length: r }, (_, i) => Math.max(da[da.length - r + i] ?? 1, db[db.length - r + i] ?? 1));
    return this.op(opType, [a, b], this.like(a, dims));
  }

  add(a: string, b: string): string { return this.binary('Add', a, b); }
  sub(a: string, b: string): string { return this.binary('Sub', a, b); }
  mul(a: string, b: string): string { return this.binary('Mul', a, b); }
  div(a: string, b: string): string { return this.binary('Div', a, b); }
  neg(a: string): string { return this.op('Neg', [a], this.like(a)); }
  unary(opType: string, a: string): string { return this.op(opType, [a], this.like(a)); }

  /** x · c for a scalar constant c in x's dtype. */
  scale(x: string, c: number): string {
    return c === 1 ? x : this.mul(x, this.scalar(c, this.info(x).dtype));
  }

  reshape(x: string, dims: readonly number[]): string {
    const cur = this.dims(x);
    if (cur.length === dims.length && cur.every((d, i) => d === dims[i])) return x;
    return this.op('Reshape', [x, this.ints(dims)], this.like(x, dims));
  }

  transpose(x: string, perm: readonly number[]): string {
    if (perm.every((p, i) => p === i)) return x;
    const d = this.dims(x);
    return this.op('Transpose', [x], this.like(x, perm.map((p) => d[p] ?? 1)), { perm: [...perm] });
  }

  /** ReduceSum over `axes` (inputs-form, opset >= 13). */
  reduceSum(x: string, axes: readonly number[], keepdims: boolean): string {
    if (axes.length === 0) return x;
    const d = this.dims(x);
    const dims = d.flatMap((v, i) => (axes.includes(i) ? (keepdims ? [1] : []) : [v]));
    return this.op('ReduceSum', [x, this.ints(axes)], this.like(x, dims), { keepdims: keepdims ? 1 : 0 });
  }

  /** Σ of a broadcast gradient back to `target` dims (numpy broadcasting in reverse). */
  sumToShape(grad: string, target: readonly number[]): string {
    const g = this.dims(grad);
    const lead = g.length - target.length;
    const axes: number[] = [];
    for (let i = 0; i < g.length; i++) {
      if (i < lead) axes.push(i);
      else if ((target[i - lead] ?? 1) === 1 && (g[i] ?? 1) !== 1) axes.push(i);
    }
    const summed = this.reduceSum(grad, axes, true);
    return this.reshape(summed, target);
  }

  expand(x: string, dims: readonly number[]): string {
    const cur = this.dims(x);
    if (cur.length === dims.length && cur.every((d, i) => d === dims[i])) return x;
    return this.op('Expand', [x, this.ints(dims)], this.like(x, dims));
  }

  zerosLike(x: string): string {
    const info = this.info(x);
    const zero = this.scalar(0, info.dtype);
    return this.expand(this.reshape(zero, info.dims.map(() => 1)), info.dims);
  }

  /** Σ of several gradient contributions (all of the same shape), as a left fold of Add:
   *  ((g₀ + g₁) + g₂) + …, the order onnxruntime's CPU Sum kernel adds in. Not one variadic Sum: the
   *  WebGPU provider has no Sum kernel, so each Sum ran on the CPU with a copy out of the GPU and back
   *  (77 of them in the tiny UNet's gradient graph, docs/BENCHMARKS.md). */
  sum(parts: readonly string[]): string {
    let total = parts[0] as string;
    for (const part of parts.slice(1)) total = this.op('Add', [total, part], this.like(total));
    return total;
  }

  count(x: string): number {
    return numel(this.dims(x));
  }
}
