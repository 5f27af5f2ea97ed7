import { describe, expect, it } from 'vitest';
import { SD1_SCHEDULER_CONFIG, schedulerConfigJson } from '../../../../daemon/onnx/tiny/scheduler-config.js';
import { TOKENIZER_WORDS, bytesToUnicode, tokenizerFiles } from '../../../../daemon/onnx/tiny/tokenizer-files.js';

const files = tokenizerFiles();
const vocab = JSON.parse(files['vocab.json']) as Record<string, number>;
const mergeLines = files['merges.txt'].trimEnd().split('\n');

/** CLIP's reference BPE (openai/CLIP simple_tokenizer.py), transcribed independently of the writer. */
function clipEncode(text: string): number[] {
  const ranks = new Map(mergeLines.slice(1).map((l, i) => [l, i]));
  const { bytes, symbols } = bytesToUnicode();
  const enc = new Map(bytes.map((b, i) => [b, symbols[i] as string]));
  const pat = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;
  const out: number[] = [];
  for (const token of text.toLowerCase().replace(/\s+/g, ' ').trim().match(pat) ?? []) {
    // The reference BPE cache maps the two special tokens to themselves.
    if (token === '<|startoftext|>' || token === '<|endoftext|>') {
      out.push(vocab[token] as number);
      continue;
    }
    const chars = [...new TextEncoder().encode(token)].map((b) => enc.get(b) as string);
    let word = [...chars.slice(0, -1), `${chars[chars.length - 1]}</w>`];
    while (word.length > 1) {
      let best: [string, string] | undefined;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const r = ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = [word[i] as string, word[i + 1] as string];
        }
      }
      if (!best) break;
      const next: string[] = [];
      for (let i = 0; i < word.length; ) {
        if (word[i] === best[0] && word[i + 1] === best[1] && i + 1 < word.length) {
          next.push(best[0] + best[1]);
          i += 2;
        } else next.push(word[i++] as string);
      }
      word = next;
    }
    for (const w of word) {
      const id = vocab[w];
      if (id === undefined) throw new Error(`no id for ${w}`);
      out.push(id);
    }
  }
  return out;
}

describe('CLIP tokenizer files', () => {
  it("lay out the vocabulary as CLIP's: bytes, bytes with </w>, merges, then the two special tokens", () => {
    const size = Object.keys(vocab).length;
    expect(vocab['!']).toBe(0);
    expect(vocab['~']).toBe(93);
    expect(vocab['Ā']).toBe(188); // byte 0 maps to U+0100, the first non-printable byte symbol
    expect(vocab['!</w>']).toBe(256);
    expect(vocab['a</w>']).toBe(256 + 64);
    expect(vocab['<|startoftext|>']).toBe(size - 2);
    expect(vocab['<|endoftext|>']).toBe(size - 1);
    expect(size).toBe(512 + mergeLines.length - 1 + 2);
    expect(mergeLines[0]).toBe('#version: 0.2');
    // A few hundred merges.
    expect(mergeLines.length - 1).toBeGreaterThan(200);
    expect(mergeLines.length - 1).toBeLessThan(1000);
    // Each merge's result has the id 512 + its rank.
    const [l, r] = (mergeLines[1] as string).split(' ') as [string, string];
    expect(vocab[l + r]).toBe(512);
  });

  it('encode every listed word as one token under the reference BPE', () => {
    for (const w of TOKENIZER_WORDS) expect(clipEncode(w), w).toEqual([vocab[`${w}</w>`]]);
    expect(clipEncode('A  photo of a CAT')).toEqual(['a', 'photo', 'of', 'a', 'cat'].map((w) => vocab[`${w}</w>`]));
    expect(clipEncode('<|startoftext|>zebra<|endoftext|>')).toEqual([vocab['<|startoftext|>'], vocab['zebra</w>'], vocab['<|endoftext|>']]);
  });

  it('still encode words outside the list, byte by byte at worst', () => {
    const x = clipEncode('xylophone, 42!');
    expect(x.length).toBeGreaterThan(3);
    expect(x.every((id) => id >= 0 && id < Object.keys(vocab).length - 2)).toBe(true);
  });

  it('are reproducible and use the SD 1.x special-token configuration', () => {
    expect(tokenizerFiles()).toEqual(files);
    const config = JSON.parse(files['tokenizer_config.json']) as Record<string, unknown>;
    expect(config).toMatchObject({ model_max_length: 77, do_lower_case: true, pad_token: '<|endoftext|>', tokenizer_class: 'CLIPTokenizer' });
    const special = JSON.parse(files['special_tokens_map.json']) as Record<string, unknown>;
    expect(special).toMatchObject({ bos_token: { content: '<|startoftext|>' }, eos_token: { content: '<|endoftext|>' }, pad_token: '<|endoftext|>' });
  });
});

describe('scheduler config', () => {
  it("holds SD 1.x's schedule", () => {
    expect(JSON.parse(schedulerConfigJson())).toEqual(SD1_SCHEDULER_CONFIG);
    expect(SD1_SCHEDULER_CONFIG).toMatchObject({
      beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, num_train_timesteps: 1000, steps_offset: 1,
      set_alpha_to_one: false, clip_sample: false, prediction_type: 'epsilon',
    });
  });
});
