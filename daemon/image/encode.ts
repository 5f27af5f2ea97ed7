// Encodes the pipeline's pixels as PNG: results (RGB with the input's alpha re-attached) and grayscale
// attention masks (docs/DESIGN.md §3 stage 7). Step previews and the quick preview's first look go to
// the client as raw RGBA preview frames instead (preview-pixels.ts).
//
// PNG compression is on the hot path of every job. Measured with sharp 0.35.5 (libpng + zlib-ng) on a
// photo-like RGB image at the working size and upsampled to an input-sized result; mean ms per encode,
// on a quiet 2-core machine (under load the times double and scatter):
//   `npx vitest bench --run test/daemon/image/encode.bench.ts`
//
//   zlib level (adaptive row filters)    1      2      3      4      5      6    2, unfiltered
//   512×512    KiB                     643    416    415    415    415    415    718
//              ms                       25     31     28     31     36     33     22
//   2048×2048  KiB                    5642   3486   3199   3087   3058   2961   9499
//              ms                      250    316    379    423    577   1302    303
//
// Chosen: level 2 with adaptive filters. At 512² every level from 2 up costs the same time and gives
// the same size, while level 1 (zlib-ng's "quick" strategy) is 55% larger; at 2048² level 2 is 4× faster
// than libpng's default 6 for 18% more bytes. Unfiltered rows save little time and double the size.
//
// No pHYs chunk: libvips writes one (1000 px/m, 25.4 dpi, for pixels that never had a resolution), and
// Photopea places an image in physical units since 2023-05 (maintainer, photopea/photopea#5612 and
// #5622), so a 96 px result pasted into a 72-dpi document came out 272 px wide. Without pHYs, viewers
// take the image at its pixel size.
// The quick preview's PNG result is looked at once over the loopback: it asks for level 0 unfiltered,
// which stored-png.ts writes as a copy plus checksums (≈1 ms at 512²), without pHYs either.
import sharp, { type Sharp } from 'sharp';
import { P2pzError } from '../../shared/protocol/index.js';
import { ownBytes } from './bytes.js';
import { encodeStoredPng } from './stored-png.js';

export interface PngOptions {
  /** zlib level 0 (stored) to 9 (smallest). */
  readonly compressionLevel: number;
  /** libpng picks a row filter (Sub, Up, Average, Paeth) per row; off writes every row unfiltered. */
  readonly adaptiveFiltering: boolean;
}

export const ENCODE_DEFAULTS = Object.freeze({
  /** See the table above. */
  compressionLevel: 2,
  /** See the table above: filters cost little time and save half the bytes on photos. */
  adaptiveFiltering: true,
  /** The quick preview's PNG result: uncompressed, see the header. */
  preview: Object.freeze({ compressionLevel: 0, adaptiveFiltering: false }) as PngOptions,
});

export interface RgbImage {
  readonly width: number;
  readonly height: number;
  /** HWC, 3 channels, sRGB. */
  readonly rgb: Uint8Array;
  /** HW, re-attached as the PNG's alpha channel when given. */
  readonly alpha?: Uint8Array | null;
}

/** An 8-bit RGB (or RGBA when `alpha` is given) PNG, not premultiplied: pixels round-trip exactly. */
export async function encodePng(image: RgbImage, options: Partial<PngOptions> = {}): Promise<Uint8Array> {
  const { width, height, rgb, alpha } = image;
  checkPlane(rgb, width, height, 3, 'rgb');
  if (isStored(options)) {
    if (!alpha) return encodeStoredPng(width, height, 3, rgb);
    checkPlane(alpha, width, height, 1, 'alpha');
    return encodeStoredPng(width, height, 4, interleaveAlpha(rgb, alpha));
  }
  let pipeline = sharp(rgb, { raw: { width, height, channels: 3 } });
  if (alpha) {
    checkPlane(alpha, width, height, 1, 'alpha');
    const alphaBuffer = Buffer.from(alpha.buffer, alpha.byteOffset, alpha.byteLength);
    pipeline = pipeline.joinChannel(alphaBuffer, { raw: { width, height, channels: 1 } });
  }
  return png(pipeline, options);
}

/** An 8-bit grayscale PNG (colour type 0), e.g. the attention mask. */
export async function encodeGrayPng(
  width: number,
  height: number,
  gray: Uint8Array,
  options: Partial<PngOptions> = {},
): Promise<Uint8Array> {
  checkPlane(gray, width, height, 1, 'gray');
  if (isStored(options)) return encodeStoredPng(width, height, 1, gray);
  // One raw channel must be marked b-w, or libvips writes it as RGB.
  return png(sharp(gray, { raw: { width, height, channels: 1 } }).toColourspace('b-w'), options);
}

async function png(pipeline: Sharp, options: Partial<PngOptions>): Promise<Uint8Array> {
  const { compressionLevel, adaptiveFiltering } = {
    compressionLevel: ENCODE_DEFAULTS.compressionLevel,
    adaptiveFiltering: ENCODE_DEFAULTS.adaptiveFiltering,
    ...options,
  };
  if (!Number.isInteger(compressionLevel) || compressionLevel < 0 || compressionLevel > 9) {
    throw new P2pzError('E_INTERNAL', `PNG compression level ${compressionLevel} is not 0..9.`);
  }
  const data = await pipeline.png({ compressionLevel, adaptiveFiltering, palette: false }).toBuffer();
  return withoutChunk(ownBytes(data), 'pHYs');
}

/** The PNG without its chunks of `type` (an ancillary chunk: the others and their CRCs are unchanged). */
function withoutChunk(png: Uint8Array, type: string): Uint8Array {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const kept: Uint8Array[] = [png.subarray(0, 8)];
  let dropped = false;
  for (let at = 8; at + 12 <= png.length; ) {
    const end = at + 12 + view.getUint32(at);
    if (String.fromCharCode(...png.subarray(at + 4, at + 8)) === type) dropped = true;
    else kept.push(png.subarray(at, end));
    at = end;
  }
  if (!dropped) return png;
  const out = new Uint8Array(kept.reduce((n, k) => n + k.length, 0));
  let at = 0;
  for (const k of kept) {
    out.set(k, at);
    at += k.length;
  }
  return out;
}

/** Level 0 without row filters: our own stored-block writer (see the header). */
function isStored(options: Partial<PngOptions>): boolean {
  return options.compressionLevel === 0 && options.adaptiveFiltering === false;
}

function interleaveAlpha(rgb: Uint8Array, alpha: Uint8Array): Uint8Array {
  const rgba = new Uint8Array(alpha.length * 4);
  for (let p = 0; p < alpha.length; p++) {
    rgba[p * 4] = rgb[p * 3] ?? 0;
    rgba[p * 4 + 1] = rgb[p * 3 + 1] ?? 0;
    rgba[p * 4 + 2] = rgb[p * 3 + 2] ?? 0;
    rgba[p * 4 + 3] = alpha[p] ?? 0;
  }
  return rgba;
}

function checkPlane(pixels: Uint8Array, width: number, height: number, channels: number, name: string): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new P2pzError('E_INTERNAL', `${name}: ${width}×${height} is not a size.`);
  }
  if (pixels.length !== width * height * channels) {
    throw new P2pzError('E_INTERNAL', `${name} holds ${pixels.length} values, not ${width}×${height}×${channels}.`);
  }
}
