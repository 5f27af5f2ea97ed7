// The ONNX protobuf classes (from `onnx-proto`, protobufjs-generated) behind one ESM-safe import, plus
// the small conversions every graph tool needs (int64 fields arrive as `Long` or `number`).
// `onnx-proto` is CommonJS without named-export hints, so Node's ESM loader exposes only `default`.
import onnxProto from 'onnx-proto';

export const onnx = onnxProto.onnx;
// Type aliases so callers never reach into the package's namespace themselves.
export type ModelProto = onnxProto.onnx.ModelProto;
export type GraphProto = onnxProto.onnx.IGraphProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;
export type AttributeProto = onnxProto.onnx.IAttributeProto;
export type TypeProto = onnxProto.onnx.ITypeProto;

/** ONNX TensorProto.DataType codes used by the project. */
export const DataType = Object.freeze({
  FLOAT: 1,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
} as const);
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

/** Bytes per element of each supported data type. */
export const BYTES_PER_ELEMENT: Readonly<Record<number, number>> = Object.freeze({
  [DataType.FLOAT]: 4,
  [DataType.INT32]: 4,
  [DataType.INT64]: 8,
  [DataType.BOOL]: 1,
  [DataType.FLOAT16]: 2,
  [DataType.DOUBLE]: 8,
});

/** A protobuf int64 (`number` or a `Long`-like `{low, high}`) as a JS number; throws past 2^53. */
export function int64ToNumber(v: number | { low: number; high: number; toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number') return v;
  const n = v.toNumber();
  if (!Number.isSafeInteger(n)) throw new RangeError(`int64 value ${n} is not a safe integer`);
  return n;
}

export const ATTRIBUTE_TYPE = onnxProto.onnx.AttributeProto.AttributeType;
export const DATA_LOCATION = onnxProto.onnx.TensorProto.DataLocation;
