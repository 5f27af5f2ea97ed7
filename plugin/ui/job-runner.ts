// The panel's jobs: reads the selected layers from the host, uploads each image once (uploads.ts, keyed
// by content; an upload the daemon no longer knows is sent again and the job resubmitted),
// submits one job per layer and follows its events through the Connection, fetches the results, and
// cancels. Several layers run one after the other as a batch; a cancelled batch keeps the layers that
// finished. It touches no DOM: it reports to a JobRunnerListener, so a fake client can drive it in tests.
import { P2pzError, type EditJobKind, type EditParams, type ImageBytes, type JobOutcome, type LayerEdit, type PreviewFrame, type Stage } from '../../shared/protocol/index.js';
import { randomId } from './daemon-client.js';
import type { Connection, DaemonApi } from './connection.js';
import type { PanelHost, PanelResult } from './host.js';
import { problemFor, type Problem } from './problems.js';
import { JobProgressEstimate, type Clock } from './progress.js';
import { Uploads } from './uploads.js';

/** Which layer of a batch a job is for (null when only one layer is edited). */
export type BatchPosition = { readonly index: number; readonly count: number } | null;

/** Where a job stands, for the progress line. */
export type JobProgress =
  | { readonly phase: 'reading' }
  | { readonly phase: 'uploading'; readonly batch: BatchPosition }
  | { readonly phase: 'queued'; readonly batch: BatchPosition; readonly position: number }
  | { readonly phase: 'starting'; readonly batch: BatchPosition }
  /** A team endpoint runs the job again on another GPU worker (docs/TEAM.md). */
  | { readonly phase: 'retrying'; readonly batch: BatchPosition; readonly attempt: number }
  | {
      readonly phase: 'stage';
      readonly batch: BatchPosition;
      readonly stage: Stage;
      readonly step: number;
      readonly total: number;
      /** 0..1 over this layer's whole job. */
      readonly overall: number;
      /** Time left for this layer's job (for `direction`: for that stage); null until measured. */
      readonly remainingMs: number | null;
    }
  | { readonly phase: 'cancelling' };

/** What the runner reports. */
export interface JobRunnerListener {
  /** A job began (buttons, cleared problem). */
  started(kind: EditJobKind): void;
  progress(progress: JobProgress): void;
  /** A preview frame arrived: a render's step preview (role `step`), or a quick preview's image
   *  (role `result`) ahead of its PNG result; `finished` are the batch's layers finished before it. */
  previewFrame(frame: PreviewFrame, finished: readonly PanelResult[]): void;
  /** Results to show: the batch's finished layers so far with the last outcome, or (outcome null)
   *  the previous results again after a cancel that finished nothing. */
  results(entries: readonly PanelResult[], outcome: JobOutcome | null): void;
  /** The job was cancelled; `kept` layers of the batch had finished. */
  cancelled(kept: number): void;
  /** The job failed; the problem says why and what to do. */
  failed(problem: Problem): void;
  /** The job is over, however it ended. */
  ended(): void;
}

type Terminal = { type: 'finished'; outcome: JobOutcome } | { type: 'cancelled' };

interface RunningJob {
  readonly kind: EditJobKind;
  jobId: string | null;
  cancelled: boolean;
}

export class JobRunner {
  private running_: RunningJob | null = null;
  private results_: PanelResult[] = [];
  constructor(
    private readonly connection: Pick<Connection, 'client' | 'port' | 'follow' | 'cancel' | 'forgetToken' | 'refreshHealth'>,
    private readonly host: Pick<PanelHost, 'readImages'>,
    private readonly listener: JobRunnerListener,
    private readonly now: Clock = () => performance.now(),
    /** Shared with the caption requests, so a layer's image is uploaded once for both. */
    private readonly uploads: Uploads = new Uploads(),
  ) {}

  get busy(): boolean {
    return this.running_ !== null;
  }

  get cancelling(): boolean {
    return this.running_?.cancelled === true;
  }

  /** The shown results (of the last job that finished any). */
  get results(): readonly PanelResult[] {
    return this.results_;
  }

  /** Runs `kind` with `edit` on the layers `nodeIds`, one after the other. */
  async run(kind: EditJobKind, nodeIds: readonly string[], edit: EditParams): Promise<void> {
    const client = this.connection.client;
    if (client === null || this.running_ !== null || nodeIds.length === 0) return;
    const job: RunningJob = { kind, jobId: null, cancelled: false };
    this.running_ = job;
    this.listener.started(kind);
    this.listener.progress({ phase: 'reading' });
    const fresh: PanelResult[] = [];
    try {
      const images = await this.host.readImages(nodeIds);
      for (const [index, image] of images.entries()) {
        if (job.cancelled) break;
        const batch: BatchPosition = images.length > 1 ? { index, count: images.length } : null;
        this.listener.progress({ phase: 'uploading', batch });
        let imageId = await this.upload(client, image);
        let terminal: Terminal;
        try {
          terminal = await this.runOne(client, job, { kind, imageId, edit }, batch, fresh);
        } catch (err) {
          // Uploads expire (and a restarted daemon forgets them): upload once more and resubmit.
          if (!(err instanceof P2pzError) || err.code !== 'E_NOT_FOUND') throw err;
          imageId = await this.upload(client, image, true);
          terminal = await this.runOne(client, job, { kind, imageId, edit }, batch, fresh);
        }
        if (terminal.type === 'cancelled') break;
        fresh.push(await fetchResult(client, image, edit, kind, terminal.outcome));
        this.listener.results(fresh, terminal.outcome);
      }
      if (job.cancelled) {
        if (fresh.length === 0) this.listener.results(this.results_, null);
        this.listener.cancelled(fresh.length);
      }
    } catch (err) {
      const problem = problemFor(err, client.port);
      if (err instanceof P2pzError && err.code === 'E_UNAUTHORIZED') this.connection.forgetToken(problem);
      else this.listener.failed(problem);
    } finally {
      if (fresh.length > 0) {
        for (const old of this.results_) URL.revokeObjectURL(old.url);
        this.results_ = fresh;
      }
      this.running_ = null;
      this.listener.ended();
      // Models may have been installed or the device may have changed meanwhile.
      this.connection.refreshHealth();
    }
  }

  /** Keeps only the results `keep` accepts (a host whose old layers are gone); true if any went. */
  keepResults(keep: (result: PanelResult) => boolean): boolean {
    const kept = this.results_.filter(keep);
    if (kept.length === this.results_.length) return false;
    for (const gone of this.results_) if (!kept.includes(gone)) URL.revokeObjectURL(gone.url);
    this.results_ = kept;
    return true;
  }

  /** Cancels the running job (and the rest of its batch). */
  cancel(): void {
    const job = this.running_;
    if (job === null || job.cancelled) return;
    job.cancelled = true;
    this.listener.progress({ phase: 'cancelling' });
    if (job.jobId !== null) this.connection.cancel(job.jobId);
  }

  private upload(client: DaemonApi, image: ImageBytes, fresh = false): Promise<string> {
    return this.uploads.upload(client, image, fresh);
  }

  /** Submits one job and waits for its terminal event; progress is reported on the way. */
  private async runOne(client: DaemonApi, job: RunningJob, request: { kind: EditJobKind; imageId: string; edit: EditParams }, batch: BatchPosition, finished: readonly PanelResult[]): Promise<Terminal> {
    const jobId = randomId('job');
    job.jobId = jobId;
    const estimate = new JobProgressEstimate(this.now);
    const { ended, unwatch } = this.connection.follow<Terminal>(jobId, request.kind, (event, resolve, reject) => {
      switch (event.type) {
        case 'queued':
          this.listener.progress({ phase: 'queued', batch, position: event.position });
          return;
        case 'started':
          this.listener.progress({ phase: 'starting', batch });
          return;
        case 'retrying':
          this.listener.progress({ phase: 'retrying', batch, attempt: event.attempt });
          return;
        case 'progress':
          this.listener.progress({ phase: 'stage', batch, stage: event.stage, step: event.step, total: event.total, ...estimate.update(event.stage, event.step, event.total) });
          return;
        case 'finished':
          resolve({ type: 'finished', outcome: event.outcome });
          return;
        case 'cancelled':
          resolve({ type: 'cancelled' });
          return;
        case 'error':
          reject(P2pzError.fromBody(event.error));
          return;
      }
    }, (frame) => this.listener.previewFrame(frame, finished));
    try {
      await client.submitJob({ jobId, kind: request.kind, imageId: request.imageId, edit: request.edit, stepPreviews: request.kind === 'render' });
      if (job.cancelled) this.connection.cancel(jobId);
      return await ended;
    } finally {
      unwatch();
    }
  }
}

/** Downloads a finished job's image (and mask) and records the edit that made it. */
async function fetchResult(client: DaemonApi, image: ImageBytes, edit: EditParams, kind: EditJobKind, outcome: JobOutcome): Promise<PanelResult> {
  const imageRef = outcome.results.find((r) => r.role === 'image');
  if (imageRef === undefined || outcome.engine === 'captioner') throw new P2pzError('E_INTERNAL', 'The job finished without an image.');
  const maskRef = outcome.results.find((r) => r.role === 'mask');
  const bytes = await client.result(imageRef.id);
  const mask = maskRef === undefined ? null : { bytes: await client.result(maskRef.id), width: maskRef.width, height: maskRef.height };
  const layerEdit: LayerEdit = {
    source: edit.source,
    target: edit.target,
    seed: edit.seed,
    steps: edit.steps,
    cfg: edit.cfg,
    xa: edit.xa,
    size: edit.size,
    editScale: edit.editScale,
    blend: edit.blend,
    kind,
    engine: outcome.engine,
    originalId: image.nodeId,
    ...(edit.caption === undefined ? {} : { caption: edit.caption }),
  };
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
  return { nodeId: image.nodeId, read: image.read, edit: layerEdit, image: { bytes, width: imageRef.width, height: imageRef.height }, mask, url };
}
