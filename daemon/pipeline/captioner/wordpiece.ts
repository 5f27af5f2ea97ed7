// BERT's WordPiece tokenizer (bert-base-uncased, as BLIP uses it; transformers' BertTokenizer) over a
// captioner's `vocab.txt` (one token per line, the line number is the id) or the vocabulary in a
// `tokenizer.json` (model.vocab). Encoding: lowercase, strip accents, split on whitespace and around
// punctuation, then greedy longest-match-first pieces with `##` continuations ([UNK] for a word that
// cannot be spelled). Decoding: tokens joined by spaces, " ##" removed, and transformers'
// clean_up_tokenization (" ." → ".", " ," → ",", " ' " → "'", " n't" → "n't", …).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { P2pzError } from '../../../shared/protocol/index.js';

export const WORDPIECE_DEFAULTS = Object.freeze({
  /** Longer words are [UNK] (BERT's max_input_chars_per_word). */
  maxWordChars: 100,
  unkToken: '[UNK]',
  /** Most vocabulary entries read (BERT has 30522, BLIP 30524). */
  maxVocab: 500_000,
});

const TokenizerJson = z.object({ model: z.object({ vocab: z.record(z.string(), z.number().int().nonnegative()) }) });

function invalid(detail: string): P2pzError {
  return new P2pzError('E_MODEL_INVALID', `The captioner's tokenizer ${detail}`);
}

export class WordPieceTokenizer {
  readonly #ids: ReadonlyMap<string, number>;
  readonly #tokens: readonly string[];
  readonly unkId: number;

  /** Reads `vocab.txt`, else `tokenizer.json`, from the captioner's folder. */
  static async load(dir: string): Promise<WordPieceTokenizer> {
    let text: string | undefined;
    try {
      text = await readFile(join(dir, 'vocab.txt'), 'utf8');
    } catch {
      // no vocab.txt: try tokenizer.json
    }
    if (text !== undefined) return new WordPieceTokenizer(text.split(/\r?\n/).filter((line, i, all) => line !== '' || i < all.length - 1));
    let parsed: z.infer<typeof TokenizerJson>;
    try {
      parsed = TokenizerJson.parse(JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8')));
    } catch {
      throw invalid('is missing: the folder needs vocab.txt or tokenizer.json.');
    }
    const tokens: string[] = [];
    for (const [token, id] of Object.entries(parsed.model.vocab)) {
      if (id >= WORDPIECE_DEFAULTS.maxVocab) throw invalid('has an id beyond any BERT vocabulary.');
      tokens[id] = token;
    }
    return new WordPieceTokenizer(Array.from(tokens, (t, i) => t ?? `[unused${i}]`));
  }

  constructor(tokens: readonly string[]) {
    if (tokens.length === 0 || tokens.length > WORDPIECE_DEFAULTS.maxVocab) throw invalid(`has ${tokens.length} tokens.`);
    this.#tokens = tokens;
    const ids = new Map<string, number>();
    tokens.forEach((t, i) => {
      if (!ids.has(t)) ids.set(t, i);
    });
    this.#ids = ids;
    const unk = ids.get(WORDPIECE_DEFAULTS.unkToken);
    if (unk === undefined) throw invalid(`has no ${WORDPIECE_DEFAULTS.unkToken} token.`);
    this.unkId = unk;
  }

  get size(): number {
    return this.#tokens.length;
  }

  idOf(token: string): number | undefined {
    return this.#ids.get(token);
  }

  tokenOf(id: number): string | undefined {
    return this.#tokens[id];
  }

  /** BERT's basic tokenization: lowercase, accents stripped, split on whitespace and punctuation. */
  static basicTokens(text: string): string[] {
    const lower = text.toLowerCase().normalize('NFD').replace(/\p{Mn}/gu, '');
    return lower.match(/[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) ?? [];
  }

  /** Ids of `text` (no [CLS]/[SEP]). */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const word of WordPieceTokenizer.basicTokens(text)) {
      const chars = Array.from(word);
      if (chars.length > WORDPIECE_DEFAULTS.maxWordChars) {
        out.push(this.unkId);
        continue;
      }
      const pieces: number[] = [];
      let start = 0;
      while (start < chars.length) {
        let end = chars.length;
        let found: number | undefined;
        while (start < end) {
          const piece = (start > 0 ? '##' : '') + chars.slice(start, end).join('');
          found = this.#ids.get(piece);
          if (found !== undefined) break;
          end--;
        }
        if (found === undefined) break;
        pieces.push(found);
        start = end;
      }
      if (start < chars.length) out.push(this.unkId);
      else out.push(...pieces);
    }
    return out;
  }

  /** Text of `ids`, skipping `skip` (the special tokens), with BERT's clean-up. */
  decode(ids: readonly number[], skip: ReadonlySet<number> = new Set()): string {
    const tokens = ids.filter((id) => !skip.has(id)).map((id) => this.#tokens[id] ?? WORDPIECE_DEFAULTS.unkToken);
    return tokens.join(' ').replace(/ ##/g, '').trim()
      .replace(/ \./g, '.').replace(/ \?/g, '?').replace(/ !/g, '!').replace(/ ,/g, ',')
      .replace(/ ' /g, "'").replace(/ n't/g, "n't").replace(/ 'm/g, "'m").replace(/ 's/g, "'s")
      .replace(/ 've/g, "'ve").replace(/ 're/g, "'re");
  }
}
