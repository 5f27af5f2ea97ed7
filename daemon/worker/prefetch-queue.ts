// The worker's uploads waiting to be made ready for a preview (pipeline/gan-prefetch.ts), worked
// through one at a time while no job runs. Jobs come first: a job that arrives is started at once
// (worker-main.ts), whatever a prefetch is doing, and the prefetch stops at its next step; the queue
// resumes when the job has ended. Bounded: the newest uploads are the ones a designer is about to
// preview, so beyond `maxWaiting` images or `maxWaitingBytes` the oldest waiting ones are dropped.
import type { Logger } from '../log.js';
import { describeError } from '../log.js';
import type { PrefetchOutcome } from '../pipeline/gan-prefetch.js';

export const PREFETCH_QUEUE_DEFAULTS = Object.freeze({
  /** Uploads kept waiting at most. */
  maxWaiting: 4,
  /** Encoded bytes kept waiting at most (the supervisor announces uploads of at most 16 MiB). */
  maxWaitingBytes: 32 * 1024 * 1024,
});

export interface PrefetchQueueOptions {
  /** Makes one upload ready; `idle()` says whether it may go on. */
  readonly prefetch: (image: Uint8Array, idle: () => boolean) => Promise<PrefetchOutcome>;
  /** Whether no job runs now. */
  readonly idle: () => boolean;
  readonly log: Logger;
  readonly maxWaiting?: number;
  readonly maxWaitingBytes?: number;
}

export class PrefetchQueue {
  readonly #options: PrefetchQueueOptions;
  readonly #waiting: Uint8Array[] = [];
  #working = false;
  /** Outcomes so far, by kind (for the worker's log and tests). */
  readonly outcomes = new Map<PrefetchOutcome | 'dropped' | 'failed', number>();

  constructor(options: PrefetchQueueOptions) {
    this.#options = options;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** Queues an upload and starts working when idle. */
  push(image: Uint8Array): void {
    const maxWaiting = this.#options.maxWaiting ?? PREFETCH_QUEUE_DEFAULTS.maxWaiting;
    const maxBytes = this.#options.maxWaitingBytes ?? PREFETCH_QUEUE_DEFAULTS.maxWaitingBytes;
    this.#waiting.push(image);
    let bytes = this.#waiting.reduce((n, b) => n + b.byteLength, 0);
    while (this.#waiting.length > maxWaiting || (bytes > maxBytes && this.#waiting.length > 0)) {
      bytes -= this.#waiting.shift()?.byteLength ?? 0;
      this.#count('dropped');
    }
    this.resume();
  }

  /** Works through the waiting uploads while no job runs (called again when a job ends). */
  resume(): void {
    if (this.#working) return;
    this.#working = true;
    void this.#drain().finally(() => {
      this.#working = false;
      // A resume that came while the last step was finishing.
      if (this.#waiting.length > 0 && this.#options.idle()) this.resume();
    });
  }

  async #drain(): Promise<void> {
    const { idle, prefetch, log } = this.#options;
    while (idle()) {
      const image = this.#waiting.shift();
      if (image === undefined) return;
      try {
        const outcome = await prefetch(image, idle);
        this.#count(outcome);
        // A job started before it was done: this upload waits for the next idle time.
        if (outcome === 'busy' || outcome === 'partly') this.#waiting.unshift(image);
      } catch (err) {
        // A prefetch is only ever a head start: whatever went wrong, the preview does the work itself.
        this.#count('failed');
        log.debug('worker.prefetch_failed', describeError(err));
      }
    }
  }

  #count(outcome: PrefetchOutcome | 'dropped' | 'failed'): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }
}
