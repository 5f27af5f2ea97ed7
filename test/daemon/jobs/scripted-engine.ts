// A scripted JobEngine for the queue's tests: it replaces the worker supervisor. Each run() waits until
// the test reports progress and resolves it; by default an abort resolves it as `cancelled`, as the
// real engine does at its next step boundary.
import type { EngineJob, EngineProgress, EngineResult, JobEngine, EngineHealth } from '../../../daemon/jobs/engine.js';

export interface ScriptedRun {
  readonly job: EngineJob;
  readonly signal: AbortSignal;
  /** Reports progress as the engine would. */
  progress(p: EngineProgress): void;
  /** Ends the run with `result`. */
  resolve(result: EngineResult): void;
  /** Ends the run by rejecting, which the contract forbids: the queue must survive it. */
  reject(error: unknown): void;
  readonly settled: boolean;
}

export class ScriptedEngine implements JobEngine {
  readonly runs: ScriptedRun[] = [];
  active = 0;
  maxActive = 0;
  /** When set, an abort resolves the run at once as `cancelled`. */
  cancelOnAbort = true;
  /** Runs still active when close() was called, in order of the close calls. */
  readonly activeAtClose: number[] = [];
  /** JobEngine.holds, when a test gives one. */
  holds?: (imageId: string) => boolean;

  run(job: EngineJob, onProgress: (p: EngineProgress) => void, signal: AbortSignal): Promise<EngineResult> {
    this.active += 1;
    this.maxActive = Math.max(this.maxActive, this.active);
    return new Promise<EngineResult>((resolvePromise, rejectPromise) => {
      let settled = false;
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        this.active -= 1;
        return true;
      };
      const run: ScriptedRun = {
        job,
        signal,
        progress: (p) => onProgress(p),
        resolve: (result) => {
          if (finish()) resolvePromise(result);
        },
        reject: (error) => {
          if (finish()) rejectPromise(error);
        },
        get settled() {
          return settled;
        },
      };
      signal.addEventListener('abort', () => {
        if (this.cancelOnAbort) run.resolve({ status: 'cancelled' });
      });
      this.runs.push(run);
    });
  }

  health(): EngineHealth {
    return { state: 'ready', restarts: 0, recentCrashes: 0, device: { provider: 'cuda', reason: 'scripted' } };
  }

  /** Like the real engine, closing ends a run that is still going: its worker is stopped. */
  close(): Promise<void> {
    this.activeAtClose.push(this.active);
    for (const run of this.runs) {
      run.resolve({ status: 'failed', error: { code: 'E_WORKER_CRASHED', message: 'stopped' } });
    }
    return Promise.resolve();
  }

  /** The run of job `jobId` (the latest one when it ran more than once). */
  runOf(jobId: string): ScriptedRun {
    const run = this.runs.filter((r) => r.job.jobId === jobId).at(-1);
    if (!run) throw new Error(`job ${jobId} never reached the engine`);
    return run;
  }
}
