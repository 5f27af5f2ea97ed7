// The edit form: the direction (From → To, the swap, the suggested edits as chips and datalists), the
// settings, and the mask mode. It reads itself as EditParams (schema-checked) or says which field is
// wrong, and fills itself from a direction or from the record of an earlier edit.
import { BUILTIN_DIRECTIONS, EditParams, type Direction, type EditParamsInput, type LayerEdit, type MaskMode } from '../../shared/protocol/index.js';
import type { Problem } from './problems.js';
import { fillDatalist, type PanelElements } from './view.js';

const FIELD_NAMES: Readonly<Record<string, string>> = { source: 'From', target: 'To', seed: 'Seed', steps: 'Steps', cfg: 'Guidance', xa: 'Structure', size: 'Size', caption: 'Caption' };

export class EditForm {
  constructor(private readonly ui: PanelElements) {
    // No <form> submission: the plugin iframe's sandbox may not allow forms.
    ui.swap.addEventListener('click', () => {
      const s = ui.source.value;
      ui.source.value = ui.target.value;
      ui.target.value = s;
    });
    ui.reseed.addEventListener('click', () => {
      ui.seed.value = String(crypto.getRandomValues(new Uint32Array(1))[0] ?? 0);
    });
    this.showPresets([]);
  }

  /** The suggested edits: directions with a fast preview (`fast`, marked) first, then the built-in ones. */
  showPresets(fast: readonly Direction[]): void {
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

  fillDirection(d: Direction): void {
    this.ui.source.value = d.source;
    this.ui.target.value = d.target;
  }

  /** The settings of an earlier edit (the layer's record), to run it again. */
  fillEdit(edit: LayerEdit): void {
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

  /**
   * Shows the caption a job used (the daemon's captioner's, or the template's) in the Caption field, so
   * the designer sees it before the render and can edit it: an empty field, or one still holding the
   * last suggestion unchanged, takes the new one; a caption the designer typed is never replaced.
   * Returns whether the field now shows the suggestion.
   */
  suggestCaption(caption: string, origin: 'captioner' | 'template'): boolean {
    const u = this.ui.caption;
    const untouched = u.value.trim() === '' || (u.dataset['suggested'] !== undefined && u.value === u.dataset['suggested']);
    if (!untouched) return false;
    u.value = caption;
    u.dataset['suggested'] = caption;
    u.dataset['origin'] = origin;
    u.title = origin === 'captioner' ? 'Written by the captioner from the image: edit it before rendering if it is wrong.' : 'The template caption (no captioner is installed): describe the image better if you can.';
    return true;
  }

  /** A new image: a suggestion untouched by the designer described the old one, so it goes. */
  clearSuggestedCaption(): void {
    const u = this.ui.caption;
    if (u.dataset['suggested'] !== undefined && u.value === u.dataset['suggested']) u.value = '';
    delete u.dataset['suggested'];
    delete u.dataset['origin'];
    u.title = '';
  }

  maskMode(): MaskMode {
    const v = this.ui.maskMode.value;
    return v === 'none' || v === 'masked' ? v : 'layer';
  }

  /** The form as EditParams, or the problem to show. */
  read(): { edit: EditParams } | { problem: Problem } {
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
    // An untouched template suggestion is not the designer's caption: the daemon decides again (a
    // captioner installed meanwhile captions the image).
    const templateSuggestion = u.caption.dataset['origin'] === 'template' && u.caption.value === u.caption.dataset['suggested'];
    if (u.caption.value.trim() !== '' && !templateSuggestion) input.caption = u.caption.value;
    const parsed = EditParams.safeParse(input);
    if (parsed.success) return { edit: parsed.data };
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') ?? '';
    const hint = field === 'source' || field === 'target' ? 'Use a word or a short phrase: letters, digits, spaces, apostrophes and hyphens.' : (issue?.message ?? 'Check the settings.');
    return { problem: { title: `${FIELD_NAMES[field] ?? 'A setting'} is not valid.`, hint, command: null, note: null, pair: false } };
  }
}
