// The panel's elements, looked up once, and small rendering helpers. No state lives here.
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
