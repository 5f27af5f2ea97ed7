// The memory a job needs, estimated before it runs, so that a job that cannot fit is refused up front
// with a hint instead of failing minutes later (docs/SECURITY.md §R17). Activations are float32 (4
// bytes); weights count at the precision the prepared UNet graphs compute in (modelFootprint).
//
//   total = W + A + overhead
//   W  = U·n_U + O       U: the UNet's bytes on disk (graph + external weights), loaded once per UNet
//                         session (n_U = 1: every UNet call of an edit goes through the one roles
//                         model, onnx/roles-model.ts); O: text encoder + VAE encoder + decoder
//   A  = max(A_f, A_g)   the sessions run one at a time, so the larger working set counts
//   A_f = 2·β(S) + 4·B·κ_f·C·hw                                  a forward UNet call at batch B
//   A_g = 4·B·H·Σ_s (k_s·q_s² + q_s·T) + τ_g·β(S) + 4·B·κ_g·C·hw  the gradient graph (render only)
//   S = 4·B·H·max_s q_s² the largest score tensor; β(S) = S / ⌈S / β_max⌉ the score block a site runs
//   in (autodiff/chunk-attention.ts: sites with S > β_max run in blocks of queries, β_max = 64 MiB)
// with h×w the latent size (pixels/8), q_s = r_s·h·w the queries of attention site s (r_s = 1, 1/4,
// 1/16, 1/64 by level), H heads, T = 77 text tokens, C the UNet's first block width. A_f holds the
// largest self-attention's scores and probabilities plus κ_f live feature maps; A_g keeps the
// attention probabilities for the backward pass (cross-attention always; self-attention only where
// the gradient graph does not recompute them, k_s = 1: autodiff/recompute.ts recomputes a site when
// q_s ≥ 2·ρ·d_s, ρ its minimum ratio, d_s = C·m_s/H the head width, m_s = 1, 2, 4, 4 by level), the
// transients of the softmax backward at the largest site (τ_g = 5 score blocks at once: the
// recomputed P, ∂L/∂P, ∂L/∂P ⊙ P, their difference and ∂L/∂S), and κ_g stored feature maps (fitted
// to the gradient graph's arena bytes in use at 512², 1.38 GiB above its first node, what a device
// arena must hold; against the measured peaks of docs/BENCHMARKS.md "edit memory", through four edit
// steps, the estimate is +6 % at 256², +11 % at 512² and +13 % against 512²'s first gradient call). Sites and heads come from the model's
// prepare manifest when there is one, else SD 1.x's 16 sites with 8 heads. C is not stored in an
// ONNX file, so it is inferred from the parameter count P = U/4 (UNet parameters grow with C²):
// C = 320·√(P / 859.5 M), exact for SD 1.x (859.5 M parameters at C = 320).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { P2pzError } from '../../shared/protocol/index.js';
import { RECOMPUTE_DEFAULTS } from '../onnx/autodiff/recompute.js';
import { CHUNK_DEFAULTS } from '../onnx/autodiff/chunk-attention.js';
import { PreparedManifest } from '../onnx/prepare.js';
import { resolveModelPath } from './model-path.js';
import { modelFolder, walkModelFolder } from './containment.js';

export const MEMORY_ESTIMATE_DEFAULTS = Object.freeze({
  bytesPerValue: 4,
  /** UNet sessions held during a render: the roles model serves the inversion, the cross-attention
   *  graphs at batch 1 and 2 and the gradient graph with one copy of the weights. */
  renderUNetSessions: 1,
  previewUNetSessions: 1,
  /** Live feature maps of width C at full latent resolution during a forward call. */
  kappaForward: 24,
  /** Score blocks alive at once in the backward pass at the largest attention site. */
  tauGradient: 5,
  /** Feature maps stored for the backward pass of the gradient graph. */
  kappaGradient: 95,
  /** onnxruntime's own arenas, CUDA context, and the job's images. */
  overheadBytes: 768 * 2 ** 20,
  /** SD 1.x: 16 cross-attention sites, as fractions of the latent grid (down 2+2+2, mid 1, up 3+3+3). */
  sd1xSiteFractions: Object.freeze([1, 1, 1 / 4, 1 / 4, 1 / 16, 1 / 16, 1 / 64, 1 / 16, 1 / 16, 1 / 16, 1 / 4, 1 / 4, 1 / 4, 1, 1, 1]) as readonly number[],
  sd1xHeads: 8,
  tokens: 77,
  /** SD 1.x's UNet: 859.5 M parameters at first block width 320. */
  referenceParameters: 859.5e6,
  referenceChannels: 320,
  /** Jobs may use at most this share of the free memory (the rest is headroom for the system). */
  usableFraction: 0.9,
  /** Working sizes tried for the hint, pixels per side. */
  hintSizes: [1024, 896, 768, 640, 512, 448, 384, 320, 256] as readonly number[],
});

/** What the estimate needs to know about a model. */
export interface ModelFootprint {
  /** UNet graph + its external weights, bytes in memory (on disk, rescaled from the export's
   *  precision to the one the prepared graphs compute in). */
  readonly unetBytes: number;
  /** Text encoder + VAE encoder + VAE decoder, bytes in memory (rescaled as the UNet's). */
  readonly otherBytes: number;
  readonly heads: number;
  /** r_s per attention site. */
  readonly siteFractions: readonly number[];
  readonly tokens: number;
  /** C, the UNet's first block width. */
  readonly channels: number;
}

export interface JobShape {
  readonly kind: 'render' | 'preview';
  /** Working size in pixels. */
  readonly height: number;
  readonly width: number;
  /** Batch of each UNet call (2: both CFG branches). */
  readonly batch: number;
}

export interface MemoryEstimate {
  readonly weightsBytes: number;
  readonly activationBytes: number;
  readonly totalBytes: number;
}

const DERIVED_UNET_FILE = /^unet\/model\.(?:xattn|grad|roles)\.|^unet\/model\.prepared\.|^unet\/model\.fp16(?:-fp32)?\.|^unet\/model\.precision\./;

/** C from the UNet's parameter bytes (see the file header). */
export function inferChannels(unetBytes: number): number {
  const d = MEMORY_ESTIMATE_DEFAULTS;
  return d.referenceChannels * Math.sqrt(unetBytes / d.bytesPerValue / d.referenceParameters);
}

/** The unfused twins of an optimized VAE or text encoder (onnx/unfuse/component-twin.ts): graphs over
 *  the same weights, not counted again. */
const UNFUSED_TWIN_FILE = /\/model(?:\.params)?\.unfused\.[0-9x_]+\.(?:onnx|json)$/;

/** Reads a model folder's sizes (lstat only) and its first prepare manifest, if any. */
export async function modelFootprint(modelsDir: string, name: string): Promise<ModelFootprint> {
  const d = MEMORY_ESTIMATE_DEFAULTS;
  const dir = await modelFolder(modelsDir, name);
  const walk = await walkModelFolder(dir);
  let unetBytes = 0;
  let otherBytes = 0;
  const manifestPaths: string[] = [];
  for (const f of walk.files) {
    if (f.path.startsWith('unet/')) {
      if (/^unet\/model\.prepared\.[^/]+\.json$/.test(f.path)) manifestPaths.push(f.path);
      if (!DERIVED_UNET_FILE.test(f.path)) unetBytes += f.size;
    } else if (/^(?:text_encoder|vae_encoder|vae_decoder)\//.test(f.path) && !UNFUSED_TWIN_FILE.test(f.path)) {
      otherBytes += f.size;
    }
  }
  if (unetBytes === 0) throw new P2pzError('E_MODEL_INVALID', `The model “${name}” has no UNet.`);
  let heads: number = d.sd1xHeads;
  let siteFractions: readonly number[] = d.sd1xSiteFractions;
  let tokens: number = d.tokens;
  // Bytes per weight on disk (the export's) and in memory (what the prepared graphs compute in: a
  // float16 export is upcast to float32 for the CPU provider, onnx/precision/unet-precision.ts). With
  // several precisions prepared, the larger one counts: the device is not known here.
  let diskBytesPerValue: number = d.bytesPerValue;
  let memoryBytesPerValue = 0;
  let sitesFound = false;
  for (const manifestPath of manifestPaths.sort()) {
    try {
      const real = await resolveModelPath(modelsDir, join(name, manifestPath));
      const parsed = PreparedManifest.safeParse(JSON.parse(await readFile(real, 'utf8')));
      if (!parsed.success) continue;
      if (parsed.data.exported === 'fp16') diskBytesPerValue = 2;
      memoryBytesPerValue = Math.max(memoryBytesPerValue, parsed.data.precision?.compute === 'fp16' ? 2 : 4);
      if (!sitesFound && parsed.data.sites.length > 0) {
        sitesFound = true;
        const grid = parsed.data.latentHeight * parsed.data.latentWidth;
        heads = Math.max(...parsed.data.sites.map((s) => s.heads));
        tokens = Math.max(...parsed.data.sites.map((s) => s.tokens));
        siteFractions = parsed.data.sites.map((s) => s.queries / grid);
      }
    } catch {
      // a broken manifest: keep the SD 1.x profile
    }
  }
  // The UNet's parameters, then their bytes in memory (float32 when nothing is prepared yet). The
  // text encoder and VAE are never converted: a float16 export's are counted at float32, the worst
  // case (onnxruntime's CPU provider computes their float16 nodes through Casts).
  const parameterBytes = (unetBytes / diskBytesPerValue) * d.bytesPerValue;
  return {
    unetBytes: (unetBytes * (memoryBytesPerValue || d.bytesPerValue)) / diskBytesPerValue,
    otherBytes: (otherBytes * d.bytesPerValue) / diskBytesPerValue,
    heads, siteFractions, tokens, channels: inferChannels(parameterBytes),
  };
}

/** The estimate of the file header for one job shape. */
export function estimateJobMemory(fp: ModelFootprint, job: JobShape): MemoryEstimate {
  const d = MEMORY_ESTIMATE_DEFAULTS;
  const hw = (job.height / 8) * (job.width / 8);
  const q = fp.siteFractions.map((r) => r * hw);
  const maxQ2 = Math.max(0, ...q.map((v) => v * v));
  const scores = d.bytesPerValue * job.batch * fp.heads * maxQ2;
  const block = scores > CHUNK_DEFAULTS.maxScoreBytes ? scores / Math.ceil(scores / CHUNK_DEFAULTS.maxScoreBytes) : scores;
  const forward = 2 * block + d.bytesPerValue * job.batch * d.kappaForward * fp.channels * hw;
  let activationBytes = forward;
  if (job.kind === 'render') {
    const headWidth = (r: number): number => (fp.channels * Math.min(4, Math.round(Math.sqrt(1 / r)))) / fp.heads;
    const kept = (r: number, v: number): number => (v >= 2 * RECOMPUTE_DEFAULTS.minRatio * headWidth(r) ? 0 : 1);
    const stored = q.reduce((s, v, i) => s + kept(fp.siteFractions[i] ?? 1, v) * v * v + v * fp.tokens, 0);
    const gradient = d.bytesPerValue * job.batch * (fp.heads * stored + d.kappaGradient * fp.channels * hw) + d.tauGradient * block;
    activationBytes = Math.max(forward, gradient);
  }
  const sessions = job.kind === 'render' ? d.renderUNetSessions : d.previewUNetSessions;
  const weightsBytes = fp.unetBytes * sessions + fp.otherBytes;
  return { weightsBytes, activationBytes, totalBytes: weightsBytes + activationBytes + d.overheadBytes };
}

const gb = (bytes: number): string => `${(bytes / 1e9).toFixed(1)} GB`;

/**
 * Refuses (E_JOB_TOO_LARGE) a job whose estimate exceeds the usable share of `freeBytes`; an unknown
 * free memory refuses nothing. The hint names the largest working size that fits, or says that the
 * weights alone do not.
 */
export function checkJobFits(fp: ModelFootprint, job: JobShape, freeBytes: number | undefined): MemoryEstimate {
  const estimate = estimateJobMemory(fp, job);
  if (freeBytes === undefined) return estimate;
  const d = MEMORY_ESTIMATE_DEFAULTS;
  const usable = freeBytes * d.usableFraction;
  if (estimate.totalBytes <= usable) return estimate;
  const detail = `It needs about ${gb(estimate.totalBytes)} at ${job.width}×${job.height}; ${gb(freeBytes)} is free.`;
  const long = Math.max(job.width, job.height);
  const fits = d.hintSizes.find((side) => {
    if (side >= long) return false;
    const scale = side / long;
    const shape = { ...job, width: Math.max(64, Math.floor((job.width * scale) / 64) * 64), height: Math.max(64, Math.floor((job.height * scale) / 64) * 64) };
    return estimateJobMemory(fp, shape).totalBytes <= usable;
  });
  if (fits !== undefined) {
    throw new P2pzError('E_JOB_TOO_LARGE', detail, `Use a working size of ${fits} pixels or less (--size ${fits}), or close other programs that use the ${job.kind === 'render' ? 'device' : 'memory'}.`);
  }
  throw new P2pzError('E_JOB_TOO_LARGE', detail, `The model's weights alone need about ${gb(estimate.weightsBytes)}: close other programs that use the device, or run on the CPU with --device cpu if it has more memory.`);
}
