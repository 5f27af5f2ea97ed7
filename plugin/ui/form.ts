// The edit form: the direction (From → To, the swap, the suggested edits as chips and datalists), the
// caption (the daemon's suggestion for the chosen image, shown before any render, with who wrote it),
// the settings, and the mask mode. It reads itself as EditParams (schema-checked) or says which field
// is wrong, and fills itself from a direction or from the record of an earlier edit.
import { BUILTIN_DIRECTIONS, Concept, EditParams, templateCaption, type Direction, type EditParamsInput, type LayerEdit, type MaskMode } from '../../shared/protocol/index.js';
import type { CaptionAnswer } from './captions.js';
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
      this.refreshTemplate();
    });
    ui.source.addEventListener('input', () => this.refreshTemplate());
    // What the designer types is theirs: no suggestion replaces it, and it goes with every edit.
    ui.caption.addEventListener('input', () => {
      ui.caption.dataset['edited'] = 'true';
      this.captionLine(ui.caption.value.trim() === '' ? null : 'Your caption: previews and renders use it.', 'user');
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
    this.refreshTemplate();
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
    // A recorded caption was the designer's (only theirs is sent with an edit).
    if (edit.caption === undefined) {
      delete u.caption.dataset['edited'];
      this.clearSuggestedCaption();
    } else {
      u.caption.dataset['edited'] = 'true';
      this.captionLine('Your caption: previews and renders use it.', 'user');
    }
    u.blend.checked = edit.blend === true;
  }

  /** The chosen image is being captioned (the field keeps what the designer typed). */
  captionAsking(): void {
    if (this.edited()) return;
    this.captionLine('Describing the image…', 'asking');
  }

  /** Several layers are chosen: each gets its own caption from the daemon unless one is typed here. */
  captionPerLayer(): void {
    if (this.edited()) return;
    this.captionLine('Each layer gets its own caption (the captioner\'s, or the template).', 'per-layer');
  }

  /** The daemon's answer for the chosen image: the captioner's caption, or the template (and why). */
  showCaptionAnswer(answer: CaptionAnswer): boolean {
    return answer.origin === 'captioner'
      ? this.suggestCaption(answer.caption, 'captioner', answer.captioner)
      : this.suggestCaption(this.templateText(), 'template', answer.why);
  }

  /**
   * Shows a caption in the Caption field, so the designer sees it before the render and can edit it:
   * an empty field, or one still holding the last suggestion unchanged, takes the new one; a caption
   * the designer typed is never replaced (a late reply included). `detail`: the captioner's name, or
   * why the template is used. Returns whether the field now shows the suggestion.
   */
  suggestCaption(caption: string, origin: 'captioner' | 'template', detail?: string): boolean {
    const u = this.ui.caption;
    if (this.edited()) return false;
    u.value = caption;
    u.dataset['suggested'] = caption;
    u.dataset['origin'] = origin;
    if (origin === 'captioner') {
      this.captionLine(`Written by the captioner${detail === undefined ? '' : ` (${detail})`} from the image: edit it if it is wrong.`, 'captioner');
    } else {
      // A render's outcome names no reason: the reason the daemon gave for this image stays.
      const why = detail ?? u.dataset['why'];
      if (why !== undefined) u.dataset['why'] = why;
      this.captionLine(`Template caption${why === undefined ? ' (no captioner wrote one).' : `: ${why}`}`, 'template');
    }
    return true;
  }

  /** A new image: a suggestion untouched by the designer described the old one, so it goes. */
  clearSuggestedCaption(): void {
    const u = this.ui.caption;
    if (!this.edited()) {
      u.value = '';
      this.captionLine(null, 'none');
    }
    delete u.dataset['suggested'];
    delete u.dataset['origin'];
    delete u.dataset['why'];
  }

  /** The template for the source word as typed now ('' while it is not a valid word). */
  private templateText(): string {
    const source = Concept.safeParse(this.ui.source.value);
    return source.success ? templateCaption(source.data) : '';
  }

  /** An untouched template suggestion follows the source word. */
  private refreshTemplate(): void {
    const u = this.ui.caption;
    if (this.edited() || u.dataset['origin'] !== 'template') return;
    u.value = this.templateText();
    u.dataset['suggested'] = u.value;
  }

  /** Whether the field holds a caption the designer typed. */
  private edited(): boolean {
    const u = this.ui.caption;
    if (u.dataset['edited'] === 'true' && u.value.trim() === '') delete u.dataset['edited'];
    return u.dataset['edited'] === 'true';
  }

  /** The line under the field that says who wrote the caption (null hides it). */
  private captionLine(text: string | null, state: 'asking' | 'captioner' | 'template' | 'user' | 'per-layer' | 'none'): void {
    const line = this.ui.captionOrigin;
    line.hidden = text === null;
    line.textContent = text ?? '';
    line.dataset['state'] = state;
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
    // Only the designer's caption is sent. An untouched suggestion is not: the daemon decides again
    // with the same captioner memory (the same bytes get the same caption, reported as the
    // captioner's), and each layer of a batch gets its own.
    if (this.edited()) input.caption = u.caption.value;
    const parsed = EditParams.safeParse(input);
    if (parsed.success) return { edit: parsed.data };
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') ?? '';
    const hint = field === 'source' || field === 'target' ? 'Use a word or a short phrase: letters, digits, spaces, apostrophes and hyphens.' : (issue?.message ?? 'Check the settings.');
    return { problem: { title: `${FIELD_NAMES[field] ?? 'A setting'} is not valid.`, hint, command: null, note: null, pair: false } };
  }
}
