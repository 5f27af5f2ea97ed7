// Sentence banks: size, distinctness, the word in every sentence, articles, determinism, parallel
// banks for concepts of one kind, and users' own bank files.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUILT_IN_CONCEPTS,
  conceptKind,
  indefiniteArticle,
  loadUserBank,
  SENTENCE_BANK_LIMITS,
  sentenceBank,
  parallelSentenceBankPair,
  sentenceBankPair,
  subjectPhrase,
  type ConceptKind,
} from '../../../../daemon/pipeline/directions/sentence-bank.js';

describe('sentenceBank', () => {
  it('ships at least cat, dog, horse, zebra, tiger, lion, wolf, bear, person, car, tree', () => {
    for (const w of ['cat', 'dog', 'horse', 'zebra', 'tiger', 'lion', 'wolf', 'bear', 'person', 'car', 'tree']) {
      expect(BUILT_IN_CONCEPTS[w]).toBeDefined();
    }
  });

  it.each(['cat', 'zebra', 'person', 'car', 'tree', 'teapot', 'golden retriever', 'elephant'])('%s: 1000 distinct sentences, each containing the word', (word) => {
    const bank = sentenceBank(word);
    expect(bank.length).toBe(1000);
    expect(new Set(bank).size).toBe(1000);
    const subject = subjectPhrase(word);
    // The subject: "a cat", or "a sleepy cat" / "an old cat" (an attribute with its own article).
    const withAttribute = new RegExp(`(^|\\s)(a [b-df-hj-np-tv-z]\\w*|an [aeiou]\\w*) ${word}(\\s|,|$)`);
    let attributed = 0;
    for (const s of bank) {
      expect(s).toContain(word);
      const plain = s.startsWith(`${subject} `) || s.startsWith(`${subject},`) || s.includes(` ${subject} `) || s.includes(` ${subject},`) || s.endsWith(` ${subject}`);
      if (!plain) attributed++;
      expect(plain || withAttribute.test(s), s).toBe(true);
      expect(s).not.toMatch(/\s{2}|^\s|\s$|\ba an\b|\ban a\b|\b[DSXL]\b/);
    }
    expect(attributed).toBeGreaterThan(300);
    expect(attributed).toBeLessThan(700);
  });

  it('offers up to the limit for every kind, all distinct', () => {
    for (const kind of ['animal', 'person', 'vehicle', 'plant', 'object'] as ConceptKind[]) {
      const bank = sentenceBank('thing', { kind, count: SENTENCE_BANK_LIMITS.maxCount });
      expect(new Set(bank).size).toBe(SENTENCE_BANK_LIMITS.maxCount);
    }
    expect(() => sentenceBank('cat', { count: SENTENCE_BANK_LIMITS.maxCount + 1 })).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
    expect(() => sentenceBank('cat', { count: 0 })).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
  });

  it('varies depiction, situation and lighting', () => {
    const bank = sentenceBank('dog');
    expect(bank.some((s) => s.startsWith('an oil painting of a'))).toBe(true);
    expect(bank.some((s) => s.startsWith('a photo of a'))).toBe(true);
    expect(bank.some((s) => s.startsWith('a dog '))).toBe(true);
    expect(bank.some((s) => s.startsWith('there is a'))).toBe(true);
    expect(bank.some((s) => s.startsWith('at sunset, a'))).toBe(true);
    expect(bank.some((s) => s.includes('sitting on a sofa'))).toBe(true);
    expect(bank.some((s) => s.endsWith(', at sunset'))).toBe(true);
    expect(bank.some((s) => !s.includes(','))).toBe(true);
    expect(bank.some((s) => s.includes('a sleepy dog'))).toBe(true);
  });

  it('is deterministic, and the seed changes the selection', () => {
    expect(sentenceBank('horse')).toEqual(sentenceBank('horse'));
    expect(sentenceBank('horse', { seed: 1 })).not.toEqual(sentenceBank('horse'));
    expect(new Set(sentenceBank('horse', { seed: 1 })).size).toBe(1000);
  });

  it('gives each concept its own bank, not the other one with the word swapped', () => {
    const cat = sentenceBank('cat');
    const dog = sentenceBank('dog');
    const swapped = new Set(cat.map((s) => s.replace(/\bcat\b/, 'dog')));
    const shared = dog.filter((s) => swapped.has(s)).length;
    // Independent draws: only chance coincidences remain, among the short shapes with few combinations
    // ("a dog in the snow"): about 16% here, against 100% for the parallel banks.
    expect(shared).toBeLessThan(250);
    expect(dog.slice(0, 100).filter((s) => swapped.has(s)).length).toBeLessThan(35);
    // Each concept keeps its own kind's situations, even when the edit crosses kinds.
    const pair = sentenceBankPair('cat', 'car');
    expect(pair.source).toEqual(cat);
    expect(pair.target).toEqual(sentenceBank('car', { kind: 'vehicle' }));
    expect(pair.target.some((s) => s.includes('parked on a city street'))).toBe(true);
    expect(pair.source.some((s) => s.includes('parked on a city street'))).toBe(false);
  });

  it('keeps the old parallel banks for comparison: they differ only in the word', () => {
    const old = parallelSentenceBankPair('cat', 'dog', { count: 200 });
    expect(old.source.map((s) => s.replace(/\bcat\b/, 'dog'))).toEqual(old.target);
    expect(new Set(old.source).size).toBe(200);
    const mixed = parallelSentenceBankPair('cat', 'car', { count: 50 });
    expect(mixed.source.map((s) => s.replace(/\bcat\b/, 'car'))).toEqual(mixed.target);
  });

  it('picks articles by sound', () => {
    expect(['cat', 'elephant', 'owl', 'umbrella', 'unicorn', 'user', 'european car', 'hour', 'horse', 'apple tree', 'ewe', 'igloo'].map(indefiniteArticle)).toEqual(['a', 'an', 'an', 'an', 'a', 'a', 'a', 'an', 'a', 'an', 'a', 'an']);
    expect(subjectPhrase('the Eiffel Tower')).toBe('the Eiffel Tower');
    expect(subjectPhrase('golden  retriever')).toBe('a golden retriever');
  });

  it('knows the kinds of built-in concepts and treats free words as objects', () => {
    expect(conceptKind('Cat')).toBe('animal');
    expect(conceptKind('car')).toBe('vehicle');
    expect(conceptKind('person')).toBe('person');
    expect(conceptKind('tree')).toBe('plant');
    expect(conceptKind('teapot')).toBe('object');
  });

  it('refuses words that are not concepts', () => {
    expect(() => sentenceBank('')).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
    expect(() => sentenceBank('cat; drop')).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
    expect(() => sentenceBank('x'.repeat(65))).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
  });
});

describe('loadUserBank', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pz-bank-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const file = async (name: string, content: string | Uint8Array): Promise<string> => {
    const p = join(dir, name);
    await writeFile(p, content);
    return p;
  };

  it('reads one sentence per line, trimmed, without blanks or repeats', async () => {
    const p = await file('ok.txt', '\ufeff  A cat on a sofa \r\n\n\ta cat  in the snow\nA CAT ON A SOFA\r\na cat on a sofa\n   \nthe last line');
    expect(await loadUserBank(p)).toEqual(['A cat on a sofa', 'a cat in the snow', 'the last line']);
  });

  it('refuses empty, oversized, binary and unreadable files, without naming the path', async () => {
    const cases: Array<[string, RegExp]> = [
      [await file('empty.txt', '\n \n\t\n'), /holds no sentences/],
      [await file('long.txt', `ok\n${'x'.repeat(SENTENCE_BANK_LIMITS.maxSentenceChars + 1)}\n`), /longer than 500 characters \(line 2\)/],
      [await file('big.txt', 'a\n'.repeat(SENTENCE_BANK_LIMITS.maxFileBytes)), /larger than/],
      [await file('many.txt', Array.from({ length: SENTENCE_BANK_LIMITS.maxSentences + 1 }, (_, i) => `sentence ${i}`).join('\n')), /more than 5000 sentences/],
      [await file('latin1.txt', Uint8Array.from([0x63, 0x61, 0x66, 0xe9, 0x0a])), /not UTF-8/],
      [await file('nul.txt', 'a cat\u0000\n'), /not a text file/],
      [join(dir, 'missing.txt'), /could not be read/],
      [dir, /not a regular file/],
    ];
    for (const [p, message] of cases) {
      const err = await loadUserBank(p).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'E_BAD_REQUEST', message: expect.stringMatching(message) });
      expect((err as Error).message).not.toContain(dir);
    }
  });
});
