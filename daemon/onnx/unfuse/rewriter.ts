// Emits the standard-ONNX subgraph that replaces one fused node: fresh tensor and node names under the
// fused node's name, small inline constants, and the opset-dependent forms (Split, Unsqueeze,
// ReduceMean take their axes as attributes or as inputs depending on the default-domain opset).
import { DataType, type NodeProto, type TensorProto } from '../graph/onnx-proto.js';
import { makeNode, makeTensor, type AttrValue } from '../graph/nodes.js';

export class Rewriter {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private counter = 0;

  /** `base`: the fused node's name (every new name starts with it); `taken`: names already in the graph. */
  constructor(readonly base: string, readonly opset: number, private readonly taken: Set<string>) {}

  fresh(what: string): string {
    let n: string;
    do n = `${this.base}/unfused/${what}_${this.counter++}`; while (this.taken.has(n));
    this.taken.add(n);
    return n;
  }

  /** One node; `outputs` names its outputs (default: one fresh name). Returns the output names. */
  opN(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, outputs?: readonly string[], nodeName?: string): string[] {
    const outs = outputs ? [...outputs] : [this.fresh(`${opType}_output`)];
    this.nodes.push(makeNode(opType, [...inputs], outs, nodeName ?? this.fresh(opType), attrs));
    return outs;
  }

  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, output?: string, nodeName?: string): string {
    return this.opN(opType, inputs, attrs, output === undefined ? undefined : [output], nodeName)[0] as string;
  }

  constant(values: readonly number[], dtype: number, dims: readonly number[]): string {
    const name = this.fresh('const');
    this.initializers.push(makeTensor(name, dtype, dims, values));
    return name;
  }

  ints(values: readonly number[]): string {
    return this.constant(values, DataType.INT64, [values.length]);
  }

  /** A scalar in the given float type (float32 unless the graph computes in double). */
  scalar(value: number, dtype: number): string {
    return this.constant([value], dtype === DataType.DOUBLE ? DataType.DOUBLE : DataType.FLOAT, []);
  }

  reshape(x: string, dims: readonly number[], output?: string): string {
    return this.op('Reshape', [x, this.ints(dims)], {}, output);
  }

  transpose(x: string, perm: readonly number[], output?: string): string {
    return this.op('Transpose', [x], { perm: [...perm] }, output);
  }

  /** Equal parts along `axis` (`parts` outputs). */
  split(x: string, axis: number, parts: number): string[] {
    const outs = Array.from({ length: parts }, () => this.fresh('Split_output'));
    return this.opN('Split', [x], this.opset >= 18 ? { axis, num_outputs: parts } : { axis }, outs);
  }

  squeeze(x: string, axes: readonly number[]): string {
    return this.opset >= 13 ? this.op('Squeeze', [x, this.ints(axes)]) : this.op('Squeeze', [x], { axes: [...axes] });
  }

  unsqueeze(x: string, axes: readonly number[]): string {
    return this.opset >= 13 ? this.op('Unsqueeze', [x, this.ints(axes)]) : this.op('Unsqueeze', [x], { axes: [...axes] });
  }

  reduceMean(x: string, axes: readonly number[]): string {
    return this.opset >= 18
      ? this.op('ReduceMean', [x, this.ints(axes)], { keepdims: 1 })
      : this.op('ReduceMean', [x], { axes: [...axes], keepdims: 1 });
  }

  /** GELU(x) = x·½(1 + erf(x/√2)), in the node pattern the PyTorch exporter writes. */
  gelu(x: string, dtype: number, output?: string): string {
    const e = this.op('Erf', [this.op('Div', [x, this.scalar(Math.SQRT2, dtype)])]);
    const m = this.op('Mul', [x, this.op('Add', [e, this.scalar(1, dtype)])]);
    return this.op('Mul', [m, this.scalar(0.5, dtype)], {}, output);
  }
}
