// The progress line: speed over a sliding window with an injected clock, ETA at that speed, resumed
// bytes counted as done but not as speed, and the exact rendering.
import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, formatProgress, ProgressMeter } from '../../../daemon/models/progress.js';

describe('ProgressMeter', () => {
  it('speed and ETA from the samples in the window', () => {
    let t = 0;
    const m = new ProgressMeter(1000, () => t, 5000);
    t = 1000;
    m.add(100);
    expect(m.snapshot()).toEqual({ done: 100, total: 1000, bytesPerSecond: 100, etaSeconds: 9 });
  });

  it('forgets samples older than the window', () => {
    let t = 0;
    const m = new ProgressMeter(100_000, () => t, 5000);
    for (let s = 1; s <= 10; s++) {
      t = s * 1000;
      m.add(s <= 5 ? 100 : 300);
    }
    // From t = 5 s (done 500) to t = 10 s (done 2000): 300 B/s.
    expect(m.snapshot().bytesPerSecond).toBe(300);
  });

  it('resumed bytes are done but not speed; thrown-away bytes go back', () => {
    let t = 0;
    const m = new ProgressMeter(1000, () => t, 5000);
    m.addResumed(400);
    t = 2000;
    m.add(200);
    expect(m.snapshot()).toEqual({ done: 600, total: 1000, bytesPerSecond: 100, etaSeconds: 4 });
    m.add(-200);
    expect(m.snapshot().done).toBe(400);
  });
});

describe('formatting', () => {
  it('bytes, durations and the line', () => {
    expect([formatBytes(999), formatBytes(1000), formatBytes(23_456_789), formatBytes(3_440_000_000)]).toEqual(['999 B', '1.00 kB', '23.5 MB', '3.44 GB']);
    expect([formatDuration(undefined), formatDuration(45), formatDuration(65), formatDuration(7260)]).toEqual(['--', '45s', '1m05s', '2h01m']);
    expect(formatProgress({ done: 100, total: 1000, bytesPerSecond: 100, etaSeconds: 9 }, 'unet/weights.pb')).toBe(
      '[##------------------]  10%  100 B / 1.00 kB  100 B/s  ETA 9s  unet/weights.pb',
    );
    expect(formatProgress({ done: 0, total: 10, bytesPerSecond: undefined, etaSeconds: undefined })).toBe('[--------------------]   0%  0 B / 10 B  --  ETA --');
  });
});
