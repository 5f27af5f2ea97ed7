// A JobEngine in front of the real worker supervisor that can hold the next job of one kind before it
// reaches the worker, until the job is cancelled (or released). Browser tests use it to click Cancel
// on a render that is certainly still running, or to type a caption while the daemon is certainly
// still captioning; everything else goes straight to the real worker.
import type { EngineJob, EngineProgress, EngineResult, JobEngine } from '../../daemon/jobs/engine.js';

export class HoldJobs implements JobEngine {
  private holding = false;
  private release: (() => void) | undefined;
  /** Jobs held so far. */
  held = 0;

  constructor(
    private readonly inner: JobEngine,
    private readonly kind: EngineJob['kind'],
  ) {}

  /** The next job of this kind waits (reporting nothing) until it is cancelled or released. */
  holdNext(): void {
    this.holding = true;
  }

  releaseHeld(): void {
    this.release?.();
  }

  run(job: EngineJob, onProgress: (p: EngineProgress) => void, signal: AbortSignal): Promise<EngineResult> {
    if (job.kind !== this.kind || !this.holding) return this.inner.run(job, onProgress, signal);
    this.holding = false;
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
