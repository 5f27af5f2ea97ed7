// Atomic placement of model folders: a complete folder reaches its final name in one rename, and a
// folder leaves it in one rename (into the trash folder) before it is deleted. Both folders lie in
// the models directory, so the renames never cross file systems. Whatever a crash left in the trash
// is deleted by the next install or removal.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { MODELS_DEFAULTS } from './defaults.js';

/**
 * Moves a complete folder to `<models>/<relPath>` in one rename. An existing folder of that name is
 * first moved to the trash folder (same file system, so both renames are atomic) and deleted after.
 */
export async function commitFolder(modelsDir: string, staging: string, relPath: string): Promise<string> {
  const final = join(modelsDir, relPath);
  await mkdir(dirname(final), { recursive: true });
  let trashed: string | undefined;
  try {
    await rename(staging, final);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // The target exists (Windows reports EPERM for an existing folder).
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EISDIR' && code !== 'ENOTDIR' && code !== 'EPERM') throw err;
    trashed = await moveToTrash(modelsDir, relPath);
    await rename(staging, final);
  }
  if (trashed) await rm(trashed, { recursive: true, force: true });
  return final;
}

/** Moves `<models>/<relPath>` (a folder, a link or a file; links are moved, never followed) into the
 *  trash folder and returns its new path. */
export async function moveToTrash(modelsDir: string, relPath: string): Promise<string> {
  const trash = join(modelsDir, MODELS_DEFAULTS.trashFolder);
  await mkdir(trash, { recursive: true });
  const target = join(trash, `${relPath.replace(/[\\/]/g, '_')}-${randomBytes(4).toString('hex')}`);
  await rename(join(modelsDir, relPath), target);
  return target;
}

/** Deletes what earlier installs or removals left in the trash folder (they were cut short). */
export async function emptyTrash(modelsDir: string): Promise<void> {
  const trash = join(modelsDir, MODELS_DEFAULTS.trashFolder);
  for (const entry of await readdir(trash).catch(() => [] as string[])) {
    await rm(join(trash, entry), { recursive: true, force: true });
  }
}

export interface UnfinishedDownload {
  /** `name@commit` as the staging folder is named. */
  readonly name: string;
  readonly bytes: number;
}

/** Downloads in the staging folder that a later run of the same install resumes. */
export async function unfinishedDownloads(modelsDir: string, sizeOf: (dir: string) => Promise<number>): Promise<UnfinishedDownload[]> {
  const staging = join(modelsDir, MODELS_DEFAULTS.stagingFolder);
  const out: UnfinishedDownload[] = [];
  for (const entry of (await readdir(staging, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory())) {
    out.push({ name: entry.name, bytes: await sizeOf(join(staging, entry.name)) });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}
