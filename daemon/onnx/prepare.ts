// The `prepare` step: derives, once per working size, the UNet graphs the pix2pix-zero pipeline runs
// and writes them next to the original (the original files are never modified):
//   unet/model.xattn.{h}x{w}.onnx    the UNet with its cross-attention maps as outputs
//   unet/model.grad.{h}x{w}.onnx     the guidance gradient graph (maps, loss, ∂L/∂sample)
//   unet/model.prepared.{h}x{w}.json the manifest: source hash, sizes, cross-attention sites
// ({h}x{w} is the latent size, pixels / 8; a batch other than the default adds `.b{B}`.) Both graphs
// reference the original external weights file; nothing is copied. Writes are atomic (temporary
// file, then rename), and a manifest matching the current source makes prepare a no-op. A caller that
// needs only the cross-attention graph (the reference pass at batch 1) asks for `graphs: 'xattn'`; the
// manifest then names no gradient graph, and a later request for both adds it. preparePipelineGraphs
// also derives the VAE encoder's parameters graph when the encoder draws its own sample
// (vae-parameters.ts) and the one model that serves the pipeline's three UNet roles with one copy of
// the weights (roles-model.ts):
//   unet/model.roles.{h}x{w}.onnx    roles `single` (cross-attention graph, batch 1), `pair` (the same,
//                                    batch 2) and `grad` (gradient graph, batch 2) as If branches
//   unet/model.roles.{h}x{w}.json    its manifest: source, the three graphs' files, each role's inputs
//                                    and outputs
// The source's identity (SHA-256 of the UNet graph file) is remembered per UNet path while the file's
// stat (device, inode, size, mtime, ctime) is unchanged, so confirming a current manifest costs a few
// stat calls instead of reading and hashing the graph.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { P2pzError } from '../../shared/protocol/errors.js';
import { decodeModel, sameFile, writeDerivedModel, writeFileAtomic, type FileIdentity } from './graph/model-io.js';
import { mapName } from './attention/cross-attention.js';
import { crossAttentionModel, guidanceGradientModel, unetInputDims, type UNetStaticSize } from './attention/guidance-graph.js';
import { externalLocations, type ModelProto } from './graph/onnx-proto.js';
import { prepareVaeParameters, type PreparedVaeParameters } from './vae-parameters.js';
import { rolesModel, type RoleSignature } from './roles-model.js';
import { runtimeShapeOperands } from './graph/runtime-shapes.js';
import { unfuseContribOps } from './unfuse/unfuse.js';
import { chosenPrecision, effectivePrecision, exportPrecision, precisionSource, precisionTag, UNetPrecision, type Precision } from './precision/unet-precision.js';

export const PREPARE_DEFAULTS = Object.freeze({
  /** Batch of the derived graphs: the two CFG branches of the edit pass. */
  batch: 2,
  /** The UNet inside a model folder. */
  unetPath: 'unet/model.onnx',
  /** Pixels per latent cell (the VAE's downsampling factor). */
  latentFactor: 8,
  /** Largest working size accepted, in pixels per side. */
  maxSide: 2048,
});

/** Bumped whenever the derived graphs or the manifest's shape change for the same source: older
 *  manifests are rebuilt, and older readers rebuild newer ones. 2: `files.grad` is optional (the
 *  cross-attention graph alone). 3: large attention sites run in blocks of queries and the backward
 *  recomputes elementwise tensors (autodiff/chunk-attention.ts, recompute.ts): the same values in far
 *  less memory, so graphs derived by formats 1 and 2 are derived again rather than kept. 4: the backward
 *  also recomputes reshapes, GroupNorm's InstanceNormalization, GEGLU's expanding projection and the
 *  smaller self-attention probabilities (recompute.ts): 2.28 → 0.99 GiB kept at 512². 5: and
 *  self-attention's Q, K and V from LayerNorm's kept x − μ (recompute.ts): 0.99 → 0.73 GiB. */
export const PREPARE_FORMAT_VERSION = 5;
const READABLE_FORMATS = [PREPARE_FORMAT_VERSION] as const;

/** Which derived graphs a caller needs: the cross-attention graph alone, or it and the gradient graph. */
export type PreparedGraphs = 'xattn' | 'both';

export interface PrepareOptions {
  /** Working size in pixels (multiples of 8; the UNet may need multiples of 64). */
  readonly height: number;
  readonly width: number;
  readonly batch?: number;
  /** Rebuild even when the manifest says the graphs are current. */
  readonly force?: boolean;
  /** Default 'both'. */
  readonly graphs?: PreparedGraphs;
  /** Precision of the derived graphs (precision/unet-precision.ts). Default: the folder's chosen
   *  weights precision (else the export's), computed in float32. */
  readonly precision?: UNetPrecision;
}

const SiteSchema = z.object({
  output: z.string(),
  node: z.string(),
  layout: z.enum(['batch_by_heads', 'batch_heads']),
  heads: z.number().int().positive(),
  queries: z.number().int().positive(),
  tokens: z.number().int().positive(),
});

/** The manifest file (read back from disk, so parsed). */
export const PreparedManifest = z.object({
  format: z.literal(READABLE_FORMATS),
  source: z.object({
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    externalData: z.array(z.object({ location: z.string(), size: z.number().int().nonnegative() })),
  }),
  batch: z.number().int().positive(),
  latentHeight: z.number().int().positive(),
  latentWidth: z.number().int().positive(),
  /** `grad` is absent when only the cross-attention graph was asked for. */
  files: z.object({ xattn: z.string(), grad: z.string().optional() }),
  sites: z.array(SiteSchema),
  /** Absent in manifests written before precisions existed: fp32 / fp32. */
  precision: UNetPrecision.optional(),
  /** The export's own weights precision, written only for a float16 export (the memory estimate
   *  counts its parameters from its bytes on disk). */
  exported: z.literal('fp16').optional(),
});
export type PreparedManifest = z.infer<typeof PreparedManifest>;

/** What `graphs: 'xattn'` yields. */
export interface PreparedCrossAttention {
  /** Absolute paths of the derived graph and the manifest. */
  readonly xattnPath: string;
  readonly manifestPath: string;
  readonly manifest: PreparedManifest;
  /** True when existing files were current and nothing was written. */
  readonly reused: boolean;
}

/** What `graphs: 'both'` (the default) yields. */
export interface PreparedUNet extends PreparedCrossAttention {
  readonly gradPath: string;
}

const FLOAT32: UNetPrecision = Object.freeze({ weights: 'fp32', compute: 'fp32' });

/** The precision prepare derives in when the caller names none: the folder's choice (else the
 *  export's) for the weights, computed in float32 (what every provider runs). Reads the graph's
 *  inputs only when no choice is recorded. */
export async function defaultPrecision(modelDir: string, compute?: Precision): Promise<UNetPrecision> {
  let weights = await chosenPrecision(modelDir);
  if (weights === undefined) {
    const { source, model } = await sourceOf(join(resolve(modelDir), PREPARE_DEFAULTS.unetPath));
    weights = exportedPrecision.get(source.sha256) ?? exportPrecision(model ?? decodeModel((await readUNet(join(resolve(modelDir), PREPARE_DEFAULTS.unetPath))).bytes));
    exportedPrecision.set(source.sha256, weights);
  }
  return { weights, compute: compute ?? 'fp32' };
}

/** The export precision per UNet source hash (read once). */
const exportedPrecision = new Map<string, Precision>();

export function derivedNames(size: UNetStaticSize, precision: UNetPrecision = FLOAT32): { xattn: string; grad: string; manifest: string } {
  const tag = `${size.latentHeight}x${size.latentWidth}${size.batch === PREPARE_DEFAULTS.batch ? '' : `.b${size.batch}`}${precisionTag(precision)}`;
  return { xattn: `model.xattn.${tag}.onnx`, grad: `model.grad.${tag}.onnx`, manifest: `model.prepared.${tag}.json` };
}

function staticSize(opts: PrepareOptions): UNetStaticSize {
  const f = PREPARE_DEFAULTS.latentFactor;
  const ok = (v: number): boolean => Number.isInteger(v) && v >= f && v <= PREPARE_DEFAULTS.maxSide && v % f === 0;
  if (!ok(opts.height) || !ok(opts.width)) {
    throw new P2pzError('E_BAD_REQUEST', `height and width must be multiples of ${f} from ${f} to ${PREPARE_DEFAULTS.maxSide}.`);
  }
  const batch = opts.batch ?? PREPARE_DEFAULTS.batch;
  if (!Number.isInteger(batch) || batch < 1 || batch > 16) throw new P2pzError('E_BAD_REQUEST', 'batch must be a whole number from 1 to 16.');
  return { batch, latentHeight: opts.height / f, latentWidth: opts.width / f };
}

/** The external data files a model references, with their sizes (a cheap identity for weights). */
async function externalDataFiles(locations: readonly string[], dir: string): Promise<{ location: string; size: number }[]> {
  const out: { location: string; size: number }[] = [];
  for (const location of locations) {
    try {
      out.push({ location, size: (await stat(join(dir, location))).size });
    } catch {
      throw new P2pzError('E_MODEL_INVALID', 'The UNet weights file is missing.');
    }
  }
  return out;
}

async function currentManifest(path: string, dir: string, source: PreparedManifest['source']): Promise<PreparedManifest | undefined> {
  let parsed: PreparedManifest;
  try {
    const r = PreparedManifest.safeParse(JSON.parse(await readFile(path, 'utf8')));
    if (!r.success) return undefined;
    parsed = r.data;
  } catch {
    return undefined;
  }
  if (JSON.stringify(parsed.source) !== JSON.stringify(source)) return undefined;
  try {
    await stat(join(dir, parsed.files.xattn));
    if (parsed.files.grad !== undefined) await stat(join(dir, parsed.files.grad));
  } catch {
    return undefined;
  }
  return parsed;
}

/** Per UNet path: the graph file's identity when it was last hashed, its SHA-256, and the external
 *  data locations it references (their sizes are stat'ed on every call). */
const knownSources = new Map<string, { readonly file: FileIdentity; readonly sha256: string; readonly locations: readonly string[] }>();

/** The graph file's bytes, and its identity stat'ed after reading. */
async function readUNet(unetPath: string): Promise<{ bytes: Buffer; file: FileIdentity }> {
  try {
    const bytes = await readFile(unetPath);
    return { bytes, file: await stat(unetPath) };
  } catch {
    throw new P2pzError('E_MODEL_MISSING', 'The model folder has no unet/model.onnx.');
  }
}

/** The source of the derived graphs: the graph file's hash (remembered while its stat is unchanged)
 *  and the sizes of the external data files. `model` is set when the graph had to be read. */
async function sourceOf(unetPath: string): Promise<{ source: PreparedManifest['source']; model?: ModelProto }> {
  const dir = dirname(unetPath);
  let file: FileIdentity;
  try {
    file = await stat(unetPath);
  } catch {
    throw new P2pzError('E_MODEL_MISSING', 'The model folder has no unet/model.onnx.');
  }
  const known = knownSources.get(unetPath);
  if (known && sameFile(known.file, file)) {
    return { source: { sha256: known.sha256, externalData: await externalDataFiles(known.locations, dir) } };
  }
  const read = await readUNet(unetPath);
  const model = decodeModel(read.bytes);
  const sha256 = createHash('sha256').update(read.bytes).digest('hex');
  const locations = externalLocations(model);
  // Remembered only when the file did not change while it was read.
  if (sameFile(read.file, file)) knownSources.set(unetPath, { file, sha256, locations });
  return { source: { sha256, externalData: await externalDataFiles(locations, dir) }, model };
}

/** The derived graphs the pix2pix-zero pipeline runs at one working size (pixels): the reference
 *  pass's cross-attention graph at batch 1, the edit pass's cross-attention and gradient graphs at
 *  batch 2 (the CFG pair), and, for a VAE encoder that outputs a drawn sample, its parameters graph
 *  (`vae`, null when the encoder outputs its parameters itself; see vae-parameters.ts). Installers
 *  prepare exactly these; the pipeline asks for them per job. */
export async function preparePipelineGraphs(
  modelDir: string, size: { readonly height: number; readonly width: number },
  options: { readonly force?: boolean; readonly precision?: UNetPrecision } = {},
): Promise<{ single: PreparedCrossAttention; pair: PreparedUNet; roles: PreparedRoles; vae: PreparedVaeParameters | null }> {
  const force = options.force === true;
  const precision = options.precision ?? await defaultPrecision(modelDir);
  const single = await prepareModel(modelDir, { ...size, batch: 1, graphs: 'xattn', force, precision });
  const pair = await prepareModel(modelDir, { ...size, batch: 2, force, precision });
  const roles = await prepareRoles(single, pair, force);
  const vae = await prepareVaeParameters(modelDir, { force });
  return { single, pair, roles, vae };
}

/** Bumped whenever the roles model changes for the same derived graphs. 2: shape operands computed
 *  at run time (graph/runtime-shapes.ts). 3: of a length unknown before the run, so that no tensor
 *  has a shape and onnxruntime plans the session in seconds again. */
export const ROLES_FORMAT_VERSION = 3;

/** The UNet roles the pipeline runs, in the order of the selector's values. */
export const UNET_ROLES = Object.freeze(['single', 'pair', 'grad'] as const);
export type UNetRole = (typeof UNET_ROLES)[number];

const RoleSignatureSchema = z.object({
  name: z.string(),
  inputs: z.array(z.object({ name: z.string(), dtype: z.number().int(), dims: z.array(z.number().int()) })),
  outputs: z.array(z.object({ name: z.string(), dtype: z.number().int(), dims: z.array(z.number().int()) })),
});

/** The roles model's manifest (read back from disk, so parsed). `graphs` names the files it was
 *  combined from, with their sizes: a rebuilt graph changes them, and the roles model follows. */
export const RolesManifest = z.object({
  format: z.literal(ROLES_FORMAT_VERSION),
  source: PreparedManifest.shape.source,
  graphs: z.array(z.object({ role: z.enum(UNET_ROLES), file: z.string(), size: z.number().int().nonnegative() })),
  roles: z.array(RoleSignatureSchema),
});
export type RolesManifest = z.infer<typeof RolesManifest>;

export interface PreparedRoles {
  /** Absolute paths of the roles model and its manifest. */
  readonly path: string;
  readonly manifestPath: string;
  readonly manifest: RolesManifest;
  readonly reused: boolean;
}

const rolesInFlight = new Map<string, Promise<PreparedRoles>>();

/** Combines the derived graphs of one working size into the roles model (a no-op when current). */
export function prepareRoles(single: PreparedCrossAttention, pair: PreparedUNet, force = false): Promise<PreparedRoles> {
  const dir = dirname(pair.xattnPath);
  const tag = `${pair.manifest.latentHeight}x${pair.manifest.latentWidth}${precisionTag(pair.manifest.precision ?? FLOAT32)}`;
  const path = join(dir, `model.roles.${tag}.onnx`);
  const pending = rolesInFlight.get(path);
  if (pending) return pending;
  const job = prepareRolesOnce(single, pair, path, join(dir, `model.roles.${tag}.json`), force).finally(() => rolesInFlight.delete(path));
  rolesInFlight.set(path, job);
  return job;
}

async function prepareRolesOnce(single: PreparedCrossAttention, pair: PreparedUNet, path: string, manifestPath: string, force: boolean): Promise<PreparedRoles> {
  const files: { role: UNetRole; path: string }[] = [
    { role: 'single', path: single.xattnPath },
    { role: 'pair', path: pair.xattnPath },
    { role: 'grad', path: pair.gradPath },
  ];
  const graphs = await Promise.all(files.map(async (f) => ({ role: f.role, file: relative(dirname(path), f.path), size: (await stat(f.path)).size })));
  if (!force) {
    try {
      const found = RolesManifest.safeParse(JSON.parse(await readFile(manifestPath, 'utf8')));
      if (found.success && JSON.stringify(found.data.source) === JSON.stringify(pair.manifest.source)
        && JSON.stringify(found.data.graphs) === JSON.stringify(graphs)) {
        await stat(path);
        return { path, manifestPath, manifest: found.data, reused: true };
      }
    } catch {
      // missing or unreadable: rebuild
    }
  }
  const roles = await Promise.all(files.map(async (f) => {
    const model = decodeModel(await readFile(f.path));
    // Each branch's inputs have symbolic dims in the roles model; with its shape operands computed at
    // run time, onnxruntime's planner holds no dead buffer for a later tensor (graph/runtime-shapes.ts).
    runtimeShapeOperands(model.graph, model.graph.input[0]!.name);
    return { name: f.role, model };
  }));
  const combined = rolesModel(roles);
  // The derived graphs already reference the weights file relative to this folder.
  await writeDerivedModel(combined.model, pair.xattnPath, path);
  const manifest: RolesManifest = { format: ROLES_FORMAT_VERSION, source: pair.manifest.source, graphs, roles: combined.signatures.map((s) => ({ name: s.name, inputs: [...s.inputs], outputs: [...s.outputs] })) as RolesManifest['roles'] };
  await writeFileAtomic(manifestPath, new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`));
  return { path, manifestPath, manifest, reused: false };
}

export type { RoleSignature };

/** In-flight preparations by manifest path: concurrent calls for the same graphs share one build
 *  (the temporary file names of atomic writes are per process). */
const inFlight = new Map<string, Promise<PreparedUNet | PreparedCrossAttention>>();

/** Derives (or reuses) the cross-attention and guidance gradient graphs of `modelDir`'s UNet
 *  (`graphs: 'xattn'`: the cross-attention graph only). */
export function prepareModel(modelDir: string, opts: PrepareOptions & { readonly graphs: 'xattn' }): Promise<PreparedCrossAttention>;
export function prepareModel(modelDir: string, opts: PrepareOptions & { readonly graphs?: 'both' }): Promise<PreparedUNet>;
export async function prepareModel(modelDir: string, opts: PrepareOptions): Promise<PreparedUNet | PreparedCrossAttention> {
  const size = staticSize(opts);
  const graphs = opts.graphs ?? 'both';
  const precision = opts.precision ?? await defaultPrecision(modelDir);
  // One build per manifest at a time: a request for both waits for a cross-attention-only build of
  // the same manifest, then adds the gradient graph.
  const key = join(resolve(modelDir), derivedNames(size, precision).manifest);
  for (let pending = inFlight.get(key); pending; pending = inFlight.get(key)) {
    const result = await pending.catch(() => undefined);
    if (result && (graphs === 'xattn' || 'gradPath' in result)) return result;
    if (!result) break;
  }
  const job = prepareOnce(modelDir, opts, size, graphs, precision).finally(() => {
    if (inFlight.get(key) === job) inFlight.delete(key);
  });
  inFlight.set(key, job);
  return job;
}

async function prepareOnce(modelDir: string, opts: PrepareOptions, size: UNetStaticSize, graphs: PreparedGraphs, requested: UNetPrecision): Promise<PreparedUNet | PreparedCrossAttention> {
  const unetPath = join(resolve(modelDir), PREPARE_DEFAULTS.unetPath);
  const dir = dirname(unetPath);
  const known = await sourceOf(unetPath);
  const { source } = known;
  const exported = exportedPrecision.get(source.sha256);
  // A float16 export has only float16 weights (known once its graph was read).
  const precision = exported === 'fp16' && requested.weights === 'fp32' ? { ...requested, weights: 'fp16' as const } : requested;
  const names = derivedNames(size, precision);
  const paths = { xattnPath: join(dir, names.xattn), manifestPath: join(dir, names.manifest) };
  const gradPath = join(dir, names.grad);
  let existing: PreparedManifest | undefined;
  if (!opts.force) {
    const found = await currentManifest(paths.manifestPath, dir, source);
    if (found && found.batch === size.batch && found.latentHeight === size.latentHeight && found.latentWidth === size.latentWidth
      && JSON.stringify(found.precision ?? FLOAT32) === JSON.stringify(precision)) existing = found;
  }
  if (existing && (graphs === 'xattn' || existing.files.grad !== undefined)) {
    return graphs === 'xattn' ? { ...paths, manifest: existing, reused: true } : { ...paths, gradPath, manifest: existing, reused: true };
  }
  // A precision conversion first (precision/unet-precision.ts: it refuses fused ops with a hint), then
  // an onnxruntime-optimized export's fused (com.microsoft) nodes are rewritten into standard ops:
  // every derived graph comes from this unfused twin (unfuse/unfuse.ts).
  const original = known.model ?? decodeModel((await readUNet(unetPath)).bytes);
  exportedPrecision.set(source.sha256, exportPrecision(original));
  const effective = effectivePrecision(original, precision);
  if (JSON.stringify(effective) !== JSON.stringify(precision)) return prepareOnce(modelDir, opts, size, graphs, effective);
  const converted = await precisionSource(unetPath, original, source.sha256, precision, opts.force === true);
  const model = unfuseContribOps(converted, unetInputDims(converted, size));
  let sites = existing?.sites;
  if (!sites) {
    let xattn: ReturnType<typeof crossAttentionModel>;
    try {
      xattn = crossAttentionModel(model, size);
    } catch (e) {
      // A size the UNet's down/up-sampling cannot take shows up as a shape conflict (skip connections).
      if (e instanceof P2pzError && e.code === 'E_MODEL_INVALID' && /shape inference failed/.test(e.message)) {
        throw new P2pzError('E_BAD_REQUEST', `The UNet cannot run at ${opts.width}×${opts.height} pixels.`, 'Use a working size whose sides are multiples of 64.');
      }
      throw e;
    }
    await writeDerivedModel(xattn.model, unetPath, paths.xattnPath);
    sites = xattn.sites.map((s) => ({
      output: mapName(s.index), node: s.node, layout: s.layout, heads: s.heads, queries: s.queries, tokens: s.tokens,
    }));
  }
  // Only a current manifest with the cross-attention graph alone gets here with `existing` set: the
  // gradient graph is added to it.
  if (graphs === 'both') {
    const grad = guidanceGradientModel(model, size);
    await writeDerivedModel(grad.model, unetPath, gradPath);
  }
  const manifest: PreparedManifest = {
    format: PREPARE_FORMAT_VERSION,
    source,
    batch: size.batch,
    latentHeight: size.latentHeight,
    latentWidth: size.latentWidth,
    files: graphs === 'both' ? { xattn: names.xattn, grad: names.grad } : { xattn: names.xattn },
    sites,
    ...(precision.weights === 'fp32' && precision.compute === 'fp32' ? {} : { precision }),
    ...(exportPrecision(original) === 'fp16' ? { exported: 'fp16' as const } : {}),
  };
  // The manifest goes last: its presence certifies the graphs it names.
  await writeFileAtomic(paths.manifestPath, new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`));
  return graphs === 'xattn' ? { ...paths, manifest, reused: false } : { ...paths, gradPath, manifest, reused: false };
}
