// The files of a model's `tokenizer/` folder (docs/DESIGN.md §2) and their schemas: vocab.json,
// merges.txt, and the special tokens from special_tokens_map.json / tokenizer_config.json. Reading is
// bounded in size; anything malformed is E_MODEL_INVALID naming the file, a missing required file
// E_MODEL_MISSING.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { P2pzError } from '../../../shared/protocol/index.js';

export const TOKENIZER_FILE_LIMITS = Object.freeze({
  /** vocab.json of CLIP is ~1.6 MB. */
  maxVocabBytes: 16 * 1024 * 1024,
  /** merges.txt of CLIP is ~0.5 MB. */
  maxMergesBytes: 16 * 1024 * 1024,
  /** tokenizer_config.json / special_tokens_map.json. */
  maxConfigBytes: 1024 * 1024,
});

/** vocab.json: token → id. */
export const VocabJson = z.record(z.string(), z.number().int().min(0).max(10_000_000));
export type VocabJson = z.infer<typeof VocabJson>;

/** A special token as transformers writes it: a string, or an AddedToken object with `content`. */
const SpecialToken = z.union([z.string().min(1).max(256), z.object({ content: z.string().min(1).max(256) }).transform((t) => t.content)]);

/** The special-token fields shared by special_tokens_map.json and tokenizer_config.json. */
export const SpecialTokensJson = z.object({
  bos_token: SpecialToken.nullish(),
  eos_token: SpecialToken.nullish(),
  unk_token: SpecialToken.nullish(),
  pad_token: SpecialToken.nullish(),
});
export type SpecialTokensJson = z.infer<typeof SpecialTokensJson>;

/** Everything the tokenizer is built from. */
export interface TokenizerFiles {
  readonly vocab: VocabJson;
  readonly mergesText: string;
  /** special_tokens_map.json fields, falling back to tokenizer_config.json's, field by field. */
  readonly specialTokens: SpecialTokensJson;
}

async function readBounded(file: string, maxBytes: number, name: string, required: boolean): Promise<string | null> {
  let size: number;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new P2pzError('E_MODEL_INVALID', `tokenizer/${name} is not a regular file.`);
    size = info.size;
  } catch (err) {
    if (err instanceof P2pzError) throw err;
    if (!required) return null;
    throw new P2pzError('E_MODEL_MISSING', `The tokenizer file tokenizer/${name} is missing.`);
  }
  if (size > maxBytes) throw new P2pzError('E_MODEL_INVALID', `tokenizer/${name} is larger than ${maxBytes} bytes.`);
  return readFile(file, 'utf8');
}

function parseJson<T>(text: string, schema: z.ZodType<T>, name: string): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new P2pzError('E_MODEL_INVALID', `tokenizer/${name} is not valid JSON.`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new P2pzError('E_MODEL_INVALID', `tokenizer/${name}: ${issue?.path.join('.') || 'value'}: ${issue?.message ?? 'invalid'}.`);
  }
  return parsed.data;
}

/** Reads `dir/vocab.json`, `dir/merges.txt` and the optional special-token files. */
export async function readTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  const L = TOKENIZER_FILE_LIMITS;
  const [vocabText, mergesText, mapText, configText] = await Promise.all([
    readBounded(join(dir, 'vocab.json'), L.maxVocabBytes, 'vocab.json', true),
    readBounded(join(dir, 'merges.txt'), L.maxMergesBytes, 'merges.txt', true),
    readBounded(join(dir, 'special_tokens_map.json'), L.maxConfigBytes, 'special_tokens_map.json', false),
    readBounded(join(dir, 'tokenizer_config.json'), L.maxConfigBytes, 'tokenizer_config.json', false),
  ]);
  const vocab = parseJson(vocabText ?? '', VocabJson, 'vocab.json');
  const fromMap = mapText === null ? {} : parseJson(mapText, SpecialTokensJson, 'special_tokens_map.json');
  const fromConfig = configText === null ? {} : parseJson(configText, SpecialTokensJson, 'tokenizer_config.json');
  const pick = (k: keyof SpecialTokensJson): string | undefined => fromMap[k] ?? fromConfig[k] ?? undefined;
  const specialTokens: SpecialTokensJson = {
    bos_token: pick('bos_token'),
    eos_token: pick('eos_token'),
    unk_token: pick('unk_token'),
    pad_token: pick('pad_token'),
  };
  return { vocab, mergesText: mergesText ?? '', specialTokens };
}
