// Writes a retyped model (retype.ts) next to its source: the initializers whose type changed are
// read one at a time from the source (inline, or their byte range of the weights file), converted,
// and written inline when small or into one new weights file beside the model; every other
// initializer keeps pointing at the source's weights (nothing is copied). The weights file is
// written under a temporary name and renamed before the model that references it.
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DATA_LOCATION, DataType, onnx, type ModelProto, type TensorProto } from '../graph/onnx-proto.js';
import { readTensorData, writeDerivedModel } from '../graph/model-io.js';
import { float16BytesToFloat32, float32BytesToFloat16 } from '../graph/float16.js';
import type { Retyped } from './retype.js';

export const MATERIALIZE_DEFAULTS = Object.freeze({
  /** Converted tensors of at least this many bytes go to the weights file; smaller ones inline. */
  externalThresholdBytes: 1024,
  /** Offsets in the weights file are multiples of this (as onnx's external-data writer aligns). */
  alignBytes: 64,
});

export interface MaterializedModel {
  /** Bytes of converted weights written to the new weights file (0: no file written). */
  readonly convertedBytes: number;
  /** The new weights file's name beside the model, when one was written. */
  readonly weightsLocation?: string;
}

/** The raw bytes of a float tensor that may store its data in typed fields. */
async function tensorBytes(sourcePath: string, t: TensorProto): Promise<Uint8Array> {
  if (!t.rawData?.length && t.dataLocation !== DATA_LOCATION.EXTERNAL) {
    if (t.dataType === DataType.FLOAT) return new Uint8Array(Float32Array.from(t.floatData ?? []).buffer);
    if (t.dataType === DataType.FLOAT16) return new Uint8Array(Uint16Array.from(t.int32Data ?? []).buffer);
  }
  return readTensorData(sourcePath, t);
}

/** Writes `retyped.model` to `destPath` (same folder as `sourcePath`), converting the listed weights. */
export async function writeRetypedModel(
  retyped: Retyped, sourcePath: string, destPath: string, options: { readonly externalThresholdBytes?: number; readonly alignBytes?: number } = {},
): Promise<MaterializedModel> {
  const d: { externalThresholdBytes: number; alignBytes: number } = { ...MATERIALIZE_DEFAULTS, ...options };
  const model = retyped.model;
  const location = `${basename(destPath)}_data`;
  const weightsPath = join(dirname(destPath), location);
  const tmp = join(dirname(destPath), `.${location}.tmp-${process.pid}`);
  const byName = new Map(model.graph.initializer.map((t, k) => [t.name, k]));
  const replaced: TensorProto[] = [...model.graph.initializer];
  let end = 0;
  const fh = await open(tmp, 'w');
  try {
    for (const c of retyped.conversions) {
      const k = byName.get(c.name);
      if (k === undefined) continue;
      const t = replaced[k] as TensorProto;
      const raw = await tensorBytes(sourcePath, t);
      const bytes = c.to === DataType.FLOAT16 ? float32BytesToFloat16(raw) : float16BytesToFloat32(raw);
      const fields: ConstructorParameters<typeof onnx.TensorProto>[0] = { name: t.name, dataType: c.to, dims: t.dims };
      if (bytes.length >= d.externalThresholdBytes) {
        const offset = Math.ceil(end / d.alignBytes) * d.alignBytes;
        await fh.write(bytes, 0, bytes.length, offset);
        end = offset + bytes.length;
        fields.dataLocation = DATA_LOCATION.EXTERNAL;
        fields.externalData = [{ key: 'location', value: location }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(bytes.length) }];
      } else {
        fields.rawData = bytes;
      }
      replaced[k] = onnx.TensorProto.create(fields) as unknown as TensorProto;
    }
  } finally {
    await fh.close();
  }
  const out: ModelProto = { ...model, graph: { ...model.graph, initializer: replaced } } as ModelProto;
  try {
    if (end > 0) await rename(tmp, weightsPath);
    else await rm(tmp, { force: true });
    await writeDerivedModel(out, sourcePath, destPath);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return end > 0 ? { convertedBytes: end, weightsLocation: location } : { convertedBytes: 0 };
}
