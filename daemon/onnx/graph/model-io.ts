// Reading and writing ONNX model files without touching their external weights. Decoding reads only
// `model.onnx` (the graph and inline tensors); an external tensor stays a reference (location, offset,
// length) into its weights file, which is never opened here — an SD 1.5 UNet's 3.4 GB of weights are
// neither loaded into JS memory nor copied. Derived graphs (extra outputs, gradient graphs) are written
// next to the original and point at the very same weights file and offsets. onnxruntime only accepts
// external data inside the model's own folder, so a derived model must live in the weights' folder (or
// above it).
import type { Stats } from 'node:fs';
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { P2pzError } from '../../../shared/protocol/errors.js';
import { BYTES_PER_ELEMENT, int64ToNumber, isExternal, onnx } from './onnx-proto.js';
import type { GraphFields, ModelFields, ModelProto, TensorFields } from './onnx-proto.js';

/** A model file's identity as far as stat tells: any rewrite changes one of these. */
export type FileIdentity = Pick<Stats, 'dev' | 'ino' | 'size' | 'mtimeMs' | 'ctimeMs'>;

export const sameFile = (a: FileIdentity, b: FileIdentity): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;

/** Where one external tensor's bytes live. `location` is relative to the model file's folder. */
export interface ExternalDataRef {
  readonly tensor: string;
  readonly location: string;
  readonly offset: number;
  readonly length: number;
}

/** Decodes model bytes. A malformed file is `E_MODEL_INVALID`. protobufjs fills every absent field
 *  of a decoded message with its default, which is what the narrower ModelProto view states. */
export function decodeModel(bytes: Uint8Array): ModelProto {
  try {
    const model = onnx.ModelProto.decode(bytes);
    if (!model.graph) throw new Error('no graph');
    return model as unknown as ModelProto;
  } catch {
    throw new P2pzError('E_MODEL_INVALID', 'An ONNX graph could not be decoded.');
  }
}

export function encodeModel(model: ModelFields): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Reads and decodes `path` (only that file: external weights stay on disk, unread). */
export async function readModel(path: string): Promise<ModelProto> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new P2pzError('E_MODEL_MISSING', 'An ONNX graph file is missing.');
    throw new P2pzError('E_MODEL_INVALID', 'An ONNX graph file could not be read.');
  }
  return decodeModel(bytes);
}

/** The graph of a decoded model (decodeModel guarantees one). */
export function graphOf(model: ModelFields): GraphFields {
  if (!model.graph) throw new P2pzError('E_MODEL_INVALID', 'The ONNX model has no graph.');
  return model.graph;
}

/** The external data reference of one tensor, or undefined when its data is inline. */
export function externalDataRef(t: TensorFields): ExternalDataRef | undefined {
  if (!isExternal(t)) return undefined;
  const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = entries.get('location');
  if (!location) throw new P2pzError('E_MODEL_INVALID', `Tensor ${t.name ?? ''} has external data without a location.`);
  const offset = Number(entries.get('offset') ?? '0');
  const lengthText = entries.get('length');
  const length = lengthText === undefined ? byteLengthOf(t) : Number(lengthText);
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new P2pzError('E_MODEL_INVALID', `Tensor ${t.name ?? ''} has a malformed external data reference.`);
  }
  return { tensor: t.name ?? '', location, offset, length };
}

/** Every external tensor reference of the main graph, in initializer order. */
export function externalDataRefs(model: ModelFields): ExternalDataRef[] {
  const refs: ExternalDataRef[] = [];
  for (const t of graphOf(model).initializer ?? []) {
    const ref = externalDataRef(t);
    if (ref) refs.push(ref);
  }
  return refs;
}

/** Bytes of a tensor from its dims and element type (used when a reference omits `length`). */
function byteLengthOf(t: TensorFields): number {
  const count = (t.dims ?? []).reduce<number>((a, d) => a * int64ToNumber(d), 1);
  const size = BYTES_PER_ELEMENT[t.dataType ?? 0];
  if (size === undefined) throw new P2pzError('E_MODEL_INVALID', `Tensor ${t.name ?? ''} has an unsupported element type.`);
  return count * size;
}

/**
 * Checks, by `stat` only, that every external reference of the model at `modelPath` resolves inside
 * the model's folder to a file large enough for it. Missing weights are `E_MODEL_MISSING`; a short
 * or escaping reference is `E_MODEL_INVALID`.
 */
export async function checkExternalData(model: ModelFields, modelPath: string): Promise<void> {
  const dir = dirname(resolve(modelPath));
  const sizes = new Map<string, number>();
  for (const ref of externalDataRefs(model)) {
    const file = resolveLocation(dir, ref.location);
    let size = sizes.get(file);
    if (size === undefined) {
      try {
        size = (await stat(file)).size;
      } catch {
        throw new P2pzError('E_MODEL_MISSING', 'A weights file of the model is missing.');
      }
      sizes.set(file, size);
    }
    if (ref.offset + ref.length > size) throw new P2pzError('E_MODEL_INVALID', 'A weights file of the model is shorter than its graph says.');
  }
}

function resolveLocation(dir: string, location: string): string {
  const file = resolve(dir, location);
  if (isAbsolute(location) || !(file + sep).startsWith(dir + sep) || file === dir) {
    throw new P2pzError('E_MODEL_INVALID', 'A weights reference points outside the model folder.');
  }
  return file;
}

/**
 * The raw little-endian bytes of one initializer of the model at `modelPath`: `rawData` when inline,
 * else just that tensor's byte range of its weights file (the rest of the file is not read). Tensors
 * stored in typed fields (`floatData`, …) instead of `rawData` are not supported here.
 */
export async function readTensorData(modelPath: string, t: TensorFields): Promise<Uint8Array> {
  const ref = externalDataRef(t);
  if (!ref) {
    if (!t.rawData) throw new P2pzError('E_MODEL_INVALID', `Tensor ${t.name ?? ''} has no raw data.`);
    return t.rawData;
  }
  const file = resolveLocation(dirname(resolve(modelPath)), ref.location);
  const fh = await open(file, 'r').catch(() => {
    throw new P2pzError('E_MODEL_MISSING', 'A weights file of the model is missing.');
  });
  try {
    const out = new Uint8Array(ref.length);
    const { bytesRead } = await fh.read(out, 0, ref.length, ref.offset);
    if (bytesRead !== ref.length) throw new P2pzError('E_MODEL_INVALID', 'A weights file of the model is shorter than its graph says.');
    return out;
  } finally {
    await fh.close();
  }
}

/** Writes `bytes` to `path` through a temporary file and a rename (never a half-written model). */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Writes `model` — decoded from `originalPath` and edited — to `derivedPath`, rewriting each external
 * reference's `location` so it resolves from the new file to the same weights file (offsets and lengths
 * unchanged). The weights file is not read, copied or modified, and `originalPath` itself is never
 * overwritten. `model` is not mutated.
 */
export async function writeDerivedModel(model: ModelFields, originalPath: string, derivedPath: string): Promise<void> {
  const fromDir = dirname(resolve(originalPath));
  const toDir = dirname(resolve(derivedPath));
  if (resolve(originalPath) === resolve(derivedPath)) throw new Error('a derived model must not overwrite its original');
  const copy = decodeModel(encodeModel(model));
  for (const t of graphOf(copy).initializer ?? []) {
    const ref = externalDataRef(t);
    if (!ref) continue;
    const target = resolveLocation(fromDir, ref.location);
    const location = relative(toDir, target).split(sep).join('/');
    if (location.startsWith('../') || isAbsolute(location)) {
      throw new Error(`derived model in ${toDir} cannot reference weights outside its folder (onnxruntime refuses them)`);
    }
    t.externalData = (t.externalData ?? []).map((e) => (e.key === 'location' ? { key: 'location', value: location } : e));
  }
  await writeFileAtomic(derivedPath, encodeModel(copy));
}
