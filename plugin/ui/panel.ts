// The panel: it joins the connection to the daemon (connection.ts), the edit form (form.ts), the job
// runner (job-runner.ts) and the view (view.ts), and answers the three actions. Preview runs the fast
// job and shows the result here; Render runs the full pix2pix-zero job with a progress bar (stage and
// step), live step previews and Cancel; Apply sends the shown results to the host (the Figma sandbox,
// Photopea, or the standalone page's download), which places them. Several selected layers are edited
// one after the other as a batch. Choosing one layer asks the daemon for its caption (captions.ts),
// shown in the form before any render. Everything editor-specific is behind PanelHost (host.ts).
import type { EditJobKind, HealthResponse, JobOutcome, SelectionItem } from '../../shared/protocol/index.js';
import { CaptionRequests } from './captions.js';
import { Connection } from './connection.js';
import { panelClientId } from './client-id.js';
import { DaemonClient } from './daemon-client.js';
import { checkEndpoint } from './endpoint.js';
import { EditForm } from './form.js';
import type { HostPush, PanelHost, PanelResult } from './host.js';
import { JobRunner } from './job-runner.js';
import { Uploads } from './uploads.js';
import { localNetworkPermission, problemFor } from './problems.js';
import { estimateWords, outcomeCaption, panelElements, PanelView } from './view.js';

export class Panel {
  private readonly view: PanelView;
  private readonly form: EditForm;
  private readonly connection: Connection;
  private readonly runner: JobRunner;
  private readonly captions: CaptionRequests;
  /** The layer whose caption the form shows or awaits (null: none asked). */
  private captionedNode: string | null = null;
  private readonly host: PanelHost;
  private selection: SelectionItem[] = [];
  private selectionProblem: string | null = 'Select an image layer.';
  /** What the caption says about the shown results (restored when a later job ends without new ones). */
  private resultsCaption = '';
  private autoPreview = false;
  /** The local daemon's port (from the host) and the endpoint chosen in the panel (null: local). */
  private port = 0;
  private health: HealthResponse | null = null;
  private endpoint: string | null = null;

  constructor(doc: Document, host: PanelHost) {
    const ui = panelElements(doc);
    this.host = host;
    this.view = new PanelView(ui);
    this.form = new EditForm(ui);
    const view = this.view;
    this.connection = new Connection({
      clientId: panelClientId(host.client),
      host,
      createClient: (port, clientId, token, label, endpoint) => new DaemonClient(port, clientId, token, label, endpoint),
      permission: () => localNetworkPermission(),
      listener: {
        status: (state, text) => {
          view.status(state, text);
          this.updateButtons();
        },
        problem: (problem, retry) => view.problem(problem, retry),
        health: (health) => {
          view.health(health);
          this.health = health;
          this.updateEstimate();
          this.form.showPresets(health.models.flatMap((m) => (m.kind === 'gan' && m.direction ? [m.direction] : [])));
        },
        pairing: (shown) => view.pairing(shown),
        ready: () => {
          this.askCaption(false);
          this.maybeAutoPreview();
        },
      },
    });
    const uploads = new Uploads();
    this.captions = new CaptionRequests(this.connection, host, uploads);
    this.runner = new JobRunner(this.connection, host, {
      started: () => {
        view.jobProblem(null);
        view.caption(this.resultsCaption);
        this.updateButtons();
      },
      progress: (p) => view.progress(p),
      previewFrame: (frame, finished) => {
        if (frame.header.role === 'step') view.stepFrame(frame);
        else view.resultFrame(finished.filter((r) => this.current(r)), frame);
      },
      results: (entries, outcome) => this.showResults(entries, outcome),
      cancelled: (kept) => view.caption(kept > 0 ? 'Cancelled: the finished layers are kept.' : 'Cancelled.', true),
      failed: (problem) => view.jobProblem(problem),
      ended: () => {
        view.hideProgress();
        this.dropStaleResults(); // a job for an image that was replaced meanwhile
        this.updateButtons();
      },
    }, undefined, uploads);
    this.wire();
    this.updateButtons();
    host.start((m) => this.onHost(m));
  }

  /** The render's duration on this device before Render is pressed (learned by the daemon). */
  private updateEstimate(): void {
    const steps = Number(this.view.ui.steps.value);
    const size = Number(this.view.ui.size.value);
    const valid = Number.isInteger(steps) && steps >= 1 && Number.isInteger(size) && size >= 64 && size % 64 === 0;
    this.view.estimate(valid ? estimateWords(this.health, { size, steps }) : null);
  }

  private onHost(message: HostPush): void {
    if (message.type === 'init') {
      if (message.edit !== null) this.form.fillEdit(message.edit);
      else if (message.direction !== null) this.form.fillDirection(message.direction);
      this.autoPreview = message.autoPreview;
      this.port = message.port;
      this.endpoint = message.endpoint ?? null;
      this.view.endpoint(this.host.saveEndpoint !== undefined, this.endpoint, this.port);
      void this.connection.start(message.port, message.token, this.endpoint);
    } else {
      const changed = message.items.map((i) => i.nodeId).join() !== this.selection.map((i) => i.nodeId).join();
      this.selection = message.items;
      this.selectionProblem = message.problem;
      if (changed) this.form.clearSuggestedCaption();
      this.askCaption(changed);
      this.view.selection(this.selection, this.selectionProblem);
      this.dropStaleResults();
      this.updateButtons();
      this.maybeAutoPreview();
    }
  }

  private wire(): void {
    const u = this.view.ui;
    u.problemRetry.addEventListener('click', () => void this.connection.connect());
    u.pairButton.addEventListener('click', () => void this.pair());
    u.pairCode.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') void this.pair();
    });
    u.previewButton.addEventListener('click', () => void this.run('preview'));
    u.renderButton.addEventListener('click', () => void this.run('render'));
    for (const field of [u.steps, u.size]) field.addEventListener('input', () => this.updateEstimate());
    u.cancelButton.addEventListener('click', () => {
      this.runner.cancel();
      this.updateButtons();
    });
    u.applyButton.addEventListener('click', () => void this.apply());
    u.endpointSave.addEventListener('click', () => this.chooseEndpoint());
    u.endpoint.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') this.chooseEndpoint();
    });
  }

  /** Connects to the address typed under "Daemon" and keeps it. A token belongs to one daemon, so a
   *  new address forgets it: the panel pairs with the new daemon. */
  private chooseEndpoint(): void {
    const save = this.host.saveEndpoint;
    if (save === undefined) return;
    if (this.runner.busy) {
      this.view.endpointProblem('Wait for the running edit to finish, or cancel it.');
      return;
    }
    const check = checkEndpoint(this.view.ui.endpoint.value);
    if ('problem' in check) {
      this.view.endpointProblem(check.problem);
      return;
    }
    const changed = check.endpoint !== this.endpoint;
    this.endpoint = check.endpoint;
    this.view.endpoint(true, this.endpoint, this.port);
    if (!changed) {
      void this.connection.connect();
      return;
    }
    save.call(this.host, this.endpoint);
    this.host.saveToken(null);
    void this.connection.start(this.port, null, this.endpoint);
  }

  private async pair(): Promise<void> {
    if (await this.connection.pair(this.view.ui.pairCode.value.trim())) this.view.ui.pairCode.value = '';
  }

  private updateButtons(): void {
    const busy = this.runner.busy;
    this.view.buttons({
      canRun: this.connection.state === 'ready' && this.selection.length > 0 && !busy,
      busy,
      cancelling: this.runner.cancelling,
      hasResults: this.runner.results.length > 0,
    });
  }

  /** Asks the daemon for the chosen layer's caption (`fresh`: a new selection; else only when none
   *  was asked for it yet, e.g. once the connection is ready). */
  private askCaption(fresh: boolean): void {
    const only = this.selection.length === 1 ? this.selection[0] : undefined;
    if (only === undefined) {
      this.captions.forget();
      this.captionedNode = null;
      if (this.selection.length > 1) this.form.captionPerLayer();
      return;
    }
    if (this.connection.state !== 'ready' || (!fresh && this.captionedNode === only.nodeId)) return;
    const nodeId = only.nodeId;
    this.captionedNode = nodeId;
    this.form.captionAsking();
    void this.captions.ask(nodeId).then((answer) => {
      if (answer !== null && this.captionedNode === nodeId) this.form.showCaptionAnswer(answer);
    });
  }

  private maybeAutoPreview(): void {
    if (!this.autoPreview || this.connection.state !== 'ready' || this.selection.length === 0 || this.runner.busy) return;
    this.autoPreview = false;
    void this.run('preview');
  }

  private async run(kind: EditJobKind): Promise<void> {
    if (this.connection.client === null || this.runner.busy || this.selection.length === 0) return;
    const form = this.form.read();
    if ('problem' in form) {
      this.view.jobProblem(form.problem);
      return;
    }
    await this.runner.run(kind, this.selection.map((s) => s.nodeId), form.edit);
  }

  /** Whether a result still belongs on screen: on hosts whose results follow the selection, only
   *  results of selected layers do. */
  private current(result: PanelResult): boolean {
    return this.host.resultsFollowSelection !== true || this.selection.some((s) => s.nodeId === result.nodeId);
  }

  private dropStaleResults(): void {
    if (this.runner.busy || !this.runner.keepResults((r) => this.current(r))) return;
    const kept = this.runner.results;
    if (kept.length === 0) this.resultsCaption = '';
    this.showResults(kept, null);
  }

  private showResults(all: readonly PanelResult[], outcome: JobOutcome | null): void {
    const entries = all.filter((r) => this.current(r));
    this.view.results(entries);
    if (outcome !== null) {
      this.resultsCaption = outcomeCaption(outcome);
      // The caption the job used, shown in the form before the render (editable there).
      const d = outcome.details;
      if (d?.caption !== undefined && (d.captionOrigin === 'captioner' || d.captionOrigin === 'template')) this.form.suggestCaption(d.caption, d.captionOrigin, d.captioner);
    }
    this.view.caption(this.resultsCaption);
    this.host.showResults?.(entries);
  }

  private async apply(): Promise<void> {
    const entries = this.runner.results;
    if (entries.length === 0 || this.runner.busy) return;
    this.view.ui.applyButton.disabled = true;
    try {
      this.view.caption(await this.host.place(this.form.maskMode(), entries));
    } catch (err) {
      this.view.jobProblem(problemFor(err, this.connection.port));
    } finally {
      this.updateButtons();
    }
  }
}
