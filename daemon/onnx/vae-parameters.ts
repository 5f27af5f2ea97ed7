// The VAE encoder's parameters graph: for an encoder exported with a `latent_sample` output (diffusers'
// conversion script exports `vae.encode(sample).latent_dist.sample()`, so the graph draws its own,
// unseeded noise), derives once, next to the original, `vae_encoder/model.params.onnx` whose output
// `latent_parameters` [B,8,h,w] is the posterior's moments (mean ‖ logvar, the quant_conv output), so
// the pipeline samples with its own seeded generator (docs/DESIGN.md §3 step 1). The sampling subgraph that
// torch.onnx writes for DiagonalGaussianDistribution.sample()
//   mean, logvar = Split(moments) or Slice, Slice     (chunk(moments, 2, dim=1))
//   std = Exp(Mul(Clip(logvar, −30, 20), 0.5))        (maybe through Cast / Identity / Div / Sqrt)
//   n = RandomNormalLike(…) or RandomNormal           (randn(mean.shape) / randn_like(mean))
//   latent_sample = Add(mean, Mul(std, n))
// is recognised from the noise node outward, the moments become the output and every node that only
// served the sample is pruned. Weights are shared: external references point at the original weights
// file (inline tensors are copied into the derived file). `vae_encoder/model.params.json` records the
// source's hash; a current manifest makes the step a no-op, and the source's stat is remembered per
// process so confirming costs a few stat calls. Writes are atomic; the original is never modified.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { P2pzError } from '../../shared/protocol/errors.js';
import { namesInUse, producers, consumers, topologicalOrder } from './graph/graph-index.js';
import { decodeModel, encodeModel, externalDataRefs, graphOf, writeDerivedModel, writeFileAtomic } from './graph/model-io.js';
import { int64ToNumber, onnx } from './graph/onnx-proto.js';
import type { GraphFields, ModelFields, NodeFields, TensorFields, ValueInfoFields } from './graph/onnx-proto.js';

export const VAE_PARAMETERS_DEFAULTS = Object.freeze({
  /** The encoder inside a model folder. */
  encoderPath: 'vae_encoder/model.onnx',
  /** The derived graph and its manifest, beside the encoder. */
  derivedFile: 'model.params.onnx',
  manifestFile: 'model.params.json',
  /** Output names: what the derived graph returns, and the sample output it replaces. */
  parametersOutput: 'latent_parameters',
  sampleOutput: 'latent_sample',
  /** Longest chain of elementwise nodes accepted between log σ² and σ. */
  maxSigmaChain: 16,
});

/** Bumped when the derived graph or the manifest changes for the same source (older ones are rebuilt). */
export const VAE_PARAMETERS_FORMAT_VERSION = 1;

export const VaeParametersManifest = z.object({
  format: z.literal(VAE_PARAMETERS_FORMAT_VERSION),
  source: z.object({
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    externalData: z.array(z.object({ location: z.string(), size: z.number().int().nonnegative() })),
  }),
  /** The derived graph's file name (beside the encoder). */
  file: z.string(),
  /** The moments tensor of the source graph that became `latent_parameters`. */
  moments: z.string(),
  /** Op types of the pruned nodes, in graph order. */
  pruned: z.array(z.string()),
});
export type VaeParametersManifest = z.infer<typeof VaeParametersManifest>;

export interface PreparedVaeParameters {
  /** Absolute paths of the derived graph and its manifest. */
  readonly path: string;
  readonly manifestPath: string;
  readonly manifest: VaeParametersManifest;
  /** True when existing files were current and nothing was written. */
  readonly reused: boolean;
}

/**
 * Which output of an encoder is a drawn sample, from its outputs' names and channel counts: null when
 * it outputs `latent_parameters` (or an output that is not a 4-channel sample); else `latent_sample`
 * when present, or the first output when it has 4 channels. The loader and this step agree through it.
 */
export function encoderSampleOutput(outputs: readonly { readonly name: string; readonly channels?: number | string | undefined }[]): string | null {
  const names = outputs.map((o) => o.name);
  if (names.includes(VAE_PARAMETERS_DEFAULTS.parametersOutput)) return null;
  const chosen = names.includes(VAE_PARAMETERS_DEFAULTS.sampleOutput) ? VAE_PARAMETERS_DEFAULTS.sampleOutput : names[0];
  if (chosen === undefined) return null;
  return chosen === VAE_PARAMETERS_DEFAULTS.sampleOutput || outputs.find((o) => o.name === chosen)?.channels === 4 ? chosen : null;
}

/** Output names and channel counts of a graph (for encoderSampleOutput). */
function graphOutputs(graph: GraphFields): { name: string; channels: number | undefined }[] {
  return (graph.output ?? []).map((o) => {
    const d = o.type?.tensorType?.shape?.dim?.[1]?.dimValue;
    return { name: o.name ?? '', channels: d === undefined || d === null ? undefined : int64ToNumber(d) };
  });
}

function invalid(detail: string): P2pzError {
  return new P2pzError('E_MODEL_INVALID', `The VAE encoder outputs a sample drawn inside its graph, and ${detail}`,
    'Export the VAE encoder with a latent_parameters output (mean ‖ logvar), or with the standard sampling of diffusers\' conversion script.');
}

// ---------------------------------------------------------------------------------------------------
// The graph rewrite.

/** Ops that pass a value through unchanged in meaning. */
const PASS_THROUGH = new Set(['Identity', 'Cast']);
const RANDOM_NORMAL = new Set(['RandomNormalLike', 'RandomNormal']);
/** Elementwise ops torch writes between log σ² and σ (clamp, ½·, exp; or √exp, /2). */
const TO_SIGMA = new Set(['Clip', 'Max', 'Min', 'Mul', 'Div', 'Exp', 'Sqrt', 'Identity', 'Cast']);

interface GraphLookup {
  readonly prod: Map<string, NodeFields>;
  readonly cons: Map<string, NodeFields[]>;
  readonly initializers: Set<string>;
}

function lookup(graph: GraphFields): GraphLookup {
  return { prod: producers(graph), cons: consumers(graph), initializers: new Set((graph.initializer ?? []).map((t) => t.name ?? '')) };
}

const isConstant = (g: GraphLookup, name: string): boolean => g.initializers.has(name) || g.prod.get(name)?.opType === 'Constant';

/** The sole consumer of `value` after any pass-through nodes, and the value it reads. */
function forward(g: GraphLookup, value: string): { value: string; node: NodeFields | undefined } {
  let v = value;
  for (let k = 0; k < 64; k++) {
    const readers = g.cons.get(v) ?? [];
    const node = readers.length === 1 ? readers[0] : undefined;
    if (!node || !PASS_THROUGH.has(node.opType ?? '')) return { value: v, node };
    v = node.output?.[0] ?? '';
  }
  return { value: v, node: undefined };
}

/** The value `value` is a pass-through copy of. */
function backward(g: GraphLookup, value: string): string {
  let v = value;
  for (let k = 0; k < 64; k++) {
    const p = g.prod.get(v);
    if (!p || !PASS_THROUGH.has(p.opType ?? '') || !p.input?.[0]) return v;
    v = p.input[0];
  }
  return v;
}

/** The other input of a binary node. */
function otherInput(node: NodeFields, value: string): string | undefined {
  const ins = node.input ?? [];
  if (ins.length !== 2) return undefined;
  return ins[0] === value ? ins[1] : ins[1] === value ? ins[0] : undefined;
}

/** Constant int64 values of a Slice input (initializer or Constant node), when readable. */
function constInts(graph: GraphFields, g: GraphLookup, name: string | undefined): number[] | undefined {
  if (!name) return undefined;
  const t: TensorFields | null | undefined = g.initializers.has(name)
    ? (graph.initializer ?? []).find((x) => x.name === name)
    : g.prod.get(name)?.opType === 'Constant' ? g.prod.get(name)?.attribute?.find((a) => a.name === 'value')?.t : undefined;
  if (!t || t.dataType !== 7) return undefined;
  if (t.rawData && t.rawData.byteLength % 8 === 0) {
    const bytes = new Uint8Array(t.rawData);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return Array.from({ length: bytes.byteLength / 8 }, (_, i) => Number(view.getBigInt64(8 * i, true)));
  }
  return t.int64Data?.map((v) => int64ToNumber(v));
}

/** A Slice that takes channels [from, …) of its input along axis 1, when its constants say so. */
function sliceStart(graph: GraphFields, g: GraphLookup, node: NodeFields): number | undefined {
  const starts = constInts(graph, g, node.input?.[1]);
  const axes = constInts(graph, g, node.input?.[3]);
  if (!starts || starts.length !== 1 || (axes && (axes.length !== 1 || axes[0] !== 1))) return undefined;
  return starts[0];
}

/** Where the posterior sample is drawn: the moments tensor, and the sample output it feeds. */
export interface PosteriorSampling {
  readonly moments: string;
  readonly sampleOutput: string;
  /** The noise node's name. */
  readonly noise: string;
}

/**
 * Finds DiagonalGaussianDistribution.sample() in an encoder graph: the one RandomNormal(Like) node
 * the sample output depends on, then n → Mul(σ, n) → Add(μ, ·) → the output, μ from output 0 of a
 * Split (or a Slice from channel 0) of the moments, σ through Clip/Mul/Exp… from output 1 of the same
 * Split (or another Slice of the same moments). Throws E_MODEL_INVALID naming what is missing.
 */
export function findPosteriorSampling(graph: GraphFields): PosteriorSampling {
  const sampleOutput = encoderSampleOutput(graphOutputs(graph));
  if (!sampleOutput) throw invalid('no sample output (latent_sample, or one output of 4 channels) was found.');
  const g = lookup(graph);

  // The noise nodes the output depends on.
  const seen = new Set<string>();
  const stack = [sampleOutput];
  const noises: NodeFields[] = [];
  while (stack.length) {
    const p = g.prod.get(stack.pop() as string);
    if (!p || seen.has(p.name ?? '')) continue;
    seen.add(p.name ?? '');
    if (RANDOM_NORMAL.has(p.opType ?? '')) noises.push(p);
    for (const i of p.input ?? []) if (i) stack.push(i);
  }
  if (noises.length !== 1) throw invalid(`its sampling cannot be found (${noises.length} RandomNormal/RandomNormalLike nodes feed ${sampleOutput}, expected 1).`);
  const noise = noises[0] as NodeFields;

  // n → Mul(σ, n) → Add(μ, σ·n) → the output.
  const n = forward(g, noise.output?.[0] ?? '');
  const sigma = n.node?.opType === 'Mul' ? otherInput(n.node, n.value) : undefined;
  if (!n.node || sigma === undefined) throw invalid('its noise is not multiplied by σ (Mul) as DiagonalGaussianDistribution.sample() does.');
  const scaled = forward(g, n.node.output?.[0] ?? '');
  const mean = scaled.node?.opType === 'Add' ? otherInput(scaled.node, scaled.value) : undefined;
  if (!scaled.node || mean === undefined) throw invalid('σ·noise is not added to the mean (Add) as DiagonalGaussianDistribution.sample() does.');
  if (backward(g, sampleOutput) !== scaled.node.output?.[0]) throw invalid(`μ + σ·noise is not what ${sampleOutput} returns.`);

  // μ: output 0 of a Split of the moments, or a Slice of them from channel 0.
  const meanValue = backward(g, mean);
  const split = g.prod.get(meanValue);
  const isSplit = split?.opType === 'Split' && split.output?.[0] === meanValue && (split.output?.length ?? 0) === 2;
  const isSlice = split?.opType === 'Slice' && (sliceStart(graph, g, split) ?? 0) === 0;
  if (!split || !(isSplit || isSlice) || !split.input?.[0]) throw invalid('its mean is not the first half of the moments (Split or Slice).');
  const moments = split.input[0];

  // σ: back through the elementwise chain to log σ², the other half of the same moments.
  let v = sigma;
  let sawExp = false;
  let logvarNode: NodeFields | undefined;
  for (let k = 0; k < VAE_PARAMETERS_DEFAULTS.maxSigmaChain && !logvarNode; k++) {
    const p = g.prod.get(v);
    if (!p) break;
    if (p.opType === 'Split' || p.opType === 'Slice') {
      logvarNode = p;
      break;
    }
    if (!TO_SIGMA.has(p.opType ?? '')) break;
    if (p.opType === 'Exp') sawExp = true;
    const data = (p.input ?? []).filter((i) => i && !isConstant(g, i));
    if (data.length !== 1) break;
    v = data[0] as string;
  }
  const sameSplit = isSplit && logvarNode === split && split.output?.[1] === v;
  const otherSlice = isSlice && logvarNode?.opType === 'Slice' && logvarNode !== split && logvarNode.input?.[0] === moments
    && (sliceStart(graph, g, logvarNode) ?? 1) > 0;
  if (!sawExp || !(sameSplit || otherSlice)) throw invalid('its σ is not exp(½·log σ²) of the second half of the moments.');
  return { moments, sampleOutput, noise: noise.name ?? '' };
}

/** Shape of the parameters output: the sample's [B,C,h,w] with 2C channels. */
function parametersInfo(sample: ValueInfoFields | undefined): ValueInfoFields {
  const dims = sample?.type?.tensorType?.shape?.dim;
  const shape = dims && dims.length === 4
    ? { dim: dims.map((d, i) => (i === 1 ? (d.dimValue ? { dimValue: 2 * int64ToNumber(d.dimValue) } : { dimParam: 'latent_channels_x2' }) : { ...d })) }
    : undefined;
  return { name: VAE_PARAMETERS_DEFAULTS.parametersOutput, type: { tensorType: { elemType: 1, ...(shape ? { shape } : {}) } } };
}

/**
 * The parameters graph of a sampling encoder: a copy of `model` whose only output is
 * `latent_parameters` = the moments [B,2C,h,w] (through an Identity), with every node and initializer
 * that no longer contributes removed. `model` is not mutated.
 */
export function vaeParametersModel(model: ModelFields): { model: ModelFields; moments: string; pruned: string[] } {
  const copy = onnx.ModelProto.decode(encodeModel(model));
  const graph = graphOf(copy);
  const found = findPosteriorSampling(graph);
  const out = VAE_PARAMETERS_DEFAULTS.parametersOutput;
  if (namesInUse(graph).has(out)) throw invalid(`its graph already uses the name ${out}.`);
  const sampleInfo = (graph.output ?? []).find((o) => o.name === found.sampleOutput);
  graph.node = [...(graph.node ?? []), { opType: 'Identity', name: `/${out}/Identity`, input: [found.moments], output: [out] }];
  graph.output = [parametersInfo(sampleInfo)];

  // Keep what the output needs (reverse topological order), drop the rest.
  const live = new Set<string>([out]);
  const keep = new Set<NodeFields>();
  for (const node of [...topologicalOrder(graph)].reverse()) {
    if (!(node.output ?? []).some((o) => live.has(o))) continue;
    keep.add(node);
    for (const i of node.input ?? []) if (i) live.add(i);
  }
  const pruned = (graph.node ?? []).filter((n) => !keep.has(n)).map((n) => n.opType ?? '');
  graph.node = (graph.node ?? []).filter((n) => keep.has(n));
  graph.initializer = (graph.initializer ?? []).filter((t) => live.has(t.name ?? ''));
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => live.has(v.name ?? ''));
  if (graph.node.some((n) => RANDOM_NORMAL.has(n.opType ?? ''))) throw invalid('its moments depend on random noise.');
  return { model: copy, moments: found.moments, pruned };
}

// ---------------------------------------------------------------------------------------------------
// The prepare step.

type FileIdentity = Pick<Stats, 'dev' | 'ino' | 'size' | 'mtimeMs' | 'ctimeMs'>;

const sameFile = (a: FileIdentity, b: FileIdentity): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;

async function identity(path: string): Promise<FileIdentity | undefined> {
  try {
    return await stat(path);
  } catch {
    return undefined;
  }
}

/** Per encoder path, what the last check found while the files' stats are unchanged. */
const known = new Map<string, {
  readonly encoder: FileIdentity;
  readonly derived?: FileIdentity;
  readonly manifestFile?: FileIdentity;
  readonly result: PreparedVaeParameters | null;
}>();
const inFlight = new Map<string, Promise<PreparedVaeParameters | null>>();

/**
 * Derives (or reuses) `vae_encoder/model.params.onnx` for the model folder `modelDir` when its encoder
 * outputs a sample (no `latent_parameters` output). Null when the encoder already outputs its
 * parameters (nothing to derive). A missing encoder is E_MODEL_MISSING; a sampling encoder without the
 * DiagonalGaussian pattern is E_MODEL_INVALID.
 */
export async function prepareVaeParameters(modelDir: string, opts: { readonly force?: boolean } = {}): Promise<PreparedVaeParameters | null> {
  const encoderPath = join(resolve(modelDir), VAE_PARAMETERS_DEFAULTS.encoderPath);
  for (let pending = inFlight.get(encoderPath); pending; pending = inFlight.get(encoderPath)) await pending.catch(() => undefined);
  const job = prepareOnce(encoderPath, opts.force === true).finally(() => {
    if (inFlight.get(encoderPath) === job) inFlight.delete(encoderPath);
  });
  inFlight.set(encoderPath, job);
  return job;
}

async function prepareOnce(encoderPath: string, force: boolean): Promise<PreparedVaeParameters | null> {
  const dir = dirname(encoderPath);
  const path = join(dir, VAE_PARAMETERS_DEFAULTS.derivedFile);
  const manifestPath = join(dir, VAE_PARAMETERS_DEFAULTS.manifestFile);
  const encoder = await identity(encoderPath);
  if (!encoder) throw new P2pzError('E_MODEL_MISSING', 'The model folder has no vae_encoder/model.onnx.');
  const memo = known.get(encoderPath);
  if (!force && memo && sameFile(memo.encoder, encoder)) {
    if (memo.result === null) return null;
    const [d, m] = await Promise.all([identity(path), identity(manifestPath)]);
    if (d && m && memo.derived && memo.manifestFile && sameFile(memo.derived, d) && sameFile(memo.manifestFile, m)) return { ...memo.result, reused: true };
  }

  let bytes: Buffer;
  try {
    bytes = await readFile(encoderPath);
  } catch {
    throw new P2pzError('E_MODEL_MISSING', 'The model folder has no vae_encoder/model.onnx.');
  }
  const model = decodeModel(bytes);
  const graph = graphOf(model);
  const remember = async (result: PreparedVaeParameters | null): Promise<PreparedVaeParameters | null> => {
    const after = await identity(encoderPath);
    if (after && sameFile(after, encoder)) {
      const [d, m] = result ? await Promise.all([identity(path), identity(manifestPath)]) : [undefined, undefined];
      known.set(encoderPath, { encoder, ...(d ? { derived: d } : {}), ...(m ? { manifestFile: m } : {}), result });
    }
    return result;
  };
  if (encoderSampleOutput(graphOutputs(graph)) === null) return remember(null);

  const sizes = new Map<string, number>();
  for (const ref of externalDataRefs(model)) {
    if (sizes.has(ref.location)) continue;
    const s = await identity(join(dir, ref.location));
    if (!s) throw new P2pzError('E_MODEL_MISSING', 'A weights file of the VAE encoder is missing.');
    sizes.set(ref.location, s.size);
  }
  const source: VaeParametersManifest['source'] = {
    sha256: createHash('sha256').update(bytes).digest('hex'),
    externalData: [...sizes].sort(([a], [b]) => a.localeCompare(b)).map(([location, size]) => ({ location, size })),
  };
  if (!force) {
    const current = await currentManifest(manifestPath, source);
    if (current && (await identity(path))) return remember({ path, manifestPath, manifest: current, reused: true });
  }
  const derived = vaeParametersModel(model);
  await writeDerivedModel(derived.model, encoderPath, path);
  const manifest: VaeParametersManifest = {
    format: VAE_PARAMETERS_FORMAT_VERSION, source, file: VAE_PARAMETERS_DEFAULTS.derivedFile, moments: derived.moments, pruned: derived.pruned,
  };
  // The manifest goes last: its presence certifies the graph.
  await writeFileAtomic(manifestPath, new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`));
  return remember({ path, manifestPath, manifest, reused: false });
}

async function currentManifest(path: string, source: VaeParametersManifest['source']): Promise<VaeParametersManifest | undefined> {
  try {
    const parsed = VaeParametersManifest.safeParse(JSON.parse(await readFile(path, 'utf8')));
    if (!parsed.success || JSON.stringify(parsed.data.source) !== JSON.stringify(source)) return undefined;
    return parsed.data;
  } catch {
    return undefined;
  }
}
