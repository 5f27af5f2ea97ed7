// The `prepare` step: derives, once per working size, the UNet graphs the pix2pix-zero pipeline runs
// and writes them next to the original (the original files are never modified):
//   unet/model.xattn.{h}x{w}.onnx    the UNet with its cross-attention maps as outputs
//   unet/model.grad.{h}x{w}.onnx     the guidance gradient graph (maps, loss, ∂L/∂sample)
//   unet/model.prepared.{h}x{w}.json the manifest: source hash, sizes, cross-attention sites
// ({h}x{w} is the latent size, pixels / 8; a batch other than the default adds `.b{B}`.) Both graphs
// reference the original external weights file; nothing is copied. Writes are atomic (temporary
// file, then rename), and a manifest matching the current source makes prepare a no-op.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { P2pzError } from '../../shared/protocol/errors.js';
import { decodeModel as decodeChecked, writeDerivedModel, writeFileAtomic } from './graph/model-io.js';
import type { ModelProto as GraphIoModel } from './graph/onnx-proto.js';
import { crossAttentionModel, guidanceGradientModel, type UNetStaticSize } from './attention/guidance-graph.js';
import { int, isExternal, type ModelProto } from './autodiff/proto.js';

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

/** Bumped whenever the derived graphs change for the same source: older manifests are rebuilt. */
export const PREPARE_FORMAT_VERSION = 1;

export interface PrepareOptions {
  /** Working size in pixels (multiples of 8; the UNet may need multiples of 64). */
  readonly height: number;
  readonly width: number;
  readonly batch?: number;
  /** Rebuild even when the manifest says the graphs are current. */
  readonly force?: boolean;
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
  format: z.literal(PREPARE_FORMAT_VERSION),
  source: z.object({
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    externalData: z.array(z.object({ location: z.string(), size: z.number().int().nonnegative() })),
  }),
  batch: z.number().int().positive(),
  latentHeight: z.number().int().positive(),
  latentWidth: z.number().int().positive(),
  files: z.object({ xattn: z.string(), grad: z.string() }),
  sites: z.array(SiteSchema),
});
export type PreparedManifest = z.infer<typeof PreparedManifest>;

export interface PreparedUNet {
  /** Absolute paths of the derived graphs and the manifest. */
  readonly xattnPath: string;
  readonly gradPath: string;
  readonly manifestPath: string;
  readonly manifest: PreparedManifest;
  /** True when existing files were current and nothing was written. */
  readonly reused: boolean;
}

export function derivedNames(size: UNetStaticSize): { xattn: string; grad: string; manifest: string } {
  const tag = `${size.latentHeight}x${size.latentWidth}${size.batch === PREPARE_DEFAULTS.batch ? '' : `.b${size.batch}`}`;
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
async function externalDataFiles(model: ModelProto, dir: string): Promise<{ location: string; size: number }[]> {
  const locations = new Set<string>();
  for (const t of model.graph.initializer) {
    if (!isExternal(t)) continue;
    const loc = t.externalData?.find((e) => e.key === 'location')?.value;
    if (loc) locations.add(loc);
  }
  const out: { location: string; size: number }[] = [];
  for (const location of [...locations].sort()) {
    try {
      out.push({ location, size: int((await stat(join(dir, location))).size) });
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
    await stat(join(dir, parsed.files.grad));
  } catch {
    return undefined;
  }
  return parsed;
}

/** In-flight preparations by manifest path: concurrent calls for the same graphs share one build
 *  (the temporary file names of atomic writes are per process). */
const inFlight = new Map<string, Promise<PreparedUNet>>();

/** Derives (or reuses) the cross-attention and guidance gradient graphs of `modelDir`'s UNet. */
export async function prepareModel(modelDir: string, opts: PrepareOptions): Promise<PreparedUNet> {
  const size = staticSize(opts);
  const key = join(resolve(modelDir), derivedNames(size).manifest);
  const pending = inFlight.get(key);
  if (pending) return pending;
  const job = prepareOnce(modelDir, opts, size).finally(() => inFlight.delete(key));
  inFlight.set(key, job);
  return job;
}

async function prepareOnce(modelDir: string, opts: PrepareOptions, size: UNetStaticSize): Promise<PreparedUNet> {
  const unetPath = join(modelDir, PREPARE_DEFAULTS.unetPath);
  const dir = dirname(unetPath);
  let bytes: Buffer;
  try {
    bytes = await readFile(unetPath);
  } catch {
    throw new P2pzError('E_MODEL_MISSING', 'The model folder has no unet/model.onnx.');
  }
  const model = decodeChecked(bytes) as unknown as ModelProto;
  const source = {
    sha256: createHash('sha256').update(bytes).digest('hex'),
    externalData: await externalDataFiles(model, dir),
  };
  const names = derivedNames(size);
  const paths = { xattnPath: join(dir, names.xattn), gradPath: join(dir, names.grad), manifestPath: join(dir, names.manifest) };
  if (!opts.force) {
    const existing = await currentManifest(paths.manifestPath, dir, source);
    if (existing && existing.batch === size.batch && existing.latentHeight === size.latentHeight && existing.latentWidth === size.latentWidth) {
      return { ...paths, manifest: existing, reused: true };
    }
  }
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
  await writeDerivedModel(xattn.model as unknown as GraphIoModel, unetPath, paths.xattnPath);
  const grad = guidanceGradientModel(model, size);
  await writeDerivedModel(grad.model as unknown as GraphIoModel, unetPath, paths.gradPath);
  const manifest: PreparedManifest = {
    format: PREPARE_FORMAT_VERSION,
    source,
    batch: size.batch,
    latentHeight: size.latentHeight,
    latentWidth: size.latentWidth,
    files: { xattn: names.xattn, grad: names.grad },
    sites: xattn.sites.map((s) => ({
      output: `attn_map_${String(s.index).padStart(2, '0')}`, node: s.node, layout: s.layout, heads: s.heads, queries: s.queries, tokens: s.tokens,
    })),
  };
  // The manifest goes last: its presence certifies both graphs.
  await writeFileAtomic(paths.manifestPath, new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`));
  return { ...paths, manifest, reused: false };
}
