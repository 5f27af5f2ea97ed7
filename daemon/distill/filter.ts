// Which pix2pix-zero edits make training pairs. An edit is dropped when
//   mask-empty         the source concept's attention mask covers less than `minMaskCoverage` of the
//                      image (fraction of mask pixels ≥ `maskThreshold`/255): the caption's source word
//                      attends to nothing, so the edit has no object to act on;
//   negligible-change  the edit changed almost nothing: mean |y − x| < `minChange` over all RGB values
//                      in [0,1] (0.02 ≈ 5 levels of 255 on average);
//   excessive-change   the edit replaced the picture rather than translating it: mean |y − x| >
//                      `maxChange` (pix2pix-zero keeps the input's structure; such a pair would teach the
//                      generator to ignore its input).
// The min-max normalized mask always has a maximum of 255 when any attention was recorded, so the
// coverage measures how concentrated it is; an all-zero mask (nothing recorded) covers 0.
import type { DropReason, PairFilter, PairMetrics } from './manifest.js';

export const PAIR_FILTER_DEFAULTS: Readonly<PairFilter> = Object.freeze({
  /** A mask pixel counts as covered from this gray level (half of full attention). */
  maskThreshold: 128,
  /** 1% of the image. */
  minMaskCoverage: 0.01,
  minChange: 0.02,
  maxChange: 0.5,
});

/** Measures a pair: x, y RGB (HWC, 8 bits, same size), mask gray (HW, same size). */
export function pairMetrics(x: Uint8Array, y: Uint8Array, mask: Uint8Array, filter: Pick<PairFilter, 'maskThreshold'>): PairMetrics {
  if (x.length !== y.length || x.length !== mask.length * 3 || x.length === 0) {
    throw new RangeError(`pairMetrics: ${x.length} input, ${y.length} output and ${mask.length}×3 mask values differ`);
  }
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff += Math.abs(x[i]! - y[i]!);
  let covered = 0;
  for (const m of mask) if (m >= filter.maskThreshold) covered++;
  return { maskCoverage: covered / mask.length, change: diff / (255 * x.length) };
}

/** The reason to drop a pair, or null to keep it. Checked in the order documented above. */
export function judgePair(metrics: PairMetrics, filter: PairFilter): DropReason | null {
  if (metrics.maskCoverage < filter.minMaskCoverage) return 'mask-empty';
  if (metrics.change < filter.minChange) return 'negligible-change';
  if (metrics.change > filter.maxChange) return 'excessive-change';
  return null;
}
