// The pixels of preview frames (shared/protocol/preview-frame.ts): 8-bit RGBA, not premultiplied, as a
// browser's ImageData holds them, so a client draws a frame without decoding anything. The quick
// preview's frame is the generator's output itself; a step preview is the latent preview downscaled
// to a thumbnail.
import sharp from 'sharp';
import { P2pzError, PREVIEW_FRAME_LIMITS, type PreviewPixels } from '../../shared/protocol/index.js';
import { ownBytes } from './bytes.js';

/**
 * rgba[(y·W + x)·4 + c] = round(clamp((t[0, c, y, x] + 1)·127.5, 0, 255)) for c = R, G, B (NaN → 0), and
 * alpha[y·W + x] (255 without one): NCHW float32 [1, 3, H, W] in [−1, 1] → HWC RGBA. The colour
 * channels are exactly `tensorToRgb`'s (image/tensor.ts).
 */
export function tensorToRgba(data: Float32Array, width: number, height: number, alpha: Uint8Array | null): Uint8Array {
  const plane = width * height;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 || data.length !== 3 * plane) {
    throw new P2pzError('E_INTERNAL', `tensorToRgba: ${data.length} values are not [1,3,${height},${width}].`);
  }
  if (alpha !== null && alpha.length !== plane) throw new P2pzError('E_INTERNAL', `tensorToRgba: alpha holds ${alpha.length} values, not ${plane}.`);
  const rgba = new Uint8Array(4 * plane);
  for (let c = 0; c < 3; c++) {
    const from = c * plane;
    for (let p = 0, q = c; p < plane; p++, q += 4) {
      const v = ((data[from + p] as number) + 1) * 127.5;
      rgba[q] = v > 0 ? (v < 255 ? Math.round(v) : 255) : 0;
    }
  }
  if (alpha === null) for (let q = 3; q < rgba.length; q += 4) rgba[q] = 255;
  else for (let p = 0, q = 3; p < plane; p++, q += 4) rgba[q] = alpha[p] as number;
  return rgba;
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
