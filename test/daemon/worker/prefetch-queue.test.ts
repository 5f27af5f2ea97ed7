// The worker's waiting uploads (daemon/worker/prefetch-queue.ts): worked one at a time only while no job
// runs, resumed when one ends, an upload a job interrupted kept for later, failures counted and passed
// over, and at most `maxWaiting` uploads or `maxWaitingBytes` bytes waiting, the oldest dropped.
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../daemon/log.js';
import type { PrefetchOutcome } from '../../../daemon/pipeline/gan-prefetch.js';
import { PrefetchQueue } from '../../../daemon/worker/prefetch-queue.js';

/** A queue over a recording prefetch; `outcomes` scripts each call's outcome (default `ready`). */
function queue(options: { maxWaiting?: number; maxWaitingBytes?: number; outcomes?: (PrefetchOutcome | Error)[] } = {}) {
  // A `partly` outcome means a job started meanwhile: the scripted prefetch makes the worker busy.
  const state = { idle: true, done: [] as number[] };
  const scripted = [...(options.outcomes ?? [])];
  const q = new PrefetchQueue({
    idle: () => state.idle,
    prefetch: async (image) => {
      await Promise.resolve();
      const outcome = scripted.shift() ?? 'ready';
      if (outcome instanceof Error) throw outcome;
      if (outcome === 'partly') state.idle = false;
      if (outcome === 'ready') state.done.push(image[0] as number);
      return outcome;
    },
    log: silentLogger,
    ...(options.maxWaiting === undefined ? {} : { maxWaiting: options.maxWaiting }),
    ...(options.maxWaitingBytes === undefined ? {} : { maxWaitingBytes: options.maxWaitingBytes }),
  });
  return { q, state };
}

const image = (id: number, bytes = 4) => new Uint8Array(bytes).fill(id);
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('PrefetchQueue', () => {
  it('works only while idle, in order, and resumes when told', async () => {
    const { q, state } = queue();
    state.idle = false;
    q.push(image(1));
    q.push(image(2));
    await settle();
    expect(state.done).toEqual([]);
    expect(q.waiting).toBe(2);
    state.idle = true;
    q.resume();
    await settle();
    expect(state.done).toEqual([1, 2]);
    expect(q.waiting).toBe(0);
    expect(q.outcomes.get('ready')).toBe(2);
  });

  it('keeps the newest uploads: at most maxWaiting of them and maxWaitingBytes in all', async () => {
    const { q, state } = queue({ maxWaiting: 3, maxWaitingBytes: 100 });
    state.idle = false;
    for (let i = 1; i <= 5; i++) q.push(image(i));
    expect(q.waiting).toBe(3);
    q.push(image(6, 97)); // 3·4 + 97 > 100: the three small ones go
    expect(q.waiting).toBe(1);
    expect(q.outcomes.get('dropped')).toBe(2 + 3);
    state.idle = true;
    q.resume();
    await settle();
    expect(state.done).toEqual([6]);
  });

  it('keeps an upload a job interrupted, and passes over one that failed', async () => {
    const { q, state } = queue({ outcomes: ['partly', new Error('boom'), 'ready', 'ready'] });
    q.push(image(1));
    await settle();
    // 'partly': a job started; the upload waits for the next idle time.
    expect(q.waiting).toBe(1);
    q.push(image(2));
    await settle();
    expect(q.waiting).toBe(2);
    // The job ended: 1 again (fails this time), then 2.
    state.idle = true;
    q.resume();
    await settle();
    expect(q.outcomes.get('failed')).toBe(1);
    expect(state.done).toEqual([2]);
    expect(q.waiting).toBe(0);
  });
});
