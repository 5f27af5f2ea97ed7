// Sentence banks for edit directions (docs/DESIGN.md §3 step 3). pix2pix-zero averages the text encoder's
// output over ~1000 varied sentences per concept (the paper generated them with a language model,
// independently for each concept); p2pz builds them from templates instead, and each concept gets its
// own bank: a sentence shape ("{depiction} {subject} {situation}, {light}", "there is {subject} …",
// "{light}, {subject} …", …), a way of depicting ("an oil painting of"), an attribute ("a sleepy cat"),
// a situation suited to the kind of concept ("sitting on a sofa", "parked on a city street") and a
// light or time of day, each drawn by a generator seeded from the concept itself. Two concepts of one
// kind therefore share the vocabulary but not the sentences, so the mean difference Δ carries what the
// concept changes in every token position of varied contexts, not only a word swap at one position
// (parallel banks make Δ zero before the word: the text encoder is causal). Free words get situations
// that fit any object. Users can also bring their own banks as text files.
import { readFile, stat } from 'node:fs/promises';
import { Concept, hasDeterminer, indefiniteArticle, P2pzError, subjectPhrase } from '../../../shared/protocol/index.js';
import { Rng } from '../random.js';

export type ConceptKind = 'animal' | 'person' | 'vehicle' | 'plant' | 'object';

export const SENTENCE_BANK_DEFAULTS = Object.freeze({
  /** Sentences per concept (the paper used about 1000). */
  count: 1000,
  /** Seed of the shuffle that picks which combinations are used. */
  seed: 0,
});

export const SENTENCE_BANK_LIMITS = Object.freeze({
  /** Most sentences generated per concept (every kind has at least this many combinations). */
  maxCount: 2000,
  /** A user's bank file: at most this many bytes, … */
  maxFileBytes: 1024 * 1024,
  /** … this many distinct sentences, … */
  maxSentences: 5000,
  /** … each at most this many characters (CLIP reads 75 tokens anyway). */
  maxSentenceChars: 500,
});

/** Concepts that ship with p2pz, by kind (any other word is an 'object'). */
export const BUILT_IN_CONCEPTS: Readonly<Record<string, ConceptKind>> = Object.freeze({
  cat: 'animal', dog: 'animal', horse: 'animal', zebra: 'animal', tiger: 'animal', lion: 'animal',
  wolf: 'animal', bear: 'animal', fox: 'animal', cow: 'animal', sheep: 'animal', goat: 'animal',
  elephant: 'animal', giraffe: 'animal', leopard: 'animal', cheetah: 'animal', panda: 'animal',
  rabbit: 'animal', squirrel: 'animal', deer: 'animal', monkey: 'animal', bird: 'animal', owl: 'animal',
  duck: 'animal', puppy: 'animal', kitten: 'animal',
  person: 'person', man: 'person', woman: 'person', boy: 'person', girl: 'person', child: 'person',
  robot: 'person', astronaut: 'person', soldier: 'person',
  car: 'vehicle', truck: 'vehicle', bus: 'vehicle', van: 'vehicle', bicycle: 'vehicle',
  motorcycle: 'vehicle', tractor: 'vehicle', boat: 'vehicle', train: 'vehicle',
  tree: 'plant', 'pine tree': 'plant', 'palm tree': 'plant', flower: 'plant', rose: 'plant',
  sunflower: 'plant', bush: 'plant', cactus: 'plant',
});

/** Ways of depicting, each followed by the subject. */
const DEPICTIONS: readonly string[] = [
  'a photo of', 'a close-up photo of', 'a black and white photo of', 'a blurry photo of',
  'a bright photo of', 'a dark photo of', 'a cropped photo of', 'a professional photograph of',
  'a snapshot of', 'a vintage photo of', 'a wide-angle photo of', 'an oil painting of',
  'a watercolor painting of', 'a pencil sketch of', 'a charcoal drawing of', 'a digital illustration of',
  'a 3D render of', 'a cartoon drawing of', 'a picture of', 'an image of', 'a portrait of',
];

/** Light and time of day. */
const LIGHTING: readonly string[] = [
  'at sunset', 'at night', 'in the morning light', 'in soft light', 'in bright daylight',
  'on a foggy day', 'in the evening', 'on a sunny afternoon', 'under an overcast sky',
];

/** Sentence shapes (D depiction, S subject with its attribute, X situation, L light), each listed as
 *  often as its weight: the short shapes have few combinations, so they are drawn less often, which
 *  keeps two concepts' banks from sharing many sentences. */
const SHAPES: readonly string[] = [
  'D S X', 'D S X', 'D S X', 'D S X, L', 'D S X, L', 'D S X, L', 'D S X L', 'D S X L',
  'S X, L', 'S X, L', 'L, S X', 'L, S X', 'S X L', 'there is S X', 'S X', 'D S', 'S, L',
];

/** Attributes that describe an instance without naming another concept (no colours or patterns that
 *  an edit could be about). */
const ATTRIBUTES: Readonly<Record<ConceptKind, readonly string[]>> = Object.freeze({
  animal: ['young', 'small', 'large', 'sleepy', 'curious', 'playful', 'wet', 'old', 'happy', 'calm', 'alert'],
  person: ['young', 'old', 'smiling', 'tall', 'tired', 'happy', 'serious', 'busy', 'calm'],
  vehicle: ['old', 'new', 'small', 'large', 'shiny', 'dusty', 'vintage', 'modern', 'clean'],
  plant: ['tall', 'small', 'young', 'old', 'lush', 'large', 'healthy', 'lonely'],
  object: ['old', 'new', 'small', 'large', 'simple', 'shiny', 'dusty', 'modern', 'worn'],
});

/** Situations per kind. */
const SITUATIONS: Readonly<Record<ConceptKind, readonly string[]>> = Object.freeze({
  animal: [
    'sitting on a sofa', 'lying in the grass', 'standing in a field', 'walking on a beach',
    'running through the snow', 'in the snow', 'in a forest', 'next to a river', 'on a wooden floor',
    'in front of a house', 'on a mountain trail', 'in a meadow full of flowers', 'near a lake',
    'in the rain', 'on a dirt road', 'resting in the shade', 'looking at the camera', 'in a garden',
    'on a rock', 'among autumn leaves',
  ],
  person: [
    'standing on a city street', 'sitting at a table', 'walking in a park', 'in a kitchen',
    'on a beach', 'reading a book', 'in front of a brick wall', 'in a forest', 'in the snow',
    'sitting on a bench', 'in an office', 'on a mountain top', 'in a crowded market', 'by a window',
    'in a garden', 'looking at the camera', 'in the rain', 'on a train platform',
  ],
  vehicle: [
    'parked on a city street', 'driving on a highway', 'in a parking lot', 'on a country road',
    'in a garage', 'in the snow', 'near the beach', 'in front of a house', 'on a bridge',
    'in the desert', 'by a lake', 'in the rain', 'on a mountain road', 'next to a forest',
    'in a small town', 'on a dirt track',
  ],
  plant: [
    'in a park', 'on a hill', 'next to a lake', 'in a garden', 'in a field', 'in the snow',
    'by the road', 'in front of a house', 'on a mountain', 'in a meadow', 'near a river',
    'in a courtyard', 'under a blue sky', 'in the rain', 'in a forest clearing', 'on a riverbank',
  ],
  object: [
    'on a table', 'in a room', 'outdoors', 'in the snow', 'on the grass', 'in a city',
    'at the beach', 'in a forest', 'in a studio', 'on a white background', 'in a field',
    'in front of a house', 'near a window', 'on a wooden floor', 'in a garden', 'in the rain',
  ],
});

/** The kind of a concept: built-in ones by table, any other word is an 'object'. */
export function conceptKind(word: string): ConceptKind {
  return BUILT_IN_CONCEPTS[word.trim().toLowerCase()] ?? 'object';
}

// The subject phrase ("a cat", "an owl") is shared with the template caption, which the panel writes too.
export { indefiniteArticle, subjectPhrase } from '../../../shared/protocol/index.js';

export interface SentenceBankOptions {
  readonly count?: number;
  readonly seed?: number;
  /** Template family; default: conceptKind(word). */
  readonly kind?: ConceptKind;
}

function checkedConcept(word: string): string {
  const parsed = Concept.safeParse(word);
  if (!parsed.success) throw new P2pzError('E_BAD_REQUEST', `The concept "${word.slice(0, 64)}" is not a valid word (letters, digits, spaces, apostrophes and hyphens, at most 64 characters).`);
  return parsed.data;
}

/** FNV-1a of a string: the per-concept part of a bank's seed. */
function conceptHash(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * `count` distinct sentences that all contain `word`: shapes, depictions, attributes, situations of
 * the word's kind and lights drawn by a generator seeded from (seed, kind, word), so every concept gets
 * its own bank. Half of the subjects carry an attribute ("a sleepy cat"); a subject with its own
 * determiner ("the eiffel tower") never does.
 */
export function sentenceBank(word: string, options: SentenceBankOptions = {}): string[] {
  const concept = checkedConcept(word);
  const count = options.count ?? SENTENCE_BANK_DEFAULTS.count;
  const seed = options.seed ?? SENTENCE_BANK_DEFAULTS.seed;
  const kind = options.kind ?? conceptKind(concept);
  if (!Number.isInteger(count) || count < 1 || count > SENTENCE_BANK_LIMITS.maxCount) {
    throw new P2pzError('E_BAD_REQUEST', `A sentence bank holds 1 to ${SENTENCE_BANK_LIMITS.maxCount} sentences, not ${count}.`);
  }
  const rng = new Rng((seed ^ conceptHash(`${kind}\n${concept.toLowerCase()}`)) >>> 0);
  const pick = <T>(list: readonly T[]): T => list[rng.randrange(0, list.length)]!;
  const plain = subjectPhrase(concept);
  const determined = hasDeterminer(concept);
  const seen = new Set<string>();
  const out: string[] = [];
  // The space (shapes × 21 depictions × 16–20 situations × 9 lights × 1 + ~10 attributes) dwarfs maxCount; the bound only
  // guards against a table edit that shrinks it.
  for (let tries = 0; out.length < count && tries < 200 * count; tries++) {
    const attribute = !determined && rng.random() < 0.5 ? pick(ATTRIBUTES[kind]) : '';
    const subject = attribute ? `${indefiniteArticle(attribute)} ${attribute} ${concept.trim().replace(/\s+/g, ' ')}` : plain;
    const shape = pick(SHAPES);
    const depiction = pick(DEPICTIONS);
    const situation = pick(SITUATIONS[kind]);
    const light = pick(LIGHTING);
    const slots: Readonly<Record<string, string>> = { D: depiction, S: subject, X: situation, L: light };
    const sentence = shape.replace(/\b[DSXL]\b/g, (slot) => slots[slot]!);
    if (seen.has(sentence)) continue;
    seen.add(sentence);
    out.push(sentence);
  }
  if (out.length < count) throw new P2pzError('E_INTERNAL', `Only ${out.length} distinct sentences could be made for "${concept}".`);
  return out;
}

/**
 * Banks for an edit source → target: each concept's own bank, from its own kind's templates and its
 * own seed (the paper's banks were written independently per concept too).
 */
export function sentenceBankPair(source: string, target: string, options: Omit<SentenceBankOptions, 'kind'> = {}): { source: string[]; target: string[] } {
  return { source: sentenceBank(source, options), target: sentenceBank(target, options) };
}

/**
 * The banks p2pz used before each concept got its own: the same shuffled depiction × situation ×
 * lighting combinations for both words, so that they differ only in the word. Kept to measure the
 * difference (docs/BENCHMARKS.md, "banks") and to reproduce earlier directions.
 */
export function parallelSentenceBankPair(source: string, target: string, options: Omit<SentenceBankOptions, 'kind'> = {}): { source: string[]; target: string[] } {
  const ks = conceptKind(source);
  const kind = ks === conceptKind(target) ? ks : 'object';
  const count = options.count ?? SENTENCE_BANK_DEFAULTS.count;
  const situations = SITUATIONS[kind];
  const depictions = ['', ...DEPICTIONS.slice(0, 18)];
  const lights = ['', ...LIGHTING.slice(0, 7)];
  const total = depictions.length * situations.length * lights.length;
  if (!Number.isInteger(count) || count < 1 || count > total) throw new P2pzError('E_BAD_REQUEST', `A parallel bank holds 1 to ${total} sentences, not ${count}.`);
  const order = new Rng(options.seed ?? SENTENCE_BANK_DEFAULTS.seed).shuffle(Array.from({ length: total }, (_, i) => i));
  const bank = (word: string): string[] => {
    const subject = subjectPhrase(checkedConcept(word));
    return order.slice(0, count).map((index) => {
      const light = lights[index % lights.length]!;
      const rest = Math.floor(index / lights.length);
      const situation = situations[rest % situations.length]!;
      const depiction = depictions[Math.floor(rest / situations.length)]!;
      const head = depiction ? `${depiction} ${subject}` : subject;
      return light ? `${head} ${situation}, ${light}` : `${head} ${situation}`;
    });
  };
  return { source: bank(source), target: bank(target) };
}

function badBank(detail: string): P2pzError {
  return new P2pzError('E_BAD_REQUEST', `The sentence file ${detail}`, 'Use a UTF-8 text file with one sentence per line.');
}

/**
 * A user's sentence bank: a UTF-8 text file, one sentence per line. Lines are trimmed (inner
 * whitespace collapsed); blank lines and repeats (ignoring case, as CLIP does) are dropped.
 * Limits: SENTENCE_BANK_LIMITS. Errors are E_BAD_REQUEST and never name the path.
 */
export async function loadUserBank(path: string): Promise<string[]> {
  const L = SENTENCE_BANK_LIMITS;
  let bytes: Uint8Array;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw badBank('is not a regular file.');
    if (info.size > L.maxFileBytes) throw badBank(`is larger than ${L.maxFileBytes} bytes.`);
    bytes = await readFile(path);
  } catch (err) {
    if (err instanceof P2pzError) throw err;
    throw badBank('could not be read.');
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw badBank('is not UTF-8 text.');
  }
  if (text.includes('\u0000')) throw badBank('is not a text file.');
  const seen = new Set<string>();
  const sentences: string[] = [];
  const lines = text.split(/\r\n|\n|\r/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\s+/g, ' ').trim();
    if (line === '') continue;
    if (line.length > L.maxSentenceChars) throw badBank(`has a line longer than ${L.maxSentenceChars} characters (line ${i + 1}).`);
    const key = line.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    sentences.push(line);
    if (sentences.length > L.maxSentences) throw badBank(`has more than ${L.maxSentences} sentences.`);
  }
  if (sentences.length === 0) throw badBank('holds no sentences.');
  return sentences;
}
