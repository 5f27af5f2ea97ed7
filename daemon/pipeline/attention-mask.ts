// The attention mask of the source concept (DESIGN.md §3 step 7): the edit pass's cross-attention
// probabilities at the caption positions of the source word's tokens,
//   M[i,j] = (1/(S·L)) Σ_steps Σ_layers (1/heads) Σ_heads Σ_{τ∈source} A_l[1, head, q(i,j), τ]
// (edit branch b = 1, each layer's h_l×w_l grid upsampled to the latent h×w by nearest neighbour),
// then normalized to [0,1] by its min and max, and ramped m' = clamp((m − lo)/(hi − lo), 0, 1) so
// that the weakly attended background is exactly 0 (a blend keeps it pixel-exact) and the object's
// core exactly 1; written as 8-bit gray at the latent size, the caller upsamples it to the image
// size (bilinear, which keeps 0 and 255 regions exact). When the caption does not hold the source
// word's tokens, every word position of the caption is used instead.
import { P2pzError } from '../../shared/protocol/index.js';
import type { ClipTokenizer } from './text/clip-tokenizer.js';

export const ATTENTION_MASK_DEFAULTS = Object.freeze({
  /** Normalized attention at or below this is background (mask 0). */
  low: 0.25,
  /** Normalized attention at or above this is the object (mask 255). */
  high: 0.75,
});

/** Positions (in the 77 ids) of the source word's tokens inside the caption. */
export function sourceTokenPositions(tokenizer: ClipTokenizer, captionIds: readonly number[], source: string): number[] {
  const word = tokenizer.tokenize(source);
  const end = tokenizer.encode('').attentionLength; // 2: BOS, EOS
  const encoded = captionIds;
  let last = encoded.indexOf(tokenizer.eosId, 1);
  if (last < 0) last = encoded.length;
  if (word.length > 0) {
    for (let i = 1; i + word.length <= last; i++) {
      if (word.every((id, k) => encoded[i + k] === id)) return word.map((_, k) => i + k);
    }
  }
  const all: number[] = [];
  for (let i = 1; i < Math.max(last, end - 1); i++) all.push(i);
  return all.length > 0 ? all : [1];
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
