// Test helpers for the pix2pix-zero pipeline: a generated tiny Stable Diffusion folder in a temporary
// models directory (either exporter flavour), sessions over it that count every run per model file,
// and a small non-square RGBA PNG with transparent and opaque regions.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import sharp from 'sharp';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import type { Flavour } from '../../../daemon/onnx/tiny/layers.js';
import type { ModelSessions } from '../../../daemon/pipeline/context.js';
import { SessionCache } from '../../../daemon/worker/sessions.js';

export const MODEL_NAME = 'tiny-sd';

export interface TinyModels {
  readonly root: string;
  readonly modelDir: string;
  readonly sessions: SessionCache;
  /** Sessions that count runs per path as given (relative to the models directory, or absolute). */
  readonly counting: ModelSessions & { readonly runs: Map<string, number>; count(part: string): number; reset(): void };
  dispose(): Promise<void>;
}

export async function tinyModels(flavour: Flavour): Promise<TinyModels> {
  const root = await mkdtemp(join(tmpdir(), `p2pz-pipeline-${flavour}-`));
  const modelDir = join(root, MODEL_NAME);
  await writeTinyStableDiffusion(modelDir, { flavour });
  const sessions = new SessionCache({ modelsDir: root, executionProviders: ['cpu'], maxSessions: 8 });
  const runs = new Map<string, number>();
  const counting = {
    modelsDir: root,
    runs,
    resolve: (path: string) => sessions.resolve(path),
    get: (path: string) => sessions.get(path),
    run: (path: string, feeds: InferenceSession.FeedsType) => {
      runs.set(path, (runs.get(path) ?? 0) + 1);
      return sessions.run(path, feeds);
    },
    /** Runs of every path containing `part`. */
    count: (part: string) => [...runs].filter(([p]) => p.includes(part)).reduce((a, [, n]) => a + n, 0),
    reset: () => runs.clear(),
  };
  return {
    root, modelDir, sessions, counting,
    dispose: async () => {
      await sessions.releaseAll();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** A W×H RGBA PNG: a colour gradient, alpha 0 in the left columns, 128 in a band, 255 elsewhere. */
export async function rgbaPng(width = 70, height = 45): Promise<{ png: Buffer; raw: Buffer }> {
  const raw = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = 4 * (y * width + x);
      raw[i] = (x * 255) / (width - 1);
      raw[i + 1] = (y * 255) / (height - 1);
      raw[i + 2] = (x * y) % 256;
      raw[i + 3] = x < 8 ? 0 : y < 6 ? 128 : 255;
    }
  }
  const png = await sharp(raw, { raw: { width, height, channels: 4 } }).png().toBuffer();
  return { png, raw };
}

/** Decodes a PNG to raw pixels with its channel count. */
export async function pixels(png: Uint8Array): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const gray = (await sharp(png).metadata()).channels === 1;
  // A one-channel PNG is read as b-w, or libvips hands back three channels.
  const { data, info } = await (gray ? sharp(png).toColourspace('b-w') : sharp(png)).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}
