// Helpers for the distillation tests: the trainer's Python (Debian's python3-torch lives under
// /usr/bin/python3; P2PZ_PYTHON overrides), and a small synthetic pairs dataset written through the
// same manifest schema as `p2pz distill pairs`, so that the trainer reads exactly that format.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { PAIR_FILTER_DEFAULTS } from '../../daemon/distill/filter.js';
import { writePairsManifest, type PairEntry } from '../../daemon/distill/manifest.js';

export const PYTHON = process.env['P2PZ_PYTHON'] ?? '/usr/bin/python3';
export const TRAINER = join(import.meta.dirname, '../../models/distill/train.py');
export const DISTILL_DIR = join(import.meta.dirname, '../../models/distill');

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion (never rejects; the exit code is in the result). */
export function runProcess(cmd: string, args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, [...args], { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env }, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** x: a smooth seeded colour pattern; y = its colour channels rotated (R,G,B) → (B,R,G): a learnable,
 *  structure-keeping translation. */
export function syntheticPair(width: number, height: number, k: number): { x: Buffer; y: Buffer } {
  const x = Buffer.alloc(width * height * 3);
  const y = Buffer.alloc(width * height * 3);
  for (let r = 0; r < height; r++)
    for (let c = 0; c < width; c++) {
      const i = (r * width + c) * 3;
      x[i] = Math.round(127.5 + 127.5 * Math.sin((c + 3 * k) / 7));
      x[i + 1] = Math.round(127.5 + 127.5 * Math.cos((r + 5 * k) / 5));
      x[i + 2] = ((c * r + 17 * k) >> 3) & 255;
      y[i] = x[i + 2]!;
      y[i + 1] = x[i]!;
      y[i + 2] = x[i + 1]!;
    }
  return { x, y };
}

/** Writes a pairs dataset of `count` synthetic pairs (width×height, the working size `size`). */
export async function writeSyntheticDataset(root: string, options: { count: number; width: number; height: number; size: number }): Promise<PairEntry[]> {
  await mkdir(join(root, 'pairs'), { recursive: true });
  const pairs: PairEntry[] = [];
  for (let k = 0; k < options.count; k++) {
    const { width, height } = options;
    const { x, y } = syntheticPair(width, height, k);
    const raw = { raw: { width, height, channels: 3 as const } };
    const input = await sharp(x, raw).png({ adaptiveFiltering: true }).toBuffer();
    const output = await sharp(y, raw).png({ adaptiveFiltering: true }).toBuffer();
    const mask = await sharp(Buffer.alloc(width * height, 200), { raw: { width, height, channels: 1 } }).png().toBuffer();
    const id = sha256(Buffer.from(`image${k}.png`)).slice(0, 16);
    for (const [role, bytes] of [['input', input], ['output', output], ['mask', mask]] as const) await writeFile(join(root, `pairs/${id}.${role}.png`), bytes);
    pairs.push({
      status: 'kept',
      name: `image${k}.png`,
      sourceHash: sha256(x),
      input: `pairs/${id}.input.png`,
      output: `pairs/${id}.output.png`,
      mask: `pairs/${id}.mask.png`,
      inputHash: sha256(input),
      outputHash: sha256(output),
      maskHash: sha256(mask),
      width,
      height,
      metrics: { maskCoverage: 1, change: 0.3 },
      seconds: 1,
    });
  }
  // One dropped entry: the trainer must skip it.
  const { status: _kept, ...first } = pairs[0] as Extract<PairEntry, { status: 'kept' }>;
  const dropped: PairEntry = { ...first, status: 'dropped', reason: 'negligible-change', name: 'zz-dropped.png' };
  await writePairsManifest(join(root, 'manifest.json'), {
    v: 1,
    source: 'cat',
    target: 'dog',
    model: 'tiny-sd',
    modelHash: '0'.repeat(64),
    settings: { steps: 2, cfg: 5, xa: 0.1, regSteps: 0, size: options.size, editScale: 1, seed: 42, vaeLatent: 'mean', bankCount: 4 },
    filter: { ...PAIR_FILTER_DEFAULTS },
    pairs: [...pairs, dropped],
  });
  return pairs;
}
