// The registry of installed models: the diffusion folders at the top of the models directory, the
// GAN generators under `gan/` and the captioners under `captioner/` (docs/CAPTIONER.md), each with
// its install record (source, demo flag), size on disk and the working sizes already prepared; and their removal. Listing uses lstat only and reads nothing but
// contained install records, so a link leading out of the models directory is shown as a problem
// and never followed (docs/SECURITY.md §R19).
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { P2pzError } from '../../shared/protocol/index.js';
import { checkModelName, walkModelFolder } from './containment.js';
import { MODELS_DEFAULTS } from './defaults.js';
import { readInstallManifest, type InstallSource } from './install-manifest.js';
import { emptyTrash, moveToTrash, unfinishedDownloads, type UnfinishedDownload } from './commit.js';

/** Folder of the GAN generators (as daemon/pipeline/preview-registry.ts names it). */
export const GAN_FOLDER = 'gan';
/** Folder of the captioners (as daemon/pipeline/captioner/installed.ts names it). */
export const CAPTIONER_FOLDER = 'captioner';

export type RegistryKind = 'diffusion' | 'gan' | 'captioner';

/** The file whose presence makes a folder placed by hand (no install record) a model of each kind. */
const MARKER: Readonly<Record<RegistryKind, string>> = Object.freeze({ diffusion: 'model_index.json', gan: 'generator.onnx', captioner: 'config.json' });
/** Sub-folders of the models directory holding one model per folder. */
const GROUPS: ReadonlyArray<readonly [string, RegistryKind]> = [[GAN_FOLDER, 'gan'], [CAPTIONER_FOLDER, 'captioner']];

export interface RegistryEntry {
  /** Path relative to the models directory: `stable-diffusion-v1-4`, `gan/cat-dog`, `captioner/blip-image-captioning-base`. */
  readonly name: string;
  readonly kind: RegistryKind;
  readonly demo: boolean;
  /** Where it came from; undefined for folders placed by hand (no install record). */
  readonly source: InstallSource | undefined;
  readonly bytes: number;
  /** Latent sizes with derived graphs, e.g. `64x64` (512×512 pixels). */
  readonly prepared: readonly string[];
  /** Links or special files found inside (such a model is not loaded). */
  readonly problems: readonly string[];
}

async function isRealDir(path: string): Promise<boolean> {
  try {
    const s = await lstat(path);
    return s.isDirectory() && !s.isSymbolicLink();
  } catch {
    return false;
  }
}

async function entry(modelsDir: string, name: string, kind: RegistryKind): Promise<RegistryEntry | undefined> {
  const dir = join(modelsDir, name);
  if (!(await isRealDir(dir))) return undefined;
  const walk = await walkModelFolder(dir);
  const marker = MARKER[kind];
  const manifest = await readInstallManifest(modelsDir, name);
  if (!manifest && !walk.files.some((f) => f.path === marker)) return undefined;
  // One entry per latent size, whatever batches were prepared for it.
  const prepared = [
    ...new Set(
      walk.files.map((f) => /^unet\/model\.prepared\.([0-9]+x[0-9]+)(?:\.b[0-9]+)?(?:\.fp16(?:-fp32)?)?\.json$/.exec(f.path)?.[1]).filter((t): t is string => t !== undefined),
    ),
  ];
  return {
    name,
    kind,
    demo: manifest?.demo ?? false,
    source: manifest?.source,
    bytes: walk.files.reduce((s, f) => s + f.size, 0),
    prepared,
    problems: walk.problems,
  };
}

async function subfolders(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isDirectory() && MODELS_DEFAULTS.namePattern.test(e.name))
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

/** Every installed model (diffusion first, then GAN generators, then captioners), by name. */
export async function listModels(modelsDir: string): Promise<RegistryEntry[]> {
  const out: RegistryEntry[] = [];
  for (const name of await subfolders(modelsDir)) {
    if (GROUPS.some(([folder]) => folder === name)) continue;
    const e = await entry(modelsDir, name, 'diffusion');
    if (e) out.push(e);
  }
  for (const [folder, kind] of GROUPS) {
    if (!(await isRealDir(join(modelsDir, folder)))) continue;
    for (const name of await subfolders(join(modelsDir, folder))) {
      const e = await entry(modelsDir, `${folder}/${name}`, kind);
      if (e) out.push(e);
    }
  }
  return out;
}

/** `name`, `gan/name` or `captioner/name`, validated (no other paths can be named). */
export function checkRegistryName(name: string): string {
  const parts = name.split('/');
  if (parts.length === 2 && GROUPS.some(([folder]) => folder === parts[0])) return `${parts[0]}/${checkModelName(parts[1] ?? '')}`;
  if (parts.length === 1 && !GROUPS.some(([folder]) => folder === name)) return checkModelName(name);
  throw new P2pzError('E_BAD_REQUEST', 'Name a model as `p2pz models list` shows it (`name`, `gan/name` or `captioner/name`).');
}

/**
 * Removes an installed model: the folder is moved out of place in one rename (a running daemon
 * stops seeing it at once), then deleted; a link is removed without touching what it points at.
 * Unfinished downloads of the same name go too.
 */
export async function removeModel(modelsDir: string, name: string): Promise<void> {
  const rel = checkRegistryName(name);
  try {
    await lstat(join(modelsDir, rel));
  } catch {
    throw new P2pzError('E_MODEL_MISSING', `No model “${rel}” is installed.`, 'Run `p2pz models list` to see the installed models.');
  }
  await moveToTrash(modelsDir, rel);
  await emptyTrash(modelsDir);
  // Staging folders are named `<name>@…`, `captioner_<name>@…` for a captioner (install.ts).
  if (!rel.startsWith(`${GAN_FOLDER}/`)) {
    const prefix = `${rel.replace('/', '_')}@`;
    const staging = join(modelsDir, MODELS_DEFAULTS.stagingFolder);
    for (const partial of await readdir(staging).catch(() => [] as string[])) {
      if (partial.startsWith(prefix)) await rm(join(staging, partial), { recursive: true, force: true });
    }
  }
}

/** True when the model folder's install record marks it as the demo pack. */
export async function isDemoModel(modelsDir: string, name: string): Promise<boolean> {
  return (await readInstallManifest(modelsDir, name))?.demo ?? false;
}

/** Unfinished downloads (staging folders) with the bytes they hold; lstat only. */
export function listUnfinished(modelsDir: string): Promise<UnfinishedDownload[]> {
  return unfinishedDownloads(modelsDir, async (dir) => (await walkModelFolder(dir)).files.reduce((s, f) => s + f.size, 0));
}
