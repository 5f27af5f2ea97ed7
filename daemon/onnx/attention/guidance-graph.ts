// The two derived UNet graphs of pix2pix-zero's cross-attention guidance, for one static input size:
//  - the cross-attention graph: the UNet with its cross-attention maps as extra outputs
//    (the reference pass records A_ref with it);
//  - the guidance gradient graph: inputs sample x [B,4,h,w], timestep, encoder_hidden_states e
//    [B,T,D] and one reference map A_ref,l [heads, hw, T] per layer (shared by the B batch rows);
//    outputs out_sample, the maps, the loss
//        L = Σ_l (1/(B·heads_l)) Σ_{b,k} ‖A_l(x^b, e_b)[k] − A_ref,l[k]‖²_F
//    (Σ over layers of the mean over the B·heads slices of the squared Frobenius distance, as the
//    official code defines it over the CFG batch) and ∂L/∂x, derived by reverse-mode autodiff.
import { P2pzError } from '../../../shared/protocol/errors.js';
import { GraphEmitter } from '../autodiff/emitter.js';
import { foldStaticShapes } from '../graph/fold.js';
import { appendGradient, type GradientRequest } from '../autodiff/gradient-graph.js';
import { chunkForwardAttention } from '../autodiff/chunk-attention.js';
import { DataType, type ModelProto } from '../graph/onnx-proto.js';
import { declaredType, defaultOpset, makeNode, valueInfo } from '../graph/nodes.js';
import type { ShapeMap } from '../graph/static-shapes.js';
import { CROSS_ATTENTION_IO, exposeCrossAttentionMaps, findCrossAttention, mapName, type CrossAttentionSite } from './cross-attention.js';

export const GUIDANCE_IO = Object.freeze({
  loss: 'loss',
  gradSample: 'grad_sample',
  /** Input name prefix of the reference maps (same index as attn_map_NN). */
  refPrefix: 'attn_ref_',
});

export const GUIDANCE_DEFAULTS = Object.freeze({
  /** Text length T when the model leaves it free (CLIP pads to 77). */
  tokens: 77,
});

export interface UNetStaticSize {
  readonly batch: number;
  /** Latent height h and width w (pixels / 8). */
  readonly latentHeight: number;
  readonly latentWidth: number;
}

export interface DerivedUNet {
  readonly model: ModelProto;
  readonly sites: readonly CrossAttentionSite[];
  readonly shapes: ShapeMap;
}

export function refName(index: number): string {
  return `${GUIDANCE_IO.refPrefix}${String(index).padStart(2, '0')}`;
}

/** Static dims of the UNet inputs, reading channels, timestep rank and text width from the model. */
export function unetInputDims(model: ModelProto, size: UNetStaticSize): Record<string, number[]> {
  const byName = new Map(model.graph.input.map((v) => [v.name, declaredType(v)]));
  const sample = byName.get(CROSS_ATTENTION_IO.sample);
  const timestep = byName.get(CROSS_ATTENTION_IO.timestep);
  const context = byName.get(CROSS_ATTENTION_IO.encoderHiddenStates);
  if (!sample || !timestep || !context) throw new P2pzError('E_MODEL_INVALID', 'The UNet lacks one of sample, timestep, encoder_hidden_states.');
  const channels = (sample.dims[1] ?? -1) > 0 ? (sample.dims[1] as number) : 4;
  const tokens = (context.dims[1] ?? -1) > 0 ? (context.dims[1] as number) : GUIDANCE_DEFAULTS.tokens;
  const width = context.dims[2] ?? -1;
  if (width <= 0) throw new P2pzError('E_MODEL_INVALID', 'The UNet does not declare the width of encoder_hidden_states.');
  return {
    [CROSS_ATTENTION_IO.sample]: [size.batch, channels, size.latentHeight, size.latentWidth],
    [CROSS_ATTENTION_IO.timestep]: timestep.dims.length === 0 ? [] : [size.batch],
    [CROSS_ATTENTION_IO.encoderHiddenStates]: [size.batch, tokens, width],
  };
}

/** The UNet at a static size with its cross-attention maps as outputs attn_map_NN. `chunk` (default
 *  true): large self-attention sites run in blocks of queries (autodiff/chunk-attention.ts); the
 *  gradient graph starts from the unchunked graph and chunks its own sites. */
export function crossAttentionModel(model: ModelProto, size: UNetStaticSize, options: { readonly chunk?: boolean } = {}): DerivedUNet {
  const folded = foldStaticShapes(model, unetInputDims(model, size));
  const sites = findCrossAttention(folded.model, folded.shapes, size.batch);
  if (sites.length === 0) throw new P2pzError('E_MODEL_INVALID', 'No cross-attention layer was found in the UNet.');
  const exposed = exposeCrossAttentionMaps(folded.model, folded.shapes, sites, size.batch);
  if (options.chunk !== false) chunkForwardAttention(exposed.graph, folded.shapes, defaultOpset(exposed));
  return { model: exposed, sites, shapes: folded.shapes };
}

/** The guidance gradient graph (see the file header). `recompute`: see GradientRequest (default:
 *  large self-attention probabilities are recomputed in the backward pass, autodiff/recompute.ts). */
export function guidanceGradientModel(model: ModelProto, size: UNetStaticSize, options: { readonly recompute?: GradientRequest['recompute'] } = {}): DerivedUNet {
  const x = crossAttentionModel(model, size, { chunk: false });
  const graph = x.model.graph;
  const shapes = x.shapes;
  const em = new GraphEmitter(shapes, 'loss/', defaultOpset(x.model));
  const terms: string[] = [];
  for (const s of x.sites) {
    const ref = refName(s.index);
    const dtype = shapes.get(s.probs)?.dtype ?? DataType.FLOAT;
    graph.input.push(valueInfo(ref, dtype, [s.heads, s.queries, s.tokens]));
    shapes.set(ref, { dtype, dims: [s.heads, s.queries, s.tokens] });
    const diff = em.sub(mapName(s.index), ref);
    const sq = em.reduceSum(em.mul(diff, diff), [0, 1, 2, 3], false);
    terms.push(em.scale(sq, 1 / (size.batch * s.heads)));
  }
  const total = em.sum(terms);
  em.nodes.push(makeNode('Identity', [total], [GUIDANCE_IO.loss], 'loss/total'));
  shapes.set(GUIDANCE_IO.loss, em.info(total));
  graph.node.push(...em.nodes);
  graph.initializer.push(...em.initializers);
  const withGrad = appendGradient(x.model, shapes, {
    loss: GUIDANCE_IO.loss,
    wrt: [{ input: CROSS_ATTENTION_IO.sample, gradOutput: GUIDANCE_IO.gradSample }],
    keepOutputs: [...x.model.graph.output.map((o) => o.name)],
    ...(options.recompute === undefined ? {} : { recompute: options.recompute }),
  });
  return { model: withGrad, sites: x.sites, shapes };
}
