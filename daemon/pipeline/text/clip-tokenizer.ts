// CLIP's BPE tokenizer (Radford et al. 2021; openai/CLIP simple_tokenizer, transformers'
// CLIPTokenizer) over a model's vocab.json + merges.txt: clean-up, CLIP's pre-tokenization regex,
// byte-level symbols, BPE with the `</w>` end-of-word marker, then BOS … EOS truncated and padded to
// the text encoder's 77 positions with the configured pad token (`<|endoftext|>` in SD 1.x's CLIP
// tokenizer, `!` (id 0) in some exports).
import { P2pzError } from '../../../shared/protocol/index.js';
import { toByteSymbols } from './byte-unicode.js';
import { clipTextClean } from './clip-text-clean.js';
import { readTokenizerFiles, type SpecialTokensJson, type VocabJson } from './tokenizer-files.js';

export const CLIP_TOKENIZER_DEFAULTS = Object.freeze({
  /** Positions of the text encoder's input, BOS and EOS included (CLIP's context length). */
  maxLength: 77,
  bosToken: '<|startoftext|>',
  eosToken: '<|endoftext|>',
  unkToken: '<|endoftext|>',
  /** transformers' CLIPTokenizer default; SD 1.x's tokenizer folder says the same. */
  padToken: '<|endoftext|>',
  /** CLIP uses the first 49152 − 256 − 2 merges (vocab 49408 = 512 byte symbols + merges + 2 specials). */
  maxMerges: 49152 - 256 - 2,
  /** Words whose BPE result is remembered. */
  cacheSize: 20_000,
  /** Longest text tokenized (characters); longer text is cut before clean-up (only 75 tokens survive). */
  maxTextChars: 20_000,
});

const END_OF_WORD = '</w>';

/** CLIP's pre-tokenization pattern (`re.IGNORECASE`; the text is lowercased before). */
const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

export interface ClipEncoding {
  /** maxLength ids: BOS, the text's tokens (at most maxLength − 2), EOS, then the pad id. */
  readonly ids: readonly number[];
  /** Positions before the padding (BOS … EOS inclusive). */
  readonly attentionLength: number;
}

/** One pre-token of a text (a word, a digit, a run of punctuation) with its BPE pieces and ids. */
export interface ClipWord {
  /** The cleaned pre-token ("cats", "'s", ","). */
  readonly text: string;
  /** Its BPE pieces in byte symbols, the last one ending in `</w>`. */
  readonly pieces: readonly string[];
  readonly ids: readonly number[];
}

export interface ClipTokenizerData {
  readonly vocab: VocabJson;
  /** merges.txt content: an optional `#version` line, then one `left right` pair per line, by rank. */
  readonly mergesText: string;
  readonly specialTokens?: SpecialTokensJson;
  readonly maxLength?: number;
}

function invalid(detail: string): P2pzError {
  return new P2pzError('E_MODEL_INVALID', detail);
}

export class ClipTokenizer {
  readonly maxLength: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly #vocab: ReadonlyMap<string, number>;
  /** "left right" → merge rank. */
  readonly #ranks: ReadonlyMap<string, number>;
  readonly #specials: ReadonlyMap<string, number>;
  readonly #cache = new Map<string, readonly string[]>();

  /** Loads `<model>/tokenizer/` (vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json). */
  static async load(dir: string): Promise<ClipTokenizer> {
    return new ClipTokenizer(await readTokenizerFiles(dir));
  }

  constructor(data: ClipTokenizerData) {
    const d = CLIP_TOKENIZER_DEFAULTS;
    this.maxLength = data.maxLength ?? d.maxLength;
    if (!Number.isInteger(this.maxLength) || this.maxLength < 2) throw new P2pzError('E_INTERNAL', 'maxLength must be an integer ≥ 2.');
    this.#vocab = new Map(Object.entries(data.vocab));
    this.#ranks = parseMerges(data.mergesText, d.maxMerges);
    const st = data.specialTokens ?? {};
    const idOf = (token: string, role: string): number => {
      const id = this.#vocab.get(token);
      if (id === undefined) throw invalid(`tokenizer/vocab.json has no id for the ${role} token "${token}".`);
      return id;
    };
    const bos = st.bos_token ?? d.bosToken;
    const eos = st.eos_token ?? d.eosToken;
    const unk = st.unk_token ?? d.unkToken;
    const pad = st.pad_token ?? d.padToken;
    this.bosId = idOf(bos, 'start-of-text');
    this.eosId = idOf(eos, 'end-of-text');
    this.unkId = idOf(unk, 'unknown');
    this.padId = idOf(pad, 'padding');
    this.#specials = new Map([
      [bos, this.bosId],
      [eos, this.eosId],
    ]);
  }

  /**
   * BPE of one pre-token (already in byte symbols): start from its characters with `</w>` on the
   * last, repeatedly merge every occurrence (left to right) of the adjacent pair of lowest merge rank,
   * until no adjacent pair has a rank.
   */
  bpe(word: string): readonly string[] {
    const cached = this.#cache.get(word);
    if (cached) return cached;
    const chars = Array.from(word);
    let parts = chars.length === 0 ? [] : [...chars.slice(0, -1), chars[chars.length - 1]! + END_OF_WORD];
    while (parts.length > 1) {
      let bestRank = Number.POSITIVE_INFINITY;
      let best = '';
      for (let i = 0; i + 1 < parts.length; i++) {
        const pair = `${parts[i]} ${parts[i + 1]}`;
        const rank = this.#ranks.get(pair);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = pair;
        }
      }
      if (bestRank === Number.POSITIVE_INFINITY) break;
      const merged: string[] = [];
      for (let i = 0; i < parts.length; i++) {
        if (i + 1 < parts.length && `${parts[i]} ${parts[i + 1]}` === best) {
          merged.push(parts[i]! + parts[i + 1]!);
          i++;
        } else {
          merged.push(parts[i]!);
        }
      }
      parts = merged;
    }
    if (this.#cache.size >= CLIP_TOKENIZER_DEFAULTS.cacheSize) this.#cache.clear();
    this.#cache.set(word, parts);
    return parts;
  }

  /** The text's pre-tokens in order, each with its BPE pieces and ids (tokenize() is their ids joined). */
  words(text: string): ClipWord[] {
    const clean = clipTextClean(text.slice(0, CLIP_TOKENIZER_DEFAULTS.maxTextChars));
    const words: ClipWord[] = [];
    for (const match of clean.matchAll(CLIP_PATTERN)) {
      const piece = match[0];
      const special = this.#specials.get(piece);
      if (special !== undefined) {
        words.push({ text: piece, pieces: [piece], ids: [special] });
        continue;
      }
      const pieces = this.bpe(toByteSymbols(piece));
      words.push({ text: piece, pieces, ids: pieces.map((token) => this.#vocab.get(token) ?? this.unkId) });
    }
    return words;
  }

  /** The text's token ids, without BOS/EOS and untruncated. */
  tokenize(text: string): number[] {
    return this.words(text).flatMap((w) => w.ids);
  }

  /** BOS + tokens (truncated to maxLength − 2) + EOS, padded to maxLength with the pad id. */
  encode(text: string): ClipEncoding {
    const body = this.tokenize(text).slice(0, this.maxLength - 2);
    const ids = [this.bosId, ...body, this.eosId];
    const attentionLength = ids.length;
    while (ids.length < this.maxLength) ids.push(this.padId);
    return { ids, attentionLength };
  }
}

/** Ids as the text encoder's int64 input. */
export function idsToInt64(ids: readonly number[]): BigInt64Array {
  return BigInt64Array.from(ids, (v) => BigInt(v));
}

/** Ids as the text encoder's int32 input. */
export function idsToInt32(ids: readonly number[]): Int32Array {
  return Int32Array.from(ids);
}

/**
 * merges.txt → "left right" → rank, the rank being the pair's index among the merge lines (a leading
 * `#version` line and blank lines are not merges); a repeated pair keeps its last rank, as
 * transformers' dict does. Only the first maxMerges merges are used.
 */
function parseMerges(text: string, maxMerges: number): Map<string, number> {
  const ranks = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  let rank = 0;
  for (let i = 0; i < lines.length && rank < maxMerges; i++) {
    const line = lines[i]!;
    if (line === '' || (i === 0 && line.startsWith('#version'))) continue;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw invalid(`tokenizer/merges.txt line ${i + 1} is not a "left right" pair.`);
    }
    ranks.set(`${parts[0]} ${parts[1]}`, rank++);
  }
  if (ranks.size === 0) throw invalid('tokenizer/merges.txt holds no merges.');
  return ranks;
}
