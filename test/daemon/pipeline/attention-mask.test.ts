// The source concept's attention mask: token positions found in the caption, per-layer grids
// upsampled to the latent, heads averaged, min–max normalized and ramped so that the background is
// exactly 0; and the blend that keeps the original's bytes where the mask is 0.
import { join } from 'node:path';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import { ATTENTION_MASK_DEFAULTS, AttentionMaskAccumulator, sourceTokenPositions, wordForms } from '../../../daemon/pipeline/attention-mask.js';
import { blendThroughMask } from '../../../daemon/pipeline/blend.js';
import { ClipTokenizer } from '../../../daemon/pipeline/text/clip-tokenizer.js';

describe('sourceTokenPositions', () => {
  let dir: string;
  let tokenizer: ClipTokenizer;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pz-mask-'));
    await writeTinyStableDiffusion(dir, { components: ['tokenizer'] });
    tokenizer = await ClipTokenizer.load(join(dir, 'tokenizer'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('finds the word after BOS in the caption: "a photo of a cat" → position 5', () => {
    expect(sourceTokenPositions(tokenizer, 'a photo of a cat', 'cat')).toEqual({ positions: [5], match: 'exact', words: 'cat' });
    expect(sourceTokenPositions(tokenizer, 'a cat on the grass', 'Cat')?.positions).toEqual([2]);
  });

  it('a multi-token word gives all its positions, and so does a source of several words', () => {
    const word = tokenizer.tokenize('zebrafish');
    expect(word.length).toBeGreaterThan(1);
    expect(sourceTokenPositions(tokenizer, 'a zebrafish', 'zebrafish')?.positions).toEqual(word.map((_, k) => 2 + k));
    const pine = tokenizer.tokenize('pine').length;
    const tree = tokenizer.tokenize('tree').length;
    expect(sourceTokenPositions(tokenizer, 'a tree and a pine tree', 'pine tree')).toEqual({
      positions: Array.from({ length: pine + tree }, (_, k) => 1 + tokenizer.tokenize('a tree and a').length + k),
      match: 'exact',
      words: 'pine tree',
    });
  });

  it('an exact word wins over a plural later in the caption; plurals and singulars match by spelling rules', () => {
    expect(sourceTokenPositions(tokenizer, 'cats and a cat', 'cat')?.match).toBe('exact');
    const cases: [string, string, string][] = [
      ['two cats on a sofa', 'cat', 'cats'],
      ['three puppies in the grass', 'puppy', 'puppies'],
      ['wolves in the snow', 'wolf', 'wolves'],
      ['two men walking', 'man', 'men'],
      ['people on a beach', 'person', 'people'],
      ['a horse in a field', 'horses', 'horse'],
      ['foxes at night', 'fox', 'foxes'],
    ];
    for (const [caption, source, words] of cases) {
      const found = sourceTokenPositions(tokenizer, caption, source);
      expect(found, `${source} in "${caption}"`).toMatchObject({ match: 'plural', words });
      const before = caption.slice(0, caption.indexOf(words)).trim();
      const start = 1 + (before === '' ? 0 : tokenizer.tokenize(before).length);
      expect(found?.positions).toEqual(tokenizer.tokenize(words).map((_, k) => start + k));
    }
  });

  it('a word whose BPE pieces begin with the source matches as a prefix ("catlike" = c·at·…)', () => {
    expect(tokenizer.words('catlike')[0]!.pieces.slice(0, 2).join('')).toBe('cat');
    const found = sourceTokenPositions(tokenizer, 'a catlike creature', 'cat');
    expect(found).toEqual({ positions: tokenizer.tokenize('catlike').map((_, k) => 2 + k), match: 'prefix', words: 'catlike' });
  });

  it('no mask when the caption lacks the word: null, not every position', () => {
    expect(sourceTokenPositions(tokenizer, 'a photo of a dog', 'cat')).toBeNull();
    expect(sourceTokenPositions(tokenizer, 'a cart', 'cat')).toBeNull();
    // Beyond the 75 tokens the text encoder reads, the word is not in the caption either.
    expect(sourceTokenPositions(tokenizer, `${'a '.repeat(80)}cat`, 'cat')).toBeNull();
  });
});

describe('wordForms', () => {
  it('plurals by spelling, irregular ones, and the singular of a plural', () => {
    expect([...wordForms('cat')]).toEqual(['cats']);
    expect(wordForms('bus')).toEqual(new Set(['buses', 'busses']));
    expect(wordForms('potato')).toEqual(new Set(['potatos', 'potatoes']));
    expect(wordForms('puppy').has('puppies')).toBe(true);
    expect(wordForms('knife').has('knives')).toBe(true);
    expect(wordForms('mice').has('mouse')).toBe(true);
    expect(wordForms('puppies').has('puppy')).toBe(true);
    expect(wordForms('glass').has('glasses')).toBe(true);
    expect(wordForms('glass').has('glas')).toBe(false);
  });
});

describe('AttentionMaskAccumulator', () => {
  it('averages heads, upsamples coarse layers by nearest neighbour, and normalizes to 0..255', () => {
    // Latent 2×4; one fine layer (8 queries) and one coarse (2 queries = 1×2 grid), T = 3, source τ = 1.
    const acc = new AttentionMaskAccumulator(2, 4, [1]);
    const fine = new Float32Array(2 * 2 * 8 * 3); // [B=2, heads=2, 8, 3]; row 1 is the edit branch
    for (let q = 0; q < 8; q++) {
      fine[(1 * 2 + 0) * 24 + q * 3 + 1] = q / 8; // head 0
      fine[(1 * 2 + 1) * 24 + q * 3 + 1] = q / 8; // head 1: same → mean q/8
      fine[(0 * 2 + 0) * 24 + q * 3 + 1] = 100; // the caption branch: ignored
    }
    acc.add(fine, { heads: 2, queries: 8, tokens: 3 }, 1);
    const coarse = new Float32Array(2 * 1 * 2 * 3);
    coarse[(1 * 1 + 0) * 6 + 0 * 3 + 1] = 0;
    coarse[(1 * 1 + 0) * 6 + 1 * 3 + 1] = 1; // right half of the latent
    acc.add(coarse, { heads: 1, queries: 2, tokens: 3 }, 1);
    // Sums: fine q/8 + coarse (0 for columns 0–1, 1 for columns 2–3).
    const sums = [0, 1, 2, 3, 4, 5, 6, 7].map((q) => q / 8 + (q % 4 >= 2 ? 1 : 0));
    const lo = Math.min(...sums);
    const hi = Math.max(...sums);
    const { low, high } = ATTENTION_MASK_DEFAULTS;
    const expected = sums.map((s) => Math.round(255 * Math.min(1, Math.max(0, ((s - lo) / (hi - lo) - low) / (high - low)))));
    expect([...acc.gray()]).toEqual(expected);
    expect([...acc.gray(0, 1)]).toEqual(sums.map((s) => Math.round((255 * (s - lo)) / (hi - lo))));
  });

  it('refuses a layer whose queries form no grid of the latent', () => {
    const acc = new AttentionMaskAccumulator(4, 4, [1]);
    expect(() => acc.add(new Float32Array(2 * 3 * 2), { heads: 1, queries: 3, tokens: 2 }, 1)).toThrow(/grid/);
  });
});

describe('blendThroughMask', () => {
  it('m = 0 keeps the original bytes, m = 255 takes the edit, in between rounds the mix', () => {
    const original = Uint8Array.of(10, 20, 30, 200, 100, 0, 50, 50, 50);
    const edit = Uint8Array.of(250, 0, 31, 0, 0, 255, 150, 0, 250);
    const out = blendThroughMask(original, edit, Uint8Array.of(0, 255, 128), 3, 1);
    expect([...out.subarray(0, 3)]).toEqual([10, 20, 30]);
    expect([...out.subarray(3, 6)]).toEqual([0, 0, 255]);
    expect([...out.subarray(6)]).toEqual([50 + Math.round((100 * 128) / 255), 50 - Math.round((50 * 128) / 255), 50 + Math.round((200 * 128) / 255)]);
    expect(() => blendThroughMask(original, edit, Uint8Array.of(0), 3, 1)).toThrow();
  });
});
