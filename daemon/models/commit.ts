// Atomic placement of model folders: a complete folder reaches its final name in one rename, and a
// folder leaves it in one rename (into the trash folder) before it is deleted. Both folders lie in
// the models directory, so the renames never cross file systems.
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
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
