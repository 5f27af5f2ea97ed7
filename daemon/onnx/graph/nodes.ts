// Constructors and readers the graph transforms share: attribute readers, small-tensor decoding
// (inline data only: weights in external data files are never read or copied here) and constructors
// for new models, graphs, nodes, tensors and value infos.
import type { onnx as O } from 'onnx-proto';
import { DataType, int64ToNumber, isExternal, onnx } from './onnx-proto.js';
import { fromFloat16Array, toFloat16Array } from './float16.js';
import type { AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto } from './onnx-proto.js';

export function makeModel(fields: O.IModelProto & { graph: GraphProto }): ModelProto {
  return onnx.ModelProto.create(fields) as unknown as ModelProto;
}

export function makeGraph(fields: O.IGraphProto): GraphProto {
  return onnx.GraphProto.create(fields) as unknown as GraphProto;
}

function findAttr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name);
}

export function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = findAttr(node, name);
  return a ? int64ToNumber(a.i) : fallback;
}

export function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = findAttr(node, name);
  return a ? a.f : fallback;
}

export function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = findAttr(node, name);
  return a ? a.ints.map((v) => int64ToNumber(v)) : undefined;
}

export function attrString(node: NodeProto, name: string, fallback: string): string {
  const a = findAttr(node, name);
  return a && a.s ? new TextDecoder().decode(a.s) : fallback;
}

export function attrTensor(node: NodeProto, name: string): TensorProto | undefined {
  const a = findAttr(node, name);
  return a?.t ? (a.t as TensorProto) : undefined;
}

export type AttrValue = number | number[] | string | { float: number } | { floats: number[] } | TensorProto;

/** Builds an AttributeProto: integers and integer lists as INT/INTS, `{float}`/`{floats}` as FLOAT(S). */
export function makeAttr(name: string, value: AttrValue): AttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  const make = (f: O.IAttributeProto): AttributeProto => onnx.AttributeProto.create(f) as unknown as AttributeProto;
  if (typeof value === 'number') return make({ name, type: T.INT, i: value });
  if (typeof value === 'string') return make({ name, type: T.STRING, s: new TextEncoder().encode(value) });
  if (Array.isArray(value)) return make({ name, type: T.INTS, ints: value });
  if ('float' in value) return make({ name, type: T.FLOAT, f: value.float });
  if ('floats' in value) return make({ name, type: T.FLOATS, floats: value.floats });
  return make({ name, type: T.TENSOR, t: value });
}

export function makeNode(opType: string, inputs: string[], outputs: string[], name: string, attrs: Record<string, AttrValue> = {}): NodeProto {
  return onnx.NodeProto.create({
    opType,
    input: inputs,
    output: outputs,
    name,
    attribute: Object.entries(attrs).map(([k, v]) => makeAttr(k, v)),
  }) as unknown as NodeProto;
}

/** A tensor with inline raw data (little-endian), for the small constants the transforms create. */
export function makeTensor(name: string, dtype: number, dims: readonly number[], values: ArrayLike<number>): TensorProto {
  const n = values.length;
  let raw: Uint8Array;
  if (dtype === DataType.FLOAT) raw = new Uint8Array(Float32Array.from(values).buffer);
  else if (dtype === DataType.DOUBLE) raw = new Uint8Array(Float64Array.from(values).buffer);
  else if (dtype === DataType.FLOAT16) raw = new Uint8Array(toFloat16Array(values).buffer);
  else if (dtype === DataType.INT64) raw = new Uint8Array(BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v)))).buffer);
  else if (dtype === DataType.INT32) raw = new Uint8Array(Int32Array.from(values).buffer);
  else if (dtype === DataType.BOOL || dtype === DataType.UINT8) raw = Uint8Array.from(values, (v) => (v ? 1 : 0));
  else throw new Error(`makeTensor: unsupported data type ${dtype}`);
  if (dims.reduce((a, b) => a * b, 1) !== n) throw new Error(`makeTensor: ${n} values for dims [${dims.join(',')}]`);
  return onnx.TensorProto.create({ name, dataType: dtype, dims: [...dims], rawData: raw }) as unknown as TensorProto;
}

export function tensorDims(t: TensorProto): number[] {
  return t.dims.map((d) => int64ToNumber(d));
}

/** Decodes an inline tensor's values as JS numbers (int64 through Number: shape-sized values only).
 *  Returns undefined for external data or strings. */
export function tensorValues(t: TensorProto): number[] | undefined {
  if (isExternal(t)) return undefined;
  const count = tensorDims(t).reduce((a, b) => a * b, 1);
  const raw = t.rawData;
  if (raw && raw.length > 0) {
    const buf = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
    switch (t.dataType) {
      case DataType.FLOAT: return Array.from(new Float32Array(buf));
      case DataType.DOUBLE: return Array.from(new Float64Array(buf));
      case DataType.FLOAT16: return Array.from(fromFloat16Array(new Uint16Array(buf)));
      case DataType.INT64: return Array.from(new BigInt64Array(buf), (v) => Number(v));
      case DataType.INT32: return Array.from(new Int32Array(buf));
      case DataType.INT8: return Array.from(new Int8Array(buf));
      case DataType.UINT8: case DataType.BOOL: return Array.from(new Uint8Array(buf));
      default: return undefined;
    }
  }
  switch (t.dataType) {
    case DataType.FLOAT: return t.floatData?.length === count ? [...t.floatData] : undefined;
    case DataType.DOUBLE: return t.doubleData?.length === count ? [...t.doubleData] : undefined;
    case DataType.INT64: return t.int64Data?.length === count ? t.int64Data.map((v) => int64ToNumber(v)) : undefined;
    case DataType.INT32: case DataType.INT8: case DataType.UINT8: case DataType.BOOL:
      return t.int32Data?.length === count ? [...t.int32Data] : undefined;
    default: return count === 0 ? [] : undefined;
  }
}

/** The opset version of the default ONNX domain. */
export function defaultOpset(model: ModelProto): number {
  const entry = model.opsetImport.find((o) => !o.domain || o.domain === 'ai.onnx');
  return entry ? int64ToNumber(entry.version) : 1;
}

export function valueInfo(name: string, dtype: number, dims: readonly (number | string)[]): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: dtype,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

/** Element type and dims (-1 where symbolic) declared on a graph input or output. */
export function declaredType(v: ValueInfoProto): { dtype: number; dims: number[] } {
  const tt = v.type?.tensorType;
  const dims = (tt?.shape?.dim ?? []).map((d) => (d.dimValue !== null && d.dimValue !== undefined && int64ToNumber(d.dimValue) > 0 ? int64ToNumber(d.dimValue) : -1));
  return { dtype: tt?.elemType ?? 0, dims };
}
