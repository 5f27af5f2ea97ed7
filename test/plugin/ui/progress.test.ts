// Overall progress and time left from the daemon's stage events (a scripted clock), and the words the
// panel shows for them: a designer's words, the overall percentage, the time left, and the note that
// explains the long first step for new words.
import { describe, expect, it } from 'vitest';
import type { Stage } from '../../../shared/protocol/index.js';
import { JobProgressEstimate, PROGRESS_DEFAULTS, timeLeftWords } from '../../../plugin/ui/progress.js';
import { progressWords } from '../../../plugin/ui/view.js';

function clocked(): { estimate: JobProgressEstimate; at: (ms: number) => void } {
  let t = 0;
  return { estimate: new JobProgressEstimate(() => t), at: (ms) => (t = ms) };
}

describe('JobProgressEstimate', () => {
  it('fills the bar over a render\'s stages in order, never going back, to 1 at the end', () => {
    const { estimate } = clocked();
    const events: [Stage, number, number][] = [
      ['load', 0, 1], ['decode', 0, 1], ['load', 1, 1], ['encode', 0, 1], ['caption', 0, 1],
      ['direction', 0, 2000], ['direction', 1000, 2000], ['direction', 2000, 2000],
      ['inversion', 0, 10], ['inversion', 5, 10], ['inversion', 10, 10],
      ['edit', 0, 10], ['edit', 5, 10], ['edit', 10, 10], ['vae-decode', 0, 1], ['save', 0, 1], ['save', 1, 1],
    ];
    const overall = events.map(([s, step, total]) => estimate.update(s, step, total).overall);
    for (let i = 1; i < overall.length; i++) expect(overall[i]).toBeGreaterThanOrEqual(overall[i - 1] ?? 0);
    // Independent sums of the plan's shares: before the direction 0.08, half of it 0.14, half the
    // inversion 0.265, half the edit 0.64.
    expect(overall[5]).toBeCloseTo(0.08, 12);
    expect(overall[6]).toBeCloseTo(0.14, 12);
    expect(overall[9]).toBeCloseTo(0.265, 12);
    expect(overall[12]).toBeCloseTo(0.64, 12);
    expect(overall.at(-1)).toBeCloseTo(1, 12);
    expect(PROGRESS_DEFAULTS.diffusion.reduce((sum, [, w]) => sum + w, 0)).toBeCloseTo(1, 12);
    expect(PROGRESS_DEFAULTS.gan.reduce((sum, [, w]) => sum + w, 0)).toBeCloseTo(1, 12);
  });

  it('measures the time left on the inversion, counting an edit step as five inversion steps', () => {
    const { estimate, at } = clocked();
    at(1_000);
    expect(estimate.update('inversion', 0, 10).remainingMs).toBeNull(); // nothing measured yet
    at(1_300);
    // 3 steps in 300 ms: 100 ms per unit; 7 inversion steps and 10 edit steps (50 units) are left.
    expect(estimate.update('inversion', 3, 10).remainingMs).toBeCloseTo(100 * (7 + 50), 9);
  });

  it('measures on the edit once it runs', () => {
    const { estimate, at } = clocked();
    at(0);
    estimate.update('inversion', 0, 10);
    at(1_000);
    estimate.update('inversion', 10, 10);
    at(2_000);
    // The first edit step is not done yet: the inversion's 100 ms per unit still tells, 50 units left.
    expect(estimate.update('edit', 0, 10).remainingMs).toBeCloseTo(5_000, 9);
    at(4_000);
    // 2 edit steps (10 units) in 2000 ms: 200 ms per unit, 8 steps (40 units) left.
    expect(estimate.update('edit', 2, 10).remainingMs).toBeCloseTo(8_000, 9);
  });

  it('has no estimate when the inversion was reused until an edit step has passed', () => {
    const { estimate, at } = clocked();
    at(0);
    expect(estimate.update('inversion', 10, 10).remainingMs).toBeNull();
    expect(estimate.update('edit', 0, 10).remainingMs).toBeNull();
    at(500);
    expect(estimate.update('edit', 1, 10).remainingMs).toBeCloseTo(100 * 45, 9);
  });

  it('measures the edit direction\'s own time left', () => {
    const { estimate, at } = clocked();
    at(0);
    expect(estimate.update('direction', 0, 2000).remainingMs).toBeNull();
    at(1_000);
    expect(estimate.update('direction', 500, 2000).remainingMs).toBeCloseTo(3_000, 9);
  });

  it('follows the GAN preview\'s own stages', () => {
    const { estimate } = clocked();
    estimate.update('decode', 0, 1);
    estimate.update('load', 0, 1);
    expect(estimate.update('generate', 0, 1).overall).toBeCloseTo(0.4, 12);
    expect(estimate.update('encode', 0, 1).overall).toBeCloseTo(0.9, 12);
  });
});

describe('the progress words', () => {
  it('say what happens in a designer\'s words, how far the whole job is, and how long is left', () => {
    expect(progressWords({ phase: 'stage', batch: null, stage: 'edit', step: 5, total: 10, overall: 0.64, remainingMs: 42_000 })).toEqual({
      stage: 'Applying the edit',
      step: '64 % · about 40 s left',
      fraction: 0.64,
      note: null,
    });
    expect(progressWords({ phase: 'stage', batch: null, stage: 'inversion', step: 0, total: 10, overall: 0.2, remainingMs: null }).stage).toBe('Analysing the image');
  });

  it('say that a team endpoint started the edit again on another GPU machine', () => {
    const words = progressWords({ phase: 'retrying', batch: null, attempt: 2 });
    expect([words.stage, words.step, words.fraction]).toEqual(['Starting again', 'attempt 2', 0]);
    expect(words.note).toMatch(/another one/);
  });

  it('explain the long first step for new words, with the time that step has left', () => {
    const words = progressWords({ phase: 'stage', batch: null, stage: 'direction', step: 1640, total: 2000, overall: 0.1784, remainingMs: 95_000 });
    expect(words.stage).toBe('Learning the edit');
    expect(words.step).toBe('17 % · this step: about 2 min left');
    expect(words.note).toBe('A first edit with new words: p2pz learns them from 2,000 example sentences. Later edits with the same words skip this step.');
    expect(progressWords({ phase: 'stage', batch: null, stage: 'direction', step: 2000, total: 2000, overall: 0.2, remainingMs: null }).note).toBeNull();
  });

  it('show a batch\'s overall progress, layer by layer', () => {
    const words = progressWords({ phase: 'stage', batch: { index: 1, count: 4 }, stage: 'edit', step: 5, total: 10, overall: 0.5, remainingMs: 30_000 });
    expect(words.stage).toBe('Layer 2 of 4 · Applying the edit');
    expect(words.fraction).toBeCloseTo(0.375, 12);
    expect(words.step).toBe('37 % · about 30 s left for this layer');
    expect(progressWords({ phase: 'uploading', batch: { index: 2, count: 4 } }).fraction).toBeCloseTo(0.5, 12);
  });

  it('round the time left as a person would say it', () => {
    expect(timeLeftWords(4_000)).toBe('a few seconds left');
    expect(timeLeftWords(12_000)).toBe('about 10 s left');
    expect(timeLeftWords(57_000)).toBe('about 55 s left');
    expect(timeLeftWords(61_000)).toBe('about 1 min left');
    expect(timeLeftWords(14 * 60_000 + 20_000)).toBe('about 14 min left');
    expect(timeLeftWords(75 * 60_000)).toBe('about 1 h 15 min left');
  });
});
