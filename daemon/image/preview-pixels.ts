// The pixels of preview frames (shared/protocol/preview-frame.ts): 8-bit RGBA, not premultiplied, as a
// browser's ImageData holds them, so a client draws a frame without decoding anything. The quick
// preview's frame is the generator's output itself; a step preview is the latent preview downscaled
// to a thumbnail.
import sharp from 'sharp';
import { P2pzError, PREVIEW_FRAME_LIMITS, type PreviewPixels } from '../../shared/protocol/index.js';
import { ownBytes } from './bytes.js';
import { planeToChannel } from './tensor.js';

/**
 * rgba[(y·W + x)·4 + c] = round(clamp((t[0, c, y, x] + 1)·127.5, 0, 255)) for c = R, G, B (NaN → 0), and
 * alpha[y·W + x] (255 without one): NCHW float32 [1, 3, H, W] in [−1, 1] → HWC RGBA. The colour
 * channels are exactly `tensorToRgb`'s (image/tensor.ts). Written into `into` when given (a buffer the
 * caller reuses from frame to frame: a fresh megabyte costs more than the loop on some machines,
 * docs/BENCHMARKS.md "daemon").
 */
export function tensorToRgba(data: Float32Array, width: number, height: number, alpha: Uint8Array | null, into?: Uint8Array): Uint8Array {
  const plane = width * height;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 || data.length !== 3 * plane) {
    throw new P2pzError('E_INTERNAL', `tensorToRgba: ${data.length} values are not [1,3,${height},${width}].`);
  }
  if (alpha !== null && alpha.length !== plane) throw new P2pzError('E_INTERNAL', `tensorToRgba: alpha holds ${alpha.length} values, not ${plane}.`);
  if (into !== undefined && into.length !== 4 * plane) throw new P2pzError('E_INTERNAL', `tensorToRgba: the buffer holds ${into.length} bytes, not ${4 * plane}.`);
  const rgba = into ?? new Uint8Array(4 * plane);
  for (let c = 0; c < 3; c++) planeToChannel(data, c * plane, plane, rgba, c, 4);
  if (alpha === null) fillEvery(rgba, 3, 4, 255);
  else copyInto(alpha, rgba, 3, 4);
  return rgba;
}

/** out[start + k·stride] = value, to the end of `out`. */
function fillEvery(out: Uint8Array, start: number, stride: number, value: number): void {
  for (let q = start; q < out.length; q += stride) out[q] = value;
}

/** out[start + p·stride] = from[p] for every p. */
function copyInto(from: Uint8Array, out: Uint8Array, start: number, stride: number): void {
  for (let p = 0, q = start; p < from.length; p++, q += stride) out[q] = from[p] as number;
}

/** A step preview frame of HWC RGB `rgb` (w×h): downscaled (aspect kept, never enlarged) to at most
 *  PREVIEW_FRAME_LIMITS.maxStepSide a side, opaque RGBA. */
export async function stepPreviewPixels(rgb: Uint8Array, width: number, height: number): Promise<PreviewPixels> {
  if (rgb.length !== width * height * 3) throw new P2pzError('E_INTERNAL', `stepPreviewPixels: ${rgb.length} values are not ${width}×${height}×3.`);
  const side = PREVIEW_FRAME_LIMITS.maxStepSide;
  const { data, info } = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .resize(side, side, { fit: 'inside', withoutEnlargement: true })
    .ensureAlpha(1)
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 4 || data.length !== info.width * info.height * 4) {
    throw new P2pzError('E_INTERNAL', `stepPreviewPixels: got ${info.width}×${info.height}×${info.channels}.`);
  }
  return { role: 'step', width: info.width, height: info.height, rgba: ownBytes(data) };
}
