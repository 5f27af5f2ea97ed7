// The panel: connection to the daemon (health, pairing, event stream), the edit form, and the three
// actions. Preview runs the fast job and shows the result here; Render runs the full pix2pix-zero job
// with a progress bar (stage and step), live step previews and Cancel; Apply sends the shown results to
// the host (the Figma sandbox, Photopea, or the standalone page's download), which places them. Several
// selected layers are edited one after the other as a batch. Everything editor-specific is behind
// PanelHost (host.ts).
import {
  BUILTIN_DIRECTIONS,
  EditParams,
  P2pzError,
  PROTOCOL_VERSION,
  type Direction,
  type EditParamsInput,
  type Engine,
  type HealthResponse,
  type ImageBytes,
  type JobEvent,
  type JobKind,
  type JobOutcome,
  type LayerEdit,
  type MaskMode,
  type SelectionItem,
  type ServerEvent,
  type Stage,
} from '../../shared/protocol/index.js';
import { DaemonClient, DaemonUnreachable, randomId, type EventStream } from './daemon-client.js';
import { localNetworkPermission, problemFor, type Problem } from './problems.js';
import type { HostPush, PanelHost, PanelResult } from './host.js';
import { fillDatalist, panelElements, showBanner, type PanelElements } from './view.js';

export const PANEL_DEFAULTS = Object.freeze({
  /** While the daemon is unreachable, look again this often. */
  retryMs: 4_000,
});

const STAGE_LABELS: Record<Stage, string> = {
  load: 'Loading model',
  decode: 'Reading image',
  encode: 'Encoding',
  caption: 'Captioning',
  direction: 'Edit direction',
  inversion: 'Inverting',
  edit: 'Editing',
  'vae-decode': 'Decoding',
  generate: 'Generating',
  save: 'Saving',
};

const ENGINE_LABELS: Record<Engine, string> = {
  gan: 'Quick preview (GAN)',
  'diffusion-preview': 'Diffusion preview',
  diffusion: 'Full render',
};

type ResultEntry = PanelResult;

interface RunningJob {
  readonly kind: JobKind;
  jobId: string | null;
  cancelled: boolean;
}

type Connection = 'connecting' | 'offline' | 'unpaired' | 'ready';
type Terminal = { type: 'finished'; outcome: JobOutcome } | { type: 'cancelled' };

export class Panel {
  private readonly ui: PanelElements;
  private readonly host: PanelHost;
  private client: DaemonClient | null = null;
  private stream: EventStream | null = null;
  private token: string | null = null;
  private connection: Connection = 'connecting';
  private health: HealthResponse | null = null;
  private selection: SelectionItem[] = [];
  private selectionProblem: string | null = 'Select an image layer.';
  private running: RunningJob | null = null;
  private results: ResultEntry[] = [];
  /** What the caption says about the shown results (restored when a later job ends without new ones). */
  private resultsCaption = '';
  private autoPreview = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly waiters = new Map<string, (event: JobEvent) => void>();
  private readonly uploads = new Map<string, string>();
  private readonly clientId: string;

  constructor(doc: Document, host: PanelHost) {
    this.ui = panelElements(doc);
    this.host = host;
    this.clientId = randomId(host.client);
    this.wire();
    this.showPresets([]);
    this.updateButtons();
    host.start((m) => this.onHost(m));
  }

  // ---- host ----

  private onHost(message: HostPush): void {
    if (message.type === 'init') {
      this.token = message.token;
      this.client = new DaemonClient(message.port, this.clientId, message.token, this.host.client);
      if (message.edit !== null) this.fillEdit(message.edit);
      else if (message.direction !== null) this.fillDirection(message.direction);
      this.autoPreview = message.autoPreview;
      void this.connect();
    } else {
      this.selection = message.items;
      this.selectionProblem = message.problem;
      this.showSelection();
      this.maybeAutoPreview();
    }
  }

  // ---- connection ----

  private setStatus(state: Connection, text: string): void {
    this.connection = state;
    this.ui.status.dataset['state'] = state;
    this.ui.statusText.textContent = text;
    this.updateButtons();
  }

  private showProblem(problem: Problem | null, retry = false): void {
    const u = this.ui;
    showBanner({ box: u.problem, title: u.problemTitle, hint: u.problemHint, command: u.problemCommand, note: u.problemNote }, problem);
    u.problemRetry.hidden = !retry;
  }

  private async connect(): Promise<void> {
    const client = this.client;
    if (client === null) return;
    clearTimeout(this.retryTimer);
    this.setStatus('connecting', 'Connecting…');
    let health: HealthResponse;
    try {
      health = await client.health();
    } catch (err) {
      const permission = err instanceof DaemonUnreachable ? await localNetworkPermission() : 'unknown';
      const problem = problemFor(err, client.port, permission);
      const note = this.host.unreachableNote;
      this.showProblem(err instanceof DaemonUnreachable && note !== undefined ? { ...problem, note } : problem, true);
      this.setStatus('offline', 'Not running');
      this.retryTimer = setTimeout(() => void this.connect(), PANEL_DEFAULTS.retryMs);
      return;
    }
    this.showProblem(null);
    this.showHealth(health);
    if (this.token === null) {
      this.setStatus('unpaired', 'Not paired');
      this.ui.pair.hidden = false;
      return;
    }
    this.openEvents();
  }

  private openEvents(): void {
    const client = this.client;
    if (client === null) return;
    const previous = this.stream;
    this.stream = null;
    previous?.close();
    // A replaced stream's close is not news: only the current stream's close counts.
    const stream: EventStream = client.openEvents({
      onEvent: (event) => {
        if (this.stream === stream) this.onEvent(event);
      },
      onClose: (code) => {
        if (this.stream === stream) this.onStreamClosed(code);
      },
    });
    this.stream = stream;
  }

  private onStreamClosed(code: number): void {
    this.stream = null;
    for (const [jobId, waiter] of this.waiters) {
      waiter({ v: PROTOCOL_VERSION, type: 'error', jobId, kind: this.running?.kind ?? 'preview', error: new P2pzError('E_SHUTTING_DOWN', 'The connection to the daemon was lost.').toBody() });
    }
    if (this.connection === 'unpaired') return;
    if (code === 1001 || code === 1006 || this.connection === 'ready') {
      this.setStatus('offline', 'Disconnected');
      this.retryTimer = setTimeout(() => void this.connect(), PANEL_DEFAULTS.retryMs);
    }
  }

  private forgetToken(reason: Problem): void {
    this.token = null;
    this.client?.setToken(null);
    this.host.saveToken(null);
    this.setStatus('unpaired', 'Not paired');
    this.ui.pair.hidden = false;
    this.showProblem(reason);
  }

  private onEvent(event: ServerEvent): void {
    switch (event.type) {
      case 'welcome':
        this.showHealth(event.health);
        this.setStatus('ready', 'Ready');
        this.showProblem(null);
        this.ui.pair.hidden = true;
        this.maybeAutoPreview();
        return;
      case 'protocol-error':
        if (event.error.code === 'E_UNAUTHORIZED') {
          this.forgetToken({ title: 'This plugin is no longer paired with the daemon.', hint: 'Enter the code the daemon printed, or run the command below for a new one.', command: 'p2pz pair', note: null, pair: true });
        }
        return;
      case 'pong':
        return;
      default:
        this.waiters.get(event.jobId)?.(event);
    }
  }

  private showHealth(health: HealthResponse): void {
    this.health = health;
    const device = health.device === null ? 'device starting' : health.device.provider === 'cuda' ? 'GPU (CUDA)' : 'CPU';
    const diffusion = health.models.filter((m) => m.kind === 'diffusion').length;
    const gans = health.models.filter((m) => m.kind === 'gan');
    const parts = [`p2pz ${health.version}`, device];
    parts.push(diffusion === 0 ? 'no diffusion model yet (Render needs one)' : `${diffusion} diffusion model${diffusion === 1 ? '' : 's'}`);
    if (gans.length > 0) parts.push(`${gans.length} quick preview${gans.length === 1 ? '' : 's'}`);
    if (health.worker.state === 'crash-loop') parts.push('engine paused after repeated crashes');
    if (health.device?.provider === 'cpu' && health.device.reason) this.ui.device.title = health.device.reason;
    this.ui.device.textContent = parts.join(' · ');
    this.showPresets(gans.flatMap((m) => (m.direction ? [m.direction] : [])));
  }

  private showPresets(fast: readonly Direction[]): void {
    const key = (d: Direction): string => `${d.source.toLowerCase()}→${d.target.toLowerCase()}`;
    const fastKeys = new Set(fast.map(key));
    const seen = new Set<string>();
    const all = [...fast, ...BUILTIN_DIRECTIONS].filter((d) => (seen.has(key(d)) ? false : (seen.add(key(d)), true)));
    const doc = this.ui.presets.ownerDocument;
    this.ui.presets.replaceChildren(
      ...all.map((d) => {
        const chip = doc.createElement('button');
        chip.type = 'button';
        chip.className = 'chip';
        chip.textContent = `${d.source} → ${d.target}`;
        chip.dataset['fast'] = String(fastKeys.has(key(d)));
        if (fastKeys.has(key(d))) chip.title = 'Has a fast preview';
        chip.addEventListener('click', () => this.fillDirection(d));
        return chip;
      }),
    );
    fillDatalist(this.ui.sourceWords, [...new Set(all.map((d) => d.source))]);
    fillDatalist(this.ui.targetWords, [...new Set(all.map((d) => d.target))]);
  }

  // ---- form ----

  private wire(): void {
    const u = this.ui;
    u.problemRetry.addEventListener('click', () => void this.connect());
    // No <form> submission: the plugin iframe's sandbox may not allow forms.
    u.pairButton.addEventListener('click', () => void this.pair(u.pairCode.value.trim()));
    u.pairCode.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') void this.pair(u.pairCode.value.trim());
    });
    u.swap.addEventListener('click', () => {
      const s = u.source.value;
      u.source.value = u.target.value;
      u.target.value = s;
    });
    u.reseed.addEventListener('click', () => {
      u.seed.value = String(crypto.getRandomValues(new Uint32Array(1))[0] ?? 0);
    });
    u.previewButton.addEventListener('click', () => void this.run('preview'));
    u.renderButton.addEventListener('click', () => void this.run('render'));
    u.cancelButton.addEventListener('click', () => this.cancel());
    u.applyButton.addEventListener('click', () => void this.apply());
  }

  private fillDirection(d: Direction): void {
    this.ui.source.value = d.source;
    this.ui.target.value = d.target;
  }

  private fillEdit(edit: LayerEdit): void {
    const u = this.ui;
    this.fillDirection(edit);
    u.seed.value = String(edit.seed);
    u.steps.value = String(edit.steps);
    u.cfg.value = String(edit.cfg);
    u.xa.value = String(edit.xa);
    u.size.value = String(edit.size);
    u.caption.value = edit.caption ?? '';
    u.blend.checked = edit.blend === true;
  }

  private maskMode(): MaskMode {
    const v = this.ui.maskMode.value;
    return v === 'none' || v === 'masked' ? v : 'layer';
  }

  /** The form as EditParams, or null after showing what is wrong. */
  private readEdit(): EditParams | null {
    const u = this.ui;
    const input: EditParamsInput = {
      source: u.source.value,
      target: u.target.value,
      seed: Number(u.seed.value),
      steps: Number(u.steps.value),
      cfg: Number(u.cfg.value),
      xa: Number(u.xa.value),
      size: Number(u.size.value),
      // Blending needs the mask even when it is not placed.
      mask: this.maskMode() !== 'none' || u.blend.checked,
      blend: u.blend.checked,
    };
    if (u.caption.value.trim() !== '') input.caption = u.caption.value;
    const parsed = EditParams.safeParse(input);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') ?? '';
    const names: Record<string, string> = { source: 'From', target: 'To', seed: 'Seed', steps: 'Steps', cfg: 'Guidance', xa: 'Structure', size: 'Size', caption: 'Caption' };
    const hint = field === 'source' || field === 'target' ? 'Use a word or a short phrase: letters, digits, spaces, apostrophes and hyphens.' : (issue?.message ?? 'Check the settings.');
    this.showJobProblem({ title: `${names[field] ?? 'A setting'} is not valid.`, hint, command: null, note: null, pair: false });
    return null;
  }

  private showSelection(): void {
    const u = this.ui;
    const items = this.selection;
    u.selection.dataset['state'] = items.length === 0 ? 'empty' : 'ok';
    if (items.length === 0) {
      u.selectionText.textContent = this.selectionProblem ?? 'Select an image layer.';
    } else if (items.length === 1 && items[0] !== undefined) {
      const it = items[0];
      const how = it.read === 'image-fill' ? 'image' : 'layer rendered as image';
      u.selectionText.textContent = `${it.name} · ${Math.round(it.width)}×${Math.round(it.height)} · ${how}`;
    } else {
      u.selectionText.textContent = `${items.length} layers (batch: edited one after another)`;
    }
    this.updateButtons();
  }

  private updateButtons(): void {
    const u = this.ui;
    const busy = this.running !== null;
    const canRun = this.connection === 'ready' && this.selection.length > 0 && !busy;
    u.previewButton.disabled = !canRun;
    u.renderButton.disabled = !canRun;
    u.cancelButton.hidden = !busy;
    u.cancelButton.disabled = busy && this.running?.cancelled === true;
    u.applyButton.disabled = busy || this.results.length === 0;
  }

  private showJobProblem(problem: Problem | null): void {
    const u = this.ui;
    showBanner({ box: u.jobProblem, title: u.jobProblemTitle, hint: u.jobProblemHint, command: u.jobProblemCommand }, problem);
    // The panel is short: bring the problem (and its command) into view.
    if (problem !== null) u.jobProblem.scrollIntoView({ block: 'nearest' });
  }

  private async pair(code: string): Promise<void> {
    const client = this.client;
    if (client === null) return;
    try {
      const token = await client.pair(code);
      this.token = token;
      client.setToken(token);
      this.host.saveToken(token);
      this.host.notify('Paired with the p2pz daemon');
      this.ui.pairCode.value = '';
      this.ui.pair.hidden = true;
      this.showProblem(null);
      this.setStatus('connecting', 'Connecting…');
      this.openEvents();
    } catch (err) {
      this.showProblem(problemFor(err, client.port));
    }
  }

  private maybeAutoPreview(): void {
    if (!this.autoPreview || this.connection !== 'ready' || this.selection.length === 0 || this.running !== null) return;
    this.autoPreview = false;
    void this.run('preview');
  }

  // ---- jobs ----

  private async run(kind: JobKind): Promise<void> {
    const client = this.client;
    if (client === null || this.running !== null || this.selection.length === 0) return;
    const edit = this.readEdit();
    if (edit === null) return;
    const job: RunningJob = { kind, jobId: null, cancelled: false };
    this.running = job;
    this.showJobProblem(null);
    this.ui.resultCaption.textContent = this.resultsCaption;
    this.updateButtons();
    this.showProgress('Reading layers', '', 0);
    const fresh: ResultEntry[] = [];
    try {
      const images = await this.host.readImages(this.selection.map((s) => s.nodeId));
      for (const [index, image] of images.entries()) {
        if (job.cancelled) break;
        const batch = images.length > 1 ? `Layer ${index + 1} of ${images.length} · ` : '';
        this.showProgress(`${batch}Uploading`, '', 0);
        let imageId = await this.upload(client, image);
        let terminal: Terminal;
        try {
          terminal = await this.runOne(client, job, { kind, imageId, edit }, batch);
        } catch (err) {
          // Uploads expire (and a restarted daemon forgets them): upload once more and resubmit.
          if (!(err instanceof P2pzError) || err.code !== 'E_NOT_FOUND') throw err;
          imageId = await this.upload(client, image, true);
          terminal = await this.runOne(client, job, { kind, imageId, edit }, batch);
        }
        if (terminal.type === 'cancelled') break;
        const entry = await this.fetchResult(client, image, edit, kind, terminal.outcome);
        fresh.push(entry);
        this.showResults(fresh, terminal.outcome);
      }
      if (job.cancelled) {
        if (fresh.length === 0) this.showResults(this.results, null);
        this.ui.resultCaption.textContent = fresh.length > 0 ? 'Cancelled: the finished layers are kept.' : 'Cancelled.';
        this.ui.result.hidden = false;
      }
    } catch (err) {
      if (err instanceof P2pzError && err.code === 'E_UNAUTHORIZED') this.forgetToken(problemFor(err, client.port));
      else this.showJobProblem(problemFor(err, client.port));
    } finally {
      if (fresh.length > 0) {
        for (const old of this.results) URL.revokeObjectURL(old.url);
        this.results = fresh;
      }
      this.running = null;
      this.ui.progress.hidden = true;
      this.ui.stepPreview.hidden = true;
      this.updateButtons();
      // Models may have been installed or the device may have changed meanwhile.
      void client.health().then((h) => this.showHealth(h), () => undefined);
    }
  }

  private async upload(client: DaemonClient, image: ImageBytes, fresh = false): Promise<string> {
    const key = `${image.nodeId}:${image.bytes.byteLength}:${fnv1a(image.bytes)}`;
    const known = this.uploads.get(key);
    if (known !== undefined && !fresh) return known;
    const uploaded = await client.uploadImage(image.bytes, image.mime);
    this.uploads.set(key, uploaded.imageId);
    return uploaded.imageId;
  }

  /** Submits one job and waits for its terminal event; progress is shown on the way. */
  private async runOne(client: DaemonClient, job: RunningJob, request: { kind: JobKind; imageId: string; edit: EditParams }, batch: string): Promise<Terminal> {
    const jobId = randomId('job');
    job.jobId = jobId;
    const done = new Promise<Terminal>((resolve, reject) => {
      this.waiters.set(jobId, (event) => {
        switch (event.type) {
          case 'queued':
            this.showProgress(`${batch}Waiting in the queue`, event.position > 1 ? `#${event.position}` : '', 0);
            return;
          case 'started':
            this.showProgress(`${batch}Starting`, '', 0);
            return;
          case 'progress':
            this.showProgress(`${batch}${STAGE_LABELS[event.stage]}`, `step ${event.step} of ${event.total}`, event.step / event.total);
            if (event.preview !== undefined) {
              this.ui.stepPreview.src = event.preview;
              this.ui.stepPreview.hidden = false;
            }
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
      });
    });
    try {
      await client.submitJob({ jobId, kind: request.kind, imageId: request.imageId, edit: request.edit, stepPreviews: request.kind === 'render' });
      if (job.cancelled) this.sendCancel(client, jobId);
      return await done;
    } finally {
      this.waiters.delete(jobId);
    }
  }

  private cancel(): void {
    const job = this.running;
    if (job === null || job.cancelled) return;
    job.cancelled = true;
    this.showProgress('Cancelling…', '', Number(this.ui.progressBar.value));
    if (job.jobId !== null && this.client !== null) this.sendCancel(this.client, job.jobId);
    this.updateButtons();
  }

  private sendCancel(client: DaemonClient, jobId: string): void {
    if (this.stream !== null) this.stream.send({ v: PROTOCOL_VERSION, type: 'cancel', jobId });
    else void client.cancelJob(jobId).catch(() => undefined);
  }

  private showProgress(stage: string, step: string, fraction: number): void {
    const u = this.ui;
    u.progress.hidden = false;
    u.progressStage.textContent = stage;
    u.progressStep.textContent = step;
    u.progressBar.value = Math.max(0, Math.min(1, fraction));
  }

  private async fetchResult(client: DaemonClient, image: ImageBytes, edit: EditParams, kind: JobKind, outcome: JobOutcome): Promise<ResultEntry> {
    const imageRef = outcome.results.find((r) => r.role === 'image');
    if (imageRef === undefined) throw new P2pzError('E_INTERNAL', 'The job finished without an image.');
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

  private showResults(entries: readonly ResultEntry[], outcome: JobOutcome | null): void {
    const u = this.ui;
    u.result.hidden = entries.length === 0;
    u.resultImages.classList.toggle('single', entries.length === 1);
    const doc = u.resultImages.ownerDocument;
    u.resultImages.replaceChildren(
      ...entries.map((e) => {
        const img = doc.createElement('img');
        img.src = e.url;
        img.alt = `${e.edit.source} → ${e.edit.target}`;
        img.dataset['nodeId'] = e.nodeId;
        return img;
      }),
    );
    if (outcome !== null) {
      const seconds = outcome.timings['total'];
      const time = seconds === undefined ? '' : ` · ${(seconds / 1000).toFixed(1)} s`;
      this.resultsCaption = `${ENGINE_LABELS[outcome.engine]} · ${outcome.device.toUpperCase()}${time}`;
    }
    u.resultCaption.textContent = this.resultsCaption;
    this.host.showResults?.(entries);
  }

  private async apply(): Promise<void> {
    if (this.results.length === 0 || this.running !== null) return;
    const entries = this.results;
    this.ui.applyButton.disabled = true;
    try {
      this.ui.resultCaption.textContent = await this.host.place(this.maskMode(), entries);
    } catch (err) {
      this.showJobProblem(problemFor(err, this.client?.port ?? 0));
    } finally {
      this.updateButtons();
    }
  }
}

/** FNV-1a over the bytes: a cheap key for "this exact image was uploaded already". */
function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i] ?? 0;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
