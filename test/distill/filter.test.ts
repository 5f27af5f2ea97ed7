// The pairs filter: measurements on hand-made pixels (computed independently below) and the
// documented drop reasons, in their order, at their thresholds.
import { describe, expect, it } from 'vitest';
import { judgePair, pairMetrics, PAIR_FILTER_DEFAULTS } from '../../daemon/distill/filter.js';

describe('pairMetrics', () => {
  it('measures the mean absolute change over all RGB values and the mask coverage at the threshold', () => {
    // 2×2 pixels. |y − x| per value: 10,0,0 | 0,255,0 | 0,0,0 | 5,5,5 → 280 / (255·12).
    const x = Uint8Array.from([10, 20, 30, 0, 0, 0, 7, 7, 7, 100, 100, 100]);
    const y = Uint8Array.from([0, 20, 30, 0, 255, 0, 7, 7, 7, 105, 95, 105]);
    const mask = Uint8Array.from([0, 127, 128, 255]);
    const m = pairMetrics(x, y, mask, { maskThreshold: 128 });
    expect(m.change).toBeCloseTo(280 / (255 * 12), 15);
    expect(m.maskCoverage).toBe(0.5);
    expect(pairMetrics(x, y, mask, { maskThreshold: 1 }).maskCoverage).toBe(0.75);
  });

  it('refuses planes of different sizes', () => {
    expect(() => pairMetrics(new Uint8Array(12), new Uint8Array(9), new Uint8Array(4), PAIR_FILTER_DEFAULTS)).toThrow(RangeError);
    expect(() => pairMetrics(new Uint8Array(12), new Uint8Array(12), new Uint8Array(3), PAIR_FILTER_DEFAULTS)).toThrow(RangeError);
  });
});

describe('judgePair', () => {
  const f = PAIR_FILTER_DEFAULTS;
  it('keeps an edit with a mask and a moderate change', () => {
    expect(judgePair({ maskCoverage: 0.3, change: 0.1 }, f)).toBeNull();
    expect(judgePair({ maskCoverage: f.minMaskCoverage, change: f.minChange }, f)).toBeNull();
    expect(judgePair({ maskCoverage: 1, change: f.maxChange }, f)).toBeNull();
  });

  it('drops an empty mask first, then a negligible change, then an excessive one', () => {
    expect(judgePair({ maskCoverage: 0, change: 0 }, f)).toBe('mask-empty');
    expect(judgePair({ maskCoverage: f.minMaskCoverage - 1e-9, change: 0.9 }, f)).toBe('mask-empty');
    expect(judgePair({ maskCoverage: 0.5, change: f.minChange - 1e-9 }, f)).toBe('negligible-change');
    expect(judgePair({ maskCoverage: 0.5, change: f.maxChange + 1e-9 }, f)).toBe('excessive-change');
  });

  it('has the documented defaults', () => {
    expect(PAIR_FILTER_DEFAULTS).toEqual({ maskThreshold: 128, minMaskCoverage: 0.01, minChange: 0.02, maxChange: 0.5 });
    expect(Object.isFrozen(PAIR_FILTER_DEFAULTS)).toBe(true);
  });
});
