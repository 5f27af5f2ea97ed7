// Containment of model files (docs/SECURITY.md §R19): a path handed to onnxruntime, or a model's metadata file, must
// resolve to a regular file inside the real models directory. No `..` escape, no symbolic link (of the
// file or of any folder on the way) leading out, and no file with a second hard link, whose other name
// may lie anywhere. Kept free of onnxruntime so the HTTP process can use it too.
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { P2pzError } from '../../shared/protocol/index.js';

export const MODEL_PATH_DEFAULTS = Object.freeze({
  /** Refuse model files with more than one hard link: another name of the same bytes may lie outside
   *  the models directory, where anyone could have written them. */
  refuseHardLinks: true as boolean,
});

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

const outsideModelsDir = (): P2pzError =>
  new P2pzError(
    'E_MODEL_INVALID',
    'A model file lies outside the models directory.',
    'Keep model files inside the models directory (links that lead out of it are refused), then run `p2pz models verify`.',
  );

/**
 * Resolves `path` (absolute, or relative to `modelsDir`) to the real path of a regular file inside
 * the real models directory. Errors: `E_MODEL_INVALID` for anything leading out of it (or not a
 * regular file), `E_MODEL_MISSING` when the file does not exist.
 */
export async function resolveModelPath(
  modelsDir: string,
  path: string,
  refuseHardLinks: boolean = MODEL_PATH_DEFAULTS.refuseHardLinks,
): Promise<string> {
  const lexicalRoot = resolve(modelsDir);
  const lexical = resolve(lexicalRoot, path);
  if (!isInside(lexicalRoot, lexical)) throw outsideModelsDir();
  let root: string;
  let real: string;
  try {
    root = await realpath(lexicalRoot);
    real = await realpath(lexical);
  } catch {
    throw new P2pzError('E_MODEL_MISSING', 'A file of the model is missing.', 'Reinstall the model with `p2pz models install`.');
  }
  if (!isInside(root, real)) throw outsideModelsDir();
  const info = await stat(real);
  if (!info.isFile()) throw new P2pzError('E_MODEL_INVALID', 'A model file is not a regular file.');
  if (refuseHardLinks && info.nlink > 1) throw outsideModelsDir();
  return real;
}
