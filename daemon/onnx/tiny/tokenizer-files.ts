// Tokenizer files in CLIP's format (transformers' CLIPTokenizer as shipped with SD 1.x): byte-level
// BPE. vocab.json lists, in id order, the 256 byte-to-unicode symbols, the same 256 with `</w>`
// (end of word), one token per merge (the concatenated pair), then `<|startoftext|>` and
// `<|endoftext|>`; merges.txt has a `#version` line and one "left right" pair per line in priority
// order. The merges are learned here by plain BPE on a small word list (deterministic: most frequent
// pair first, ties broken by the pair's text), so that common caption words are single tokens.

/** Words every tiny tokenizer encodes as single tokens: the test edits (cat→dog, horse→zebra) and
 *  the words of captions and sentence templates. */
export const TOKENIZER_WORDS: readonly string[] = Object.freeze([
  'a', 'an', 'the', 'of', 'in', 'on', 'with', 'and', 'is', 'at', 'by', 'to', 'its', 'his', 'her', 'this', 'that',
  'photo', 'picture', 'image', 'painting', 'drawing', 'sketch', 'portrait', 'close', 'up', 'view', 'shot',
  'cat', 'cats', 'dog', 'dogs', 'horse', 'horses', 'zebra', 'zebras', 'tiger', 'lion', 'bear', 'bird', 'cow',
  'sheep', 'wolf', 'fox', 'puppy', 'kitten', 'animal', 'man', 'woman', 'person', 'people', 'child', 'face',
  'sitting', 'standing', 'running', 'lying', 'walking', 'sleeping', 'looking', 'playing', 'eating',
  'grass', 'field', 'street', 'road', 'tree', 'trees', 'sky', 'water', 'beach', 'snow', 'forest', 'river',
  'house', 'room', 'window', 'bed', 'couch', 'table', 'floor', 'car', 'city', 'park', 'garden', 'wall',
  'black', 'white', 'brown', 'red', 'blue', 'green', 'yellow', 'gray', 'orange', 'striped', 'spotted',
  'small', 'large', 'big', 'little', 'cute', 'young', 'old', 'beautiful', 'happy', 'fluffy',
  'front', 'next', 'near', 'under', 'behind', 'background', 'day', 'night', 'sunset', 'light', 'dark',
  'high', 'quality', 'detailed', 'realistic', 'style', 'art', 'oil', 'watercolor', 'pencil', 'camera',
]);

export const TOKENIZER_DEFAULTS = Object.freeze({
  /** At most this many merges are learned (the word list needs a few hundred). */
  maxMerges: 1000,
  modelMaxLength: 77,
  startOfText: '<|startoftext|>',
  endOfText: '<|endoftext|>',
});

/** GPT-2/CLIP's reversible byte → unicode map, in CLIP's vocabulary order (printable bytes first). */
export function bytesToUnicode(): { bytes: number[]; symbols: string[] } {
  const bytes: number[] = [];
  for (let c = '!'.charCodeAt(0); c <= '~'.charCodeAt(0); c++) bytes.push(c);
  for (let c = 0xa1; c <= 0xac; c++) bytes.push(c);
  for (let c = 0xae; c <= 0xff; c++) bytes.push(c);
  const codes = [...bytes];
  let n = 0;
  for (let byte = 0; byte < 256; byte++) {
    if (!bytes.includes(byte)) {
      bytes.push(byte);
      codes.push(256 + n++);
    }
  }
  return { bytes, symbols: codes.map((c) => String.fromCharCode(c)) };
}

/** A word as BPE symbols: its byte symbols, the last one carrying `</w>`. */
function wordSymbols(word: string, byteSymbol: ReadonlyMap<number, string>): string[] {
  const syms = [...new TextEncoder().encode(word)].map((x) => byteSymbol.get(x) as string);
  syms[syms.length - 1] += '</w>';
  return syms;
}

/**
 * Learns BPE merges over `words` (each counted once): repeatedly merge the most frequent adjacent
 * pair (ties: smallest "left right" text) whose concatenation is not yet a token, until every word is
 * one token or `maxMerges` is reached.
 */
export function learnMerges(words: readonly string[], maxMerges: number): [string, string][] {
  const { bytes, symbols } = bytesToUnicode();
  const byteSymbol = new Map(bytes.map((x, i) => [x, symbols[i] as string]));
  const tokens = new Set<string>([...symbols, ...symbols.map((s) => `${s}</w>`)]);
  const seqs = [...new Set(words)].map((w) => wordSymbols(w, byteSymbol));
  const merges: [string, string][] = [];
  while (merges.length < maxMerges) {
    const counts = new Map<string, number>();
    for (const s of seqs) {
      for (let i = 0; i + 1 < s.length; i++) {
        const key = `${s[i]} ${s[i + 1]}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [key, count] of counts) {
      if (tokens.has(key.replace(' ', ''))) continue;
      if (count > bestCount || (count === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (best === undefined) break;
    const [left, right] = best.split(' ') as [string, string];
    merges.push([left, right]);
    tokens.add(left + right);
    for (const s of seqs) {
      for (let i = 0; i + 1 < s.length; i++) {
        if (s[i] === left && s[i + 1] === right) s.splice(i, 2, left + right);
      }
    }
  }
  return merges;
}

export interface TokenizerFiles {
  readonly 'vocab.json': string;
  readonly 'merges.txt': string;
  readonly 'tokenizer_config.json': string;
  readonly 'special_tokens_map.json': string;
}

/** The vocabulary (token → id) implied by a merge list, in CLIP's order. */
export function clipVocabulary(merges: readonly (readonly [string, string])[]): Map<string, number> {
  const { symbols } = bytesToUnicode();
  const list = [...symbols, ...symbols.map((s) => `${s}</w>`), ...merges.map(([l, r]) => l + r), TOKENIZER_DEFAULTS.startOfText, TOKENIZER_DEFAULTS.endOfText];
  return new Map(list.map((t, i) => [t, i]));
}

function addedToken(content: string): Record<string, unknown> {
  return { __type: 'AddedToken', content, lstrip: false, normalized: true, rstrip: false, single_word: false };
}

/** The four tokenizer files' contents. */
export function tokenizerFiles(words: readonly string[] = TOKENIZER_WORDS, maxMerges: number = TOKENIZER_DEFAULTS.maxMerges): TokenizerFiles {
  const merges = learnMerges(words, maxMerges);
  const vocab = Object.fromEntries(clipVocabulary(merges));
  const { startOfText: bos, endOfText: eos } = TOKENIZER_DEFAULTS;
  return {
    'vocab.json': JSON.stringify(vocab),
    'merges.txt': ['#version: 0.2', ...merges.map(([l, r]) => `${l} ${r}`)].join('\n') + '\n',
    'tokenizer_config.json': JSON.stringify({
      add_prefix_space: false,
      bos_token: addedToken(bos),
      do_lower_case: true,
      eos_token: addedToken(eos),
      errors: 'replace',
      model_max_length: TOKENIZER_DEFAULTS.modelMaxLength,
      pad_token: eos,
      tokenizer_class: 'CLIPTokenizer',
      unk_token: addedToken(eos),
    }, null, 2) + '\n',
    'special_tokens_map.json': JSON.stringify({
      bos_token: { content: bos, lstrip: false, normalized: true, rstrip: false, single_word: false },
      eos_token: { content: eos, lstrip: false, normalized: true, rstrip: false, single_word: false },
      pad_token: eos,
      unk_token: { content: eos, lstrip: false, normalized: true, rstrip: false, single_word: false },
    }, null, 2) + '\n',
  };
}

/** Size of the vocabulary the default tokenizer files define (the text encoder's embedding rows must cover it). */
export function tokenizerVocabularySize(files: TokenizerFiles): number {
  return Object.keys(JSON.parse(files['vocab.json']) as Record<string, number>).length;
}
