// Containment of installed model folders (docs/SECURITY.md §R19), checked without opening any file: a model folder is
// a real folder directly inside the models directory, and everything in it is a regular file with one
// hard link or a real folder. Symbolic links are reported, never followed, so nothing outside the
// models directory is read while listing, verifying or removing models.
import { lstat, readdir, realpath } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { P2pzError } from '../../shared/protocol/index.js';
import { MODELS_DEFAULTS } from './defaults.js';

export interface FolderEntry {
  /** Path relative to the model folder, `/`-separated. */
  readonly path: string;
  readonly size: number;
}

export interface FolderWalk {
  readonly files: FolderEntry[];
  /** Entries that are not regular files or folders, or have extra hard links: `path: why`. */
  readonly problems: string[];
}

export function checkModelName(name: string): string {
  if (!MODELS_DEFAULTS.namePattern.test(name)) {
    throw new P2pzError('E_BAD_REQUEST', 'A model name may hold only letters, digits, ".", "_" and "-", and starts with a letter or digit.');
  }
  return name;
}

/** The real path of the model folder `relPath` (e.g. `stable-diffusion-v1-4` or `gan/cat-dog`),
 *  refusing a folder that is a link or lies outside the real models directory. */
export async function modelFolder(modelsDir: string, relPath: string): Promise<string> {
  const lexical = join(modelsDir, relPath);
  let info;
  try {
    info = await lstat(lexical);
  } catch {
    throw new P2pzError('E_MODEL_MISSING', `No model “${relPath}” is installed.`, 'Run `p2pz models list` to see the installed models.');
  }
  if (info.isSymbolicLink() || !info.isDirectory()) {
    throw new P2pzError('E_MODEL_INVALID', `“${relPath}” is not a model folder (links are not followed).`, 'Keep model folders inside the models directory; run `p2pz models remove` and install the model again.');
  }
  const root = await realpath(modelsDir);
  const real = await realpath(lexical);
  const rel = relative(root, real);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..') throw new P2pzError('E_MODEL_INVALID', `“${relPath}” lies outside the models directory.`);
  return real;
}

/** Every regular file under `dir` (lstat only; symbolic links and special files are problems). */
export async function walkModelFolder(dir: string, skip: (relPath: string) => boolean = () => false): Promise<FolderWalk> {
  const files: FolderEntry[] = [];
  const problems: string[] = [];
  const visit = async (rel: string): Promise<void> => {
    const entries = await readdir(join(dir, rel), { withFileTypes: true });
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (skip(path)) continue;
      const info = await lstat(join(dir, path));
      if (info.isSymbolicLink()) problems.push(`${path}: a symbolic link (not followed)`);
      else if (info.isDirectory()) await visit(path);
      else if (!info.isFile()) problems.push(`${path}: not a regular file`);
      else if (info.nlink > 1) problems.push(`${path}: has another hard link, possibly outside the models directory`);
      else files.push({ path, size: info.size });
    }
  };
  await visit('');
  return { files, problems };
}
