// `p2pz edit`'s progress: on a terminal a redrawn bar per stage with step counts and a measured time
// left (the edit loop ahead counted while inverting); elsewhere plain lines. A scripted clock.
import { describe, expect, it } from 'vitest';
import { EDIT_PROGRESS_DEFAULTS, EditProgress } from '../../daemon/cli/edit-progress.js';

function rig(tty: boolean) {
  let t = 0;
  let text = '';
  const meter = new EditProgress({ write: (s) => (text += s), tty, editSteps: 50, now: () => t });
  return { meter, advance: (ms: number) => (t += ms), text: () => text };
}

describe('EditProgress on a terminal', () => {
  it('redraws one line per stage with the bar, the step count and the time left', () => {
    const r = rig(true);
    r.meter.update('load', 0, 1);
    r.meter.update('inversion', 0, 50);
    for (let step = 1; step <= 10; step++) {
      r.advance(1000);
      r.meter.update('inversion', step, 50);
    }
    const last = r.text().split('\r').at(-1) ?? '';
    // 1 s per inversion step: 40 s of inversion left, then 50 edit steps at 5 s each.
    expect(EDIT_PROGRESS_DEFAULTS.editStepCost).toBe(5);
    expect(last).toBe(`inversion  [####----------------]   10/50  ETA 4m50s\x1b[K`);
    r.meter.update('edit', 0, 50);
    r.advance(4000);
    r.meter.update('edit', 1, 50);
    expect(r.text().split('\r').at(-1)).toBe(`edit       [--------------------]    1/50  ETA 3m16s\x1b[K`);
    r.meter.end();
    // A stage change ends the previous line; end() ends the last.
    expect(r.text().match(/\n/g)?.length).toBe(3);
    expect(r.text().endsWith('\n')).toBe(true);
  });

  it('redraws at most every redrawMs, but always the last step', () => {
    const r = rig(true);
    r.meter.update('edit', 0, 100);
    for (let step = 1; step <= 100; step++) {
      r.advance(10);
      r.meter.update('edit', step, 100);
    }
    const draws = r.text().split('\r').length - 1;
    expect(draws).toBeLessThanOrEqual(1 + Math.ceil((100 * 10) / EDIT_PROGRESS_DEFAULTS.redrawMs) + 1);
    expect(r.text()).toContain(' 100/100  ETA 0s');
  });
});

describe('EditProgress not on a terminal', () => {
  it('prints plain lines: each stage once, loops every tenth, with counts and the time left', () => {
    const r = rig(false);
    r.meter.update('load', 0, 1);
    r.meter.update('load', 1, 1);
    r.meter.update('inversion', 0, 50);
    for (let step = 1; step <= 50; step++) {
      r.advance(1000);
      r.meter.update('inversion', step, 50);
    }
    const lines = r.text().trimEnd().split('\n');
    expect(r.text()).not.toMatch(/[\r\x1b]/);
    expect(lines[0]).toBe('load');
    expect(lines[1]).toBe('inversion 0/50');
    expect(lines[2]).toBe('inversion 5/50, ETA 4m55s');
    expect(lines.at(-1)).toBe('inversion 50/50, ETA 4m10s');
    expect(lines.length).toBe(2 + 10);
  });
});
