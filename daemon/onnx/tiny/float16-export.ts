// Turns a generated model folder into what `optimum-cli export onnx --fp16` writes: every component
// in float16, weights and float inputs/outputs alike. optimum loads the model in half precision and
// remaps the float32 dummy inputs to float16 before `torch.onnx.export`
// (huggingface/optimum, optimum/exporters/onnx/convert.py, `export_pytorch`: `remap` turns each
// float32 input tensor into `dtype`, "Only `torch.float16` is supported"), so integer inputs
// (input_ids, an int64 timestep) stay as they are and every float input and output is float16. One
// part stays float32 as diffusers computes it: the sinusoidal timestep embedding
// (`get_timestep_embedding` returns float32 and UNet2DConditionModel casts it to the sample's dtype).
// The weights are rewritten in place (same file names as optimum: model.onnx, model.onnx_data for a
// UNet; the smaller components inline).
import { readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeModel, encodeModel, writeFileAtomic } from '../graph/model-io.js';
import { DataType, DATA_LOCATION } from '../graph/onnx-proto.js';
import { timestepEmbeddingNodes } from '../precision/keep-float32.js';
import { writeRetypedModel } from '../precision/materialize.js';
import { retypeFloats } from '../precision/retype.js';
import { UNET_WEIGHTS_LOCATION } from './unet.js';

export const FLOAT16_EXPORT_COMPONENTS = Object.freeze(['text_encoder', 'unet', 'vae_encoder', 'vae_decoder'] as const);

/** Converts the components of `dir` (written by writeTinyStableDiffusion) to a float16 export. */
export async function exportAsFloat16(dir: string, components: readonly string[] = FLOAT16_EXPORT_COMPONENTS): Promise<void> {
  for (const component of components) {
    const folder = join(dir, component);
    const path = join(folder, 'model.onnx');
    const model = decodeModel(await readFile(path));
    // Only the timestep embedding (Sin/Cos and what feeds them) stays float32 in a torch fp16 export.
    const sinusoid = timestepEmbeddingNodes(model.graph);
    const retyped = retypeFloats(model, { compute: (n) => (sinusoid.has(n) ? DataType.FLOAT : DataType.FLOAT16), boundary: DataType.FLOAT16 });
    const external = model.graph.initializer.some((t) => t.dataLocation === DATA_LOCATION.EXTERNAL);
    const half = join(folder, 'model.half.onnx');
    const written = await writeRetypedModel(retyped, path, half, external ? {} : { externalThresholdBytes: Number.POSITIVE_INFINITY });
    const converted = decodeModel(await readFile(half));
    if (written.weightsLocation) {
      for (const t of converted.graph.initializer) {
        t.externalData = (t.externalData ?? []).map((e) => (e.key === 'location' ? { key: 'location', value: 'model.onnx_data' } : e));
      }
      await rename(join(folder, written.weightsLocation), join(folder, 'model.onnx_data.tmp'));
    }
    for (const loc of new Set(Object.values(UNET_WEIGHTS_LOCATION))) if (external) await rm(join(folder, loc), { force: true });
    if (written.weightsLocation) await rename(join(folder, 'model.onnx_data.tmp'), join(folder, 'model.onnx_data'));
    await writeFileAtomic(path, encodeModel(converted));
    await rm(half, { force: true });
  }
}
