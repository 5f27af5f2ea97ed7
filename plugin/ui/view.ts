// The panel's DOM: its elements, looked up once, and a thin view that shows what the connection, the
// form and the job runner decide, in the panel's words. The only state here is what is on screen.
import type { Engine, HealthResponse, JobOutcome, SelectionItem, Stage } from '../../shared/protocol/index.js';
import type { ConnectionState } from './connection.js';
import type { PanelResult } from './host.js';
import type { JobProgress } from './job-runner.js';
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
    blend: e('blend', HTMLInputElement),
    maskMode: e('mask-mode', HTMLSelectElement),
    result: e('result', HTMLElement),
    resultImages: e('result-images', HTMLElement),
    resultCaption: e('result-caption', HTMLElement),
    progress: e('progress', HTMLElement),
    progressStage: e('progress-stage', HTMLElement),
    progressStep: e('progress-step', HTMLElement),
    progressBar: e('progress-bar', HTMLProgressElement),
    stepPreview: e('step-preview', HTMLImageElement),
    jobProblem: e('job-problem', HTMLElement),
    jobProblemTitle: e('job-problem-title', HTMLElement),
    jobProblemHint: e('job-problem-hint', HTMLElement),
    jobProblemCommand: e('job-problem-command', HTMLPreElement),
    previewButton: e('preview', HTMLButtonElement),
    renderButton: e('render', HTMLButtonElement),
    cancelButton: e('cancel', HTMLButtonElement),
    applyButton: e('apply', HTMLButtonElement),
    device: e('device', HTMLElement),
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

/** The footnote about the daemon: version, device, models. */
export function healthSummary(health: HealthResponse): string {
  const device = health.device === null ? 'device starting' : health.device.provider === 'cuda' ? 'GPU (CUDA)' : 'CPU';
  const diffusion = health.models.filter((m) => m.kind === 'diffusion').length;
  const gans = health.models.filter((m) => m.kind === 'gan').length;
  const parts = [`p2pz ${health.version}`, device];
  parts.push(diffusion === 0 ? 'no diffusion model yet (Render needs one)' : `${diffusion} diffusion model${diffusion === 1 ? '' : 's'}`);
  if (gans > 0) parts.push(`${gans} quick preview${gans === 1 ? '' : 's'}`);
  if (health.worker.state === 'crash-loop') parts.push('engine paused after repeated crashes');
  return parts.join(' · ');
}

/** The progress line: what is happening (left) and the step (right); null keeps the bar's value. */
export function progressWords(p: JobProgress): { stage: string; step: string; fraction: number | null } {
  if (p.phase === 'reading') return { stage: 'Reading layers', step: '', fraction: 0 };
  if (p.phase === 'cancelling') return { stage: 'Cancelling…', step: '', fraction: null };
  const batch = p.batch === null ? '' : `Layer ${p.batch.index + 1} of ${p.batch.count} · `;
  switch (p.phase) {
    case 'uploading':
      return { stage: `${batch}Uploading`, step: '', fraction: 0 };
    case 'queued':
      return { stage: `${batch}Waiting in the queue`, step: p.position > 1 ? `#${p.position}` : '', fraction: 0 };
    case 'starting':
      return { stage: `${batch}Starting`, step: '', fraction: 0 };
    case 'stage':
      return { stage: `${batch}${STAGE_LABELS[p.stage]}`, step: `step ${p.step} of ${p.total}`, fraction: p.step / p.total };
  }
}

/** The caption under results: which engine made them, on which device, in how long. */
export function outcomeCaption(outcome: JobOutcome): string {
  const seconds = outcome.timings['total'];
  const time = seconds === undefined ? '' : ` · ${(seconds / 1000).toFixed(1)} s`;
  return `${ENGINE_LABELS[outcome.engine]} · ${outcome.device.toUpperCase()}${time}`;
}

/** What the selection line says. */
export function selectionWords(items: readonly SelectionItem[], problem: string | null): string {
  const it = items[0];
  if (items.length === 0 || it === undefined) return problem ?? 'Select an image layer.';
  if (items.length > 1) return `${items.length} layers (batch: edited one after another)`;
  const how = it.read === 'image-fill' ? 'image' : 'layer rendered as image';
  return `${it.name} · ${Math.round(it.width)}×${Math.round(it.height)} · ${how}`;
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

  health(health: HealthResponse): void {
    if (health.device?.provider === 'cpu' && health.device.reason) this.ui.device.title = health.device.reason;
    this.ui.device.textContent = healthSummary(health);
  }

  pairing(shown: boolean): void {
    this.ui.pair.hidden = !shown;
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
  }

  stepPreview(url: string): void {
    this.ui.stepPreview.src = url;
    this.ui.stepPreview.hidden = false;
  }

  hideProgress(): void {
    this.ui.progress.hidden = true;
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
