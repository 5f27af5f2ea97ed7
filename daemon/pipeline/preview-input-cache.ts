// The GAN preview's decoded inputs, kept for the next preview of the same image. A designer tries
// several directions (or seeds, or generators) on one layer, and the panel uploads that layer once
// (plugin/ui/job-runner.ts); each preview would decode the same PNG and convert it to the same tensor
// again, ≈ 7 ms and 1–10 ms at 512² on the 2-core machine (docs/BENCHMARKS.md "daemon"), more than
// the service may add. Entries are keyed by the SHA-256 of the encoded bytes (equal bytes decode to
// equal pixels, whoever sent them), hold the decoded image and its tensors per working size, and are
// bounded in bytes, least recently used first out. An upload is also decoded ahead of its preview, in the
// worker's idle time (pipeline/gan-prefetch.ts): a preview that asks while that decode is under way
// waits for it (`decoded`) instead of decoding the same bytes a second time.
import { createHash } from 'node:crypto';

export const PREVIEW_INPUT_CACHE_DEFAULTS = Object.freeze({
  /** Bytes of pixels and tensors kept (a 512² photo with its 512² tensor: ≈ 3.8 MiB). */
  maxBytes: 32 * 1024 * 1024,
});

/** A decoded input: the pipeline's pixel form (image/decode.ts) and its generator tensors. */
export interface PreviewInput {
  readonly width: number;
  readonly height: number;
  /** HWC sRGB, 3 channels. */
  readonly rgb: Uint8Array;
  readonly alpha: Uint8Array | null;
  /** The file's own size when it was decoded scaled down to the output budget (image/decode.ts). */
  readonly source?: { readonly width: number; readonly height: number };
  /** x = rgb/127.5 − 1, NCHW [1,3,h,w], by working size "w×h". */
  readonly tensors: Map<string, Float32Array>;
}

/** Keys already computed, by the bytes' object (a job's image is never written to). */
const keys = new WeakMap<Uint8Array, string>();

/** The cache key of encoded image bytes (SHA-256, ≈ 1 ms for a 512² photo's PNG; once per object). */
export function previewInputKey(image: Uint8Array): string {
  let key = keys.get(image);
  if (key === undefined) {
    key = createHash('sha256').update(image).digest('hex');
    keys.set(image, key);
  }
  return key;
}

/** How a preview's input was found: decoded by the caller now, kept from before (an earlier preview or
 *  a prefetch), or decoded by a prefetch that was under way when it asked. */
export type PreviewInputSource = 'decoded' | 'kept' | 'joined';

export class PreviewInputCache {
  readonly #maxBytes: number;
  readonly #entries = new Map<string, PreviewInput>();
  /** Decodes under way, by key: a second caller waits for the first. */
  readonly #pending = new Map<string, Promise<PreviewInput>>();
  #bytes = 0;
  hits = 0;
  misses = 0;

  constructor(options: { readonly maxBytes?: number } = {}) {
    this.#maxBytes = options.maxBytes ?? PREVIEW_INPUT_CACHE_DEFAULTS.maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The input for `key`, now the most recently used; undefined when not kept. */
  get(key: string): PreviewInput | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry;
  }

  /** Whether `key` is kept or being decoded (no effect on the use order or the counts). */
  has(key: string): boolean {
    return this.#entries.has(key) || this.#pending.has(key);
  }

  /** The input for `key`: kept, or being decoded by another caller (then its result), else decoded now
   *  by `decode` and kept. A decode that fails keeps nothing; a caller that waited for another's
   *  decode that failed (or gave up) decodes the bytes itself, so each caller gets its own error. */
  async decoded(key: string, decode: () => Promise<Omit<PreviewInput, 'tensors'>>): Promise<{ input: PreviewInput; source: PreviewInputSource }> {
    for (;;) {
      const kept = this.get(key);
      if (kept !== undefined) return { input: kept, source: 'kept' };
      const pending = this.#pending.get(key);
      if (pending === undefined) break;
      try {
        return { input: await pending, source: 'joined' };
      } catch {
        if (this.#pending.get(key) === pending) this.#pending.delete(key);
      }
    }
    const decoding = decode().then((pixels) => this.set(key, pixels));
    this.#pending.set(key, decoding);
    try {
      return { input: await decoding, source: 'decoded' };
    } finally {
      if (this.#pending.get(key) === decoding) this.#pending.delete(key);
    }
  }

  /** Keeps a decoded input (an image larger than the whole budget is not kept). */
  set(key: string, input: Omit<PreviewInput, 'tensors'>): PreviewInput {
    this.#remove(key);
    const entry: PreviewInput = { ...input, tensors: new Map() };
    if (sizeOf(entry) > this.#maxBytes) return entry;
    this.#entries.set(key, entry);
    this.#bytes += sizeOf(entry);
    this.#evict(key);
    return entry;
  }

  /** The tensor of `entry` at w×h, made by `make` once and then kept with the entry. */
  async tensor(entry: PreviewInput, width: number, height: number, make: () => Promise<Float32Array>): Promise<Float32Array> {
    const size = `${width}×${height}`;
    const kept = entry.tensors.get(size);
    if (kept !== undefined) return kept;
    const tensor = await make();
    const key = [...this.#entries].find(([, e]) => e === entry)?.[0];
    if (key === undefined || sizeOf(entry) + tensor.byteLength > this.#maxBytes) return tensor;
    entry.tensors.set(size, tensor);
    this.#bytes += tensor.byteLength;
    this.#evict(key);
    return tensor;
  }

  #remove(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= sizeOf(entry);
  }

  /** Drops the least recently used entries (never `keep`) until the budget holds. */
  #evict(keep: string): void {
    for (const key of [...this.#entries.keys()]) {
      if (this.#bytes <= this.#maxBytes) return;
      if (key !== keep) this.#remove(key);
    }
  }
}

function sizeOf(entry: PreviewInput): number {
  let bytes = entry.rgb.byteLength + (entry.alpha?.byteLength ?? 0);
  for (const t of entry.tensors.values()) bytes += t.byteLength;
  return bytes;
}

/** The worker's one cache (a process runs one job at a time). */
export const sharedPreviewInputCache = new PreviewInputCache();
