// The precision of the UNet graphs prepare derives, and the converted UNet they are derived from.
// Two numbers describe it: the precision of the weights (what an export ships or what
// `p2pz models prepare --precision` chose) and the precision the graph computes in:
//   fp32 / fp32   a float32 export as it is (no conversion, no tag in the file names);
//   fp16 / fp16   float16 weights and compute, with normalizations, Softmax, the timestep embedding
//                 (keep-float32.ts) and the guidance loss in float32: unet/model.fp16.onnx, for
//                 GPU providers;
//   fp16 / fp32   the float16 weights, upcast once at prepare and computed in float32:
//                 unet/model.fp16-fp32.onnx, for the CPU provider, which has no float16 kernel for
//                 Conv, MatMul, Gemm, the element-wise ops, Softmax, InstanceNormalization or
//                 ReduceMean (docs/BENCHMARKS.md "fp16": onnxruntime 1.30 would wrap each such node
//                 in Casts at run time instead).
// Every converted graph takes and returns float32 (sample, encoder_hidden_states, out_sample, the
// maps, the loss, ∂L/∂x), so the pipeline speaks float32 whatever the weights are. A float16 export
// has no float32 weights to return to: its precision is always fp16 weights.
// Beside each converted graph, `model.{tag}.json` names the source it was made from (reused while
// current). The folder's chosen weights precision is `unet/model.precision.json`.
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { P2pzError } from '../../../shared/protocol/errors.js';
import { decodeModel, writeFileAtomic } from '../graph/model-io.js';
import { declaredType } from '../graph/nodes.js';
import { DataType, type ModelProto } from '../graph/onnx-proto.js';
import { keepFloat32Nodes } from './keep-float32.js';
import { writeRetypedModel } from './materialize.js';
import { retypeFloats } from './retype.js';

export const Precision = z.enum(['fp32', 'fp16']);
export type Precision = z.infer<typeof Precision>;

export const UNetPrecision = z.object({ weights: Precision, compute: Precision });
export type UNetPrecision = z.infer<typeof UNetPrecision>;

export const UNET_PRECISION_DEFAULTS = Object.freeze({
  /** The folder's chosen weights precision, beside unet/model.onnx. */
  choiceFile: 'model.precision.json',
  /** What a CPU provider computes in: it lacks float16 kernels. */
  cpuCompute: 'fp32' as Precision,
});

/** '' for fp32/fp32, else `.fp16` or `.fp16-fp32`: the tag in every derived file name. */
export function precisionTag(p: UNetPrecision): string {
  if (p.weights === 'fp32' && p.compute === 'fp32') return '';
  return p.weights === p.compute ? `.${p.weights}` : `.${p.weights}-${p.compute}`;
}

export function describePrecision(p: UNetPrecision): string {
  if (p.weights === p.compute) return p.weights;
  return `${p.weights} weights computed in ${p.compute}`;
}

/** The precision of an export: fp16 when its `sample` input is float16. */
export function exportPrecision(model: ModelProto): Precision {
  const sample = model.graph.input.find((v) => v.name === 'sample') ?? model.graph.input[0];
  return sample && declaredType(sample).dtype === DataType.FLOAT16 ? 'fp16' : 'fp32';
}

/** The graphs' precision for weights `weights` on a provider (CPU: computed in float32). */
export function unetPrecision(weights: Precision, provider: string): UNetPrecision {
  return { weights, compute: provider === 'cpu' ? UNET_PRECISION_DEFAULTS.cpuCompute : weights };
}

const ChoiceFile = z.object({ format: z.literal(1), weights: Precision });

/** The weights precision chosen for the model folder `modelDir` (`p2pz models prepare --precision`),
 *  else undefined (the export's own). */
export async function chosenPrecision(modelDir: string): Promise<Precision | undefined> {
  try {
    const parsed = ChoiceFile.safeParse(JSON.parse(await readFile(join(modelDir, 'unet', UNET_PRECISION_DEFAULTS.choiceFile), 'utf8')));
    return parsed.success ? parsed.data.weights : undefined;
  } catch {
    return undefined;
  }
}

export async function writeChosenPrecision(modelDir: string, weights: Precision): Promise<void> {
  await writeFileAtomic(join(modelDir, 'unet', UNET_PRECISION_DEFAULTS.choiceFile), new TextEncoder().encode(`${JSON.stringify({ format: 1, weights })}\n`));
}

/** The precision the graphs of `model` (an export) are derived in, for a requested one: a float16
 *  export keeps float16 weights (there are no float32 ones to go back to). */
export function effectivePrecision(model: ModelProto, requested: UNetPrecision): UNetPrecision {
  if (exportPrecision(model) === 'fp16' && requested.weights === 'fp32') return { weights: 'fp16', compute: requested.compute };
  return requested;
}

const SourceRecord = z.object({ format: z.literal(1), source: z.string(), precision: UNetPrecision });

/** The retyping of one conversion: float16 with the float32 islands, or all float32; float32 I/O. */
function convert(model: ModelProto, compute: Precision): ReturnType<typeof retypeFloats> {
  if (compute === 'fp32') return retypeFloats(model, { compute: () => DataType.FLOAT, boundary: DataType.FLOAT });
  const keep = keepFloat32Nodes(model.graph);
  return retypeFloats(model, { compute: (n) => (keep.has(n) ? DataType.FLOAT : DataType.FLOAT16), boundary: DataType.FLOAT });
}

/**
 * The UNet graph the derived graphs of precision `p` are made from: the export itself (fp32/fp32 of
 * a float32 export), else unet/model{tag}.onnx, converted from `original` (decoded from `unetPath`)
 * unless its record names `sourceKey` (the export's identity) already. Returns the decoded model.
 */
export async function precisionSource(unetPath: string, original: ModelProto, sourceKey: string, p: UNetPrecision, force = false): Promise<ModelProto> {
  const exported = exportPrecision(original);
  if (p.weights === 'fp32' && p.compute === 'fp32') {
    if (exported === 'fp16') throw new P2pzError('E_INTERNAL', 'a float16 export has no float32 weights');
    return original;
  }
  const dir = dirname(unetPath);
  const tag = precisionTag(p);
  const path = join(dir, `model${tag}.onnx`);
  const record = join(dir, `model${tag}.json`);
  if (!force) {
    try {
      const found = SourceRecord.safeParse(JSON.parse(await readFile(record, 'utf8')));
      if (found.success && found.data.source === sourceKey && JSON.stringify(found.data.precision) === JSON.stringify(p)) {
        await stat(path);
        return decodeModel(await readFile(path));
      }
    } catch {
      // missing or unreadable: convert again
    }
  }
  // fp16 weights computed in fp32 from a float32 export: round the weights to float16 first.
  let from = original;
  let fromPath = unetPath;
  if (exported === 'fp32' && p.compute === 'fp32') {
    from = await precisionSource(unetPath, original, sourceKey, { weights: 'fp16', compute: 'fp16' }, force);
    fromPath = join(dir, 'model.fp16.onnx');
  }
  const retyped = convert(from, p.compute);
  await writeRetypedModel(retyped, fromPath, path);
  await writeFileAtomic(record, new TextEncoder().encode(`${JSON.stringify({ format: 1, source: sourceKey, precision: p }, null, 2)}\n`));
  return decodeModel(await readFile(path));
}
