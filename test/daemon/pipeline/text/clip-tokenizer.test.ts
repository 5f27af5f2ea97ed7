// CLIP tokenizer. The real CLIP vocabulary is not available here, but its id layout is fixed:
// ids 0–255 are the byte symbols (bytes_to_unicode order), 256–511 the same with `</w>`, 512 + r the
// token made by merge rank r, then 49406 <|startoftext|> and 49407 <|endoftext|>. The tests build a
// partial vocabulary laid out exactly that way, placing the last merge of each word at the rank its
// published CLIP id implies (e.g. "photo</w>" = 1125 → rank 613) and filling unused ranks with inert
// pairs, then check our ids against sequences published in public CLIP tokenizer tests.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer, idsToInt32, idsToInt64 } from '../../../../daemon/pipeline/text/clip-tokenizer.js';

const BOS = 49406;
const EOS = 49407;

/** openai/CLIP bytes_to_unicode(), written out independently: [byte, symbol] in vocabulary order. */
function byteSymbolsInVocabOrder(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const symbols = printable.map((b) => String.fromCharCode(b));
  let n = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) symbols.push(String.fromCharCode(256 + n++));
  return symbols;
}

/** The id of byte b (with `</w>` when last): its position in the vocabulary-order table. */
function byteId(b: number, last: boolean): number {
  const order: number[] = [];
  for (let x = 33; x <= 126; x++) order.push(x);
  for (let x = 161; x <= 172; x++) order.push(x);
  for (let x = 174; x <= 255; x++) order.push(x);
  for (let x = 0; x < 256; x++) if (!order.includes(x)) order.push(x);
  return order.indexOf(b) + (last ? 256 : 0);
}

/**
 * A vocab.json + merges.txt in CLIP's layout. `placed` fixes merges at given ranks; `free` merges take
 * the lowest unused ranks in the order given; every other rank up to the highest placed one is an
 * inert filler pair that no text can produce.
 */
function clipLayout(placed: ReadonlyArray<readonly [number, string]>, free: readonly string[]): { vocab: Record<string, number>; mergesText: string } {
  const maxRank = Math.max(...placed.map(([r]) => r));
  const byRank = new Array<string | undefined>(maxRank + 1);
  for (const [rank, merge] of placed) byRank[rank] = merge;
  let next = 0;
  for (const merge of free) {
    while (byRank[next] !== undefined) next++;
    byRank[next] = merge;
  }
  const merges = Array.from(byRank, (m, r) => m ?? `\u0100 #${r}`);
  const symbols = byteSymbolsInVocabOrder();
  const vocab: Record<string, number> = {};
  symbols.forEach((s, i) => {
    vocab[s] = i;
    vocab[`${s}</w>`] = 256 + i;
  });
  merges.forEach((m, r) => {
    vocab[m.replace(' ', '')] = 512 + r;
  });
  vocab['<|startoftext|>'] = BOS;
  vocab['<|endoftext|>'] = EOS;
  return { vocab, mergesText: `#version: 0.2\n${merges.join('\n')}\n` };
}

/** Final merges at the ranks implied by CLIP's published ids (id − 512). */
const PLACED: ReadonlyArray<readonly [number, string]> = [
  [1125 - 512, 'pho to</w>'],
  [539 - 512, 'o f</w>'],
  [2677 - 512, 'tr ee</w>'],
  [585 - 512, 'i t</w>'],
  [568 - 512, "' s</w>"],
  [2368 - 512, 'c at</w>'],
  [5988 - 512, 'to y</w>'],
  [2761 - 512, 'runn ing</w>'],
  [1953 - 512, 'fa st</w>'],
  [3255 - 512, 'do gs</w>'],
  [537 - 512, 'an d</w>'],
  [3989 - 512, 'c ats</w>'],
  [3306 - 512, 'he llo</w>'],
  [1002 - 512, 'wo rld</w>'],
  [1929 - 512, 'do g</w>'],
  [525 - 512, 'o n</w>'],
  [2117 - 512, 'be ach</w>'],
];
/** Intermediate merges of our own choosing (their ids are not checked). */
const FREE = ['h o', 'p ho', 't o</w>', 't r', 'e e</w>', 'a t</w>', 'a t', 'at s</w>', 't o', 'r u', 'n n', 'i n', 'in g</w>', 'ru nn',
  'f a', 's t</w>', 'd o', 'g s</w>', 'a n', 'h e', 'l o</w>', 'l lo</w>', 'w o', 'r l', 'rl d</w>', 'b e', 'c h</w>', 'a ch</w>'];

describe('ClipTokenizer on a CLIP-layout vocabulary', () => {
  const tok = new ClipTokenizer(clipLayout(PLACED, FREE));
  const body = (text: string): number[] => {
    const { ids, attentionLength } = tok.encode(text);
    return ids.slice(0, attentionLength);
  };

  it.each([
    ['a photo of a cat', [BOS, 320, 1125, 539, 320, 2368, EOS]],
    ['a photo of a dog', [BOS, 320, 1125, 539, 320, 1929, EOS]],
    ['a photo of a tree', [BOS, 320, 1125, 539, 320, 2677, EOS]],
    ['A Photo of a TREE!', [BOS, 320, 1125, 539, 320, 2677, 256, EOS]],
    ["it's a cat's toy, running   fast", [BOS, 585, 568, 320, 2368, 568, 5988, 267, 2761, 1953, EOS]],
    ['2 dogs and 3 cats', [BOS, 273, 3255, 537, 274, 3989, EOS]],
    ['hello world', [BOS, 3306, 1002, EOS]],
    ['dog on a beach', [BOS, 1929, 525, 320, 2117, EOS]],
    ['', [BOS, EOS]],
    ['  \t\n ', [BOS, EOS]],
  ])('%j → published CLIP ids', (text, expected) => {
    expect(body(text)).toEqual(expected);
  });

  it('pads to 77 with <|endoftext|> by default and reports the attention length', () => {
    const { ids, attentionLength } = tok.encode('a photo of a cat');
    expect(ids.length).toBe(77);
    expect(attentionLength).toBe(7);
    expect(ids.slice(7).every((id) => id === EOS)).toBe(true);
    expect(tok.padId).toBe(EOS);
  });

  it('truncates to 75 tokens and keeps EOS last', () => {
    const { ids, attentionLength } = tok.encode('a '.repeat(200));
    expect(ids.length).toBe(77);
    expect(attentionLength).toBe(77);
    expect(ids[0]).toBe(BOS);
    expect(ids[76]).toBe(EOS);
    expect(ids.slice(1, 76).every((id) => id === 320)).toBe(true);
    expect(tok.encode('dog '.repeat(75)).attentionLength).toBe(77);
    expect(tok.encode('dog '.repeat(74)).attentionLength).toBe(76);
  });

  it('writes characters outside the vocabulary as their UTF-8 byte symbols', () => {
    // é = C3 A9; 🐱 = F0 9F 90 B1 (0x9F and 0x90 are among the remapped, non-printable bytes).
    expect(body('é')).toEqual([BOS, byteId(0xc3, false), byteId(0xa9, true), EOS]);
    expect(body('🐱')).toEqual([BOS, byteId(0xf0, false), byteId(0x9f, false), byteId(0x90, false), byteId(0xb1, true), EOS]);
    expect(byteId(0x9f, false)).toBe(253);
    expect(body('hello, world!!')).toEqual([BOS, 3306, 267, 1002, 0, 256, EOS]);
  });

  it('cleans the text: whitespace, case, HTML entities (twice), NFC, controls', () => {
    expect(body(' DOG  ')).toEqual(body('dog'));
    expect(body('cat &amp; dog')).toEqual([BOS, 2368, byteId(0x26, true), 1929, EOS]);
    expect(body('cat &amp;amp; dog')).toEqual(body('cat & dog'));
    expect(body('cafe\u0301')).toEqual(body('café'));
    expect(body('do\u0000g')).toEqual(body('dog'));
  });

  it('splits digits one by one and keeps contractions', () => {
    expect(body('22')).toEqual([BOS, byteId(0x32, true), byteId(0x32, true), EOS]);
    expect(body("it'll")).toEqual([BOS, 585, byteId(0x27, false), byteId(0x6c, false), byteId(0x6c, true), EOS]);
  });

  it('maps special tokens written in the text to their ids', () => {
    expect(body('a <|endoftext|>')).toEqual([BOS, 320, EOS, EOS]);
  });

  it('converts ids for int64 and int32 text encoders', () => {
    const { ids } = tok.encode('a cat');
    expect(idsToInt64(ids)).toEqual(BigInt64Array.from(ids.map(BigInt)));
    expect(Array.from(idsToInt32(ids))).toEqual(ids);
  });
});

describe('ClipTokenizer BPE on hand-made merges', () => {
  const vocab = (tokens: string[]): Record<string, number> => {
    const v: Record<string, number> = { '<|startoftext|>': 1000, '<|endoftext|>': 1001, '!': 0 };
    tokens.forEach((t, i) => (v[t] = 10 + i));
    return v;
  };

  it('applies the lowest-ranked pair first, until no pair has a rank', () => {
    const t1 = new ClipTokenizer({ vocab: vocab([]), mergesText: 'a b\nb c\nab c</w>' });
    expect(t1.bpe('abc')).toEqual(['abc</w>']);
    const t2 = new ClipTokenizer({ vocab: vocab([]), mergesText: 'b c</w>\na b' });
    expect(t2.bpe('abc')).toEqual(['a', 'bc</w>']);
    expect(t2.bpe('x')).toEqual(['x</w>']);
  });

  it('merges repeated pairs left to right without overlap', () => {
    const t = new ClipTokenizer({ vocab: vocab([]), mergesText: '#version: 0.2\na a\na a</w>' });
    expect(t.bpe('aaa')).toEqual(['aa', 'a</w>']);
    expect(t.bpe('aaaa')).toEqual(['aa', 'aa</w>']);
  });

  it('uses the configured pad token ("!" = 0 in some exports) and unknown pieces get the unk id', () => {
    const t = new ClipTokenizer({
      vocab: { ...vocab(['ab</w>']), '<unk>': 5 },
      mergesText: 'a b</w>',
      specialTokens: { pad_token: '!', unk_token: '<unk>' },
      maxLength: 7,
    });
    const { ids, attentionLength } = t.encode('ab zz');
    expect(ids).toEqual([1000, 10, 5, 5, 1001, 0, 0]);
    expect(attentionLength).toBe(5);
  });

  it('refuses a vocabulary without the special tokens and malformed merges', () => {
    expect(() => new ClipTokenizer({ vocab: { a: 1 }, mergesText: 'a b' })).toThrow(expect.objectContaining({ code: 'E_MODEL_INVALID' }));
    expect(() => new ClipTokenizer({ vocab: vocab([]), mergesText: 'a b\nabc\n' })).toThrow(/merges\.txt line 2/);
    expect(() => new ClipTokenizer({ vocab: vocab([]), mergesText: '#version: 0.2\n' })).toThrow(/no merges/);
    expect(() => new ClipTokenizer({ vocab: vocab([]), mergesText: 'a b', specialTokens: { pad_token: '<pad>' } })).toThrow(/padding token "<pad>"/);
  });
});

describe('ClipTokenizer.load', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pz-tok-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function writeModel(name: string, files: Record<string, string>): Promise<string> {
    const d = join(dir, name);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(d, { recursive: true });
    for (const [f, text] of Object.entries(files)) await writeFile(join(d, f), text);
    return d;
  }

  it('reads vocab.json, merges.txt and the pad token (an AddedToken object) from special_tokens_map.json', async () => {
    const { vocab, mergesText } = clipLayout(PLACED, FREE);
    const d = await writeModel('sd2', {
      'vocab.json': JSON.stringify(vocab),
      'merges.txt': mergesText,
      'special_tokens_map.json': JSON.stringify({ bos_token: { content: '<|startoftext|>', lstrip: false }, pad_token: '!' }),
      'tokenizer_config.json': JSON.stringify({ pad_token: '<|endoftext|>', model_max_length: 77, tokenizer_class: 'CLIPTokenizer' }),
    });
    const t = await ClipTokenizer.load(d);
    expect(t.padId).toBe(0);
    const { ids } = t.encode('a photo of a cat');
    expect(ids.slice(0, 8)).toEqual([BOS, 320, 1125, 539, 320, 2368, EOS, 0]);
  });

  it('falls back to tokenizer_config.json, then to <|endoftext|>', async () => {
    const { vocab, mergesText } = clipLayout(PLACED, FREE);
    const withConfig = await writeModel('cfg', { 'vocab.json': JSON.stringify(vocab), 'merges.txt': mergesText, 'tokenizer_config.json': JSON.stringify({ pad_token: { content: '!' } }) });
    expect((await ClipTokenizer.load(withConfig)).padId).toBe(0);
    const bare = await writeModel('bare', { 'vocab.json': JSON.stringify(vocab), 'merges.txt': mergesText });
    expect((await ClipTokenizer.load(bare)).padId).toBe(EOS);
  });

  it('reports missing and malformed files', async () => {
    const noVocab = await writeModel('novocab', { 'merges.txt': 'a b' });
    await expect(ClipTokenizer.load(noVocab)).rejects.toMatchObject({ code: 'E_MODEL_MISSING', message: expect.stringMatching(/vocab\.json is missing/) });
    const badJson = await writeModel('badjson', { 'vocab.json': '{', 'merges.txt': 'a b' });
    await expect(ClipTokenizer.load(badJson)).rejects.toMatchObject({ code: 'E_MODEL_INVALID', message: expect.stringMatching(/vocab\.json is not valid JSON/) });
    const badIds = await writeModel('badids', { 'vocab.json': '{"a": -1}', 'merges.txt': 'a b' });
    await expect(ClipTokenizer.load(badIds)).rejects.toMatchObject({ code: 'E_MODEL_INVALID', message: expect.stringMatching(/vocab\.json: a:/) });
    const badMap = await writeModel('badmap', { 'vocab.json': '{}', 'merges.txt': 'a b', 'special_tokens_map.json': '{"pad_token": 7}' });
    await expect(ClipTokenizer.load(badMap)).rejects.toMatchObject({ code: 'E_MODEL_INVALID', message: expect.stringMatching(/special_tokens_map\.json: pad_token/) });
  });
});
