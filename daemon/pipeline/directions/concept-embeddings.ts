// Precomputed concept embeddings (`p2pz directions import`): a concept's mean text-encoder output
// μ = (1/N) Σ_n E_text(s_n), [77,D], brought as a .npy of [N,77,D] (sentence embeddings, averaged
// here) or [77,D] / [1,77,D] (already a mean, as the paper's released `assets/embeddings_sd_1.4/*.pt`
// are). Kept per text encoder in the direction cache, `concepts/<text encoder hash>/<concept>.npy`
// ([1,77,D] float32). When both concepts of an edit have one, Δ = μ_target − μ_source, exactly as the
// official code computes it from its saved means (src/edit_real.py).
// The paper's files are torch tensors; convert each once with (Debian's python3-torch and numpy):
//   python3 -c "import sys,torch,numpy; numpy.save(sys.argv[2], torch.load(sys.argv[1], map_location='cpu').float().numpy())" cat.pt cat.npy
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Concept, P2pzError } from '../../../shared/protocol/index.js';
import type { ModelSessions } from '../context.js';
import { componentHash, type TextModel } from '../diffusion-model.js';
import { decodeNpy, encodeNpy } from '../dump/npy.js';

export const CONCEPT_EMBEDDINGS_LIMITS = Object.freeze({
  /** Largest .npy accepted (5000 sentences of SD 1.x's 77×768 float32 ≈ 1.2 GB would be too much). */
  maxFileBytes: 512 * 1024 * 1024,
  folder: 'concepts',
});

function bad(detail: string): P2pzError {
  return new P2pzError('E_BAD_REQUEST', `The embeddings file ${detail}`,
    'Give a float32 .npy of shape [N,77,D] or [77,D] from this model\'s text encoder (docs: `p2pz directions --help`).');
}

/** The file name of a concept: lowercase, spaces as "_" (Concept already allows only safe characters). */
function conceptFile(concept: string): string {
  const parsed = Concept.safeParse(concept);
  if (!parsed.success) throw new P2pzError('E_BAD_REQUEST', `"${concept.slice(0, 64)}" is not a valid concept word.`);
  return `${parsed.data.trim().toLowerCase().replace(/\s+/g, '_').replace(/'/g, '')}.npy`;
}

async function folderFor(models: Pick<ModelSessions, 'resolve'>, model: TextModel, cacheDir: string): Promise<string> {
  const hash = await componentHash(models, model.paths.textEncoder);
  return join(cacheDir, CONCEPT_EMBEDDINGS_LIMITS.folder, hash.slice(0, 32));
}

/** μ of a .npy's bytes: [N,T,D] averaged over N (float64 sums), or [T,D] / [1,T,D] as is. */
export function conceptMean(bytes: Uint8Array, tokens: number, width: number): { mean: Float32Array; count: number } {
  let arr;
  try {
    arr = decodeNpy(bytes);
  } catch {
    throw bad('is not a little-endian float32 .npy (numpy.save of a float32 array).');
  }
  if (!(arr.data instanceof Float32Array)) throw bad('holds integers, not float32.');
  const shape = arr.shape;
  const n = shape.length === 3 ? shape[0]! : shape.length === 2 ? 1 : 0;
  const [t, d] = shape.slice(-2);
  if (n < 1 || t !== tokens || d !== width) {
    throw bad(`has shape [${shape.join(',')}]; this model's text encoder gives [${tokens},${width}] per sentence.`);
  }
  const size = tokens * width;
  const sum = new Float64Array(size);
  for (let k = 0; k < n; k++) for (let i = 0; i < size; i++) sum[i] = sum[i]! + arr.data[k * size + i]!;
  const mean = Float32Array.from(sum, (v) => v / n);
  if (mean.some((v) => !Number.isFinite(v))) throw bad('holds values that are not finite.');
  return { mean, count: n };
}

/** Stores a concept's μ for this text encoder; returns how many embeddings were averaged. */
export async function importConceptEmbeddings(
  models: Pick<ModelSessions, 'resolve'>, model: TextModel, cacheDir: string, concept: string, npyPath: string,
): Promise<{ count: number; tokens: number; width: number }> {
  const name = conceptFile(concept);
  let bytes: Uint8Array;
  try {
    const info = await stat(npyPath);
    if (!info.isFile()) throw bad('is not a regular file.');
    if (info.size > CONCEPT_EMBEDDINGS_LIMITS.maxFileBytes) throw bad(`is larger than ${CONCEPT_EMBEDDINGS_LIMITS.maxFileBytes} bytes.`);
    bytes = await readFile(npyPath);
  } catch (err) {
    if (err instanceof P2pzError) throw err;
    throw bad('could not be read.');
  }
  const T = model.tokenizer.maxLength;
  const D = model.textWidth;
  const { mean, count } = conceptMean(bytes, T, D);
  const folder = await folderFor(models, model, cacheDir);
  await mkdir(folder, { recursive: true });
  const tmp = join(folder, `${name}.${process.pid}.tmp`);
  await writeFile(tmp, encodeNpy(mean, [1, T, D]));
  await rename(tmp, join(folder, name));
  return { count, tokens: T, width: D };
}

/** The imported μ of a concept for this text encoder, or null when none was imported. */
export async function importedConceptMean(
  models: Pick<ModelSessions, 'resolve'>, model: TextModel, cacheDir: string, concept: string,
): Promise<Float32Array | null> {
  const file = join(await folderFor(models, model, cacheDir), conceptFile(concept));
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch {
    return null;
  }
  return conceptMean(bytes, model.tokenizer.maxLength, model.textWidth).mean;
}
