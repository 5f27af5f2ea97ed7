// The replay record of `p2pz edit --dump DIR` (docs/DUMP.md): every intermediate of a full edit as .npy
// (float32 little-endian, C order; ids int64), the sentence banks as text, the roll offsets as JSON
// and `meta.json`. A PyTorch replay reads these to compare step by step. File names follow docs/DUMP.md
// exactly; `k` is written with three digits.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { encodeNpy, type NpyData } from './npy.js';

/** `meta.json` (docs/DUMP.md), the schema a reader parses it with. */
export const DumpMeta = z.object({
  steps: z.number().int().positive(),
  /** Sampler order, high → low. */
  timesteps: z.array(z.number().int()),
  /** Inversion order, low → high. */
  inversion_timesteps: z.array(z.number().int()),
  cfg: z.number(),
  xa: z.number(),
  reg_steps: z.number().int().nonnegative(),
  ac_rolls: z.number().int().nonnegative(),
  lambda_ac: z.number(),
  lambda_kl: z.number(),
  edit_scale: z.number(),
  seed: z.number().int(),
  /** Working size [H, W] in pixels. */
  size: z.tuple([z.number().int().positive(), z.number().int().positive()]),
  latent_scale: z.number(),
  vae_latent: z.enum(['mean', 'sample']),
  caption: z.string(),
  source: z.string(),
  target: z.string(),
});
export type DumpMeta = z.infer<typeof DumpMeta>;

/** Step index as docs/DUMP.md writes it: 000, 001, … */
export function stepName(k: number): string {
  return String(k).padStart(3, '0');
}

/** Receives the pipeline's intermediates; `null` (no dump) costs nothing. */
export interface DumpSink {
  array(name: string, data: NpyData, shape: readonly number[]): Promise<void>;
  json(name: string, value: unknown): Promise<void>;
  text(name: string, lines: readonly string[]): Promise<void>;
}

/** Writes a dump into `dir` (created; existing files of the same names are replaced). */
export class DumpWriter implements DumpSink {
  readonly dir: string;
  readonly #made = new Set<string>();

  constructor(dir: string) {
    this.dir = dir;
  }

  async #write(name: string, bytes: Uint8Array | string): Promise<void> {
    const path = join(this.dir, name);
    const folder = dirname(path);
    if (!this.#made.has(folder)) {
      await mkdir(folder, { recursive: true });
      this.#made.add(folder);
    }
    await writeFile(path, bytes);
  }

  array(name: string, data: NpyData, shape: readonly number[]): Promise<void> {
    return this.#write(name, encodeNpy(data, shape));
  }

  json(name: string, value: unknown): Promise<void> {
    return this.#write(name, `${JSON.stringify(value)}\n`);
  }

  text(name: string, lines: readonly string[]): Promise<void> {
    return this.#write(name, lines.map((l) => `${l.replace(/[\r\n]+/g, ' ')}\n`).join(''));
  }
}
