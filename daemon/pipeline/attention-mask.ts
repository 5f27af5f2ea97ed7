// The attention mask of the source concept (docs/DESIGN.md §3 step 7): the edit pass's cross-attention
// probabilities at the caption positions of the source word's tokens,
//   M[i,j] = (1/(S·L)) Σ_steps Σ_layers (1/heads) Σ_heads Σ_{τ∈source} A_l[1, head, q(i,j), τ]
// (edit branch b = 1, each layer's h_l×w_l grid upsampled to the latent h×w by nearest neighbour),
// then normalized to [0,1] by its min and max, and ramped m' = clamp((m − lo)/(hi − lo), 0, 1) so
// that the weakly attended background is exactly 0 (a blend keeps it pixel-exact) and the object's
// core exactly 1; written as 8-bit gray at the latent size, the caller upsamples it to the image
// size (bilinear, which keeps 0 and 255 regions exact).
// The source word is found in the caption as a word sequence: the exact word first, else a plural or
// singular form ("cat" ↔ "cats", "puppy" → "puppies", "wolf" → "wolves", "man" → "men"), else a word
// whose first BPE piece is the source ("kitten" in "kittens" = kitten + s</w>). When none is there,
// no mask is made, and the job says so: the attention of other words would mark the wrong region.
import { P2pzError } from '../../shared/protocol/index.js';
import type { ClipTokenizer } from './text/clip-tokenizer.js';

export const ATTENTION_MASK_DEFAULTS = Object.freeze({
  /** Normalized attention at or below this is background (mask 0). */
  low: 0.25,
  /** Normalized attention at or above this is the object (mask 255). */
  high: 0.75,
});

/** How the source word was found in the caption. */
export type SourceMatch = 'exact' | 'plural' | 'prefix';

export interface SourcePositions {
  /** Positions in the 77 ids (BOS is 0). */
  readonly positions: readonly number[];
  readonly match: SourceMatch;
  /** The caption's words that matched, as written there. */
  readonly words: string;
}

/** Plurals that do not follow the spelling rules below (and nouns whose plural is themselves). */
const IRREGULAR_PLURALS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  man: ['men'], woman: ['women'], person: ['people', 'persons'], child: ['children'], mouse: ['mice'],
  goose: ['geese'], foot: ['feet'], tooth: ['teeth'], ox: ['oxen'], cactus: ['cacti', 'cactuses'],
  sheep: ['sheep'], deer: ['deer'], fish: ['fish', 'fishes'], bus: ['buses', 'busses'],
});

/** Other spellings of one word that name the same thing: its plurals, or its singular when it is one. */
export function wordForms(word: string): Set<string> {
  const w = word.toLowerCase();
  const forms = new Set<string>(IRREGULAR_PLURALS[w] ?? []);
  if (/(s|x|z|ch|sh)$/.test(w)) forms.add(`${w}es`);
  else forms.add(`${w}s`);
  if (/o$/.test(w)) forms.add(`${w}es`);
  if (/[^aeiou]y$/.test(w)) forms.add(`${w.slice(0, -1)}ies`);
  if (/[^f]f$/.test(w)) forms.add(`${w.slice(0, -1)}ves`);
  if (/fe$/.test(w)) forms.add(`${w.slice(0, -2)}ves`);
  for (const [singular, plurals] of Object.entries(IRREGULAR_PLURALS)) if (plurals.includes(w)) forms.add(singular);
  if (/ies$/.test(w)) forms.add(`${w.slice(0, -3)}y`);
  if (/ves$/.test(w)) {
    forms.add(`${w.slice(0, -3)}f`);
    forms.add(`${w.slice(0, -3)}fe`);
  }
  if (/(s|x|z|ch|sh|o)es$/.test(w)) forms.add(w.slice(0, -2));
  if (/[^su]s$/.test(w)) forms.add(w.slice(0, -1));
  forms.delete(w);
  return forms;
}

/**
 * The positions (in the caption's 77 ids) of the source concept's tokens: the words of `source` as a
 * sequence in the caption's words, the last one matched exactly, else by a plural or singular form,
 * else by its first BPE piece; null when the caption holds none of these.
 */
export function sourceTokenPositions(tokenizer: ClipTokenizer, caption: string, source: string): SourcePositions | null {
  const words = tokenizer.words(caption);
  const wanted = tokenizer.words(source).map((w) => w.text);
  if (wanted.length === 0) return null;
  const last = wanted[wanted.length - 1]!;
  // The source word in byte symbols, as its BPE pieces spell it without the end-of-word marker.
  const lastSymbols = tokenizer.words(last)[0]!.pieces.join('').replace(/<\/w>$/, '');
  const forms = wordForms(last);
  // Token positions of each caption word; the body holds maxLength − 2 tokens after BOS.
  const starts: number[] = [];
  let at = 1;
  for (const w of words) {
    starts.push(at);
    at += w.ids.length;
  }
  const lastBody = tokenizer.maxLength - 2;
  const kinds: readonly [SourceMatch, (text: string, pieces: readonly string[]) => boolean][] = [
    ['exact', (text) => text === last],
    ['plural', (text) => forms.has(text)],
    // A BPE boundary right after the source's spelling: "kittens" = kitten + s</w>.
    ['prefix', (_text, pieces) => {
      let spelled = '';
      for (let k = 0; k + 1 < pieces.length; k++) {
        spelled += pieces[k]!;
        if (spelled === lastSymbols) return true;
      }
      return false;
    }],
  ];
  for (const [match, fits] of kinds) {
    for (let i = 0; i + wanted.length <= words.length; i++) {
      const lastWord = words[i + wanted.length - 1]!;
      if (!wanted.slice(0, -1).every((text, k) => words[i + k]!.text === text)) continue;
      if (!fits(lastWord.text, lastWord.pieces)) continue;
      const positions: number[] = [];
      for (let k = 0; k < wanted.length; k++) {
        const word = words[i + k]!;
        for (let j = 0; j < word.ids.length; j++) positions.push(starts[i + k]! + j);
      }
      if (positions[positions.length - 1]! > lastBody) continue; // cut off by the 77-token limit
      return { positions, match, words: words.slice(i, i + wanted.length).map((w) => w.text).join(' ') };
    }
  }
  return null;
}

/** Per-layer geometry of a map [B, heads, queries, T]. */
export interface MapSite {
  readonly heads: number;
  readonly queries: number;
  readonly tokens: number;
}

export class AttentionMaskAccumulator {
  readonly h: number;
  readonly w: number;
  readonly #positions: readonly number[];
  readonly #sum: Float64Array;
  #count = 0;

  constructor(h: number, w: number, positions: readonly number[]) {
    this.h = h;
    this.w = w;
    this.#positions = positions;
    this.#sum = new Float64Array(h * w);
  }

  /** Adds one layer's map of one step: data [B, heads, q, T], row `batchRow`. */
  add(data: Float32Array, site: MapSite, batchRow: number): void {
    const { heads, queries: q, tokens: T } = site;
    const f = Math.round(Math.sqrt((this.h * this.w) / q));
    const hl = this.h / f;
    const wl = this.w / f;
    if (!Number.isInteger(hl) || !Number.isInteger(wl) || hl * wl !== q) {
      throw new P2pzError('E_MODEL_INVALID', `A cross-attention layer has ${q} queries, which is no grid of the ${this.h}×${this.w} latent.`);
    }
    const layer = new Float64Array(q);
    const base = batchRow * heads * q * T;
    for (let hd = 0; hd < heads; hd++) {
      const off = base + hd * q * T;
      for (let p = 0; p < q; p++) {
        let s = 0;
        for (const tau of this.#positions) s += data[off + p * T + tau]!;
        layer[p] = layer[p]! + s / heads;
      }
    }
    for (let i = 0; i < this.h; i++) {
      const li = Math.floor(i / f);
      for (let j = 0; j < this.w; j++) this.#sum[i * this.w + j] = this.#sum[i * this.w + j]! + layer[li * wl + Math.floor(j / f)]!;
    }
    this.#count++;
  }

  /** The normalized, ramped mask at the latent size, 8-bit (0 where nothing was added). */
  gray(low: number = ATTENTION_MASK_DEFAULTS.low, high: number = ATTENTION_MASK_DEFAULTS.high): Uint8Array {
    const out = new Uint8Array(this.h * this.w);
    if (this.#count === 0) return out;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of this.#sum) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const range = hi - lo;
    for (let i = 0; i < out.length; i++) {
      const m = range > 0 ? (this.#sum[i]! - lo) / range : 1;
      out[i] = Math.round(255 * Math.min(1, Math.max(0, (m - low) / (high - low))));
    }
    return out;
  }
}
