// `p2pz edit`'s progress on stderr. On a terminal: one redrawn line per stage with a bar, the step
// count and the time left, e.g. `edit       [########------------]  21/50  ETA 1m12s`. Not on a
// terminal (a log file, CI): plain lines, one when a stage starts and one per tenth of its steps.
// The time left is measured: the seconds per step of the running loop so far, times the steps left;
// while inverting, the edit loop still to come is added at EDIT_PROGRESS_DEFAULTS.editStepCost
// inversion steps per edit step.
import { formatDuration } from '../models/progress.js';

export const EDIT_PROGRESS_DEFAULTS = Object.freeze({
  /** An edit step in inversion steps (one UNet forward): 880 ms / 179 ms for 10 steps each in
   *  docs/BENCHMARKS.md ("Stage times of the full edit"), about 5. */
  editStepCost: 5,
  barWidth: 20,
  /** Shortest interval between two redraws of the terminal line. */
  redrawMs: 200,
  /** Not on a terminal: a line per this fraction of a stage's steps. */
  plainEvery: 0.1,
});

/** Stages with more than one step, whose steps are timed. */
const LOOPS = new Set(['direction', 'inversion', 'edit']);

export interface EditProgressOptions {
  readonly write: (text: string) => void;
  readonly tty: boolean;
  /** Edit steps still to come after the inversion (the full edit's `steps`); 0 when none. */
  readonly editSteps: number;
  readonly now?: () => number;
}

export class EditProgress {
  private stage = '';
  private stageStart = { step: 0, at: 0 };
  private msPerStep: number | undefined;
  private lastDraw = -Infinity;
  private lastPlainBucket = -1;
  private readonly now: () => number;

  constructor(private readonly o: EditProgressOptions) {
    this.now = o.now ?? (() => performance.now());
  }

  update(stage: string, step: number, total: number): void {
    const t = this.now();
    if (stage !== this.stage) {
      if (this.stage !== '' && this.o.tty) this.o.write('\n');
      this.stage = stage;
      this.stageStart = { step, at: t };
      this.msPerStep = undefined;
      this.lastDraw = -Infinity;
      this.lastPlainBucket = -1;
    } else if (step > this.stageStart.step) {
      this.msPerStep = (t - this.stageStart.at) / (step - this.stageStart.step);
    }
    const eta = this.etaSeconds(stage, step, total);
    if (this.o.tty) {
      if (t - this.lastDraw < EDIT_PROGRESS_DEFAULTS.redrawMs && step < total) return;
      this.lastDraw = t;
      this.o.write(`\r${this.line(stage, step, total, eta)}\x1b[K`);
      return;
    }
    const bucket = total > 1 ? Math.floor(step / total / EDIT_PROGRESS_DEFAULTS.plainEvery) : 0;
    if (bucket === this.lastPlainBucket) return;
    this.lastPlainBucket = bucket;
    this.o.write(`${stage}${total > 1 ? ` ${step}/${total}` : ''}${eta === undefined ? '' : `, ETA ${formatDuration(eta)}`}\n`);
  }

  /** Ends the terminal line (call once the edit has finished or failed). */
  end(): void {
    if (this.o.tty && this.stage !== '') this.o.write('\n');
    this.stage = '';
  }

  private etaSeconds(stage: string, step: number, total: number): number | undefined {
    if (!LOOPS.has(stage) || this.msPerStep === undefined) return undefined;
    let ms = (total - step) * this.msPerStep;
    if (stage === 'inversion') ms += this.o.editSteps * EDIT_PROGRESS_DEFAULTS.editStepCost * this.msPerStep;
    return ms / 1000;
  }

  private line(stage: string, step: number, total: number, eta: number | undefined): string {
    const width = EDIT_PROGRESS_DEFAULTS.barWidth;
    const fraction = total > 0 ? Math.min(1, step / total) : 1;
    const filled = Math.floor(fraction * width);
    const count = `${step}/${total}`.padStart(7);
    return `${stage.padEnd(10)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${count}  ETA ${formatDuration(eta)}`;
  }
}
