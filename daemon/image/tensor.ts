// Conversions between the pipeline's 8-bit pixels and the models' float tensors, the working size
// (docs/DESIGN.md §3: long side 512, aspect kept, dimensions multiples of 64) and resampling between the
// input size and the working size.
import sharp, { type KernelEnum } from 'sharp';
import { P2pzError } from '../../shared/protocol/index.js';
import { ownBytes } from './bytes.js';

export const TENSOR_DEFAULTS = Object.freeze({
  /** Working size: the long side, in pixels (docs/DESIGN.md §3). */
  longSide: 512,
  /** The VAE downsamples by 8 and the UNet by 8 more: sides are multiples of 64. */
  multiple: 64,
  /** RGB resampling: Lanczos a=3 keeps edges sharp both ways; its small overshoot is clamped to
   *  0..255 by the 8-bit output. */
  rgbKernel: 'lanczos3' as ResizeKernel,
  /** Alpha and mask resampling: (bi)linear never overshoots, so a hard alpha edge gets no halo,
   *  fully transparent or opaque regions stay exactly 0 or 255, and an attention mask upsampled
   *  from the latent grid stays within its own range. */
  alphaKernel: 'linear' as ResizeKernel,
});

export type ResizeKernel = KernelEnum[keyof KernelEnum];

/** The working size for an image of `width`×`height`: the long side becomes `longSide` (a multiple of
 *  64), the short side `longSide·short/long` rounded to the nearest multiple of 64 (at least 64).
 *  E.g. 1920×1080 → 512×320, 1000×1000 → 512×512, 300×2000 → 64×512 (77 rounds to 64). */
export function workingSize(
  width: number,
  height: number,
  longSide: number = TENSOR_DEFAULTS.longSide,
): { width: number; height: number } {
  const m = TENSOR_DEFAULTS.multiple;
  if (!isPositiveInt(width) || !isPositiveInt(height)) throw internal(`workingSize: ${width}×${height} is not a size.`);
  if (!isPositiveInt(longSide) || longSide % m !== 0) {
    throw internal(`workingSize: long side ${longSide} is not a positive multiple of ${m}.`);
  }
  const short = Math.max(m, Math.round((longSide * Math.min(width, height)) / Math.max(width, height) / m) * m);
  return width >= height ? { width: longSide, height: short } : { width: short, height: longSide };
}

export const WORKING_FRAME_LIMITS = Object.freeze({
  /** Inputs up to this aspect ratio (long:short) fill the working frame, which is then at most 2:1,
   *  so its short side is at least half the long side (256 px at the default 512): SD 1.x was trained
   *  near 512² and breaks down on a 64 px short side. */
  fillAspect: 2,
  /** Up to this aspect ratio the input is resized into a 2:1 frame and the rest mirrored around it
   *  (the result is cropped back); beyond it the edit is refused with a hint. */
  maxAspect: 4,
  /** Fewest pixels on either side of an input: below this there is nothing to edit. */
  minSide: 32,
});

/** The working frame of an input: the size the models see, and where the input sits in it. */
export interface WorkingFrame {
  readonly width: number;
  readonly height: number;
  /** The input's rectangle in the frame; the frame itself unless the input was padded. */
  readonly content: { readonly left: number; readonly top: number; readonly width: number; readonly height: number };
}

/**
 * The working frame for an input of `width`×`height`: workingSize when its aspect ratio is at most
 * 2:1; up to 4:1 a 2:1 frame (long side `longSide`) with the input resized into its middle; refused
 * (E_BAD_REQUEST with a hint) beyond 4:1 or under 32 px a side. E.g. 1×1 → refused, 6000×300 (20:1) →
 * refused, 300×2000 (6.7:1) → refused, 1500×500 (3:1) → 512×256 frame with the input at 512×171.
 */
export function workingFrame(width: number, height: number, longSide: number = TENSOR_DEFAULTS.longSide): WorkingFrame {
  const L = WORKING_FRAME_LIMITS;
  const m = TENSOR_DEFAULTS.multiple;
  if (!isPositiveInt(width) || !isPositiveInt(height)) throw internal(`workingFrame: ${width}×${height} is not a size.`);
  const long = Math.max(width, height);
  const short = Math.min(width, height);
  if (short < L.minSide) {
    throw new P2pzError('E_BAD_REQUEST', `The image is ${width}×${height} pixels; an edit needs at least ${L.minSide} pixels on each side.`,
      'Select a larger layer, or scale this one up before editing it.');
  }
  const aspect = long / short;
  if (aspect > L.maxAspect) {
    throw new P2pzError('E_BAD_REQUEST', `The image is ${width}×${height} pixels (about ${Math.round(aspect)}:1); edits work up to ${L.maxAspect}:1, since Stable Diffusion breaks down on a very narrow frame.`,
      `Crop the layer to at most ${L.maxAspect}:1, or split it into parts and edit each.`);
  }
  if (aspect <= L.fillAspect) {
    const size = workingSize(width, height, longSide);
    return { ...size, content: { left: 0, top: 0, ...size } };
  }
  const frameShort = Math.max(m, Math.round(longSide / L.fillAspect / m) * m);
  const inner = Math.max(1, Math.round((longSide * short) / long));
  const offset = Math.floor((frameShort - inner) / 2);
  return width >= height
    ? { width: longSide, height: frameShort, content: { left: 0, top: offset, width: longSide, height: inner } }
    : { width: frameShort, height: longSide, content: { left: offset, top: 0, width: inner, height: longSide } };
}

/** The input (HWC 8-bit RGB, w×h) in its working frame: resized to the content rectangle, and the
 *  rest of the frame filled by mirroring it at the edges. */
export async function rgbInFrame(rgb: Uint8Array, w: number, h: number, frame: WorkingFrame): Promise<Uint8Array> {
  const c = frame.content;
  const inner = await resizeRgb(rgb, w, h, c.width, c.height);
  if (c.width === frame.width && c.height === frame.height) return inner;
  const { data, info } = await sharp(inner, { raw: { width: c.width, height: c.height, channels: 3 } })
    .extend({ top: c.top, left: c.left, bottom: frame.height - c.top - c.height, right: frame.width - c.left - c.width, extendWith: 'mirror' })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== frame.width || info.height !== frame.height || info.channels !== 3) {
    throw internal(`rgbInFrame: got ${info.width}×${info.height}×${info.channels}, wanted ${frame.width}×${frame.height}×3.`);
  }
  return ownBytes(data);
}

/** The content rectangle of a frame-sized HWC image (1 or 3 channels), copied out. */
export function cropToContent(pixels: Uint8Array, frame: WorkingFrame, channels: 1 | 3): Uint8Array {
  const c = frame.content;
  checkPixels(pixels, frame.width, frame.height, channels, 'frame');
  if (c.width === frame.width && c.height === frame.height) return pixels.slice();
  const out = new Uint8Array(c.width * c.height * channels);
  for (let y = 0; y < c.height; y++) {
    const from = ((c.top + y) * frame.width + c.left) * channels;
    out.set(pixels.subarray(from, from + c.width * channels), y * c.width * channels);
  }
  return out;
}

/** x[0, c, y, x] = rgb[(y·W + x)·3 + c] / 127.5 − 1: HWC uint8 → NCHW float32 [1, 3, H, W] in [−1, 1]
 *  (the VAE encoder's input range). */
export function rgbToTensor(rgb: Uint8Array, width: number, height: number): Float32Array {
  const plane = checkPixels(rgb, width, height, 3, 'rgb');
  const tensor = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) channelToPlane(rgb, c, tensor, c * plane, plane);
  return tensor;
}

// The per-pixel loops live in functions of one loop each: V8 optimizes a hot loop while it runs (OSR),
// and a loop beside code that has not run yet gets deoptimized there on every call (measured: 6–11 ms
// instead of 1–2 ms at 512², call after call; image/warm-up.ts runs them once at worker start).

/** out[from + p] = hwc[p·3 + c] / 127.5 − 1 for the `plane` pixels. */
function channelToPlane(hwc: Uint8Array, c: number, out: Float32Array, from: number, plane: number): void {
  for (let p = 0, i = c; p < plane; p++, i += 3) out[from + p] = (hwc[i] as number) / 127.5 - 1;
}

/** out[start + p·stride] = round(clamp((x[from + p] + 1)·127.5, 0, 255)) (NaN → 0) for the `plane` values.
 *  round(v) is computed as ⌊v + 0.5⌋ by truncation, which equals Math.round(v) for v > 0 here: x + 1
 *  is exact in float64 for a float32 x, and so are ·127.5 and + 0.5 (at most 33 significant bits).
 *  Math.round's branches on the fraction cost 5× more on a photo's pixels (measured: 6.6 ms against
 *  1.4 ms at 512²). */
export function planeToChannel(x: Float32Array, from: number, plane: number, out: Uint8Array, start: number, stride: number): void {
  for (let p = 0, q = start; p < plane; p++, q += stride) {
    const v = ((x[from + p] as number) + 1) * 127.5 + 0.5;
    out[q] = v >= 255 ? 255 : v > 0.5 ? v | 0 : 0;
  }
}

/** rgb[(y·W + x)·3 + c] = round(clamp((x[0, c, y, x] + 1)·127.5, 0, 255)): NCHW float32 [1, 3, H, W]
 *  in [−1, 1] (the VAE decoder's output) → HWC uint8. Values outside the range are clamped; NaN → 0.
 *  Exact inverse of `rgbToTensor`. */
export function tensorToRgb(data: Float32Array, width: number, height: number): Uint8Array {
  const plane = checkPixels(data, width, height, 3, 'tensor');
  const rgb = new Uint8Array(3 * plane);
  for (let c = 0; c < 3; c++) planeToChannel(data, c * plane, plane, rgb, c, 3);
  return rgb;
}

/** Resamples HWC 8-bit RGB from w×h to newW×newH (aspect not kept: the caller chose the size). */
export function resizeRgb(
  rgb: Uint8Array,
  w: number,
  h: number,
  newW: number,
  newH: number,
  kernel: ResizeKernel = TENSOR_DEFAULTS.rgbKernel,
): Promise<Uint8Array> {
  return resizeChannels(rgb, w, h, 3, newW, newH, kernel);
}

/** Resamples one 8-bit channel (alpha, or a grayscale mask) from w×h to newW×newH. */
export function resizeAlpha(
  alpha: Uint8Array,
  w: number,
  h: number,
  newW: number,
  newH: number,
  kernel: ResizeKernel = TENSOR_DEFAULTS.alphaKernel,
): Promise<Uint8Array> {
  return resizeChannels(alpha, w, h, 1, newW, newH, kernel);
}

async function resizeChannels(
  pixels: Uint8Array,
  w: number,
  h: number,
  channels: 1 | 3,
  newW: number,
  newH: number,
  kernel: ResizeKernel,
): Promise<Uint8Array> {
  checkPixels(pixels, w, h, channels, channels === 1 ? 'alpha' : 'rgb');
  if (!isPositiveInt(newW) || !isPositiveInt(newH)) throw internal(`resize: ${newW}×${newH} is not a size.`);
  if (newW === w && newH === h) return pixels.slice();
  const { data, info } = await sharp(pixels, { raw: { width: w, height: h, channels } })
    .resize(newW, newH, { fit: 'fill', kernel })
    // One raw channel is read as b-w; without this libvips would hand back three.
    .toColourspace(channels === 1 ? 'b-w' : 'srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== channels || data.length !== newW * newH * channels) {
    throw internal(`resize: got ${info.width}×${info.height}×${info.channels}, wanted ${newW}×${newH}×${channels}.`);
  }
  return ownBytes(data);
}

function checkPixels(
  pixels: Uint8Array | Float32Array,
  width: number,
  height: number,
  channels: number,
  name: string,
): number {
  if (!isPositiveInt(width) || !isPositiveInt(height)) throw internal(`${name}: ${width}×${height} is not a size.`);
  const plane = width * height;
  if (pixels.length !== plane * channels) {
    throw internal(`${name} holds ${pixels.length} values, not ${width}×${height}×${channels}.`);
  }
  return plane;
}

function isPositiveInt(n: number): boolean {
  return Number.isInteger(n) && n > 0;
}

function internal(detail: string): P2pzError {
  return new P2pzError('E_INTERNAL', detail);
}
