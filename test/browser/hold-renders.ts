// A JobEngine in front of the real worker supervisor that can hold the next full render before it
// reaches the worker, until the job is cancelled (or released). Browser tests use it to click Cancel
// on a render that is certainly still running; everything else goes straight to the real worker.
import type { EngineJob, EngineProgress, EngineResult, JobEngine } from '../../daemon/jobs/engine.js';

export class HoldRenders implements JobEngine {
  private holdNext = false;
  private release: (() => void) | undefined;
  /** Renders held so far. */
  held = 0;

  constructor(private readonly inner: JobEngine) {}

  /** The next `render` job waits (reporting nothing) until it is cancelled or released. */
  holdNextRender(): void {
    this.holdNext = true;
  }

  releaseHeld(): void {
    this.release?.();
  }

  run(job: EngineJob, onProgress: (p: EngineProgress) => void, signal: AbortSignal): Promise<EngineResult> {
    if (job.kind !== 'render' || !this.holdNext) return this.inner.run(job, onProgress, signal);
    this.holdNext = false;
    this.held++;
    return new Promise<EngineResult>((resolve) => {
      const onAbort = (): void => resolve({ status: 'cancelled' });
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.release = () => {
        signal.removeEventListener('abort', onAbort);
        resolve(this.inner.run(job, onProgress, signal));
      };
    });
  }

  health(): ReturnType<JobEngine['health']> {
    return this.inner.health();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
