// Installs a distilled generator (the trainer's run folder: generator.onnx, meta.json, export-check/)
// as the quick preview of its direction, <models>/gan/<name>/ (preview-registry.ts). Nothing is
// installed until onnxruntime has checked it against the runtime's contract:
//   1. meta.json parses as GanMeta;
//   2. the graph takes one float32 image [1,3,H,W] and returns one float32 tensor;
//   3. on PyTorch's check pair (export-check/input.npy → output.npy, an odd non-square size) the
//      largest |ONNX − PyTorch| is at most `checkTolerance`;
//   4. at the working size of a 4:3 image it returns [1,3,h,w] of the same h, w, finite, in [-1,1].
// The files are staged inside the models directory and moved into place with one rename; a generator
// already installed for the direction (under any folder name) is then removed. The new one always gets
// a folder (so a file path) of its own: the worker caches sessions by path.
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Tensor } from 'onnxruntime-node';
import { P2pzError } from '../../shared/protocol/index.js';
import { decodeNpy } from '../pipeline/dump/npy.js';
import { generatorWorkingSize } from '../pipeline/gan-preview.js';
import { listGanGenerators, lookupGanGenerator } from '../pipeline/preview-registry.js';
import { GanMeta, normalizeConcept, GAN_FOLDER_DEFAULTS } from '../models/gan-meta.js';
import { SessionCache } from '../worker/sessions.js';

export const REGISTER_DEFAULTS = Object.freeze({
  /** Largest |ONNX − PyTorch| accepted on the check pair (float32 convolutions differ by ~1e-6). */
  checkTolerance: 1e-3,
  /** The size check uses an image of this aspect (width:height). */
  checkAspect: [4, 3] as readonly [number, number],
  /** Outputs may overshoot [-1,1] by this much (tanh rounding). */
  rangeSlack: 1e-4,
  checkDir: 'export-check',
});

export interface RegisterResult {
  /** Folder name under gan/. */
  readonly name: string;
  readonly meta: GanMeta;
  /** Largest |ONNX − PyTorch| on the check pair; null when the run folder has none. */
  readonly maxAbsDiff: number | null;
  /** The working-size check: input and output [h, w]. */
  readonly checked: { readonly width: number; readonly height: number };
  /** A generator for the direction was replaced. */
  readonly replaced: boolean;
}

function invalid(why: string): P2pzError {
  return new P2pzError('E_MODEL_INVALID', `The generator does not fit the runtime: ${why}.`, 'Export it again with models/distill/train.py.');
}

async function readMeta(path: string): Promise<GanMeta> {
  let json: unknown;
  try {
    if ((await stat(path)).size > GAN_FOLDER_DEFAULTS.maxMetaBytes) throw invalid('meta.json is oversized');
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    if (err instanceof P2pzError) throw err;
    throw new P2pzError('E_BAD_REQUEST', 'The run folder has no readable meta.json.', 'Give the folder train.py wrote (--out).');
  }
  const parsed = GanMeta.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(`meta.json ${issue?.path.join('.') || 'root'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/** The folder name for a direction: `<source>-<target>` with anything but letters and digits as `_`. */
export function generatorFolderName(source: string, target: string): string {
  const slug = (c: string) => normalizeConcept(c).replace(/[^\p{L}\p{N}]+/gu, '_');
  return `${slug(source)}-${slug(target)}`;
}

/** `base`, or `base.2`, `base.3`, … : the first name not taken under gan/. A replacement never reuses
 *  the folder of the generator it replaces: a running worker keeps sessions by file path, and a new
 *  path makes it load the new generator. */
async function freeFolderName(modelsDir: string, base: string): Promise<string> {
  for (let k = 1; ; k++) {
    const name = k === 1 ? base : `${base}.${k}`;
    try {
      await stat(join(modelsDir, GAN_FOLDER_DEFAULTS.folder, name));
    } catch {
      return name;
    }
  }
}

async function readCheck(runDir: string): Promise<{ input: Tensor; output: Float32Array } | null> {
  const dir = join(runDir, REGISTER_DEFAULTS.checkDir);
  let inBytes: Uint8Array;
  let outBytes: Uint8Array;
  try {
    inBytes = await readFile(join(dir, 'input.npy'));
    outBytes = await readFile(join(dir, 'output.npy'));
  } catch {
    return null;
  }
  const x = decodeNpy(inBytes);
  const y = decodeNpy(outBytes);
  if (!(x.data instanceof Float32Array) || !(y.data instanceof Float32Array) || x.shape.length !== 4 || x.shape.join() !== y.shape.join()) {
    throw invalid('its export check is not a pair of float32 [1,3,H,W] arrays');
  }
  return { input: new Tensor('float32', x.data, [...x.shape]), output: y.data };
}

/** Validates the generator in `runDir` and installs it into `modelsDir`. */
export async function registerGenerator(runDir: string, modelsDir: string): Promise<RegisterResult> {
  const meta = await readMeta(join(runDir, GAN_FOLDER_DEFAULTS.metaFile));
  await mkdir(join(modelsDir, GAN_FOLDER_DEFAULTS.folder), { recursive: true });
  const staging = join(modelsDir, `.p2pz-staging-${randomBytes(6).toString('hex')}`);
  await mkdir(staging);
  try {
    const model = join(staging, GAN_FOLDER_DEFAULTS.generatorFile);
    try {
      await copyFile(join(runDir, GAN_FOLDER_DEFAULTS.generatorFile), model);
    } catch {
      throw new P2pzError('E_BAD_REQUEST', 'The run folder has no generator.onnx.', 'Give the folder train.py wrote (--out).');
    }
    await copyFile(join(runDir, GAN_FOLDER_DEFAULTS.metaFile), join(staging, GAN_FOLDER_DEFAULTS.metaFile));
    const { maxAbsDiff, checked } = await checkGenerator(modelsDir, model, meta, await readCheck(runDir));

    const files = new SessionCache({ modelsDir, executionProviders: ['cpu'], maxSessions: 1 });
    const existing = (await listGanGenerators(files)).generators.find(
      (g) => normalizeConcept(g.meta.source) === normalizeConcept(meta.source) && normalizeConcept(g.meta.target) === normalizeConcept(meta.target),
    );
    const name = await freeFolderName(modelsDir, generatorFolderName(meta.source, meta.target));
    await rename(staging, join(modelsDir, GAN_FOLDER_DEFAULTS.folder, name));
    if (existing) await rm(join(modelsDir, GAN_FOLDER_DEFAULTS.folder, existing.name), { recursive: true, force: true });
    const found = await lookupGanGenerator(files, meta.source, meta.target);
    if (found?.name !== name) {
      throw new P2pzError('E_MODEL_INVALID', `Another generator folder for ${meta.source} → ${meta.target} is found first (${found?.name ?? 'none'}).`, 'Remove the other folder from the models directory\'s gan/ folder.');
    }
    return { name, meta, maxAbsDiff, checked, replaced: existing !== undefined };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

async function checkGenerator(
  modelsDir: string,
  model: string,
  meta: GanMeta,
  check: { input: Tensor; output: Float32Array } | null,
): Promise<{ maxAbsDiff: number | null; checked: { width: number; height: number } }> {
  const sessions = new SessionCache({ modelsDir, executionProviders: ['cpu'], maxSessions: 1 });
  try {
    const session = await sessions.get(model);
    const input = session.inputMetadata[0];
    const output = session.outputMetadata[0];
    if (session.inputNames.length !== 1 || session.outputNames.length < 1 || !input?.isTensor || !output?.isTensor) {
      throw invalid('it must take exactly one image tensor and return one');
    }
    if (input.type !== 'float32' || output.type !== 'float32') throw invalid(`its tensors are ${input.type}/${output.type}, not float32`);
    const [n, c, fh, fw] = input.shape;
    if (input.shape.length !== 4 || (typeof n === 'number' && n !== 1) || (typeof c === 'number' && c !== 3)) throw invalid('its input is not an image [1,3,H,W]');

    let maxAbsDiff: number | null = null;
    if (check) {
      const y = (await sessions.run(model, { [input.name]: check.input }))[output.name];
      if (!(y instanceof Tensor) || y.dims.join() !== check.input.dims.join()) throw invalid('on the check image it returned another shape');
      const data = y.data as Float32Array;
      maxAbsDiff = 0;
      for (let i = 0; i < data.length; i++) {
        const d = Math.abs(data[i]! - check.output[i]!);
        maxAbsDiff = Number.isNaN(d) ? Infinity : Math.max(maxAbsDiff, d);
      }
      if (maxAbsDiff > REGISTER_DEFAULTS.checkTolerance) throw invalid(`it differs from PyTorch by ${maxAbsDiff.toExponential(2)} on the check image`);
    }

    const [aw, ah] = REGISTER_DEFAULTS.checkAspect;
    const size = typeof fh === 'number' && typeof fw === 'number' && fh > 0 && fw > 0
      ? { width: fw, height: fh }
      : generatorWorkingSize(aw * 1000, ah * 1000, meta.size);
    const x = new Tensor('float32', new Float32Array(3 * size.width * size.height).map((_, i) => Math.sin(i * 0.37)), [1, 3, size.height, size.width]);
    const y = (await sessions.run(model, { [input.name]: x }))[output.name];
    if (!(y instanceof Tensor) || y.dims.join() !== x.dims.join()) {
      throw invalid(`at ${size.width}×${size.height} it returned [${y instanceof Tensor ? y.dims.join(',') : '?'}], not [1,3,${size.height},${size.width}]`);
    }
    const slack = 1 + REGISTER_DEFAULTS.rangeSlack;
    for (const v of y.data as Float32Array) if (!(Math.abs(v) <= slack)) throw invalid('its output leaves [-1,1]');
    return { maxAbsDiff, checked: size };
  } finally {
    await sessions.releaseAll();
  }
}
