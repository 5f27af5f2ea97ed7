// `p2pz distill pairs`: runs the full pix2pix-zero pipeline over a folder of source images and
// writes a training set for the distilled preview generator (models/distill/):
//   DATASET/manifest.json              manifest.ts: direction, model + hash, settings, filter, entries
//   DATASET/pairs/<id>.input.png       x: the source at the working size (exactly what the pipeline saw)
//   DATASET/pairs/<id>.output.png      y: pix2pix-zero's edit of x, same size
//   DATASET/pairs/<id>.mask.png        the source concept's attention mask, same size
// <id> = the first 16 hex digits of SHA-256(file name). Stages per image: read and hash, resize to the
// working size, edit, measure and judge (filter.ts), write the PNGs, then rewrite the manifest
// atomically. Resumable: an entry whose source hash and files still match is reused (and re-judged
// if the filter changed); failed entries are retried; anything written after the last manifest
// update is redone. Settings, model and direction must match the manifest being resumed.
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { P2pzError, type EditParams } from '../../shared/protocol/index.js';
import { decodeImage } from '../image/decode.js';
import { encodePng } from '../image/encode.js';
import { resizeRgb, workingSize } from '../image/tensor.js';
import { chooseDiffusionModel, componentHash, loadDiffusionModel } from '../pipeline/diffusion-model.js';
import type { SentenceBanks } from '../pipeline/directions/edit-direction.js';
import type { ModelSessions } from '../pipeline/context.js';
import { InversionCache } from '../pipeline/inversion-cache.js';
import { PIX2PIX_ZERO_DEFAULTS, runPix2PixZero, type DeviceMemoryContext, type DiffusionContext } from '../pipeline/pix2pix-zero.js';
import { normalizeConcept } from '../models/gan-meta.js';
import type { VaeLatentMode } from '../pipeline/vae.js';
import { judgePair, pairMetrics, PAIR_FILTER_DEFAULTS } from './filter.js';
import { MANIFEST_DEFAULTS, readPairsManifest, writePairsManifest, type PairEntry, type PairFilter, type PairsManifest, type PairsSettings } from './manifest.js';

export const PAIRS_DEFAULTS = Object.freeze({
  /** Source images are the folder's files with these extensions (not recursive). */
  extensions: ['.png', '.jpg', '.jpeg', '.webp'] as readonly string[],
  /** Most source images in one dataset. */
  maxImages: 100_000,
  /** Largest source file read (the daemon's upload limit). */
  maxImageBytes: 50 * 1024 * 1024,
});

export interface PairsRequest {
  /** Folder of source images. */
  readonly images: string;
  /** Dataset folder (created; resumed when it holds a manifest). */
  readonly out: string;
  /** Direction and pix2pix-zero settings (mask and blend are ignored: the mask is always made, never blended). */
  readonly edit: EditParams;
  /** Model folder name in the models directory (chooseDiffusionModel's default otherwise). */
  readonly model?: string;
  readonly filter?: Partial<PairFilter>;
  readonly banks?: SentenceBanks;
  readonly bankCount?: number;
  readonly vaeLatent?: VaeLatentMode;
}

export interface PairsContext {
  readonly models: ModelSessions;
  /** Stops after the current pipeline step; the manifest keeps every finished pair. */
  readonly signal: AbortSignal;
  readonly directionCacheDir?: string;
  readonly inversionCache?: InversionCache;
  /** The up-front memory check (docs/SECURITY.md §R17) for each edit. */
  readonly memory?: DeviceMemoryContext;
  /** Runs one edit (x at the working size → y and mask, both PNG). Default: pix2pix-zero in this
   *  process on `models`; `p2pz distill pairs --queue` runs it on a team's GPU workers instead. */
  readonly edit?: PairEdit;
  /** Images edited at once (default 1). */
  readonly concurrency?: number;
  /** After each image: its entry, whether it was reused from the manifest, and the count so far. */
  readonly onPair?: (entry: PairEntry, reused: boolean, done: number, total: number) => void;
}

/** One pair's edit: the input PNG at the working size and the edit's settings → the output image and
 *  the source concept's mask, PNGs of the same size. */
export type PairEdit = (input: Uint8Array, edit: EditParams, signal: AbortSignal) => Promise<{ readonly image: Uint8Array; readonly mask: Uint8Array }>;

export interface PairsReport {
  readonly manifestPath: string;
  readonly total: number;
  /** Edits run by this call. */
  readonly made: number;
  /** Entries taken over from the manifest. */
  readonly reused: number;
  readonly kept: number;
  readonly dropped: number;
  readonly failed: number;
  /** The signal stopped the run before every image was done. */
  readonly interrupted: boolean;
}

const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

/** Writes a file atomically (temporary name, then rename). */
async function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

/** The source images of a folder: regular files (no links) with an image extension, sorted by name. */
export async function listSourceImages(folder: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch {
    throw new P2pzError('E_BAD_REQUEST', 'The images folder could not be read.', 'Give --images a folder of PNG, JPEG or WebP files.');
  }
  const names = entries
    .filter((e) => e.isFile() && PAIRS_DEFAULTS.extensions.includes(extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort();
  if (names.length === 0) throw new P2pzError('E_BAD_REQUEST', 'The images folder holds no PNG, JPEG or WebP files.');
  if (names.length > PAIRS_DEFAULTS.maxImages) throw new P2pzError('E_BAD_REQUEST', `The images folder holds more than ${PAIRS_DEFAULTS.maxImages} images.`);
  return names;
}

export function pairsSettings(request: PairsRequest): PairsSettings {
  const e = request.edit;
  return {
    steps: e.steps,
    cfg: e.cfg,
    xa: e.xa,
    regSteps: e.regSteps,
    size: e.size,
    editScale: e.editScale,
    seed: e.seed,
    ...(e.caption === undefined ? {} : { caption: e.caption }),
    vaeLatent: request.vaeLatent ?? PIX2PIX_ZERO_DEFAULTS.vaeLatent,
    bankCount: request.banks ? Math.min(request.banks.source.length, request.banks.target.length) : request.bankCount ?? PIX2PIX_ZERO_DEFAULTS.bankCount,
  };
}

/** What must match for a manifest to be resumed; the first difference, or null. */
function resumeConflict(old: PairsManifest, next: Omit<PairsManifest, 'pairs' | 'filter'>): string | null {
  if (normalizeConcept(old.source) !== normalizeConcept(next.source) || normalizeConcept(old.target) !== normalizeConcept(next.target)) {
    return `it is for ${old.source} → ${old.target}`;
  }
  if (old.model !== next.model || old.modelHash !== next.modelHash) return `it was made with another model (${old.model})`;
  const keys = new Set([...Object.keys(old.settings), ...Object.keys(next.settings)]);
  for (const k of [...keys].sort()) {
    const a = (old.settings as Record<string, unknown>)[k];
    const b = (next.settings as Record<string, unknown>)[k];
    if (a !== b) return `its ${k} is ${String(a)}, not ${String(b)}`;
  }
  return null;
}

/** True when the entry's files are all there with their recorded hashes. */
async function filesIntact(out: string, entry: PairEntry): Promise<boolean> {
  if (entry.status === 'failed') return false;
  for (const [file, hash] of [[entry.input, entry.inputHash], [entry.output, entry.outputHash], [entry.mask, entry.maskHash]] as const) {
    try {
      if (sha256(await readFile(join(out, file))) !== hash) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** Re-applies the filter to a kept or dropped entry. */
function rejudge(entry: PairEntry, filter: PairFilter): PairEntry {
  if (entry.status === 'failed') return entry;
  const { name, sourceHash, input, output, mask, inputHash, outputHash, maskHash, width, height, metrics, seconds } = entry;
  const common = { name, sourceHash, input, output, mask, inputHash, outputHash, maskHash, width, height, metrics, seconds };
  const reason = judgePair(metrics, filter);
  return reason === null ? { status: 'kept', ...common } : { status: 'dropped', reason, ...common };
}

async function modelHash(models: ModelSessions, paths: Readonly<Record<string, string>>): Promise<string> {
  const h = createHash('sha256');
  for (const key of ['textEncoder', 'unet', 'vaeEncoder', 'vaeDecoder']) {
    const rel = paths[key];
    if (rel !== undefined) h.update(`${key}:${await componentHash(models, rel)}\n`);
  }
  return h.digest('hex');
}

/** Makes (or resumes) the pairs dataset. Throws only for problems with the whole run (bad folders,
 *  a manifest made with other settings, a missing model); an image that fails is recorded as failed. */
export async function generatePairs(request: PairsRequest, ctx: PairsContext): Promise<PairsReport> {
  const { models, signal } = ctx;
  const names = await listSourceImages(request.images);
  const filter: PairFilter = { ...PAIR_FILTER_DEFAULTS, ...request.filter };
  const modelName = await chooseDiffusionModel(models, request.model);
  const model = await loadDiffusionModel(models, modelName);
  const header = {
    v: 1 as const,
    source: request.edit.source,
    target: request.edit.target,
    model: modelName,
    modelHash: await modelHash(models, model.paths),
    settings: pairsSettings(request),
  };

  const manifestPath = join(request.out, MANIFEST_DEFAULTS.file);
  const previous = await readPairsManifest(manifestPath);
  if (previous) {
    const conflict = resumeConflict(previous, header);
    if (conflict) {
      throw new P2pzError('E_BAD_REQUEST', `The output folder already holds a pairs dataset, but ${conflict}.`, 'Use the same settings to continue it, or choose a new folder for --out.');
    }
  }
  await mkdir(join(request.out, MANIFEST_DEFAULTS.pairsFolder), { recursive: true });
  const entries = new Map<string, PairEntry>((previous?.pairs ?? []).map((e) => [e.name, e]));
  // Saves run one after another, each writing the entries as they are then (the last write wins).
  let saving: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => {
    saving = saving.catch(() => undefined).then(() => writePairsManifest(manifestPath, { ...header, filter, pairs: [...entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) }));
    return saving;
  };

  const inversionCache = ctx.inversionCache ?? new InversionCache();
  const pipelineCtx: DiffusionContext = {
    models,
    signal,
    progress: () => {},
    inversionCache,
    ...(ctx.directionCacheDir === undefined ? {} : { directionCacheDir: ctx.directionCacheDir }),
    ...(ctx.memory === undefined ? {} : { memory: ctx.memory }),
  };
  let made = 0;
  let reused = 0;
  let interrupted = false;
  let finished = 0;
  const runEdit = ctx.edit ?? inProcessEdit(request, modelName, pipelineCtx);
  /** One source image: reused from the manifest, or edited; false when the run was interrupted. */
  const pairOf = async (name: string): Promise<boolean> => {
    let bytes: Uint8Array;
    try {
      bytes = await readSource(join(request.images, name));
    } catch (err) {
      const failed: PairEntry = { status: 'failed', name, error: errorOf(err) };
      entries.set(name, failed);
      made++;
      await save();
      ctx.onPair?.(failed, false, ++finished, names.length);
      return true;
    }
    const sourceHash = sha256(bytes);
    const old = entries.get(name);
    if (old && old.sourceHash === sourceHash && (await filesIntact(request.out, old))) {
      const entry = rejudge(old, filter);
      entries.set(name, entry);
      reused++;
      ctx.onPair?.(entry, true, ++finished, names.length);
      return true;
    }
    let entry: PairEntry;
    try {
      entry = await makePair(request, name, bytes, sourceHash, filter, runEdit, signal);
    } catch (err) {
      if (signal.aborted) return false;
      entry = { status: 'failed', name, sourceHash, error: errorOf(err) };
    }
    entries.set(name, entry);
    made++;
    await save();
    ctx.onPair?.(entry, false, ++finished, names.length);
    return true;
  };
  // Images in name order, `concurrency` at a time (1 on one machine; the number of GPU workers with
  // --queue). Each pair's files depend only on its own image, so the dataset is the same either way.
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, ctx.concurrency ?? 1) }, async () => {
      while (next < names.length && !interrupted) {
        if (signal.aborted) {
          interrupted = true;
          return;
        }
        const name = names[next++] as string;
        if (!(await pairOf(name))) interrupted = true;
      }
    }),
  );
  await save();
  const all = [...entries.values()];
  return {
    manifestPath,
    total: names.length,
    made,
    reused,
    kept: all.filter((e) => e.status === 'kept').length,
    dropped: all.filter((e) => e.status === 'dropped').length,
    failed: all.filter((e) => e.status === 'failed').length,
    interrupted,
  };
}

/** A failure as the manifest records it: its code and designer-facing message. */
function errorOf(err: unknown): { code: P2pzError['code']; message: string } {
  const error = err instanceof P2pzError ? err : new P2pzError('E_INTERNAL', err instanceof Error ? err.message.split('\n')[0]?.slice(0, 300) : undefined);
  return { code: error.code, message: error.message };
}

async function readSource(path: string): Promise<Uint8Array> {
  const info = await lstat(path);
  if (!info.isFile()) throw new P2pzError('E_BAD_REQUEST', 'A source image is not a regular file.');
  if (info.size > PAIRS_DEFAULTS.maxImageBytes) throw new P2pzError('E_PAYLOAD_TOO_LARGE', `The image is larger than ${PAIRS_DEFAULTS.maxImageBytes / 2 ** 20} MB.`);
  return readFile(path);
}

/** pix2pix-zero in this process, as `p2pz edit` runs it. */
function inProcessEdit(request: PairsRequest, modelName: string, ctx: DiffusionContext): PairEdit {
  return async (input, edit) => {
    const outcome = await runPix2PixZero({
      image: input,
      edit,
      model: modelName,
      ...(request.banks ? { banks: request.banks } : {}),
      ...(request.bankCount === undefined ? {} : { bankCount: request.bankCount }),
      ...(request.vaeLatent === undefined ? {} : { vaeLatent: request.vaeLatent }),
    }, ctx);
    const image = outcome.outputs.find((o) => o.role === 'image');
    const mask = outcome.outputs.find((o) => o.role === 'mask');
    if (!image) throw new P2pzError('E_INTERNAL', 'The edit returned no image.');
    // The mask needs the source word in the caption; a captioner's caption may not name it.
    if (!mask) {
      throw new P2pzError('E_BAD_REQUEST', `The caption does not name "${edit.source}", so the edit has no mask to judge the pair by.`,
        `Give a caption that names "${edit.source}" (--caption), or remove the captioner folder to use the template caption.`);
    }
    return { image: image.png, mask: mask.png };
  };
}

/** One edit: x at the working size → pix2pix-zero → y and mask; measured, judged and written. */
async function makePair(
  request: PairsRequest,
  name: string,
  bytes: Uint8Array,
  sourceHash: string,
  filter: PairFilter,
  runEdit: PairEdit,
  signal: AbortSignal,
): Promise<PairEntry> {
  const started = performance.now();
  const decoded = await decodeImage(bytes);
  const size = workingSize(decoded.width, decoded.height, request.edit.size);
  const x = await resizeRgb(decoded.rgb, decoded.width, decoded.height, size.width, size.height);
  const inputPng = await encodePng({ width: size.width, height: size.height, rgb: x });
  const edited = await runEdit(inputPng, { ...request.edit, mask: true, blend: false }, signal);
  const image = { png: edited.image };
  const mask = { png: edited.mask };
  const y = await decodeImage(image.png);
  const m = await decodeImage(mask.png);
  if (y.width !== size.width || y.height !== size.height || m.width !== size.width || m.height !== size.height) {
    throw new P2pzError('E_INTERNAL', 'The edit returned an image of another size.');
  }
  const maskGray = new Uint8Array(size.width * size.height);
  for (let i = 0; i < maskGray.length; i++) maskGray[i] = m.rgb[3 * i]!;
  const metrics = pairMetrics(x, y.rgb, maskGray, filter);

  const id = sha256(name).slice(0, 16);
  const rel = (role: string) => `${MANIFEST_DEFAULTS.pairsFolder}/${id}.${role}.png`;
  await writeAtomic(join(request.out, rel('input')), inputPng);
  await writeAtomic(join(request.out, rel('output')), image.png);
  await writeAtomic(join(request.out, rel('mask')), mask.png);
  const common = {
    name,
    sourceHash,
    input: rel('input'),
    output: rel('output'),
    mask: rel('mask'),
    inputHash: sha256(inputPng),
    outputHash: sha256(image.png),
    maskHash: sha256(mask.png),
    width: size.width,
    height: size.height,
    metrics,
    seconds: Math.round(performance.now() - started) / 1000,
  };
  const reason = judgePair(metrics, filter);
  return reason === null ? { status: 'kept', ...common } : { status: 'dropped', reason, ...common };
}
