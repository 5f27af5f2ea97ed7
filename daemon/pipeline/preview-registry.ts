// Finds the distilled GAN generator for an edit direction (docs/DESIGN.md §3 stage 8) among the folders
// under `<modelsDir>/gan/` (their layout and meta.json: models/gan-meta.ts). The folder name is only a
// convention (concepts may themselves hold hyphens): `meta.json` says which direction a generator
// translates, and lookups match on it. A preview's lookup reuses the last listing while the folders
// and files it read are unchanged (ganFolderStamp): the listing's dozen asynchronous reads cost a
// quick preview about 2 ms on its path, their stamp a few synchronous stats (docs/BENCHMARKS.md).
import { readdirSync, statSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { P2pzError } from '../../shared/protocol/index.js';
import { GAN_FOLDER_DEFAULTS, GanMeta, normalizeConcept } from '../models/gan-meta.js';
import type { ModelFiles } from './context.js';

export interface GanGenerator {
  /** Folder name under `gan/`. */
  readonly name: string;
  /** Real path of `generator.onnx`. */
  readonly modelPath: string;
  readonly meta: GanMeta;
}

/** Folders under `gan/` that are not usable generators, with the reason (for `p2pz models verify`). */
export interface GanProblem {
  readonly name: string;
  /** When the meta file was readable: the direction the broken generator was meant for. */
  readonly meta?: GanMeta;
  readonly error: P2pzError;
}

/** Every installed generator, and the folders that are not valid ones. */
export async function listGanGenerators(files: ModelFiles): Promise<{ generators: GanGenerator[]; problems: GanProblem[] }> {
  const d = GAN_FOLDER_DEFAULTS;
  let names: string[];
  try {
    const entries = await readdir(join(files.modelsDir, d.folder), { withFileTypes: true });
    names = entries.filter((e) => e.isDirectory() || e.isSymbolicLink()).map((e) => e.name).sort();
  } catch {
    return { generators: [], problems: [] }; // no gan/ folder: nothing installed
  }
  const generators: GanGenerator[] = [];
  const problems: GanProblem[] = [];
  for (const name of names) {
    let meta: GanMeta | undefined;
    try {
      meta = await readMeta(files, name);
      const modelPath = await files.resolve(join(files.modelsDir, d.folder, name, d.generatorFile));
      generators.push({ name, modelPath, meta });
    } catch (err) {
      const error = err instanceof P2pzError ? err : new P2pzError('E_MODEL_INVALID');
      problems.push(meta ? { name, meta, error } : { name, error });
    }
  }
  return { generators, problems };
}

/**
 * What the listing of `<modelsDir>/gan/` read, as one string: the folder's entries, and for each the
 * identity, size and modification time of the entry, its meta file and its generator (stat follows
 * links, as the listing does). Any install, removal, rewrite or relinking changes it.
 */
export function ganFolderStamp(modelsDir: string): string {
  const d = GAN_FOLDER_DEFAULTS;
  const stamp = (path: string): string => {
    try {
      const s = statSync(path, { bigint: true });
      return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
    } catch {
      return '-';
    }
  };
  const folder = join(modelsDir, d.folder);
  let names: string[];
  try {
    names = readdirSync(folder).sort();
  } catch {
    return '-';
  }
  return [stamp(folder), ...names.map((n) => [n, stamp(join(folder, n)), stamp(join(folder, n, d.metaFile)), stamp(join(folder, n, d.generatorFile))].join('|'))].join('\n');
}

/** The last listing per models folder, with the stamp taken before it was read. */
const listings = new Map<string, { readonly stamp: string; readonly listing: Promise<Awaited<ReturnType<typeof listGanGenerators>>> }>();

/** The generator for `source → target`, or null when none is installed for it. A generator installed
 *  for the direction but unusable rejects with its reason rather than passing for "not installed". */
export async function lookupGanGenerator(files: ModelFiles, source: string, target: string): Promise<GanGenerator | null> {
  const s = normalizeConcept(source);
  const t = normalizeConcept(target);
  const matches = (meta: GanMeta | undefined) => meta !== undefined && normalizeConcept(meta.source) === s && normalizeConcept(meta.target) === t;
  // Stamped before the listing reads anything: a change while it reads makes the next stamp differ.
  const stamp = ganFolderStamp(files.modelsDir);
  let kept = listings.get(files.modelsDir);
  if (kept?.stamp !== stamp) {
    kept = { stamp, listing: listGanGenerators(files) };
    listings.set(files.modelsDir, kept);
  }
  const { generators, problems } = await kept.listing;
  const found = generators.find((g) => matches(g.meta));
  if (found) return found;
  const broken = problems.find((p) => matches(p.meta));
  if (broken) throw broken.error;
  return null;
}

/** `E_MODEL_MISSING` naming the direction (and, when given, what else was missing). */
export function noGeneratorError(source: string, target: string, also?: string): P2pzError {
  return new P2pzError(
    'E_MODEL_MISSING',
    `No quick-preview generator is installed for “${normalizeConcept(source)} → ${normalizeConcept(target)}”${also ? `, ${also}` : ''}.`,
    'Run the full render instead, or distil a generator for this direction and install it with `p2pz models install`.',
  );
}

/** The generator for `source → target`; `E_MODEL_MISSING` naming the direction when none is installed. */
export async function findGanGenerator(files: ModelFiles, source: string, target: string): Promise<GanGenerator> {
  const found = await lookupGanGenerator(files, source, target);
  if (found) return found;
  throw noGeneratorError(source, target);
}

async function readMeta(files: ModelFiles, name: string): Promise<GanMeta> {
  const d = GAN_FOLDER_DEFAULTS;
  const metaPath = await files.resolve(join(files.modelsDir, d.folder, name, d.metaFile));
  if ((await stat(metaPath)).size > d.maxMetaBytes) throw new P2pzError('E_MODEL_INVALID', `The generator “${name}” has an oversized ${d.metaFile}.`);
  const text = await readFile(metaPath, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new P2pzError('E_MODEL_INVALID', `The generator “${name}” has a ${d.metaFile} that is not JSON.`);
  }
  const meta = GanMeta.safeParse(json);
  if (!meta.success) {
    const issue = meta.error.issues[0];
    throw new P2pzError('E_MODEL_INVALID', `The generator “${name}” has an invalid ${d.metaFile} (${issue?.path.join('.') || 'root'}: ${issue?.message ?? 'invalid'}).`);
  }
  return meta.data;
}
