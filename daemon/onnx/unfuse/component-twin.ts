// The unfused twin of any other graph the worker loads (the VAE encoder and decoder, the text encoder,
// a captioner's graphs) when it holds com.microsoft nodes: onnxruntime's optimize_pipeline.py optimizes
// every component of an SD pipeline, and the CPU provider has no kernel for GroupNorm, NhwcConv,
// BiasSplitGelu, BiasAdd or SkipGroupNorm, nor for packed MultiHeadAttention. The rewrite is the
// UNet's (unfuse.ts), so its values are the same; it needs static shapes, so one twin is derived per
// set of input dims the pipeline feeds (a text encoder is fed [1, 77]; a VAE one image size per
// working size). Written once next to the original, never modifying it:
//   <component>/model.unfused.{dims}.onnx   the twin ({dims}: each input's dims, `x`-joined, `_` between
//                                           inputs), referencing the original's external weights
//   <component>/model.unfused.{dims}.json   its manifest: the source's SHA-256 and external data sizes,
//                                           the input dims and the rewritten ops; written last, so its
//                                           presence certifies the twin
// A derived graph of the component (vae_encoder/model.params.onnx) gets `model.params.unfused.…`.
// A fused node the rewrite does not know is E_UNSUPPORTED_OP naming the op, the component and a hint.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { P2pzError } from '../../../shared/protocol/errors.js';
import { decodeModel, sameFile, writeDerivedModel, writeFileAtomic, type FileIdentity } from '../graph/model-io.js';
import { externalLocations, type ModelProto } from '../graph/onnx-proto.js';
import { declaredSignature, type DeclaredSignature } from '../graph/signature.js';
import { CONTRIB_DOMAIN } from './rule.js';
import { hasFusedOps, UNFUSED_METADATA_KEY, unfuseContribOps } from './unfuse.js';

export const COMPONENT_TWIN_DEFAULTS = Object.freeze({
  format: 1 as const,
  /** What a derived twin's file name holds between the stem and the dims. */
  infix: 'unfused',
  /** Names of the folders of a model folder, for messages. */
  components: Object.freeze({ text_encoder: 'text encoder', vae_encoder: 'VAE encoder', vae_decoder: 'VAE decoder', unet: 'UNet' }) as Readonly<Record<string, string>>,
});

/** The twin's manifest (read back from disk, so parsed). */
export const TwinManifest = z.object({
  format: z.literal(COMPONENT_TWIN_DEFAULTS.format),
  source: z.object({
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    externalData: z.array(z.object({ location: z.string(), size: z.number().int().nonnegative() })),
  }),
  inputs: z.record(z.string(), z.array(z.number().int().nonnegative())),
  unfused: z.record(z.string(), z.number().int().nonnegative()),
});
export type TwinManifest = z.infer<typeof TwinManifest>;

/** A graph with fused nodes: what the worker needs to route it through twins. */
export interface FusedGraph {
  readonly path: string;
  readonly sha256: string;
  readonly locations: readonly string[];
  /** Its declared inputs and outputs (what a session's metadata would say). */
  readonly signature: DeclaredSignature;
}

/** Per real path: the file's identity when read, and whether (how) it is fused. */
const known = new Map<string, { readonly file: FileIdentity; readonly fused: FusedGraph | null }>();
const MARKER = Buffer.from(CONTRIB_DOMAIN);

/** The component a path belongs to, in words (`VAE decoder`), for messages. */
export function componentOf(path: string): string {
  const folder = basename(dirname(path));
  return COMPONENT_TWIN_DEFAULTS.components[folder] ?? folder;
}

/** Whether the graph at `path` (a real path) holds fused nodes; read once while its stat is unchanged
 *  (a file without the domain's name in its bytes is not decoded at all). */
export async function fusedGraph(path: string): Promise<FusedGraph | null> {
  const file = await stat(path);
  const memo = known.get(path);
  if (memo && sameFile(memo.file, file)) return memo.fused;
  const bytes = await readFile(path);
  let fused: FusedGraph | null = null;
  if (bytes.includes(MARKER)) {
    const model = decodeModel(bytes);
    if (hasFusedOps(model)) {
      fused = { path, sha256: createHash('sha256').update(bytes).digest('hex'), locations: externalLocations(model), signature: declaredSignature(bytes) };
    }
  }
  if (sameFile(await stat(path), file)) known.set(path, { file, fused });
  return fused;
}

/** File names of the twin of `path` for these input dims. */
export function twinNames(path: string, inputs: Readonly<Record<string, readonly number[]>>): { model: string; manifest: string } {
  const stem = basename(path).replace(/\.onnx$/, '');
  const tag = Object.values(inputs).map((d) => d.join('x')).join('_');
  return { model: `${stem}.${COMPONENT_TWIN_DEFAULTS.infix}.${tag}.onnx`, manifest: `${stem}.${COMPONENT_TWIN_DEFAULTS.infix}.${tag}.json` };
}

async function sourceOf(graph: FusedGraph): Promise<TwinManifest['source']> {
  const dir = dirname(graph.path);
  const externalData: { location: string; size: number }[] = [];
  for (const location of graph.locations) {
    try {
      externalData.push({ location, size: (await stat(join(dir, location))).size });
    } catch {
      throw new P2pzError('E_MODEL_INVALID', `The ${componentOf(graph.path)} weights file is missing.`);
    }
  }
  return { sha256: graph.sha256, externalData };
}

const inFlight = new Map<string, Promise<string>>();

/** The twin's absolute path for these input dims (derived once; a current manifest makes it a no-op). */
export function unfusedTwin(graph: FusedGraph, inputs: Readonly<Record<string, readonly number[]>>): Promise<string> {
  const names = twinNames(graph.path, inputs);
  const path = join(dirname(graph.path), names.model);
  const pending = inFlight.get(path);
  if (pending) return pending;
  const job = derive(graph, inputs, path, join(dirname(graph.path), names.manifest)).finally(() => inFlight.delete(path));
  inFlight.set(path, job);
  return job;
}

async function derive(graph: FusedGraph, inputs: Readonly<Record<string, readonly number[]>>, path: string, manifestPath: string): Promise<string> {
  const source = await sourceOf(graph);
  try {
    const found = TwinManifest.safeParse(JSON.parse(await readFile(manifestPath, 'utf8')));
    if (found.success && JSON.stringify(found.data.source) === JSON.stringify(source) && JSON.stringify(found.data.inputs) === JSON.stringify(inputs)) {
      await stat(path);
      return path;
    }
  } catch {
    // missing or unreadable: derive
  }
  const original = decodeModel(await readFile(graph.path));
  let twin: ModelProto;
  try {
    twin = unfuseContribOps(original, inputs);
  } catch (e) {
    if (e instanceof P2pzError && e.code === 'E_UNSUPPORTED_OP') throw refusal(graph.path, e.message.replace(new P2pzError('E_UNSUPPORTED_OP').message, '').trim());
    throw e;
  }
  const counts = twin.metadataProps.find((p) => p.key === UNFUSED_METADATA_KEY)?.value ?? '{}';
  await writeDerivedModel(twin, graph.path, path);
  const manifest: TwinManifest = { format: COMPONENT_TWIN_DEFAULTS.format, source, inputs: { ...inputs } as Record<string, number[]>, unfused: JSON.parse(counts) as Record<string, number> };
  await writeFileAtomic(manifestPath, new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`));
  return path;
}

/** E_UNSUPPORTED_OP for a fused graph p2pz cannot run, naming the component. */
export function refusal(path: string, detail: string): P2pzError {
  const component = componentOf(path);
  return new P2pzError(
    'E_UNSUPPORTED_OP',
    `The ${component} (${basename(dirname(path))}/${basename(path)}) holds an onnxruntime-optimized ${detail}`,
    `Export the ${component} without onnxruntime graph optimization (optimum-cli export onnx without --optimize, or `
    + "diffusers' convert_stable_diffusion_checkpoint_to_onnx.py), or re-run optimize_pipeline.py with only the fusions "
    + 'p2pz accepts (README: "Optimized exports").',
  );
}
