// Which captioners are installed: folders under `<models>/captioner/` holding a config.json and both
// graphs of the encoder + decoder layout (docs/CAPTIONER.md). Files are resolved inside the models
// directory (docs/SECURITY.md §R19). No onnxruntime here: the daemon's HTTP process lists captioners for health.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CAPTIONER_LAYOUT } from '../../models/captioner-files.js';

/** What the resolver of the models directory must offer (the worker's SessionCache, or the server's). */
export interface ModelFolderFiles {
  readonly modelsDir: string;
  resolve(path: string): Promise<string>;
}

export async function firstPresent(models: Pick<ModelFolderFiles, 'resolve'>, folder: string, candidates: readonly string[]): Promise<string | undefined> {
  for (const c of candidates) {
    try {
      await models.resolve(join(folder, c));
      return join(folder, c);
    } catch {
      // try the next name
    }
  }
  return undefined;
}

/** Folder names under captioner/ that hold a config.json and both graphs, sorted. */
export async function listCaptioners(models: ModelFolderFiles): Promise<string[]> {
  let names: string[];
  try {
    names = (await readdir(join(models.modelsDir, CAPTIONER_LAYOUT.folder), { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const name of names) {
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(name)) continue;
    const folder = join(CAPTIONER_LAYOUT.folder, name);
    if (await firstPresent(models, folder, ['config.json']) === undefined) continue;
    if (await firstPresent(models, folder, CAPTIONER_LAYOUT.encoders) === undefined) continue;
    if (await firstPresent(models, folder, CAPTIONER_LAYOUT.decoders) === undefined) continue;
    found.push(name);
  }
  return found;
}

/** The captioner to use: the preferred one when installed, else the first; null when none is. */
export async function findCaptioner(models: ModelFolderFiles): Promise<string | null> {
  const names = await listCaptioners(models);
  if (names.includes(CAPTIONER_LAYOUT.preferred)) return CAPTIONER_LAYOUT.preferred;
  return names[0] ?? null;
}

