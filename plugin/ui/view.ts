// The panel's DOM: its elements, looked up once, and a thin view that shows what the connection, the
// form and the job runner decide, in the panel's words. The only state here is what is on screen.
import { deviceWords, durationWords, estimateRender, PROVIDER_NAMES, skippedWords } from '../../shared/protocol/index.js';
import type { Device, Engine, HealthResponse, JobOutcome, PreviewFrame, SelectionItem, Stage } from '../../shared/protocol/index.js';
import type { ConnectionState } from './connection.js';
import type { PanelResult } from './host.js';
import type { BatchPosition, JobProgress } from './job-runner.js';
import { timeLeftWords } from './progress.js';
import type { Problem } from './problems.js';

function el<T extends HTMLElement>(doc: Document, id: string, type: { new (): T }): T {
  const found = doc.getElementById(id);
  if (!(found instanceof type)) throw new Error(`The panel is missing #${id}.`);
  return found;
}

export function panelElements(doc: Document = document) {
  const e = <T extends HTMLElement>(id: string, type: { new (): T }): T => el(doc, id, type);
  return {
    status: e('status', HTMLElement),
    statusText: e('status-text', HTMLElement),
    problem: e('problem', HTMLElement),
    problemTitle: e('problem-title', HTMLElement),
    problemHint: e('problem-hint', HTMLElement),
    problemCommand: e('problem-command', HTMLPreElement),
    problemNote: e('problem-note', HTMLElement),
    problemRetry: e('problem-retry', HTMLButtonElement),
    pair: e('pair', HTMLElement),
    pairButton: e('pair-button', HTMLButtonElement),
    pairCode: e('pair-code', HTMLInputElement),
    editor: e('editor', HTMLElement),
    selection: e('selection', HTMLElement),
    selectionText: e('selection-text', HTMLElement),
    source: e('source', HTMLInputElement),
    target: e('target', HTMLInputElement),
    swap: e('swap', HTMLButtonElement),
    sourceWords: e('source-words', HTMLDataListElement),
    targetWords: e('target-words', HTMLDataListElement),
    presets: e('presets', HTMLElement),
    seed: e('seed', HTMLInputElement),
    reseed: e('reseed', HTMLButtonElement),
    steps: e('steps', HTMLInputElement),
    cfg: e('cfg', HTMLInputElement),
    xa: e('xa', HTMLInputElement),
    size: e('size', HTMLInputElement),
    caption: e('caption', HTMLInputElement),
    captionOrigin: e('caption-origin', HTMLElement),
    blend: e('blend', HTMLInputElement),
    maskMode: e('mask-mode', HTMLSelectElement),
    result: e('result', HTMLElement),
    resultImages: e('result-images', HTMLElement),
    resultCaption: e('result-caption', HTMLElement),
    progress: e('progress', HTMLElement),
    progressStage: e('progress-stage', HTMLElement),
    progressStep: e('progress-step', HTMLElement),
    progressBar: e('progress-bar', HTMLProgressElement),
    progressNote: e('progress-note', HTMLElement),
    stepPreview: e('step-preview', HTMLCanvasElement),
    jobProblem: e('job-problem', HTMLElement),
    jobProblemTitle: e('job-problem-title', HTMLElement),
    jobProblemHint: e('job-problem-hint', HTMLElement),
    jobProblemCommand: e('job-problem-command', HTMLPreElement),
    previewButton: e('preview', HTMLButtonElement),
    renderButton: e('render', HTMLButtonElement),
    cancelButton: e('cancel', HTMLButtonElement),
    applyButton: e('apply', HTMLButtonElement),
    device: e('device', HTMLElement),
    estimate: e('estimate', HTMLElement),
    daemon: e('daemon', HTMLDetailsElement),
    endpoint: e('endpoint', HTMLInputElement),
    endpointSave: e('endpoint-save', HTMLButtonElement),
    endpointProblem: e('endpoint-problem', HTMLElement),
  };
}
export type PanelElements = ReturnType<typeof panelElements>;

/** Fills a problem banner (title, hint, command); hides it for null. */
export function showBanner(
  parts: { box: HTMLElement; title: HTMLElement; hint: HTMLElement; command: HTMLPreElement; note?: HTMLElement },
  problem: Problem | null,
): void {
  parts.box.hidden = problem === null;
  if (problem === null) return;
  parts.title.textContent = problem.title;
  parts.hint.textContent = problem.hint;
  parts.command.hidden = problem.command === null;
  const code = parts.command.querySelector('code') ?? parts.command;
  code.textContent = problem.command ?? '';
  if (parts.note) {
    parts.note.hidden = problem.note === null;
    parts.note.textContent = problem.note ?? '';
  }
}

/** Replaces a datalist's options. */
export function fillDatalist(list: HTMLDataListElement, words: readonly string[]): void {
  list.replaceChildren(
    ...words.map((w) => {
      const option = list.ownerDocument.createElement('option');
      option.value = w;
      return option;
    }),
  );
}

/** What each stage is doing, in a designer's words. */
const STAGE_WORDS: Record<Stage, string> = {
  load: 'Loading the model',
  decode: 'Reading the image',
  encode: 'Preparing the image',
  caption: 'Describing the image',
  direction: 'Learning the edit',
  inversion: 'Analysing the image',
  edit: 'Applying the edit',
  'vae-decode': 'Finishing the image',
  generate: 'Drawing the preview',
  save: 'Saving the result',
};

const ENGINE_LABELS: Record<Engine, string> = {
  gan: 'Quick preview (GAN)',
  'diffusion-preview': 'Diffusion preview',
  diffusion: 'Full render',
  captioner: 'Caption',
};

/** The device's tooltip: why this device, why the others were skipped, how memory is planned. */
export function deviceDetails(device: Device): string {
  const skipped = skippedWords(device);
  return [device.reason, ...(skipped.length ? ['Skipped:', ...skipped.map((l) => `· ${l}`)] : []), ...(device.memory ? [device.memory] : [])].join('\n');
}

/** The duration estimate shown before a render, or null before any render ran on this device. */
export function estimateWords(health: HealthResponse | null, job: { readonly size: number; readonly steps: number }): string | null {
  if (health?.device == null) return null;
  const estimate = estimateRender(health.durations ?? [], job);
  if (estimate === undefined) return null;
  const basis = estimate.fromSize === job.size ? '' : `, scaled from ${estimate.fromSize} px`;
  return `Render: ${durationWords(estimate.seconds)} on ${deviceWords(health.device)} (learned from past renders${basis})`;
}

/** The footnote about the daemon: version, device, models. */
export function healthSummary(health: HealthResponse): string {
  const device = health.device === null ? 'device starting' : deviceWords(health.device);
  const diffusion = health.models.filter((m) => m.kind === 'diffusion').length;
  const gans = health.models.filter((m) => m.kind === 'gan').length;
  const parts = [`p2pz ${health.version}`, device];
  parts.push(diffusion === 0 ? 'no diffusion model yet (Render needs one)' : `${diffusion} diffusion model${diffusion === 1 ? '' : 's'}`);
  if (gans > 0) parts.push(`${gans} quick preview${gans === 1 ? '' : 's'}`);
  if (health.worker.state === 'crash-loop') parts.push('engine paused after repeated crashes');
  return parts.join(' · ');
}

/** The progress line: what is happening (left), how far and how long (right), the bar (null keeps
 *  its value), and a note that explains a long step (null: none). */
export function progressWords(p: JobProgress): { stage: string; step: string; fraction: number | null; note: string | null } {
  if (p.phase === 'reading') return { stage: 'Reading layers', step: '', fraction: 0, note: null };
  if (p.phase === 'cancelling') return { stage: 'Cancelling…', step: '', fraction: null, note: null };
  const prefix = p.batch === null ? '' : `Layer ${p.batch.index + 1} of ${p.batch.count} · `;
  switch (p.phase) {
    case 'uploading':
      return { stage: `${prefix}Uploading`, step: '', fraction: inBatch(p.batch, 0), note: null };
    case 'queued':
      return { stage: `${prefix}Waiting in the queue`, step: p.position > 1 ? `#${p.position}` : '', fraction: inBatch(p.batch, 0), note: null };
    case 'starting':
      return { stage: `${prefix}Starting`, step: '', fraction: inBatch(p.batch, 0), note: null };
    case 'retrying':
      return {
        stage: `${prefix}Starting again`,
        step: `attempt ${p.attempt}`,
        fraction: inBatch(p.batch, 0),
        note: 'The GPU machine running this edit stopped; the studio queue gave it to another one.',
      };
    case 'stage': {
      const fraction = inBatch(p.batch, p.overall);
      const learning = p.stage === 'direction' && p.step < p.total;
      let left = '';
      if (p.remainingMs !== null) left = ` · ${learning ? 'this step: ' : ''}${timeLeftWords(p.remainingMs)}${p.batch !== null && !learning ? ' for this layer' : ''}`;
      const note = learning
        ? `A first edit with new words: p2pz learns them from ${p.total.toLocaleString('en')} example sentences. Later edits with the same words skip this step.`
        : null;
      return { stage: `${prefix}${STAGE_WORDS[p.stage]}`, step: `${Math.floor(fraction * 100)} %${left}`, fraction, note };
    }
  }
}

/** The whole batch's share done, for a layer's share `f`. */
function inBatch(batch: BatchPosition, f: number): number {
  return batch === null ? f : (batch.index + f) / batch.count;
}

/** The caption under results: which engine made them, on which device, in how long. */
export function outcomeCaption(outcome: JobOutcome): string {
  const seconds = outcome.timings['total'];
  const time = seconds === undefined ? '' : ` · ${(seconds / 1000).toFixed(1)} s`;
  const notes = outcome.details?.notes ?? [];
  return `${ENGINE_LABELS[outcome.engine]} · ${PROVIDER_NAMES[outcome.device]}${time}${notes.length > 0 ? ` · ${notes.join(' ')}` : ''}`;
}

/** What the selection line says. */
export function selectionWords(items: readonly SelectionItem[], problem: string | null): string {
  const it = items[0];
  if (items.length === 0 || it === undefined) return problem ?? 'Select an image layer.';
  if (items.length > 1) return `${items.length} layers (batch: edited one after another)`;
  const how = it.read === 'image-fill' ? 'image' : 'layer rendered as image';
  return `${it.name} · ${Math.round(it.width)}×${Math.round(it.height)} · ${how}`;
}

/** Draws a frame's RGBA pixels 1:1 on `canvas` (resized to the frame); false when the canvas has no
 *  2D context. */
function drawFrame(canvas: HTMLCanvasElement, frame: PreviewFrame): boolean {
  const { width, height } = frame.header;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  if (ctx === null) return false;
  // A view of the message's own ArrayBuffer (a WebSocket message is never a SharedArrayBuffer): no copy.
  const pixels = new Uint8ClampedArray(frame.rgba.buffer as ArrayBuffer, frame.rgba.byteOffset, frame.rgba.byteLength);
  ctx.putImageData(new ImageData(pixels, width, height), 0, 0);
  return true;
}

/** The panel on screen. */
export class PanelView {
  constructor(readonly ui: PanelElements) {}

  status(state: ConnectionState, text: string): void {
    this.ui.status.dataset['state'] = state;
    this.ui.statusText.textContent = text;
  }

  problem(problem: Problem | null, retry: boolean): void {
    const u = this.ui;
    showBanner({ box: u.problem, title: u.problemTitle, hint: u.problemHint, command: u.problemCommand, note: u.problemNote }, problem);
    u.problemRetry.hidden = !retry;
  }

  jobProblem(problem: Problem | null): void {
    const u = this.ui;
    showBanner({ box: u.jobProblem, title: u.jobProblemTitle, hint: u.jobProblemHint, command: u.jobProblemCommand }, problem);
    // The panel is short: bring the problem (and its command) into view.
    if (problem !== null) u.jobProblem.scrollIntoView({ block: 'nearest' });
  }

  estimate(text: string | null): void {
    this.ui.estimate.hidden = text === null;
    this.ui.estimate.textContent = text ?? '';
  }

  health(health: HealthResponse): void {
    this.ui.device.title = health.device === null ? '' : deviceDetails(health.device);
    this.ui.device.textContent = healthSummary(health);
  }

  pairing(shown: boolean): void {
    this.ui.pair.hidden = !shown;
  }

  /** The daemon address setting: shown only where the host keeps one; `endpoint` null is the local
   *  daemon on `port`. */
  endpoint(shown: boolean, endpoint: string | null, port: number): void {
    const u = this.ui;
    u.daemon.hidden = !shown;
    u.endpoint.value = endpoint ?? '';
    u.endpoint.placeholder = `http://localhost:${port}`;
    this.endpointProblem(null);
  }

  endpointProblem(text: string | null): void {
    this.ui.endpointProblem.hidden = text === null;
    this.ui.endpointProblem.textContent = text ?? '';
  }

  selection(items: readonly SelectionItem[], problem: string | null): void {
    this.ui.selection.dataset['state'] = items.length === 0 ? 'empty' : 'ok';
    this.ui.selectionText.textContent = selectionWords(items, problem);
  }

  buttons(state: { canRun: boolean; busy: boolean; cancelling: boolean; hasResults: boolean }): void {
    const u = this.ui;
    u.previewButton.disabled = !state.canRun;
    u.renderButton.disabled = !state.canRun;
    u.cancelButton.hidden = !state.busy;
    u.cancelButton.disabled = state.busy && state.cancelling;
    u.applyButton.disabled = state.busy || !state.hasResults;
  }

  progress(p: JobProgress): void {
    const u = this.ui;
    const words = progressWords(p);
    u.progress.hidden = false;
    u.progressStage.textContent = words.stage;
    u.progressStep.textContent = words.step;
    if (words.fraction !== null) u.progressBar.value = Math.max(0, Math.min(1, words.fraction));
    u.progressNote.hidden = words.note === null;
    u.progressNote.textContent = words.note ?? '';
  }

  /** A render's step preview: its pixels on the progress area's canvas. */
  stepFrame(frame: PreviewFrame): void {
    if (drawFrame(this.ui.stepPreview, frame)) this.ui.stepPreview.hidden = false;
  }

  /** A quick preview's image as soon as its frame arrives: after the batch's `entries` shown so far,
   *  on a canvas, until the job's PNG result replaces it (results()). */
  resultFrame(entries: readonly PanelResult[], frame: PreviewFrame): void {
    this.results(entries);
    const canvas = this.ui.resultImages.ownerDocument.createElement('canvas');
    canvas.className = 'preview-frame';
    canvas.dataset['jobId'] = frame.header.jobId;
    if (!drawFrame(canvas, frame)) return;
    this.ui.resultImages.append(canvas);
    this.ui.resultImages.classList.toggle('single', entries.length === 0);
    this.ui.result.hidden = false;
  }

  hideProgress(): void {
    this.ui.progress.hidden = true;
    this.ui.progressNote.hidden = true;
    this.ui.stepPreview.hidden = true;
  }

  results(entries: readonly PanelResult[]): void {
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
  }

  /** The caption under the results; `show` also reveals the result area (after a cancel). */
  caption(text: string, show = false): void {
    this.ui.resultCaption.textContent = text;
    if (show) this.ui.result.hidden = false;
  }
}
