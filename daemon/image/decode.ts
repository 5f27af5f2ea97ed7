// Decodes an untrusted PNG, JPEG or WebP into the pipeline's pixel form (docs/DESIGN.md §3 stage 1): EXIF
// orientation applied, converted to sRGB, 8 bits per channel, RGB interleaved with the alpha channel
// kept aside. Runs in the worker, never in the HTTP process (docs/SECURITY.md §R16). The header is sniffed and the pixel
// budget checked before libvips sees the bytes; libvips then enforces the same budget itself, stops at
// the first decode error, and is stopped by a timeout (docs/SECURITY.md §R9).
import sharp, { type OutputInfo, type Sharp } from 'sharp';
import { P2pzError } from '../../shared/protocol/index.js';
import { ownBytes } from './bytes.js';
import { IMAGE_LIMITS, sniffImage, type ExifOrientation, type ImageFormat } from './sniff.js';

export interface DecodeOptions {
  /** Most pixels (width × height) accepted. */
  readonly maxPixels: number;
  /** Longest side accepted. */
  readonly maxSide: number;
  /** Wall-clock limit for the decode in whole seconds (libvips' own timer, which starts once the
   *  image is open; time queued for a libuv thread is not counted). */
  readonly timeoutSeconds: number;
}

export const DECODE_DEFAULTS: DecodeOptions = Object.freeze({
  maxPixels: IMAGE_LIMITS.maxPixels,
  maxSide: IMAGE_LIMITS.maxSide,
  /** A 64 MP PNG decodes in well under 10 s on one slow core; anything slower is hostile. */
  timeoutSeconds: 20,
});

/** libvips' strictness: 'error' stops at any decode error, including truncated data, but lets
 *  through the benign warnings real camera JPEGs often carry (extraneous bytes before a marker),
 *  which 'warning' would reject. */
const FAIL_ON = 'error';

export interface DecodedImage {
  /** Displayed size, after EXIF orientation. */
  readonly width: number;
  readonly height: number;
  /** sRGB, 8-bit, HWC interleaved, 3 channels: length width·height·3. Not premultiplied. */
  readonly rgb: Uint8Array;
  /** HW, length width·height; null when the image has no alpha channel. */
  readonly alpha: Uint8Array | null;
  readonly format: ImageFormat;
  /** The EXIF orientation that was applied (1 when none). */
  readonly orientation: ExifOrientation;
}

/** Decodes `bytes` (PNG, JPEG or WebP). Errors: E_IMAGE_FORMAT (not one of those formats),
 *  E_IMAGE_TOO_LARGE (over budget, checked before decoding), E_IMAGE_DECODE (damaged data),
 *  E_TIMEOUT (decode took longer than `timeoutSeconds`). */
export async function decodeImage(bytes: Uint8Array, options: Partial<DecodeOptions> = {}): Promise<DecodedImage> {
  const { maxPixels, maxSide, timeoutSeconds } = { ...DECODE_DEFAULTS, ...options };
  const header = sniffImage(bytes, { maxPixels, maxSide });

  let data: Buffer;
  let info: OutputInfo;
  let orientation: ExifOrientation;
  try {
    const input = (): Sharp =>
      sharp(bytes, { failOn: FAIL_ON, limitInputPixels: maxPixels, autoOrient: true, sequentialRead: true });
    orientation = asOrientation((await input().metadata()).orientation);
    ({ data, info } = await input()
      .timeout({ seconds: timeoutSeconds })
      // Embedded ICC profiles (Display P3, Adobe RGB, CMYK) are converted to sRGB; 16-bit → 8-bit.
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true }));
  } catch (error) {
    throw decodeError(error);
  }

  const { width, height, channels } = info;
  const pixels = width * height;
  if ((channels !== 3 && channels !== 4) || data.length !== pixels * channels) {
    throw new P2pzError('E_IMAGE_DECODE', `It decoded to an unexpected ${channels}-channel layout.`);
  }
  if (channels === 3) {
    return { width, height, rgb: ownBytes(data), alpha: null, format: header.format, orientation };
  }
  const rgb = new Uint8Array(pixels * 3);
  const alpha = new Uint8Array(pixels);
  for (let p = 0, q = 0; p < pixels; p++, q += 4) {
    rgb[p * 3] = data[q] ?? 0;
    rgb[p * 3 + 1] = data[q + 1] ?? 0;
    rgb[p * 3 + 2] = data[q + 2] ?? 0;
    alpha[p] = data[q + 3] ?? 0;
  }
  return { width, height, rgb, alpha, format: header.format, orientation };
}

/** Maps a libvips/sharp failure to the closed error set. The libvips message never reaches the
 *  designer (it is kept as `cause` for the log). Messages matched are sharp 0.35's: "timeout: N%
 *  complete" (src/common.cc, VipsProgressCallBack), "Input image exceeds pixel limit",
 *  "Input buffer contains unsupported image format". */
export function decodeError(error: unknown): P2pzError {
  if (error instanceof P2pzError) return error;
  const message = error instanceof Error ? error.message : String(error);
  let mapped: P2pzError;
  if (/^timeout:/m.test(message)) mapped = new P2pzError('E_TIMEOUT', 'Decoding the image took too long.');
  else if (message.includes('exceeds pixel limit')) mapped = new P2pzError('E_IMAGE_TOO_LARGE');
  else if (message.includes('unsupported image format')) mapped = new P2pzError('E_IMAGE_FORMAT');
  else mapped = new P2pzError('E_IMAGE_DECODE');
  mapped.cause = error;
  return mapped;
}

function asOrientation(value: number | undefined): ExifOrientation {
  return value !== undefined && Number.isInteger(value) && value >= 1 && value <= 8 ? (value as ExifOrientation) : 1;
}
