// Overall progress of one job and the time it has left, from the daemon's stage events. A render's
// stages (the numbered map at the top of daemon/pipeline/pix2pix-zero.ts) each get a share of the bar;
// the two loops, inversion and edit, have most of it. The time left is measured, not guessed: once
// loop steps have passed, the time they took per unit of work, times the units still to come, where an
// edit step costs EDIT_STEP_COST inversion steps. The edit direction, computed once per pair of words
// from thousands of sentences, runs before the loops; its own time left is measured the same way.
import type { Stage } from '../../shared/protocol/index.js';

export const PROGRESS_DEFAULTS = Object.freeze({
  /** An edit step (reference pass, guidance forward+backward at batch 2, edit pass at batch 2) in
   *  inversion steps (one UNet forward): 880 ms / 179 ms for 10 steps each in docs/BENCHMARKS.md
   *  ("Stage times of the full edit"), about 5. */
  editStepCost: 5,
  /** Share of the bar per stage of a diffusion job (render or diffusion preview), in pipeline order. */
  diffusion: [
    ['load', 0.04],
    ['decode', 0.01],
    ['encode', 0.02],
    ['caption', 0.01],
    ['direction', 0.12],
    ['inversion', 0.13],
    ['edit', 0.62],
    ['vae-decode', 0.03],
    ['save', 0.02],
  ] as readonly (readonly [Stage, number])[],
  /** The same for the GAN preview (daemon/pipeline/gan-preview.ts). */
  gan: [
    ['decode', 0.1],
    ['load', 0.3],
    ['generate', 0.5],
    ['encode', 0.1],
  ] as readonly (readonly [Stage, number])[],
});

export interface ProgressEstimate {
  /** 0..1 over the whole job; never goes back. */
  readonly overall: number;
  /** Milliseconds left for the whole job (null until measured); for `direction`, for that stage. */
  readonly remainingMs: number | null;
}

/** A steady clock in milliseconds. */
export type Clock = () => number;

/** Follows one job's progress events. */
export class JobProgressEstimate {
  private plan: readonly (readonly [Stage, number])[] = PROGRESS_DEFAULTS.diffusion;
  private best = 0;
  /** Steps seen per loop, with the time the first one was seen (the start of measuring). */
  private readonly loops = new Map<Stage, { total: number; done: number; firstDone: number; firstAt: number; lastAt: number }>();
  private direction: { firstDone: number; firstAt: number } | null = null;

  constructor(private readonly now: Clock) {}

  update(stage: Stage, step: number, total: number): ProgressEstimate {
    if (stage === 'generate') this.plan = PROGRESS_DEFAULTS.gan;
    const fraction = total > 0 ? Math.min(1, Math.max(0, step / total)) : 0;
    let before = 0;
    let share = 0;
    for (const [s, w] of this.plan) {
      if (s === stage) {
        share = w;
        break;
      }
      before += w;
    }
    if (share === 0) before = this.best; // a stage outside the plan: hold the bar
    this.best = Math.max(this.best, Math.min(1, before + share * fraction));
    const at = this.now();
    if (stage === 'inversion' || stage === 'edit') {
      const loop = this.loops.get(stage);
      if (loop === undefined) this.loops.set(stage, { total, done: step, firstDone: step, firstAt: at, lastAt: at });
      else Object.assign(loop, { done: step, lastAt: at });
      return { overall: this.best, remainingMs: this.loopsRemaining() };
    }
    if (stage === 'direction') {
      this.direction ??= { firstDone: step, firstAt: at };
      const done = step - this.direction.firstDone;
      const remainingMs = done > 0 ? ((at - this.direction.firstAt) / done) * (total - step) : null;
      return { overall: this.best, remainingMs };
    }
    return { overall: this.best, remainingMs: null };
  }

  /** Time left in the loops from the measured time per unit (an inversion step is one unit). */
  private loopsRemaining(): number | null {
    const inversion = this.loops.get('inversion');
    const edit = this.loops.get('edit');
    const cost = PROGRESS_DEFAULTS.editStepCost;
    // Measure on the edit once a step of it has passed, else on the inversion.
    const rate = (loop: typeof edit, unit: number): number | null => {
      const units = loop === undefined ? 0 : (loop.done - loop.firstDone) * unit;
      return loop === undefined || units <= 0 ? null : (loop.lastAt - loop.firstAt) / units;
    };
    const perUnit = rate(edit, cost) ?? rate(inversion, 1);
    if (perUnit === null) return null;
    const editTotal = edit?.total ?? inversion?.total ?? 0;
    const left = (inversion === undefined || edit !== undefined ? 0 : inversion.total - inversion.done) + (editTotal - (edit?.done ?? 0)) * cost;
    return perUnit * left;
  }
}

/** "about 40 s left" for a time left in milliseconds. */
export function timeLeftWords(ms: number): string {
  const s = ms / 1000;
  if (s < 10) return 'a few seconds left';
  if (s < 60) return `about ${Math.max(10, Math.round(s / 5) * 5)} s left`;
  const min = Math.round(s / 60);
  if (min < 60) return `about ${min} min left`;
  return `about ${Math.floor(min / 60)} h ${min % 60} min left`;
}
