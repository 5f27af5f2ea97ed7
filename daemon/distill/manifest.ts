// The pairs dataset's manifest (DATASET/manifest.json): what `p2pz distill pairs` made, with which
// model and settings, and one entry per source image — kept, dropped by the filter (with the reason
// and the measurements), or failed (with the error code). It is read back to resume an interrupted
// run and by the trainer (models/distill/p2pz_distill/dataset.py); both parse it against this schema.
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { Concept, ErrorCodeSchema, P2pzError } from '../../shared/protocol/index.js';

export const MANIFEST_DEFAULTS = Object.freeze({
  file: 'manifest.json',
  /** Folder of the PNGs inside the dataset. */
  pairsFolder: 'pairs',
  /** A manifest of 100 000 pairs is about 60 MB; refuse anything much larger. */
  maxBytes: 256 * 1024 * 1024,
});

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256 in hex');
/** A file inside the dataset folder: `pairs/<id>.<role>.png`. */
const PairFile = z.string().regex(/^pairs\/[0-9a-f]{16}\.(input|output|mask)\.png$/);

/** Why the filter dropped a pair (filter.ts documents each). */
export const DropReason = z.enum(['mask-empty', 'negligible-change', 'excessive-change']);
export type DropReason = z.infer<typeof DropReason>;

/** The filter's thresholds (filter.ts: PAIR_FILTER_DEFAULTS). */
export const PairFilter = z.object({
  maskThreshold: z.number().int().min(1).max(255),
  minMaskCoverage: z.number().min(0).max(1),
  minChange: z.number().min(0).max(1),
  maxChange: z.number().min(0).max(1),
});
export type PairFilter = z.infer<typeof PairFilter>;

/** What the filter measures on a pair. */
export const PairMetrics = z.object({
  /** Fraction of attention-mask pixels ≥ maskThreshold. */
  maskCoverage: z.number().min(0).max(1),
  /** mean |y − x| over all RGB values, in [0,1]. */
  change: z.number().min(0).max(1),
});
export type PairMetrics = z.infer<typeof PairMetrics>;

const PairFiles = z.object({
  input: PairFile,
  output: PairFile,
  mask: PairFile,
  inputHash: Sha256Hex,
  outputHash: Sha256Hex,
  maskHash: Sha256Hex,
  /** Working size of the pair (both PNGs). */
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  metrics: PairMetrics,
  /** Wall time of the edit. */
  seconds: z.number().nonnegative(),
});

export const PairEntry = z.discriminatedUnion('status', [
  z.object({ status: z.literal('kept'), name: z.string().min(1).max(255), sourceHash: Sha256Hex, ...PairFiles.shape }),
  z.object({ status: z.literal('dropped'), name: z.string().min(1).max(255), sourceHash: Sha256Hex, reason: DropReason, ...PairFiles.shape }),
  z.object({
    status: z.literal('failed'),
    name: z.string().min(1).max(255),
    /** Absent when the file could not be read. */
    sourceHash: Sha256Hex.optional(),
    error: z.object({ code: ErrorCodeSchema, message: z.string().max(2000) }),
  }),
]);
export type PairEntry = z.infer<typeof PairEntry>;

/** The pix2pix-zero settings every pair was made with. */
export const PairsSettings = z.object({
  steps: z.number().int().positive(),
  cfg: z.number(),
  xa: z.number(),
  regSteps: z.number().int().nonnegative(),
  /** Working size (long side, a multiple of 64); the trainer's meta.size. */
  size: z.number().int().positive(),
  editScale: z.number(),
  seed: z.number().int().nonnegative(),
  caption: z.string().optional(),
  vaeLatent: z.enum(['mean', 'sample']),
  bankCount: z.number().int().positive(),
});
export type PairsSettings = z.infer<typeof PairsSettings>;

export const PairsManifest = z.object({
  v: z.literal(1),
  source: Concept,
  target: Concept,
  /** Folder name of the diffusion model and the hash of its four components. */
  model: z.string().min(1).max(100),
  modelHash: Sha256Hex,
  settings: PairsSettings,
  filter: PairFilter,
  pairs: z.array(PairEntry),
});
export type PairsManifest = z.infer<typeof PairsManifest>;

/** The manifest at `path`, or null when there is none. A file that is not a valid manifest is an
 *  error: the folder is not a pairs dataset, and nothing in it is overwritten. */
export async function readPairsManifest(path: string): Promise<PairsManifest | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new P2pzError('E_BAD_REQUEST', 'The dataset manifest could not be read.');
  }
  if (text.length > MANIFEST_DEFAULTS.maxBytes) throw new P2pzError('E_BAD_REQUEST', 'The dataset manifest is too large.');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw notManifest('it is not JSON');
  }
  const parsed = PairsManifest.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw notManifest(`${issue?.path.join('.') || 'root'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/** Replaces the manifest atomically (temporary file, then rename): a crash leaves the old or the new one. */
export async function writePairsManifest(path: string, manifest: PairsManifest): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(PairsManifest.parse(manifest), null, 1)}\n`);
  await rename(tmp, path);
}

function notManifest(why: string): P2pzError {
  return new P2pzError('E_BAD_REQUEST', `The output folder holds a ${MANIFEST_DEFAULTS.file} that is not a pairs manifest (${why}).`, 'Choose an empty or new folder for --out.');
}
