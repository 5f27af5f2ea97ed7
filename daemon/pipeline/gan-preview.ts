// The quick preview through a distilled GAN generator (docs/DESIGN.md §3 stage 8): one forward pass of an
// image-to-image network trained on pix2pix-zero's own outputs for one direction. Stages:
//   1. decode the upload (EXIF orientation, sRGB, alpha kept aside), unless the same bytes were
//      decoded for an earlier preview or ahead of this one (preview-input-cache.ts, gan-prefetch.ts);
//      the stage's timing says which: `decode`, `decoded-before`, or `decode-wait` (the prefetch's
//      decode of these bytes was under way, and the preview waited for it)
//   2. resize to the generator's working size; x = rgb/127.5 − 1, NCHW [1,3,H,W] (kept with the decoded input)
//   3. y = G(x), [1,3,H',W'] in [-1,1]; its pixels go to the client at once as a preview frame (RGBA at
//      H'×W', the input's alpha resized alongside; shared/protocol/preview-frame.ts), before any PNG work
//   4. back to 8 bits, resized to exactly the input's width×height, alpha re-attached, PNG (uncompressed:
//      a preview is looked at once, and compressing it cost more than the generator, image/encode.ts)
// Input and output names, element types and fixed sizes are read from the session's metadata.
import { Tensor } from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import { fitsPreviewFrame, P2pzError } from '../../shared/protocol/index.js';
import type { Engine, Stage } from '../../shared/protocol/index.js';
import { decodeImage, scaledNote } from '../image/decode.js';
import { ENCODE_DEFAULTS, encodePng } from '../image/encode.js';
import { tensorToRgba } from '../image/preview-pixels.js';
import { resizeAlpha, resizeRgb, rgbToTensor, tensorToRgb, workingSize } from '../image/tensor.js';
import type { GanMeta } from '../models/gan-meta.js';
import type { ModelFiles, PipelineContext, PipelineOutcome } from './context.js';
import { previewInputKey, sharedPreviewInputCache, type PreviewInput, type PreviewInputCache, type PreviewInputSource } from './preview-input-cache.js';
import type { GanGenerator } from './preview-registry.js';

/** How the generator is fed: names from the session, sizes fixed by the graph or chosen from meta. */
interface GeneratorIo {
  readonly input: string;
  readonly output: string;
  readonly width: number;
  readonly height: number;
}

/** Runs `generator` (from the registry: findGanGenerator / lookupGanGenerator) on the encoded `image`. */
export async function runGanPreview(
  image: Uint8Array,
  generator: GanGenerator,
  ctx: PipelineContext,
  inputs: PreviewInputCache = sharedPreviewInputCache,
): Promise<PipelineOutcome> {
  const { models, signal, progress } = ctx;
  const timings: Record<string, number> = {};
  const timed = async <T>(stage: string, fn: () => Promise<T>): Promise<T> => {
    signal.throwIfAborted();
    const start = performance.now();
    const value = await fn();
    timings[stage] = (timings[stage] ?? 0) + performance.now() - start;
    return value;
  };

  // 1. Decode.
  progress('decode', 0, 1);
  signal.throwIfAborted();
  const decodeStart = performance.now();
  const { input, source: found } = await inputs.decoded(previewInputKey(image), () => decodePreviewInput(image));
  timings[DECODE_TIMING[found]] = performance.now() - decodeStart;
  const { width, height, alpha } = input;

  // 2–3. Load, resize to the working size, generate.
  progress('load', 0, 1);
  const session = await timed('load', () => models.get(generator.modelPath));
  const io = generatorIo(session, generator.meta, width, height);
  progress('generate', 0, 1);
  const x = await timed('tensor', () => inputs.tensor(input, io.width, io.height, () => previewTensor(input, io.width, io.height)));
  const y = await timed('generate', async () => {
    const result = await models.run(generator.modelPath, { [io.input]: new Tensor('float32', x, [1, 3, io.height, io.width]) });
    return generatedImage(result[io.output]);
  });
  if (fitsPreviewFrame('result', y.width, y.height)) {
    await timed('frame', async () => {
      const frameAlpha = alpha === null ? null : await resizeAlpha(alpha, width, height, y.width, y.height);
      const into = ctx.framePixels?.(y.width * y.height * 4);
      progress('generate', 1, 1, { role: 'result', width: y.width, height: y.height, rgba: tensorToRgba(y.data, y.width, y.height, frameAlpha, into) });
      // The PNG work below is synchronous: let the frame leave first (context.ts, `flushed`).
      await ctx.flushed?.();
    });
  }

  // 4. Back to the decoded size (the input's, or the output budget's: decode.ts), alpha re-attached.
  progress('encode', 0, 1);
  const png = await timed('encode', async () => {
    const rgb = await resizeRgb(tensorToRgb(y.data, y.width, y.height), y.width, y.height, width, height);
    return encodePng({ width, height, rgb, alpha }, ENCODE_DEFAULTS.preview);
  });
  const source = input.source ?? { width, height };
  const note = scaledNote({ width, height, source });
  return {
    outputs: [{ role: 'image', png, width, height }],
    engine: 'gan',
    timings,
    ...(note === undefined ? {} : { report: { notes: [note], scaledFrom: source } }),
  };
}

/** The stage timing of step 1, by how the input was found (preview-input-cache.ts). */
const DECODE_TIMING: Readonly<Record<PreviewInputSource, string>> = Object.freeze({ decoded: 'decode', kept: 'decoded-before', joined: 'decode-wait' });

/** Step 1 without the cache: the upload decoded into what the cache keeps. */
export async function decodePreviewInput(image: Uint8Array): Promise<Omit<PreviewInput, 'tensors'>> {
  const decoded = await decodeImage(image);
  return { width: decoded.width, height: decoded.height, rgb: decoded.rgb, alpha: decoded.alpha, source: decoded.source };
}

/** Step 2: the decoded input resized to w×h, as the generator's x. */
export async function previewTensor(input: Pick<PreviewInput, 'rgb' | 'width' | 'height'>, width: number, height: number): Promise<Float32Array> {
  return rgbToTensor(await resizeRgb(input.rgb, input.width, input.height, width, height), width, height);
}

/** Reads the generator's single image input and output from the session metadata: float32, rank 4,
 *  3 channels. Fixed spatial dims win; dynamic ones get the working size for `meta.size`. */
function generatorIo(
  session: Pick<InferenceSession, 'inputNames' | 'outputNames' | 'inputMetadata' | 'outputMetadata'>,
  meta: GanMeta,
  width: number,
  height: number,
): GeneratorIo {
  const input = session.inputMetadata[0];
  const output = session.outputMetadata[0];
  if (session.inputNames.length !== 1 || !input?.isTensor || !output?.isTensor) {
    throw invalid('it must take exactly one image tensor and return one');
  }
  if (input.type !== 'float32' || output.type !== 'float32') throw invalid(`its image tensors must be float32, not ${input.type}/${output.type}`);
  const [, c, h, w] = input.shape;
  if (input.shape.length !== 4 || (typeof c === 'number' && c !== 3)) throw invalid('its input must be an image [1,3,H,W]');
  if (typeof h === 'number' && typeof w === 'number' && h > 0 && w > 0) return { input: input.name, output: output.name, width: w, height: h };
  return { input: input.name, output: output.name, ...generatorWorkingSize(width, height, meta.size) };
}

/** The size the image is generated at: the pipeline's working size (long side `size`, multiples of
 *  64) when `size` is a multiple of 64, else long side `size` with the aspect kept to the pixel. */
export function generatorWorkingSize(width: number, height: number, size: number): { width: number; height: number } {
  if (size % 64 === 0) return workingSize(width, height, size);
  const short = Math.max(1, Math.round((size * Math.min(width, height)) / Math.max(width, height)));
  return width >= height ? { width: size, height: short } : { width: short, height: size };
}

/** y: [1,3,H',W'] float32 → its data and size. */
function generatedImage(value: InferenceSession.ReturnType[string] | undefined): { data: Float32Array; width: number; height: number } {
  if (!(value instanceof Tensor) || value.type !== 'float32') throw invalid('it returned no float32 image');
  const [n, c, h, w] = value.dims;
  if (value.dims.length !== 4 || n !== 1 || c !== 3 || !h || !w) throw invalid(`it returned a tensor of shape [${value.dims.join(',')}], not [1,3,H,W]`);
  return { data: value.data as Float32Array, width: w, height: h };
}

function invalid(why: string): P2pzError {
  return new P2pzError('E_MODEL_INVALID', `The quick-preview generator does not fit: ${why}.`, 'Reinstall the generator for this direction (`p2pz models install`).');
}
