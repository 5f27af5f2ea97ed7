// The download progress bar: bytes done of the total, speed over a sliding window, and the time left
// at that speed. `ProgressMeter` keeps the numbers (the clock is injectable); `formatProgress` renders
// one line, e.g. `[########------------]  41%  1.4 GB / 3.4 GB  23.5 MB/s  ETA 1m25s  unet/weights.pb`.
export const PROGRESS_DEFAULTS = Object.freeze({
  /** Speed is averaged over this window. */
  windowMs: 5_000,
  /** Width of the bar in characters. */
  barWidth: 20,
  /** Shortest interval between two redraws of the terminal line. */
  redrawMs: 200,
});

export interface ProgressSnapshot {
  readonly done: number;
  readonly total: number;
  /** Bytes per second over the window; undefined until two samples exist. */
  readonly bytesPerSecond: number | undefined;
  /** Seconds left at that speed; undefined when the speed is unknown or zero. */
  readonly etaSeconds: number | undefined;
}

export class ProgressMeter {
  readonly #total: number;
  readonly #now: () => number;
  readonly #windowMs: number;
  #done = 0;
  /** (time, done) samples within the window, oldest first. */
  readonly #samples: Array<{ t: number; done: number }> = [];

  constructor(total: number, now: () => number = () => performance.now(), windowMs: number = PROGRESS_DEFAULTS.windowMs) {
    this.#total = total;
    this.#now = now;
    this.#windowMs = windowMs;
    this.#samples.push({ t: now(), done: 0 });
  }

  /** Adds `delta` bytes (negative when bytes are thrown away). */
  add(delta: number): void {
    this.#done = Math.max(0, Math.min(this.#total, this.#done + delta));
    const t = this.#now();
    this.#samples.push({ t, done: this.#done });
    // Keep one sample at or before the window's start, so the average spans the whole window.
    while (this.#samples.length > 2 && (this.#samples[1]?.t ?? t) <= t - this.#windowMs) this.#samples.shift();
  }

  /** Bytes resumed from disk count as done but not as speed. */
  addResumed(bytes: number): void {
    this.#done = Math.max(0, Math.min(this.#total, this.#done + bytes));
    for (const s of this.#samples) s.done += bytes;
  }

  snapshot(): ProgressSnapshot {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    let bytesPerSecond: number | undefined;
    if (first && last && last.t > first.t) bytesPerSecond = Math.max(0, ((last.done - first.done) * 1000) / (last.t - first.t));
    const left = this.#total - this.#done;
    const etaSeconds = bytesPerSecond && bytesPerSecond > 0 ? left / bytesPerSecond : left === 0 ? 0 : undefined;
    return { done: this.#done, total: this.#total, bytesPerSecond, etaSeconds };
  }
}

/** Bytes in decimal units, as download tools show them: 999 B, 1.5 kB, 23.4 MB, 3.44 GB. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = bytes / 1000;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

/** 45s, 3m05s, 2h07m; `--` when unknown. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatProgress(p: ProgressSnapshot, label = '', width: number = PROGRESS_DEFAULTS.barWidth): string {
  const fraction = p.total > 0 ? Math.min(1, p.done / p.total) : 1;
  const filled = Math.floor(fraction * width);
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
  const speed = p.bytesPerSecond === undefined ? '--' : `${formatBytes(p.bytesPerSecond)}/s`;
  return `${bar} ${percent}  ${formatBytes(p.done)} / ${formatBytes(p.total)}  ${speed}  ETA ${formatDuration(p.etaSeconds)}${label ? `  ${label}` : ''}`;
}
