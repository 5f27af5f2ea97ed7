// A Stable Diffusion 1.x model folder (docs/DESIGN.md §2) as the pipeline uses it: which folder (a job's
// `model`, else the default name, else the only one installed), its scheduler configuration,
// tokenizer (parsed once per folder while its files are unchanged) and latent scale, and how each
// ONNX component is fed — element types and ranks read from the sessions' input metadata (text ids
// int32 or int64; timestep int64 [B], or a float/int scalar), never assumed from one exporter.
// A VAE encoder that draws its own sample (output latent_sample) is read through its derived
// parameters graph, so z0 comes from the seeded generator (vae-parameters.ts). Every file goes through
// the models directory's containment checks.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Tensor } from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import { z } from 'zod';
import { P2pzError } from '../../shared/protocol/index.js';
import { MODELS_DEFAULTS } from '../models/defaults.js';
import { encoderSampleOutput, VAE_PARAMETERS_DEFAULTS } from '../onnx/vae-parameters.js';
import { declaredSignature } from '../onnx/graph/signature.js';
import { fromFloat16Array, toFloat16Array } from '../onnx/graph/float16.js';
import type { ModelSessions } from './context.js';
import { loadSchedulerConfig, stableDiffusionSchedule, type SchedulerConfig } from './scheduler/scheduler-config.js';
import { ClipTokenizer } from './text/clip-tokenizer.js';

export const DIFFUSION_MODEL_DEFAULTS = Object.freeze({
  /** The folder a job without `model` uses when it is installed (the installer's default model). */
  defaultName: MODELS_DEFAULTS.name,
  /** Stable Diffusion 1.x's VAE latent scale (used unless the model's VAE config says otherwise). */
  latentScale: 0.18215,
  /** Largest model_index.json / VAE config.json read. */
  maxConfigBytes: 64 * 1024,
  /** Tokenizers kept parsed (by folder), since every edit loads its model: parsing CLIP's vocabulary
   *  and merges takes a few hundred milliseconds. */
  tokenizerCacheEntries: 4,
});

/** Component files inside a model folder (the diffusers / optimum ONNX layout). */
export const MODEL_LAYOUT = Object.freeze({
  index: 'model_index.json',
  textEncoder: 'text_encoder/model.onnx',
  unet: 'unet/model.onnx',
  vaeEncoder: 'vae_encoder/model.onnx',
  vaeDecoder: 'vae_decoder/model.onnx',
  tokenizer: 'tokenizer',
  scheduler: 'scheduler/scheduler_config.json',
  /** Where a VAE's `scaling_factor` may be stated (first found wins). */
  vaeConfigs: ['vae_decoder/config.json', 'vae_encoder/config.json', 'vae/config.json'],
});

const MODEL_NAME = /^[A-Za-z0-9._-]{1,100}$/;
const INSTALL_HINT = `Install a Stable Diffusion 1.x ONNX model with \`${MODELS_DEFAULTS.installCommand}\`, then try again.`;

const ModelIndex = z.record(z.string(), z.unknown());
const VaeConfig = z.looseObject({ scaling_factor: z.number().positive().max(100).optional() });

/** How the UNet's timestep is fed: element type and whether it is a scalar or [B]. */
export interface TimestepInput {
  readonly type: 'int64' | 'int32' | 'float32' | 'float16';
  readonly scalar: boolean;
}

export interface DiffusionModel {
  /** Folder name inside the models directory. */
  readonly name: string;
  /** Folder path relative to the models directory. */
  readonly folder: string;
  readonly scheduler: SchedulerConfig;
  readonly tokenizer: ClipTokenizer;
  readonly latentScale: number;
  /** Component paths relative to the models directory. */
  readonly paths: { readonly textEncoder: string; readonly unet: string; readonly vaeEncoder: string; readonly vaeDecoder: string };
  readonly textEncoder: { readonly input: string; readonly output: string; readonly ids: 'int32' | 'int64' };
  readonly timestep: TimestepInput;
  /** D: width of encoder_hidden_states. */
  readonly textWidth: number;
  /** The VAE encoder. `kind`: what the export returns, the posterior's parameters (mean ‖ logvar) or
   *  a sample it draws itself (diffusers' conversion script). The parameters are always read from
   *  `parameters` (relative to the models directory) at `output`: the export itself, or for a
   *  sampling export its derived parameters graph (vae-parameters.ts, made by the prepare step). */
  readonly vaeEncoder: {
    readonly input: string;
    readonly output: string;
    readonly kind: 'parameters' | 'sample';
    readonly parameters: string;
    /** The image's element type: float16 for a float16 export (optimum `--fp16`). */
    readonly inputType: FloatInputType;
  };
  readonly vaeDecoder: { readonly input: string; readonly output: string; readonly inputType: FloatInputType };
  /** The UNet export's own precision (the derived graphs take float32 either way). */
  readonly unetExport: 'fp32' | 'fp16';
}

/** Element type of a float input: float16 exports take (and return) half-precision tensors; the
 *  pipeline converts at the session boundary and computes in float32 itself. */
export type FloatInputType = 'float32' | 'float16';

type SessionInfo = Pick<InferenceSession, 'inputNames' | 'outputNames' | 'inputMetadata' | 'outputMetadata'>;

function invalid(detail: string): P2pzError {
  return new P2pzError('E_MODEL_INVALID', detail);
}

function tensorMeta(session: SessionInfo, name: string, where: 'input' | 'output'): InferenceSession.TensorValueMetadata | undefined {
  const list = where === 'input' ? session.inputMetadata : session.outputMetadata;
  const m = list.find((v) => v.name === name);
  return m?.isTensor ? m : undefined;
}

/** The folder names in the models directory that hold a model_index.json. */
export async function listDiffusionModels(models: Pick<ModelSessions, 'modelsDir' | 'resolve'>): Promise<string[]> {
  let names: string[];
  try {
    names = (await readdir(models.modelsDir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const name of names) {
    if (!MODEL_NAME.test(name)) continue;
    try {
      await models.resolve(join(name, MODEL_LAYOUT.index));
      out.push(name);
    } catch {
      // not a model folder
    }
  }
  return out;
}

/** The model a job uses: `requested` when given, else the default name, else the only installed one. */
export async function chooseDiffusionModel(models: Pick<ModelSessions, 'modelsDir' | 'resolve'>, requested?: string): Promise<string> {
  if (requested !== undefined) {
    if (!MODEL_NAME.test(requested)) throw new P2pzError('E_BAD_REQUEST', 'The model name may hold only letters, digits, ".", "_" and "-".');
    try {
      await models.resolve(join(requested, MODEL_LAYOUT.index));
    } catch (err) {
      if (err instanceof P2pzError && err.code === 'E_MODEL_INVALID') throw err;
      throw new P2pzError('E_MODEL_MISSING', `The diffusion model "${requested}" is not installed.`, INSTALL_HINT);
    }
    return requested;
  }
  const installed = await listDiffusionModels(models);
  if (installed.includes(DIFFUSION_MODEL_DEFAULTS.defaultName)) return DIFFUSION_MODEL_DEFAULTS.defaultName;
  if (installed.length === 1) return installed[0]!;
  if (installed.length === 0) throw new P2pzError('E_MODEL_MISSING', 'No diffusion model is installed.', INSTALL_HINT);
  throw new P2pzError('E_BAD_REQUEST', `Several diffusion models are installed (${installed.slice(0, 5).join(', ')}); name one in the request.`);
}

/** The files a tokenizer is read from; a change to any of them (inode, size, mtime) reloads it. */
const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json'] as const;

const tokenizerMemo = new Map<string, { readonly stamp: string; readonly tokenizer: Promise<ClipTokenizer> }>();

/** The tokenizer of the folder `dir` (a real path), parsed once while its files are unchanged. */
async function loadTokenizer(dir: string): Promise<ClipTokenizer> {
  const stamps = await Promise.all(TOKENIZER_FILES.map(async (f) => {
    try {
      const s = await stat(join(dir, f));
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return '-';
    }
  }));
  const stamp = stamps.join('|');
  const entry = tokenizerMemo.get(dir);
  if (entry?.stamp === stamp) {
    tokenizerMemo.delete(dir);
    tokenizerMemo.set(dir, entry);
    return entry.tokenizer;
  }
  const tokenizer = ClipTokenizer.load(dir);
  tokenizerMemo.delete(dir);
  tokenizerMemo.set(dir, { stamp, tokenizer });
  for (const key of tokenizerMemo.keys()) {
    if (tokenizerMemo.size <= DIFFUSION_MODEL_DEFAULTS.tokenizerCacheEntries) break;
    tokenizerMemo.delete(key);
  }
  tokenizer.catch(() => {
    if (tokenizerMemo.get(dir)?.tokenizer === tokenizer) tokenizerMemo.delete(dir);
  });
  return tokenizer;
}

async function readJsonFile<T>(path: string, schema: z.ZodType<T>, what: string): Promise<T> {
  const info = await stat(path);
  if (info.size > DIFFUSION_MODEL_DEFAULTS.maxConfigBytes) throw invalid(`${what} is too large.`);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    throw invalid(`${what} is not valid JSON.`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw invalid(`${what} is not a valid configuration.`);
  return parsed.data;
}

async function latentScaleOf(models: Pick<ModelSessions, 'resolve'>, folder: string): Promise<number> {
  for (const rel of MODEL_LAYOUT.vaeConfigs) {
    let path: string;
    try {
      path = await models.resolve(join(folder, rel));
    } catch {
      continue;
    }
    const cfg = await readJsonFile(path, VaeConfig, rel);
    if (cfg.scaling_factor !== undefined) return cfg.scaling_factor;
  }
  return DIFFUSION_MODEL_DEFAULTS.latentScale;
}

/** The parts of a model folder the text side needs (tokenizer, text encoder); what Δ is made from. */
export type TextModel = Pick<DiffusionModel, 'name' | 'folder' | 'tokenizer' | 'paths' | 'textEncoder' | 'textWidth'>;

function componentPaths(folder: string): DiffusionModel['paths'] {
  return {
    textEncoder: join(folder, MODEL_LAYOUT.textEncoder),
    unet: join(folder, MODEL_LAYOUT.unet),
    vaeEncoder: join(folder, MODEL_LAYOUT.vaeEncoder),
    vaeDecoder: join(folder, MODEL_LAYOUT.vaeDecoder),
  };
}

/** Loads only the tokenizer and the text encoder's conventions of the folder `name` (no UNet, no VAE). */
export async function loadTextModel(models: ModelSessions, name: string): Promise<TextModel> {
  const folder = name;
  await readJsonFile(await models.resolve(join(folder, MODEL_LAYOUT.index)), ModelIndex, 'model_index.json');
  const tokenizer = await loadTokenizer(dirname(await models.resolve(join(folder, MODEL_LAYOUT.tokenizer, 'vocab.json'))));
  const paths = componentPaths(folder);
  const te = await models.get(paths.textEncoder);
  const teInput = te.inputNames[0];
  const teInputMeta = teInput === undefined ? undefined : tensorMeta(te, teInput, 'input');
  if (!teInput || !teInputMeta || (teInputMeta.type !== 'int32' && teInputMeta.type !== 'int64')) {
    throw invalid('The text encoder must take input_ids as int32 or int64.');
  }
  const teOutput = te.outputNames.includes('last_hidden_state') ? 'last_hidden_state' : te.outputNames[0];
  if (!teOutput) throw invalid('The text encoder has no output.');
  const textEncoder = { input: teInput, output: teOutput, ids: teInputMeta.type };
  let width = tensorMeta(te, teOutput, 'output')?.shape[2];
  if (typeof width !== 'number' || width <= 0) {
    // A symbolic width: one run of the empty text tells it.
    const ids = tokenizer.encode('').ids;
    const input = textEncoder.ids === 'int64'
      ? new Tensor('int64', BigInt64Array.from(ids, (v) => BigInt(v)), [1, ids.length])
      : new Tensor('int32', Int32Array.from(ids), [1, ids.length]);
    const out = outputData(await models.run(paths.textEncoder, { [teInput]: input }), teOutput);
    width = out.length / ids.length;
  }
  return { name, folder, tokenizer, paths, textEncoder, textWidth: width };
}

/** Loads the folder `name` of the models directory: configuration, tokenizer, and the components'
 *  input/output conventions from their sessions' metadata (sessions stay in the cache). */
export async function loadDiffusionModel(models: ModelSessions, name: string): Promise<DiffusionModel> {
  const text = await loadTextModel(models, name);
  const { folder, paths } = text;
  const scheduler = stableDiffusionSchedule(await loadSchedulerConfig(await models.resolve(join(folder, MODEL_LAYOUT.scheduler))));
  const latentScale = await latentScaleOf(models, folder);

  // From the graph file, not a session (onnx/graph/signature.ts).
  const unet = declaredSignature(await readFile(await models.resolve(paths.unet)));
  const ts = tensorMeta(unet, 'timestep', 'input');
  const ehs = tensorMeta(unet, 'encoder_hidden_states', 'input');
  const sample = tensorMeta(unet, 'sample', 'input');
  if (!sample || !ts || !ehs || !unet.outputNames.includes('out_sample')) {
    throw invalid('The UNet must take sample, timestep and encoder_hidden_states and return out_sample.');
  }
  if (sample.type !== ehs.type || (sample.type !== 'float32' && sample.type !== 'float16')) {
    throw invalid(`The UNet takes ${sample.type} latents and ${ehs.type} text; p2pz runs float32 and float16 exports.`);
  }
  if (ts.type !== 'int64' && ts.type !== 'int32' && ts.type !== 'float32' && ts.type !== 'float16') {
    throw invalid(`The UNet's timestep has the unsupported type ${ts.type}.`);
  }
  const width = ehs.shape[2];
  if (typeof width !== 'number' || width <= 0) throw invalid('The UNet does not declare the width of encoder_hidden_states.');
  if (width !== text.textWidth) throw invalid(`The text encoder's width ${text.textWidth} differs from the UNet's ${width}.`);

  const enc = await models.get(paths.vaeEncoder);
  const encInput = enc.inputNames[0];
  if (!encInput || enc.outputNames.length === 0) throw invalid('The VAE encoder has no input or output.');
  const encInputType = floatInputType(tensorMeta(enc, encInput, 'input')?.type, 'VAE encoder');
  const sampled = encoderSampleOutput(enc.outputNames.map((name) => ({ name, channels: tensorMeta(enc, name, 'output')?.shape[1] })));
  const vaeEncoder = sampled === null
    ? {
      input: encInput,
      output: enc.outputNames.includes(VAE_PARAMETERS_DEFAULTS.parametersOutput) ? VAE_PARAMETERS_DEFAULTS.parametersOutput : enc.outputNames[0] as string,
      kind: 'parameters' as const,
      parameters: paths.vaeEncoder,
      inputType: encInputType,
    }
    : {
      input: encInput,
      output: VAE_PARAMETERS_DEFAULTS.parametersOutput,
      kind: 'sample' as const,
      parameters: join(folder, dirname(MODEL_LAYOUT.vaeEncoder), VAE_PARAMETERS_DEFAULTS.derivedFile),
      inputType: encInputType,
    };

  const dec = await models.get(paths.vaeDecoder);
  const decInput = dec.inputNames.includes('latent_sample') ? 'latent_sample' : dec.inputNames[0];
  const decOutput = dec.outputNames.includes('sample') ? 'sample' : dec.outputNames[0];
  if (!decInput || !decOutput) throw invalid('The VAE decoder has no input or output.');

  return {
    ...text,
    scheduler,
    latentScale,
    timestep: { type: ts.type, scalar: ts.shape.length === 0 },
    vaeEncoder,
    vaeDecoder: { input: decInput, output: decOutput, inputType: floatInputType(tensorMeta(dec, decInput, 'input')?.type, 'VAE decoder') },
    unetExport: sample.type === 'float16' ? 'fp16' : 'fp32',
  };
}

function floatInputType(type: string | undefined, what: string): FloatInputType {
  if (type === 'float32' || type === 'float16') return type;
  throw invalid(`The ${what} takes ${type ?? 'no tensor'} input; p2pz runs float32 and float16 exports.`);
}

/** A float input tensor of the model's element type from float32 data (rounded to nearest-even for
 *  float16). */
export function floatTensor(type: FloatInputType, data: Float32Array, dims: readonly number[]): Tensor {
  return type === 'float16' ? new Tensor('float16', toFloat16Array(data), [...dims]) : new Tensor('float32', data, [...dims]);
}

/** The timestep tensor for `batch` rows: [B] or a scalar, of the model's element type. */
export function timestepTensor(input: TimestepInput, t: number, batch: number): Tensor {
  const n = input.scalar ? 1 : batch;
  const dims = input.scalar ? [] : [batch];
  switch (input.type) {
    case 'int64':
      return new Tensor('int64', new BigInt64Array(n).fill(BigInt(t)), dims);
    case 'int32':
      return new Tensor('int32', new Int32Array(n).fill(t), dims);
    case 'float32':
      return new Tensor('float32', new Float32Array(n).fill(t), dims);
    case 'float16':
      return new Tensor('float16', new Uint16Array(n).fill(float16Bits(t)), dims);
  }
}

/** IEEE half-precision bits of a small non-negative integer (timesteps are < 2048: exact). */
function float16Bits(v: number): number {
  if (v === 0) return 0;
  const e = Math.floor(Math.log2(v));
  const m = Math.round((v / 2 ** e - 1) * 1024);
  return ((e + 15) << 10) | m;
}

/** The float32 data of a named output (a float16 output, from a float16 export, is widened), checked
 *  against the expected element count. */
export function outputData(result: InferenceSession.ReturnType, name: string, length?: number): Float32Array {
  const value = result[name];
  if (!(value instanceof Tensor) || (value.type !== 'float32' && value.type !== 'float16')) throw invalid(`The model returned no float32 ${name}.`);
  const data = value.type === 'float16' ? fromFloat16Array(value.data as Uint16Array) : value.data as Float32Array;
  if (length !== undefined && data.length !== length) throw invalid(`The model returned ${name} with ${data.length} values, not ${length}.`);
  return data;
}

const hashMemo = new Map<string, Promise<string>>();

/** SHA-256 of a file (hex), remembered per (path, size, mtime) for the process's lifetime. */
export async function fileHash(path: string): Promise<string> {
  const info = await stat(path);
  const key = `${path}\u0000${info.size}\u0000${info.mtimeMs}`;
  let entry = hashMemo.get(key);
  if (!entry) {
    entry = new Promise<string>((resolve, reject) => {
      const h = createHash('sha256');
      createReadStream(path).on('data', (c) => h.update(c)).on('error', reject).on('end', () => resolve(h.digest('hex')));
    });
    hashMemo.set(key, entry);
    entry.catch(() => hashMemo.delete(key));
  }
  return entry;
}

/** Hash of a component: its model file and, for external weights, the files beside it. */
export async function componentHash(models: Pick<ModelSessions, 'resolve'>, relPath: string): Promise<string> {
  const real = await models.resolve(relPath);
  const dir = dirname(real);
  const h = createHash('sha256').update(await fileHash(real));
  for (const e of (await readdir(dir, { withFileTypes: true })).filter((x) => x.isFile()).map((x) => x.name).sort()) {
    if (e === 'model.onnx' || e.endsWith('.json') || /^model\.(xattn|grad|params|roles|precision|fp16|fp16-fp32|unfused)\./.test(e)) continue;
    h.update(e).update(await fileHash(join(dir, e)));
  }
  return h.digest('hex');
}

/** Feeds of one UNet call: sample [B,C,h,w], timestep (model's type and rank), encoder_hidden_states
 *  [B,T,D], plus any extra inputs (the gradient graph's reference maps). */
export function unetFeeds(
  model: Pick<DiffusionModel, 'timestep' | 'textWidth'>,
  sample: Float32Array,
  dims: readonly [number, number, number, number],
  t: number,
  context: Float32Array,
  extra: Record<string, Tensor> = {},
): InferenceSession.FeedsType {
  const B = dims[0];
  const D = model.textWidth;
  const T = context.length / (B * D);
  if (!Number.isInteger(T) || sample.length !== dims.reduce((a, b) => a * b, 1)) {
    throw new P2pzError('E_INTERNAL', 'UNet feeds: the sample or the text context has the wrong size.');
  }
  return {
    sample: new Tensor('float32', sample, [...dims]),
    timestep: timestepTensor(model.timestep, t, B),
    encoder_hidden_states: new Tensor('float32', context, [B, T, D]),
    ...extra,
  };
}
