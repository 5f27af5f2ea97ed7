// Decodes an untrusted PNG, JPEG or WebP into the pipeline's pixel form (docs/DESIGN.md §3 stage 1): EXIF
// orientation applied, converted to sRGB, 8 bits per channel, RGB interleaved with the alpha channel
// kept aside. Runs in the worker, never in the HTTP process (docs/SECURITY.md §R16). The header is sniffed and the pixel
// budget checked before libvips sees the bytes; libvips then enforces the same budget itself, stops at
// the first decode error, and is stopped by a timeout (docs/SECURITY.md §R9).
//
// An image over the output budget (docs/SECURITY.md §R9: 16 MP, the most Figma holds in one image) is
// decoded straight to its output size, the aspect kept, in one libvips pipeline: JPEG and WebP shrink
// at decode where sharp can (outputPlan), and every other image is streamed row by row through the
// resize, so neither the source's full-size pixels nor its size's memory are ever held. A small,
// highly compressible file of 64 MP therefore costs what a 16 MP image costs, and less when it shrinks
// at decode.
import sharp, { type OutputInfo, type Sharp } from 'sharp';
import { P2pzError } from '../../shared/protocol/index.js';
import { ownBytes } from './bytes.js';
import { IMAGE_LIMITS, orientedSize, sniffImage, type ExifOrientation, type ImageFormat } from './sniff.js';

export interface DecodeOptions {
  /** Most pixels (width × height) accepted. */
  readonly maxPixels: number;
  /** Longest side accepted. */
  readonly maxSide: number;
  /** Wall-clock limit for the decode in whole seconds (libvips' own timer, which starts once the
   *  image is open; time queued for a libuv thread is not counted). */
  readonly timeoutSeconds: number;
  /** Most pixels of the decoded image (the output budget): a larger source is decoded scaled down to
   *  fit, the aspect kept. */
  readonly maxOutputPixels: number;
}

export const DECODE_DEFAULTS: DecodeOptions = Object.freeze({
  maxPixels: IMAGE_LIMITS.maxPixels,
  maxSide: IMAGE_LIMITS.maxSide,
  /** A 64 MP PNG decodes in well under 10 s on one slow core; anything slower is hostile. */
  timeoutSeconds: 20,
  /** 4096 × 4096 = 16 MP: the largest image Figma holds in one fill (figma.createImage refuses a
   *  side over 4096), a 4K or 5K screen's worth; results up to it come back at the input's size. */
  maxOutputPixels: 4096 * 4096,
});

/** How the pixels were read: `full`, at the source's own size (within the output budget); otherwise
 *  scaled down to the output size in the decoder (`shrink-on-load`: JPEG by an integer `factor` in
 *  the DCT, WebP at `1/factor`) or row by row through the resize (`streamed`). */
export type DecodePath =
  | { readonly kind: 'full' }
  | { readonly kind: 'shrink-on-load'; readonly factor: number }
  | { readonly kind: 'streamed' };

/** The size an image of `width`×`height` is decoded and returned at: itself within `maxPixels`,
 *  otherwise scaled by √(maxPixels / (width·height)) and rounded down, so that the aspect is kept to
 *  within a pixel and the product stays within the budget. */
export function outputSize(width: number, height: number, maxPixels: number = DECODE_DEFAULTS.maxOutputPixels): { width: number; height: number } {
  if (width * height <= maxPixels) return { width, height };
  const s = Math.sqrt(maxPixels / (width * height));
  return { width: Math.max(1, Math.floor(width * s)), height: Math.max(1, Math.floor(height * s)) };
}

/** What libvips does when sharp 0.35 resizes a `format` image from `from` to `to` in the same pipeline
 *  (src/pipeline.cc, "shrink-on-load": with the default fastShrinkOnLoad, the common shrink s =
 *  min(wᵢ/wₒ, hᵢ/hₒ); JPEG loads at 1/8, 1/4 or 1/2 for s ≥ 8, 4 or 2, one step less when ⌊s⌋ equals
 *  that factor (libjpeg's rounding); WebP loads at scale 1/s for any s > 1; PNG has no shrink-on-load). */
export function decodePath(format: ImageFormat, from: { width: number; height: number }, to: { width: number; height: number }): DecodePath {
  if (from.width === to.width && from.height === to.height) return { kind: 'full' };
  const shrink = Math.min(from.width / to.width, from.height / to.height);
  if (format === 'webp' && shrink > 1) return { kind: 'shrink-on-load', factor: shrink };
  if (format === 'jpeg') {
    let factor = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;
    if (factor > 1 && Math.trunc(shrink) === factor) factor /= 2;
    if (factor > 1) return { kind: 'shrink-on-load', factor };
  }
  return { kind: 'streamed' };
}

/** libvips' strictness: 'error' stops at any decode error, including truncated data, but lets
 *  through the benign warnings real camera JPEGs often carry (extraneous bytes before a marker),
 *  which 'warning' would reject. */
const FAIL_ON = 'error';

export interface DecodedImage {
  /** Size of the pixels here: the displayed size (after EXIF orientation), or the output size when
   *  that is over the output budget. */
  readonly width: number;
  readonly height: number;
  /** The file's displayed size, after EXIF orientation. */
  readonly source: { readonly width: number; readonly height: number };
  readonly path: DecodePath;
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
  const { maxPixels, maxSide, timeoutSeconds, maxOutputPixels } = { ...DECODE_DEFAULTS, ...options };
  const header = sniffImage(bytes, { maxPixels, maxSide });

  let data: Buffer;
  let info: OutputInfo;
  let orientation: ExifOrientation;
  let source: { width: number; height: number };
  let target: { width: number; height: number };
  let path: DecodePath;
  try {
    const input = (): Sharp =>
      sharp(bytes, { failOn: FAIL_ON, limitInputPixels: maxPixels, autoOrient: true, sequentialRead: true });
    const metadata = await input().metadata();
    orientation = asOrientation(metadata.orientation);
    // The displayed size as libvips will orient it (the header's, should the two ever disagree).
    source = metadata.autoOrient ?? orientedSize(header);
    target = outputSize(source.width, source.height, maxOutputPixels);
    path = decodePath(header.format, source, target);
    const pipeline = path.kind === 'full'
      ? input()
      // Lanczos 3 as everywhere else (tensor.ts); sharp sizes the target in displayed orientation.
      : input().resize(target.width, target.height, { fit: 'fill', kernel: 'lanczos3' });
    ({ data, info } = await pipeline
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
  if (width !== target.width || height !== target.height) {
    throw new P2pzError('E_IMAGE_DECODE', `It decoded to ${width}×${height} instead of ${target.width}×${target.height}.`);
  }
  if (channels === 3) {
    return { width, height, source, path, rgb: ownBytes(data), alpha: null, format: header.format, orientation };
  }
  const rgb = new Uint8Array(pixels * 3);
  const alpha = new Uint8Array(pixels);
  for (let p = 0, q = 0; p < pixels; p++, q += 4) {
    rgb[p * 3] = data[q] ?? 0;
    rgb[p * 3 + 1] = data[q + 1] ?? 0;
    rgb[p * 3 + 2] = data[q + 2] ?? 0;
    alpha[p] = data[q + 3] ?? 0;
  }
  return { width, height, source, path, rgb, alpha, format: header.format, orientation };
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

/** An upload decoded for an edit. Within the output budget, one decode at the file's size serves
 *  both the models and the results. Beyond it, the models get a working copy of about
 *  `workingPixels` (JPEG and WebP shrink at decode, by 8 for a 64 MP JPEG edited at 512 px), and
 *  the output-size pixels are decoded only if a stage asks for them (the blend needs the original's
 *  colours, an alpha channel must be re-attached at the output size). */
export interface EditSource {
  /** The results' size: the file's, or within the output budget (outputSize). */
  readonly width: number;
  readonly height: number;
  /** The file's displayed size. */
  readonly source: { readonly width: number; readonly height: number };
  /** Pixels for the models and the captioner: the output-size decode itself within the budget. */
  readonly working: DecodedImage;
  /** The output-size pixels, decoded on the first call (the working copy within the budget). */
  output(): Promise<DecodedImage>;
  /** How each copy was read; `output` null while it has not been (or never is) decoded. */
  paths(): { readonly working: DecodePath; readonly output: DecodePath | null };
}

/** Decodes `bytes` for an edit whose models need at most `workingPixels`. Errors as decodeImage. */
export async function decodeForEdit(bytes: Uint8Array, workingPixels: number, options: Partial<DecodeOptions> = {}): Promise<EditSource> {
  const settings = { ...DECODE_DEFAULTS, ...options };
  const header = sniffImage(bytes, settings);
  const shown = orientedSize(header);
  const size = outputSize(shown.width, shown.height, settings.maxOutputPixels);
  if (size.width === shown.width && size.height === shown.height) {
    const image = await decodeImage(bytes, settings);
    return { width: image.width, height: image.height, source: image.source, working: image, output: async () => image, paths: () => ({ working: image.path, output: image.path }) };
  }
  const working = await decodeImage(bytes, { ...settings, maxOutputPixels: Math.min(workingPixels, settings.maxOutputPixels) });
  let full: Promise<DecodedImage> | undefined;
  let fullPath: DecodePath | null = null;
  return {
    ...size,
    source: working.source,
    working,
    output: () => {
      full ??= decodeImage(bytes, settings).then((image) => {
        fullPath = image.path;
        return image;
      });
      return full;
    },
    paths: () => ({ working: working.path, output: fullPath }),
  };
}

/** The note a job's details carry when its results are smaller than its input. */
export function scaledNote(decoded: Pick<DecodedImage, 'width' | 'height' | 'source'>): string | undefined {
  const { width, height, source } = decoded;
  if (width === source.width && height === source.height) return undefined;
  const mp = (DECODE_DEFAULTS.maxOutputPixels / 2 ** 20).toFixed(0);
  return `The image is ${source.width}×${source.height} px, more than the ${mp} MP a result may have, so the result is ${width}×${height} px, the same proportions; the plugin scales it to the layer.`;
}

function asOrientation(value: number | undefined): ExifOrientation {
  return value !== undefined && Number.isInteger(value) && value >= 1 && value <= 8 ? (value as ExifOrientation) : 1;
}
