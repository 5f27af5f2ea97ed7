// Reuse of inversions (issue item 7): z_T depends only on the image, the model, the caption, the
// steps, the seed and the regularization and working-size settings — not on the direction — so a
// second edit of the same layer in another direction skips the inversion. Entries live in a bounded
// in-memory LRU and, when a folder is given, as [1,4,h,w] .npy files named by the key's SHA-256.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeNpy, encodeNpy } from './dump/npy.js';

export const INVERSION_CACHE_DEFAULTS = Object.freeze({
  /** Inverted latents kept in memory (64 KB each at 512×512). */
  maxEntries: 32,
});

/** Everything z_T depends on. */
export interface InversionKeyParts {
  readonly imageSha256: string;
  /** Identity of the UNet, the VAE encoder and the text encoder (hashes). */
  readonly model: string;
  readonly caption: string;
  readonly steps: number;
  readonly seed: number;
  readonly regSteps: number;
  readonly regularization: { readonly inner: number; readonly lambdaAc: number; readonly lambdaKl: number };
  readonly size: readonly [number, number];
  readonly vaeLatent: string;
}

export function inversionKey(parts: InversionKeyParts): string {
  return createHash('sha256').update(`p2pz.inversion.v1\n${JSON.stringify(parts)}`).digest('hex');
}

export interface InversionCacheOptions {
  readonly maxEntries?: number;
  /** Folder of the disk copy; memory only without it. */
  readonly dir?: string;
}

export class InversionCache {
  readonly #max: number;
  readonly #dir: string | undefined;
  readonly #entries = new Map<string, Float32Array>();
  hits = 0;
  misses = 0;

  constructor(options: InversionCacheOptions = {}) {
    this.#max = options.maxEntries ?? INVERSION_CACHE_DEFAULTS.maxEntries;
    this.#dir = options.dir;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** z_T for the key, or undefined; `length` is the expected element count. */
  async get(key: string, length: number): Promise<Float32Array | undefined> {
    const entry = this.#entries.get(key);
    if (entry && entry.length === length) {
      this.#entries.delete(key);
      this.#entries.set(key, entry);
      this.hits++;
      return entry.slice();
    }
    if (this.#dir !== undefined) {
      try {
        const arr = decodeNpy(await readFile(join(this.#dir, `${key}.npy`)));
        if (arr.data instanceof Float32Array && arr.data.length === length) {
          this.#remember(key, arr.data);
          this.hits++;
          return arr.data.slice();
        }
      } catch {
        // not on disk
      }
    }
    this.misses++;
    return undefined;
  }

  async set(key: string, zT: Float32Array, dims: readonly number[]): Promise<void> {
    this.#remember(key, zT.slice());
    if (this.#dir === undefined) return;
    try {
      await mkdir(this.#dir, { recursive: true });
      const file = join(this.#dir, `${key}.npy`);
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, encodeNpy(zT, dims));
      await rename(tmp, file);
    } catch {
      // the memory copy still serves this process
    }
  }

  #remember(key: string, value: Float32Array): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
  }
}
