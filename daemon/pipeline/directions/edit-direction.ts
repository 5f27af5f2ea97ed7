// The edit direction Δ of pix2pix-zero (docs/DESIGN.md §3 step 3): Δ = mean over the target bank of the
// text encoder's [T,D] output − the same mean over the source bank. Δ is cached on disk per
// (text encoder, tokenizer, banks): the key is a SHA-256 of the text encoder's files, the tokenizer's
// files and the sentences, and the value a [1,T,D] float32 .npy; the last few are also kept in
// memory, for a long-lived worker without a cache folder. The edit embedding is then
// e_edit = e_c + s·Δ on all T positions.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { P2pzError } from '../../../shared/protocol/index.js';
import { componentHash, fileHash, MODEL_LAYOUT, type TextModel } from '../diffusion-model.js';
import { decodeNpy, encodeNpy } from '../dump/npy.js';
import type { ModelSessions } from '../context.js';
import { encodeTokenIds, tokenizeAll } from '../text/text-encoder.js';

export const EDIT_DIRECTION_DEFAULTS = Object.freeze({
  /** Version of the cache key's recipe: bumped when Δ is computed differently. */
  cacheVersion: 1,
  /** Directions kept in memory per process (77·768 floats = 236 KB each for SD 1.x). */
  memoryEntries: 16,
});

const remembered = new Map<string, Float32Array>();

function remember(key: string, delta: Float32Array): void {
  remembered.delete(key);
  remembered.set(key, delta);
  while (remembered.size > EDIT_DIRECTION_DEFAULTS.memoryEntries) {
    const oldest = remembered.keys().next().value;
    if (oldest === undefined) break;
    remembered.delete(oldest);
  }
}

export interface SentenceBanks {
  readonly source: readonly string[];
  readonly target: readonly string[];
}

export interface EditDirection {
  /** Δ, [T,D] float32 (the dump stores it as [1,T,D]). */
  readonly delta: Float32Array;
  readonly tokens: number;
  readonly width: number;
  /** The cache key (hex). */
  readonly key: string;
  /** True when Δ came from the cache and the text encoder did not run. */
  readonly cached: boolean;
}

export interface EditDirectionOptions {
  /** Skip the in-memory copy (tests of the disk cache; a fresh process). */
  readonly skipMemory?: boolean;
  /** Folder of the disk cache; no caching without it. */
  readonly cacheDir?: string;
  readonly signal?: AbortSignal;
  /** Sentences encoded so far, of all (both banks). */
  readonly onProgress?: (done: number, total: number) => void;
}

/** The cache key of Δ for these banks and this model's text encoder and tokenizer. */
export async function editDirectionKey(models: ModelSessions, model: TextModel, banks: SentenceBanks): Promise<string> {
  const h = createHash('sha256');
  h.update(`p2pz.direction.v${EDIT_DIRECTION_DEFAULTS.cacheVersion}\n`);
  h.update(await componentHash(models, model.paths.textEncoder));
  for (const f of ['vocab.json', 'merges.txt']) h.update(await fileHash(await models.resolve(join(model.folder, MODEL_LAYOUT.tokenizer, f))));
  h.update(JSON.stringify({ source: banks.source, target: banks.target }));
  return h.digest('hex');
}

/**
 * Mean of E_text over a bank: μ[t,d] = (1/N) Σ_n E(s_n)[t,d], [T,D] (float64 sums).
 */
async function bankMean(
  models: ModelSessions, model: TextModel, sentences: readonly string[], done: number, total: number, options: EditDirectionOptions,
): Promise<Float64Array> {
  const ids = tokenizeAll(model, sentences);
  const T = ids[0]!.length;
  const D = model.textWidth;
  const sum = new Float64Array(T * D);
  const chunk = 64;
  for (let start = 0; start < ids.length; start += chunk) {
    options.signal?.throwIfAborted();
    const e = await encodeTokenIds(models, model, ids.slice(start, start + chunk));
    for (let r = 0; r < e.dims[0]; r++) {
      const off = r * T * D;
      for (let i = 0; i < T * D; i++) sum[i] = sum[i]! + e.data[off + i]!;
    }
    options.onProgress?.(done + Math.min(start + chunk, ids.length), total);
  }
  for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! / ids.length;
  return sum;
}

/** Δ = mean_target − mean_source, [T,D]; from the disk cache when present. */
export async function editDirection(
  models: ModelSessions, model: TextModel, banks: SentenceBanks, options: EditDirectionOptions = {},
): Promise<EditDirection> {
  if (banks.source.length === 0 || banks.target.length === 0) throw new P2pzError('E_BAD_REQUEST', 'Both sentence banks need at least one sentence.');
  const key = await editDirectionKey(models, model, banks);
  const T = model.tokenizer.maxLength;
  const D = model.textWidth;
  const inMemory = remembered.get(key);
  if (inMemory && inMemory.length === T * D && !options.skipMemory) {
    remember(key, inMemory);
    return { delta: inMemory.slice(), tokens: T, width: D, key, cached: true };
  }
  const file = options.cacheDir === undefined ? undefined : join(options.cacheDir, `${key}.npy`);
  if (file !== undefined) {
    try {
      const arr = decodeNpy(await readFile(file));
      if (arr.data instanceof Float32Array && arr.shape.join(',') === `1,${T},${D}`) {
        remember(key, arr.data.slice());
        return { delta: arr.data, tokens: T, width: D, key, cached: true };
      }
    } catch {
      // absent or unreadable: compute it again
    }
  }
  const total = banks.source.length + banks.target.length;
  const source = await bankMean(models, model, banks.source, 0, total, options);
  const target = await bankMean(models, model, banks.target, banks.source.length, total, options);
  const delta = new Float32Array(T * D);
  for (let i = 0; i < delta.length; i++) delta[i] = target[i]! - source[i]!;
  remember(key, delta.slice());
  if (file !== undefined && options.cacheDir !== undefined) {
    try {
      await mkdir(options.cacheDir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, encodeNpy(delta, [1, T, D]));
      await rename(tmp, file);
    } catch {
      // a cache that cannot be written only costs time next run
    }
  }
  return { delta, tokens: T, width: D, key, cached: false };
}

/** e_edit = e_c + s·Δ on all positions; e_c [1,T,D], Δ [T,D] → [1,T,D]. */
export function editEmbedding(caption: Float32Array, delta: Float32Array, scale: number): Float32Array {
  if (caption.length !== delta.length) throw new P2pzError('E_INTERNAL', 'The caption embedding and Δ differ in size.');
  const out = new Float32Array(caption.length);
  for (let i = 0; i < out.length; i++) out[i] = caption[i]! + scale * delta[i]!;
  return out;
}
