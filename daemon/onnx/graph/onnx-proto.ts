// The one ONNX protobuf vocabulary of the project: the `onnx` namespace of `onnx-proto`
// (protobufjs-generated) behind one ESM-safe import, the message types every graph tool reads, the
// data-type table and the int64 conversion. Decoding and encoding files is model-io.ts; constructors
// and readers of nodes, attributes and tensors are nodes.ts.
// `onnx-proto` is CommonJS without named-export hints, so Node's ESM loader exposes only `default`.
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';

export const onnx = onnxProto.onnx;

// The generated classes type every field as optional and nullable. Decoded messages (and ones made
// with `create`) carry protobufjs's defaults for absent fields, so the graph tools read them through
// these narrower views: repeated fields are arrays, strings are strings.
type Req<T> = NonNullable<T>;
export interface TensorProto extends O.ITensorProto {
  name: string;
  dataType: number;
  dims: Req<O.ITensorProto['dims']>;
}
export interface AttributeProto extends O.IAttributeProto {
  name: string;
  f: number;
  ints: Req<O.IAttributeProto['ints']>;
  floats: number[];
}
export interface ValueInfoProto extends O.IValueInfoProto {
  name: string;
}
export interface NodeProto extends O.INodeProto {
  input: string[];
  output: string[];
  name: string;
  opType: string;
  domain: string;
  attribute: AttributeProto[];
}
export interface GraphProto extends O.IGraphProto {
  name: string;
  node: NodeProto[];
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  valueInfo: ValueInfoProto[];
}
export interface ModelProto extends O.IModelProto {
  graph: GraphProto;
  opsetImport: O.IOperatorSetIdProto[];
  metadataProps: O.IStringStringEntryProto[];
}
export type TypeProto = O.ITypeProto;

/** ONNX TensorProto.DataType codes used by the project. */
export const DataType = Object.freeze({
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
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
  [DataType.UINT8]: 1,
  [DataType.INT8]: 1,
  [DataType.INT32]: 4,
  [DataType.INT64]: 8,
  [DataType.BOOL]: 1,
  [DataType.FLOAT16]: 2,
  [DataType.DOUBLE]: 8,
});

export function isFloatType(dtype: number): boolean {
  return dtype === DataType.FLOAT || dtype === DataType.DOUBLE || dtype === DataType.FLOAT16;
}

interface LongLike {
  toNumber(): number;
}

/** A protobuf int64 (`number`, or a `Long` when the `long` package is present, as it is here) as a
 *  JS number; throws past 2^53. */
export function int64ToNumber(v: number | LongLike | null | undefined): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number') return v;
  const n = v.toNumber();
  if (!Number.isSafeInteger(n)) throw new RangeError(`int64 value ${n} is not a safe integer`);
  return n;
}

export const ATTRIBUTE_TYPE = onnx.AttributeProto.AttributeType;
export const DATA_LOCATION = onnx.TensorProto.DataLocation;

/** Whether a tensor's data lives in an external weights file. */
export function isExternal(t: O.ITensorProto): boolean {
  return t.dataLocation === DATA_LOCATION.EXTERNAL;
}

/** The external weights files a model's initializers reference, sorted. */
export function externalLocations(model: O.IModelProto): string[] {
  const locations = new Set<string>();
  for (const t of model.graph?.initializer ?? []) {
    if (!isExternal(t)) continue;
    const loc = t.externalData?.find((e) => e.key === 'location')?.value;
    if (loc) locations.add(loc);
  }
  return [...locations].sort();
}

// The plain objects a writer builds and hands to encodeModel (every field optional, as protobufjs
// encodes them). A decoded message is also one of these.
export type ModelFields = O.IModelProto;
export type GraphFields = O.IGraphProto;
export type NodeFields = O.INodeProto;
export type TensorFields = O.ITensorProto;
export type ValueInfoFields = O.IValueInfoProto;
export type AttributeFields = O.IAttributeProto;
