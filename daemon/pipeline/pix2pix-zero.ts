// The full pix2pix-zero edit (Parmar et al. 2023; docs/DESIGN.md §3), stage by stage:
//   0. load      the model folder
//   1. decode    the upload (EXIF orientation, sRGB, alpha aside); resize to the working size, x ∈ [-1,1]
//   1'. memory   with the working size known, and before any session opens for the job, refuse a job
//                that cannot fit on the device (docs/SECURITY.md §R17)
//   0'. graphs   derive the working size's UNet graphs (prepare, once per size)
//   2. encode    z0 = s·E(x)  (VAE posterior mean, or a seeded sample)
//   3. caption   c → e_c = E_text(c)  [1,77,D]
//   4. direction Δ = mean E_text(target bank) − mean E_text(source bank) (disk cache);
//                e_edit = e_c + s·Δ
//   5. inversion z_T = regularized DDIM inversion of z0 with e_c (reused from the inversion cache)
//   6. edit      from z_T, step by step, interleaved so only one step of maps is held:
//                reference step: ε_ref, A_ref = ε_θ(z_ref, t, e_c) (batch 1, maps); z_ref ← DDIM(z_ref, ε_ref)
//                edit step:      x = [z, z] − λ_xa·∂L/∂x  (gradient graph, batch 2, [e_c, e_edit], A_ref)
//                                [ε⁰, ε¹] = ε_θ(x, t, [e_c, e_edit]) (batch 2, maps of the edit branch → mask)
//                                ε̂ = ε⁰ + w·(ε¹ − ε⁰);  z ← DDIM(x⁰, ε̂)
//   7. vae-decode  x_edit = clamp(D(z/s), −1, 1)   (never after a cancel)
//   8. save      back to exactly the decoded W×H (the input's, within the output budget), alpha re-attached; the source concept's attention
//                mask as grayscale; optionally the edit blended into the original through the mask.
// The signal is checked between every step; nothing is decoded once it has been aborted. A step
// observer (step-observer.ts; the replay dump is one) sees the inputs and every step.
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { EditParams, Engine, Provider, Stage } from '../../shared/protocol/index.js';
import type { DeviceMemoryProbe } from '../models/device-memory.js';
import { assertJobFits } from '../models/job-memory.js';
import { decodeForEdit, scaledNote, type DecodePath } from '../image/decode.js';
import { encodeGrayPng, encodePng } from '../image/encode.js';
import { stepPreviewPixels } from '../image/preview-pixels.js';
import { cropToContent, resizeAlpha, resizeRgb, rgbInFrame, rgbToTensor, tensorToRgb, workingFrame, type WorkingFrame } from '../image/tensor.js';
import { mapName } from '../onnx/attention/cross-attention.js';
import { defaultPrecision, preparePipelineGraphs } from '../onnx/prepare.js';
import { describePrecision, unetPrecision } from '../onnx/precision/unet-precision.js';
import { AttentionMaskAccumulator, sourceTokenPositions, type SourceMatch } from './attention-mask.js';
import { blendThroughMask } from './blend.js';
import { chooseCaption, type CaptionChoice } from './caption.js';
import { chooseDiffusionModel, componentHash, loadDiffusionModel, outputData, unetFeeds, type DiffusionModel } from './diffusion-model.js';
import { editDirection, editEmbedding, type SentenceBanks } from './directions/edit-direction.js';
import { importedConceptMean } from './directions/concept-embeddings.js';
import { sentenceBankPair, SENTENCE_BANK_DEFAULTS } from './directions/sentence-bank.js';
import { DumpObserver } from './dump/dump-observer.js';
import type { DumpSink } from './dump/dump-writer.js';
import type { ModelSessions, PipelineContext, PipelineOutcome } from './context.js';
import { crossAttentionGuidance, type ReferenceMap } from './guidance.js';
import { InversionCache, inversionKey } from './inversion-cache.js';
import { invertDdim } from './inversion.js';
import { unetRoles } from './unet-roles.js';
import { latentPreviewRgb } from './latent-preview.js';
import { Rng } from './random.js';
import { REGULARIZATION_DEFAULTS, type RegularizationOptions } from './regularization.js';
import { DdimScheduler } from './scheduler/ddim.js';
import { NO_OBSERVER, type StepObserver } from './step-observer.js';
import { encodeText } from './text/text-encoder.js';
import { VAE_DEFAULTS, vaeDecode, vaeEncode, type VaeLatentMode } from './vae.js';

export const PIX2PIX_ZERO_DEFAULTS = Object.freeze({
  /** z0 from the VAE posterior's mean (deterministic) unless 'sample' is asked for. */
  vaeLatent: VAE_DEFAULTS.latent,
  /** Autocorrelation steps per outer regularization iteration (the official num_ac_rolls). */
  acRolls: REGULARIZATION_DEFAULTS.inner,
  lambdaAc: REGULARIZATION_DEFAULTS.lambdaAc,
  lambdaKl: REGULARIZATION_DEFAULTS.lambdaKl,
  /** Sentences per concept in the generated banks. */
  bankCount: SENTENCE_BANK_DEFAULTS.count,
});

/** One inversion cache per process unless the caller brings its own. */
export const sharedInversionCache = new InversionCache();

export interface Pix2PixZeroRequest {
  /** The image, still encoded (PNG, JPEG or WebP). */
  readonly image: Uint8Array;
  readonly edit: EditParams;
  /** Folder name in the models directory; chosen by chooseDiffusionModel when absent. */
  readonly model?: string;
  /** User sentence banks; generated from templates when absent. */
  readonly banks?: SentenceBanks;
  readonly bankCount?: number;
  readonly vaeLatent?: VaeLatentMode;
  readonly dump?: DumpSink | null;
  /** Send a small x̂0 preview with each edit step's progress. */
  readonly stepPreviews?: boolean;
  readonly engine?: Extract<Engine, 'diffusion' | 'diffusion-preview'>;
  /** The output budget in pixels (decode.ts DECODE_DEFAULTS.maxOutputPixels unless given). */
  readonly maxOutputPixels?: number;
}

/** What the up-front memory check (docs/SECURITY.md §R17) needs from the process running the job. */
export interface DeviceMemoryContext {
  /** The provider of the worker's execution choice. */
  readonly provider: Provider;
  /** Replaces the device's own free-memory report (tests; a configured budget). */
  readonly probe?: DeviceMemoryProbe;
  /** Bytes that sessions already open hold for files under a model folder (absolute path): counted
   *  as available, since the job reuses them. */
  readonly heldBytes?: (modelDir: string) => Promise<number>;
}

/** What onnxruntime's WebGPU provider says when the adapter has no float16 shader support. */
const FLOAT16_UNSUPPORTED = /requires f16 but the device does not support it/;

export interface DiffusionContext {
  readonly models: ModelSessions;
  /** The provider the sessions run on, when there is no memory check to say it: picks the UNet graphs'
   *  compute precision (float32 on the CPU). Default: the memory check's provider, else the CPU. */
  readonly provider?: Provider;
  /** The memory check of docs/SECURITY.md §R17; without it no job is refused for memory. */
  readonly memory?: DeviceMemoryContext;
  readonly signal: AbortSignal;
  readonly progress: PipelineContext['progress'];
  readonly flushed?: PipelineContext['flushed'];
  readonly framePixels?: PipelineContext['framePixels'];
  readonly inversionCache?: InversionCache;
  /** Folder of the edit-direction cache (none when absent). */
  readonly directionCacheDir?: string;
}

/** UNet evaluations of one edit, counted as the official implementation's are. */
export interface UNetCalls {
  /** ε_θ at batch 1 during inversion. */
  readonly inversion: number;
  /** ε_θ at batch 1 with maps in the reference pass. */
  readonly reference: number;
  /** Forward + backward at batch 2 through the gradient graph. */
  readonly guidance: number;
  /** ε_θ at batch 2 after the gradient step. */
  readonly edit: number;
}

export type MaskAvailability =
  | { readonly available: true; readonly match: SourceMatch; readonly words: string }
  | { readonly available: false; readonly reason: string };

export interface Pix2PixZeroResult extends PipelineOutcome {
  readonly details: {
    readonly model: string;
    readonly caption: string;
    /** Who wrote the caption: the user, the captioner (named), or the template (with a note why). */
    readonly captionSource: Omit<CaptionChoice, 'caption'>;
    readonly workingSize: { readonly width: number; readonly height: number };
    /** How the upload was decoded: the models' copy, and the output-size one (null when no stage
     *  needed it); both the one decode at the file's size within the output budget (decode.ts). */
    readonly decode: { readonly working: DecodePath; readonly output: DecodePath | null };
    /** Where the input sits in the working size (smaller than it when a narrow input was padded). */
    readonly content: WorkingFrame['content'];
    readonly inversionReused: boolean;
    readonly directionCached: boolean;
    /** Where Δ came from: the user's banks, imported concept embeddings, or the generated banks. */
    readonly directionSource: 'user-banks' | 'imported' | 'generated-banks';
    readonly unetCalls: UNetCalls;
    /** L before the gradient step, per edit step. */
    readonly losses: readonly number[];
    /** Whether the source concept's attention mask could be made, and from which caption words. */
    readonly mask: MaskAvailability;
  };
}

function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function runPix2PixZero(request: Pix2PixZeroRequest, ctx: DiffusionContext): Promise<Pix2PixZeroResult> {
  const { models, signal, progress } = ctx;
  const edit = request.edit;
  const observer: StepObserver = request.dump ? new DumpObserver(request.dump) : NO_OBSERVER;
  const engine = request.engine ?? 'diffusion';
  const timings: Record<string, number> = {};
  const timed = async <T>(stage: string, fn: () => Promise<T>): Promise<T> => {
    signal.throwIfAborted();
    const start = performance.now();
    try {
      return await fn();
    } finally {
      timings[stage] = (timings[stage] ?? 0) + performance.now() - start;
    }
  };
  const calls = { inversion: 0, reference: 0, guidance: 0, edit: 0 };

  // 0. The model (its sessions open after the memory check below).
  progress('load', 0, 1);
  const modelName = await timed('load', () => chooseDiffusionModel(models, request.model));

  // 1. Decode and resize to the working size.
  progress('decode', 0, 1);
  // Beyond the output budget the models get a working copy (shrunk at decode where the format
  // allows) and the output-size pixels are decoded only for the blend or an alpha channel (decode.ts).
  const src = await timed('decode', () => decodeForEdit(request.image, edit.size * edit.size, request.maxOutputPixels === undefined ? {} : { maxOutputPixels: request.maxOutputPixels }));
  const decoded = src.working;
  const { width: W, height: H } = src;
  // The working frame: the aspect kept up to 2:1, a mirrored 2:1 frame up to 4:1, refused beyond.
  const frame = workingFrame(W, H, edit.size);
  const size = { width: frame.width, height: frame.height };
  const h = size.height / VAE_DEFAULTS.factor;
  const w = size.width / VAE_DEFAULTS.factor;
  const latentDims = [1, 4, h, w] as const;

  // 1'. docs/SECURITY.md §R17: a job that cannot fit is refused (E_JOB_TOO_LARGE with a hint) before anything is
  // loaded or derived for it. The diffusion preview is this same pipeline at a smaller size (one UNet
  // session with the gradient graph at batch 2), so both engines are estimated as a render.
  const memory = ctx.memory;
  if (memory) {
    await timed('load', async () => {
      const held = memory.heldBytes ? await memory.heldBytes(join(models.modelsDir, modelName)) : 0;
      await assertJobFits({
        modelsDir: models.modelsDir,
        model: modelName,
        job: { kind: 'render', height: size.height, width: size.width, batch: 2 },
        provider: memory.provider,
        heldBytes: held,
        ...(memory.probe === undefined ? {} : { probe: memory.probe }),
      });
    });
  }
  const model: DiffusionModel = await timed('load', () => loadDiffusionModel(models, modelName));
  const x = await timed('decode', async () => rgbToTensor(await rgbInFrame(decoded.rgb, decoded.width, decoded.height, frame), size.width, size.height));

  // 0'. The derived UNet graphs for this working size (a no-op when current).
  let float16Refused = false;
  const { pair, roles } = await timed('load', async () => {
    const modelDir = dirname(dirname(await models.resolve(model.paths.unet)));
    // The folder's weights precision; computed in float32 on the CPU provider (no float16 kernels).
    const precision = unetPrecision((await defaultPrecision(modelDir)).weights, ctx.provider ?? ctx.memory?.provider ?? 'cpu');
    const graphs = await preparePipelineGraphs(modelDir, { height: size.height, width: size.width }, { precision });
    if (precision.compute === 'fp32') return graphs;
    // A GPU without float16 shaders (WebGPU adapters lacking `shader-f16`, such as the Vulkan
    // software device) refuses the float16 graph when the session is made: run the float16 weights
    // in float32 there instead, as on the CPU.
    try {
      await models.get(graphs.roles.path);
      return graphs;
    } catch (err) {
      if (!(err instanceof Error) || !FLOAT16_UNSUPPORTED.test(err.message)) throw err;
      float16Refused = true;
      return preparePipelineGraphs(modelDir, { height: size.height, width: size.width }, { precision: { ...precision, compute: 'fp32' } });
    }
  });
  // Every UNet call goes through one session: one copy of the weights (unet-roles.ts).
  const unet = unetRoles(models, roles);
  progress('load', 1, 1);

  const rng = new Rng(edit.seed);
  const vaeLatent = request.vaeLatent ?? PIX2PIX_ZERO_DEFAULTS.vaeLatent;

  // 2. VAE encode.
  progress('encode', 0, 1);
  const encoded = await timed('encode', () => vaeEncode(models, model, x, size.height, size.width, vaeLatent, rng));

  // 3. Caption.
  progress('caption', 0, 1);
  const chosen = await timed('caption', () => chooseCaption(models, edit.source, edit.caption, { bytes: request.image, rgb: decoded.rgb, width: decoded.width, height: decoded.height }, signal));
  const caption = chosen.caption;
  const captionEnc = await timed('caption', () => encodeText(models, model, caption));
  const eC = captionEnc.embedding.data;
  const T = captionEnc.embedding.dims[1];
  const D = captionEnc.embedding.dims[2];

  // 4. Direction: the user's banks; else both concepts' imported embeddings (p2pz directions import);
  // else each concept's generated bank.
  const imported = request.banks === undefined && ctx.directionCacheDir !== undefined
    ? await timed('direction', async () => {
      const source = await importedConceptMean(models, model, ctx.directionCacheDir!, edit.source);
      const target = source && await importedConceptMean(models, model, ctx.directionCacheDir!, edit.target);
      return source && target ? { source, target } : null;
    })
    : null;
  const banks = imported ? { source: [], target: [] } : request.banks ?? sentenceBankPair(edit.source, edit.target, { count: request.bankCount ?? PIX2PIX_ZERO_DEFAULTS.bankCount });
  progress('direction', 0, Math.max(1, banks.source.length + banks.target.length));
  const direction = imported
    ? { delta: Float32Array.from(imported.target, (v, i) => v - imported.source[i]!), cached: true }
    : await timed('direction', () => editDirection(models, model, banks, {
      signal,
      ...(ctx.directionCacheDir === undefined ? {} : { cacheDir: ctx.directionCacheDir }),
      onProgress: (done, total) => progress('direction', done, total),
    }));
  const directionSource = imported ? 'imported' : request.banks ? 'user-banks' : 'generated-banks';
  const eEdit = editEmbedding(eC, direction.delta, edit.editScale);

  const regularization: RegularizationOptions = {
    outer: edit.regSteps,
    inner: PIX2PIX_ZERO_DEFAULTS.acRolls,
    lambdaAc: PIX2PIX_ZERO_DEFAULTS.lambdaAc,
    lambdaKl: PIX2PIX_ZERO_DEFAULTS.lambdaKl,
  };
  const sampler = new DdimScheduler(model.scheduler);
  sampler.setTimesteps(edit.steps);
  const timesteps = sampler.timesteps;

  await observer.inputs({
    edit, timesteps, regularization, size, latentDims, latentScale: model.latentScale, vaeLatent: encoded.mode, caption,
    x, z0: encoded.z0, noise: encoded.noise, captionIds: captionEnc.ids, eC, delta: direction.delta, banks, T, D,
  });

  // 5. Inversion (or its cached result).
  const cache = ctx.inversionCache ?? sharedInversionCache;
  const key = inversionKey({
    imageSha256: sha256(request.image),
    // Everything z_T depends on besides the request: the UNet, the VAE encoder, e_c (text encoder and
    // the caption's token ids), the latent scale and the schedule (ᾱ).
    model: sha256(JSON.stringify([
      pair.manifest.source, await componentHash(models, model.paths.vaeEncoder), await componentHash(models, model.paths.textEncoder), model.latentScale,
      captionEnc.ids, model.scheduler,
    ])),
    caption,
    steps: edit.steps,
    seed: edit.seed,
    regSteps: edit.regSteps,
    regularization: { inner: regularization.inner, lambdaAc: regularization.lambdaAc, lambdaKl: regularization.lambdaKl },
    size: [size.height, size.width],
    vaeLatent: encoded.mode,
  });
  const latentLength = 4 * h * w;
  // An observer that needs every inversion step (the dump) always inverts.
  let zT = observer.needsInversion ? undefined : await cache.get(key, latentLength);
  const inversionReused = zT !== undefined;
  progress('inversion', inversionReused ? edit.steps : 0, edit.steps);
  if (zT === undefined) {
    zT = await timed('inversion', () => invertDdim(models, model, encoded.z0, { h, w }, eC, {
      steps: edit.steps,
      unet: unet.single,
      regularization,
      rng,
      signal,
      observer,
      onStep: (done, total) => {
        calls.inversion++;
        progress('inversion', done, total);
      },
    }));
    await cache.set(key, zT, latentDims);
  }
  await observer.inverted(zT);

  // 6. Reference and edit passes, interleaved.
  // The mask needs the source word (or a plural of it) in the caption; without it there is none.
  const found = sourceTokenPositions(model.tokenizer, caption, edit.source);
  const mask = found ? new AttentionMaskAccumulator(h, w, found.positions) : null;
  const sites = pair.manifest.sites;
  const context2 = new Float32Array(2 * T * D);
  context2.set(eC, 0);
  context2.set(eEdit, T * D);
  const losses: number[] = [];
  let zRef = zT;
  let z = zT;
  progress('edit', 0, timesteps.length);
  const editStart = performance.now();
  for (let k = 0; k < timesteps.length; k++) {
    signal.throwIfAborted();
    const t = timesteps[k]!;

    // Reference step: A_ref(t) and the reference trajectory's next latent. The manifest lists the
    // sites in graph order, so site k's maps are mapName(k) in every derived graph.
    const ref = await unet.single(unetFeeds(model, zRef, latentDims, t, eC));
    calls.reference++;
    const refs: ReferenceMap[] = sites.map((s, index) => ({
      index, heads: s.heads, queries: s.queries, tokens: s.tokens,
      data: outputData(ref, mapName(index), s.heads * s.queries * s.tokens),
    }));
    const epsRef = outputData(ref, 'out_sample', latentLength);
    await observer.referenceStep(k, { z: zRef, eps: epsRef });
    zRef = sampler.step(epsRef, t, zRef).prevSample;
    signal.throwIfAborted();

    // Edit step: one guidance step on both branches, then CFG and DDIM from x⁰.
    const x2 = new Float32Array(2 * latentLength);
    x2.set(z, 0);
    x2.set(z, latentLength);
    const guided = await crossAttentionGuidance(models, model, unet.grad, x2, { h, w }, t, context2, refs, edit.xa);
    calls.guidance++;
    losses.push(guided.loss);
    signal.throwIfAborted();
    const out = await unet.pair(unetFeeds(model, guided.x, [2, 4, h, w], t, context2));
    calls.edit++;
    const eps2 = outputData(out, 'out_sample', 2 * latentLength);
    if (mask) sites.forEach((s, index) => mask.add(outputData(out, mapName(index), 2 * s.heads * s.queries * s.tokens), s, 1));
    const epsHat = new Float32Array(latentLength);
    for (let i = 0; i < latentLength; i++) {
      const e0 = eps2[i]!;
      epsHat[i] = e0 + edit.cfg * (eps2[latentLength + i]! - e0);
    }
    const step = sampler.step(epsHat, t, guided.x.subarray(0, latentLength));
    await observer.editStep(k, { z, grad: guided.grad, eps: eps2, loss: guided.loss });
    z = step.prevSample;
    const frame = request.stepPreviews ? await stepPreviewPixels(latentPreviewRgb(step.predOriginalSample, h, w), w, h) : undefined;
    progress('edit', k + 1, timesteps.length, frame);
  }
  timings.edit = performance.now() - editStart;
  await observer.edited(z);

  // 7. Decode: never after a cancel.
  signal.throwIfAborted();
  progress('vae-decode', 0, 1);
  const image = await timed('vae-decode', () => vaeDecode(models, model, z, h, w));
  await observer.decoded(image);

  // 8. Back to the decoded size (the input's, or the output budget's: decode.ts); mask; blend; PNGs.
  progress('save', 0, 1);
  const outputs = await timed('save', async () => {
    const c = frame.content;
    let rgb = await resizeRgb(cropToContent(tensorToRgb(image, size.width, size.height), frame, 3), c.width, c.height, W, H);
    const list: { role: 'image' | 'mask'; png: Uint8Array; width: number; height: number }[] = [];
    let maskFull: Uint8Array | null = null;
    if ((edit.mask || edit.blend) && mask) {
      const padded = c.width !== size.width || c.height !== size.height;
      maskFull = padded
        ? await resizeAlpha(cropToContent(await resizeAlpha(mask.gray(), w, h, size.width, size.height), frame, 1), c.width, c.height, W, H)
        : await resizeAlpha(mask.gray(), w, h, W, H);
    }
    // The original at the output size: the working copy itself within the budget.
    const original = (edit.blend && maskFull) || decoded.alpha !== null ? await src.output() : null;
    const alpha = original?.alpha ?? null;
    if (edit.blend && maskFull && original) rgb = blendThroughMask(original.rgb, rgb, maskFull, W, H);
    list.push({ role: 'image', png: await encodePng({ width: W, height: H, rgb, alpha }), width: W, height: H });
    if (edit.mask && maskFull) list.push({ role: 'mask', png: await encodeGrayPng(W, H, maskFull), width: W, height: H });
    return list;
  });
  progress('save', 1, 1);

  const maskState: MaskAvailability = found
    ? { available: true, match: found.match, words: found.words }
    : { available: false, reason: `The caption "${caption}" does not name "${edit.source}" (nor a plural of it), so no mask was made${edit.blend ? ' and the edit was not blended' : ''}.` };
  const notes = [scaledNote(src), chosen.note, maskState.available ? undefined : maskState.reason].filter((n): n is string => n !== undefined);
  if (imported) notes.push(`The edit direction comes from the imported embeddings of "${edit.source}" and "${edit.target}".`);
  if (pair.manifest.precision) notes.push(`The UNet ran in ${describePrecision(pair.manifest.precision)} (prepared ${pair.manifest.files.xattn}).`);
  if (float16Refused) notes.push('The GPU has no float16 shaders, so the float16 weights were computed in float32.');
  if (frame.content.width !== size.width || frame.content.height !== size.height) {
    notes.push(`The image is narrower than 2:1, so it was edited inside a ${size.width}×${size.height} frame mirrored around it.`);
  }
  return {
    outputs,
    engine,
    timings,
    report: {
      caption,
      captionOrigin: chosen.origin,
      ...(chosen.captioner === undefined ? {} : { captioner: chosen.captioner }),
      mask: maskState.available ? maskState.match : 'unavailable',
      notes,
      ...(scaledNote(src) === undefined ? {} : { scaledFrom: src.source }),
    },
    details: {
      model: model.name,
      caption,
      captionSource: { origin: chosen.origin, ...(chosen.captioner === undefined ? {} : { captioner: chosen.captioner }), ...(chosen.note === undefined ? {} : { note: chosen.note }) },
      workingSize: size,
      decode: src.paths(),
      content: frame.content,
      inversionReused,
      directionCached: direction.cached,
      directionSource,
      unetCalls: calls,
      losses,
      mask: maskState,
    },
  };
}

