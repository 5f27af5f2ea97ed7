// A model's declared inputs and outputs read from its graph file, in the shape of an onnxruntime
// session's metadata, without creating a session: no weights are read or loaded. The pipeline reads
// the UNet's conventions this way: a session on the original UNet would hold a full copy of its
// weights only to answer this, and onnxruntime's CPU provider cannot even create one for an
// onnxruntime-optimized export (GroupNorm, BiasSplitGelu, … have no CPU kernels; unfuse/unfuse.ts),
// whose every graph the pipeline runs is derived from its unfused twin.
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { decodeModel } from './model-io.js';
import { DataType, int64ToNumber, type ValueInfoProto } from './onnx-proto.js';

export type DeclaredSignature = Pick<InferenceSession, 'inputNames' | 'outputNames' | 'inputMetadata' | 'outputMetadata'>;

/** onnxruntime's tensor type of each ONNX element type p2pz's graphs use. */
export const TENSOR_TYPE: Readonly<Record<number, Tensor.Type>> = Object.freeze({
  [DataType.FLOAT]: 'float32',
  [DataType.FLOAT16]: 'float16',
  [DataType.DOUBLE]: 'float64',
  [DataType.INT64]: 'int64',
  [DataType.INT32]: 'int32',
  [DataType.INT8]: 'int8',
  [DataType.UINT8]: 'uint8',
  [DataType.BOOL]: 'bool',
});

function metadata(v: ValueInfoProto): InferenceSession.ValueMetadata {
  const tt = v.type?.tensorType;
  const type = tt ? TENSOR_TYPE[tt.elemType ?? 0] : undefined;
  if (!tt || !type) return { name: v.name, isTensor: false };
  const shape = (tt.shape?.dim ?? []).map((d) => (d.dimValue !== null && d.dimValue !== undefined && int64ToNumber(d.dimValue) > 0 ? int64ToNumber(d.dimValue) : d.dimParam || -1));
  return { name: v.name, isTensor: true, type, shape };
}

/** The graph inputs (initializers excluded, as a session lists them) and outputs of `bytes`. */
export function declaredSignature(bytes: Uint8Array): DeclaredSignature {
  const graph = decodeModel(bytes).graph;
  const initializers = new Set(graph.initializer.map((t) => t.name));
  const inputs = graph.input.filter((v) => !initializers.has(v.name)).map(metadata);
  const outputs = graph.output.map(metadata);
  return { inputNames: inputs.map((m) => m.name), outputNames: outputs.map((m) => m.name), inputMetadata: inputs, outputMetadata: outputs };
}
