// pix2pix-zero's cross-attention guidance, one step (docs/DESIGN.md §3 step 6), through the gradient graph
// that `prepare` derives from the UNet (onnxruntime has no autograd):
//   x = [x⁰, x¹] = [z, z]  [2,4,h,w],  e = [e_c, e_edit]  [2,T,D],  A_ref,l [heads_l, hw_l, T]
//   L = Σ_l (1/(2·heads_l)) Σ_{b,k} ‖A_l(x^b, e_b)[k] − A_ref,l[k]‖²_F
//   x^b ← x^b − λ_xa·∂L/∂x^b
// Returns the updated x, ∂L/∂x and L (evaluated before the step).
import { Tensor } from 'onnxruntime-node';
import { GUIDANCE_IO, refName } from '../onnx/attention/guidance-graph.js';
import { outputData, unetFeeds, type DiffusionModel } from './diffusion-model.js';
import type { ModelSessions } from './context.js';
import type { UNetCall } from './unet-roles.js';

/** One reference map per cross-attention layer, as the gradient graph takes it. */
export interface ReferenceMap {
  readonly index: number;
  /** [heads, hw, T] float32. */
  readonly data: Float32Array;
  readonly heads: number;
  readonly queries: number;
  readonly tokens: number;
}

export interface GuidanceStep {
  /** x − λ_xa·∂L/∂x, [2,4,h,w]. */
  readonly x: Float32Array;
  /** ∂L/∂x, [2,4,h,w]. */
  readonly grad: Float32Array;
  readonly loss: number;
}

/** Runs the gradient graph at x (batch 2) and takes one gradient step of size λ_xa. `gradGraph`: the
 *  gradient graph's file, or the roles model's `grad` role. */
export async function crossAttentionGuidance(
  models: ModelSessions,
  model: Pick<DiffusionModel, 'timestep' | 'textWidth'>,
  gradGraph: string | UNetCall,
  x: Float32Array,
  latent: { readonly h: number; readonly w: number },
  t: number,
  context: Float32Array,
  refs: readonly ReferenceMap[],
  lambdaXa: number,
): Promise<GuidanceStep> {
  const extra: Record<string, Tensor> = {};
  for (const r of refs) extra[refName(r.index)] = new Tensor('float32', r.data, [r.heads, r.queries, r.tokens]);
  const dims = [2, 4, latent.h, latent.w] as const;
  const feeds = unetFeeds(model, x, dims, t, context, extra);
  const out = await (typeof gradGraph === 'string' ? models.run(gradGraph, feeds) : gradGraph(feeds));
  const grad = outputData(out, GUIDANCE_IO.gradSample, x.length);
  const loss = outputData(out, GUIDANCE_IO.loss)[0] ?? Number.NaN;
  const next = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) next[i] = x[i]! - lambdaXa * grad[i]!;
  return { x: next, grad: grad.slice(), loss };
}
