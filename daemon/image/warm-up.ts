// The quick preview's pixel work run once on a small image when the worker starts, so that the first
// preview does not pay for it: V8 compiles each per-pixel loop only after it has run a while, and a
// first 512² call in a fresh process ran in its slow tiers (10–25 ms instead of 1–2 ms per conversion,
// docs/BENCHMARKS.md "daemon"); sharp loads its PNG codec and resampler on first use. Both alpha cases
// run, so no branch of the conversions is met for the first time in a real job.
import { decodeImage } from './decode.js';
import { ENCODE_DEFAULTS, encodePng } from './encode.js';
import { tensorToRgba } from './preview-pixels.js';
import { resizeAlpha, resizeRgb, rgbToTensor, tensorToRgb } from './tensor.js';

export const WARM_UP_DEFAULTS = Object.freeze({
  /** Side of the warm-up image, in pixels. */
  side: 64,
  /** Calls of each conversion: enough for V8 to collect type feedback and compile the loops. */
  rounds: 4,
});

export async function warmUpPreviewPixels(): Promise<void> {
  const { side, rounds } = WARM_UP_DEFAULTS;
  const plane = side * side;
  const rgb = Uint8Array.from({ length: 3 * plane }, (_, i) => (i * 37) & 255);
  const alpha = Uint8Array.from({ length: plane }, (_, i) => i & 255);
  const frame = new Uint8Array(4 * plane);
  for (let i = 0; i < rounds; i++) {
    const x = rgbToTensor(rgb, side, side);
    tensorToRgb(x, side, side);
    tensorToRgba(x, side, side, null);
    tensorToRgba(x, side, side, alpha, frame);
  }
  const png = await encodePng({ width: side, height: side, rgb, alpha }, ENCODE_DEFAULTS.preview);
  const decoded = await decodeImage(png);
  await resizeRgb(decoded.rgb, side, side, side / 2, side / 2);
  await resizeAlpha(alpha, side, side, side / 2, side / 2);
}
